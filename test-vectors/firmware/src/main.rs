//! securemesh firmware self test for Cortex-M4F (`thumbv7em-none-eabihf`),
//! run under QEMU (`-M mps2-an386`).
//!
//! - Links `securemesh-core` (features `kat`, no `fast`), `securemesh-noise`,
//!   `securemesh-ratchet` and `securemesh-mls-lite` with **no global
//!   allocator**: if any of them (or a dependency) uses `alloc`, this binary
//!   does not link. That is the authoritative no-alloc check.
//! - Runs every known-answer family of `securemesh_core::kat` and prints
//!   `kat <family> <passed>/<total>`.
//! - Measures instructions and peak stack of the core operations
//!   (`op <name>: <instructions> instructions, <bytes> B stack`).
//! - Runs full `Noise_XX` and `Noise_IK` (25519, ChaChaPoly, SHA256)
//!   handshakes between two parties on the device, then 1 KiB of transport
//!   data each way ([`noise`]); prints `noise xx <passed>/<total>` and
//!   `noise ik ...`, their costs and `ratio` lines.
//! - Runs X3DH and Double Ratchet sessions (`securemesh-ratchet`) between
//!   two parties on the device, with clear and with encrypted headers
//!   ([`ratchet`]); prints `ratchet session <passed>/<total>` and
//!   `ratchet header-encryption ...`, their costs and `ratio` lines.
//! - Runs an MLS passive client (`securemesh-mls-lite`) on one embedded
//!   ciphersuite-3 entry of the mlswg `passive-client-handling-commit.json`
//!   vector ([`mls`]): joins from the Welcome, processes every proposal and
//!   commit, checks every epoch authenticator; prints
//!   `mls passive-client <passed>/<total>` and the cost of each call.
//! - Runs an MLS active member in a group of 16 ([`mls_active`]), then
//!   prints the counted line `firmware: N passed, M failed` (KAT families
//!   plus the two Noise runs, the two ratchet runs and the two MLS runs).
//!   The mesh agent runs in a firmware of its own (`mesh/`, its own
//!   workspace), so it does not move these figures; `run.sh` adds its
//!   family to the count.
//! - Exits through semihosting: status 0 only if every family passed and
//!   every measured operation gave the right result.
#![no_std]
#![no_main]

mod family;
mod measure;
mod mls;
mod mls_active;
mod noise;
mod ratchet;
mod rt;
mod scratch_probe;
mod slot;
mod test_rng;

use core::hint::black_box;
use cortex_m::peripheral::Peripherals;
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use securemesh_core::crypto::{Aead, ChaChaPoly, Dh, Ed25519, Hash, Sha256, Signature, SuiteId, X25519};
use securemesh_core::envelope::{self, Header, SEAL_OVERHEAD, StateKind, StorageKey};
use securemesh_core::{Error, Secret, ct_eq, kat};

use measure::{Cost, Meter, MeterError};
use test_rng::NotRandomTestRng;

/// Body of the sealed-envelope measurement.
const ENVELOPE_BODY_LEN: usize = 256;
/// Message signed and verified.
const SIGN_MSG_LEN: usize = 64;
/// Plaintext sealed with ChaCha20-Poly1305.
const AEAD_MSG_LEN: usize = 64;

/// RFC 5869 A.1 (42-byte output): measured input with a known answer.
const HKDF_IKM: [u8; 22] = [0x0b; 22];
const HKDF_SALT: [u8; 13] = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c];
const HKDF_INFO: [u8; 10] = [0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9];
const HKDF_OKM: [u8; 42] = [
    0x3c, 0xb2, 0x5f, 0x25, 0xfa, 0xac, 0xd5, 0x7a, 0x90, 0x43, 0x4f, 0x64, 0xd0, 0x36, 0x2f, 0x2a, 0x2d,
    0x2d, 0x0a, 0x90, 0xcf, 0x1a, 0x5a, 0x4c, 0x5d, 0xb0, 0x2d, 0x56, 0xec, 0xc4, 0xc5, 0xbf, 0x34, 0x00,
    0x72, 0x08, 0xd5, 0xb8, 0x87, 0x18, 0x58, 0x65,
];

#[entry]
fn main() -> ! {
    let ok = match run() {
        Ok(ok) => ok,
        Err(e) => {
            hprintln!("firmware: measurement error: {}", e);
            false
        }
    };
    rt::exit(ok)
}

/// Print one measured operation; record whether its result was right.
fn report(name: &str, cost: &Cost, result_ok: bool, all_ok: &mut bool, peak: &mut usize) {
    hprintln!("op {}: {} instructions, {} B stack", name, cost.instructions, cost.stack);
    if !result_ok {
        hprintln!("op {}: WRONG RESULT", name);
        *all_ok = false;
    }
    *peak = (*peak).max(cost.depth);
}

/// Everything; `Ok(true)` if every check passed.
///
/// Each part runs in its own (not inlined) function, so that the locals of
/// one part are off the stack while the next one runs.
fn run() -> Result<bool, MeterError> {
    let Some(p) = Peripherals::take() else {
        hprintln!("firmware: peripherals already taken");
        return Ok(false);
    };
    let mut meter = Meter::new(p.SYST)?;
    let mut peak = 0usize;

    let (mut passed, mut failed) = kat_families(&mut meter, &mut peak)?;
    let (ops_ok, floors) = core_ops(&mut meter, &mut peak)?;

    // Noise XX and IK between two parties on the device, then 1 KiB each
    // way; X3DH and Double Ratchet sessions, clear and encrypted headers.
    let noise = noise::run_all(&mut meter, floors.dh, &mut peak)?;
    let ratchet = ratchet::run_all(&mut meter, &floors, &mut peak)?;
    // An MLS passive client: join from a Welcome, then every proposal and
    // commit of one mlswg vector entry.
    let mls = mls::run_all(&mut meter, &mut peak)?;
    // An MLS active member: a group of 16 created, grown by commits, an
    // update, a message; at most 16 KiB of state per member.
    let mls_active = mls_active::run_all(&mut meter, &mut peak)?;
    for family in noise.iter().chain(ratchet.iter()).chain([&mls, &mls_active]) {
        let verdict = if family.is_ok() { "" } else { " FAILED" };
        hprintln!("{} {}/{}{}", family.name, family.passed, family.total, verdict);
        if family.is_ok() {
            passed += 1;
        } else {
            failed += 1;
        }
    }

    hprintln!(
        "firmware stack: peak {} B of {} B reserved (deepest measured call chain)",
        peak,
        measure::stack_reserved()
    );
    if !ops_ok {
        hprintln!("firmware: some measured operation gave a WRONG RESULT");
    }
    hprintln!("firmware: {} passed, {} failed", passed, failed);
    Ok(failed == 0 && ops_ok)
}

/// The known-answer families: (passed, failed).
#[inline(never)]
fn kat_families(meter: &mut Meter, peak: &mut usize) -> Result<(u32, u32), MeterError> {
    let (results, kat_cost) = meter.measure(kat::all)?;
    let (mut passed, mut failed) = (0u32, 0u32);
    for r in &results {
        let verdict = if r.is_ok() { "" } else { " FAILED" };
        hprintln!("kat {} {}/{}{}", r.name, r.passed, r.total, verdict);
        if r.is_ok() {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    hprintln!("firmware kat run: {} instructions, {} B stack", kat_cost.instructions, kat_cost.stack);
    *peak = (*peak).max(kat_cost.depth);
    Ok((passed, failed))
}

/// The core operations, each measured on black-boxed inputs and checked:
/// (all right, instructions of one X25519 DH and public key and one Ed25519
/// verify, the floors of the handshake and ratchet ratios).
#[inline(never)]
fn core_ops(meter: &mut Meter, peak: &mut usize) -> Result<(bool, ratchet::Floors), MeterError> {
    hprintln!(
        "ops: Cortex-M4F, instructions counted by SysTick under QEMU -icount shift=0 (resolution {})",
        meter.instructions_per_tick()
    );
    let mut ops_ok = true;

    let a = Secret::new(black_box([0x11u8; 32]));
    let b = Secret::new(black_box([0x22u8; 32]));
    let (pk_a, cost) = meter.measure(|| X25519::public_key(&a))?;
    let pk_b = X25519::public_key(&b);
    let (ab, cost_dh) = meter.measure(|| X25519::dh(&a, &pk_b))?;
    let ba = X25519::dh(&b, &pk_a).into_secret();
    let dh_ok = ab.is_contributory() && ct_eq(ab.into_secret().expose(), ba.expose());
    report("x25519-dh", &cost_dh, dh_ok, &mut ops_ok, peak);
    report("x25519-public-key", &cost, dh_ok, &mut ops_ok, peak);
    let cost_public_key = cost;

    let mut okm = [0u8; 42];
    let (expanded, cost) = meter.measure(|| {
        let prk = Sha256::hkdf_extract(black_box(&HKDF_SALT), black_box(&HKDF_IKM));
        Sha256::hkdf_expand(prk.expose(), &[black_box(&HKDF_INFO)], &mut okm)
    })?;
    report("hkdf-sha256-extract-expand-42B", &cost, expanded.is_ok() && okm == HKDF_OKM, &mut ops_ok, peak);

    let key = Secret::new(black_box([0x42u8; 32]));
    let nonce = black_box([0x07u8; 12]);
    let mut buf = [0x5au8; AEAD_MSG_LEN + 16];
    let (sealed, cost) = meter.measure(|| ChaChaPoly::seal(&key, &nonce, &[], &mut buf, AEAD_MSG_LEN))?;
    let aead_ok = sealed == Ok(AEAD_MSG_LEN + 16)
        && ChaChaPoly::open(&key, &nonce, &[], &mut buf) == Ok(AEAD_MSG_LEN)
        && buf.iter().take(AEAD_MSG_LEN).all(|&x| x == 0x5a);
    report("chacha20poly1305-seal-64B", &cost, aead_ok, &mut ops_ok, peak);

    let seed = Secret::new(black_box([0x33u8; 32]));
    let (signing_key, cost_load) = meter.measure(|| Ed25519::signing_key(&seed))?;
    let public = Ed25519::verifying_key(&signing_key);
    let msg = black_box([0xa5u8; SIGN_MSG_LEN]);
    let (sig, cost_sign) = meter.measure(|| Ed25519::sign(&signing_key, &msg))?;
    let (verified, cost_verify) = meter.measure(|| Ed25519::verify(&public, &msg, &sig))?;
    let mut bad = sig;
    if let Some(first) = bad.first_mut() {
        *first ^= 1;
    }
    let sig_ok = verified.is_ok() && Ed25519::verify(&public, &msg, &bad).is_err();
    report("ed25519-signing-key-load", &cost_load, sig_ok, &mut ops_ok, peak);
    report("ed25519-sign-64B", &cost_sign, sig_ok, &mut ops_ok, peak);
    report("ed25519-verify-64B", &cost_verify, sig_ok, &mut ops_ok, peak);

    // Sealed envelope round trip; blob and scratch are the caller's buffers.
    let storage_key = StorageKey::new(black_box([0x09u8; 32]));
    let header = Header { kind: StateKind::RATCHET_SESSION, version: 1, suite: SuiteId::DEFAULT };
    let body = black_box([0xb7u8; ENVELOPE_BODY_LEN]);
    let mut rng = NotRandomTestRng::new(0x5eed);
    let mut blob = [0u8; ENVELOPE_BODY_LEN + SEAL_OVERHEAD];
    let mut scratch = [0u8; ENVELOPE_BODY_LEN];
    let (round_trip, cost) = meter.measure(|| -> Result<bool, Error> {
        let n = envelope::seal(&storage_key, &header, 7, &mut rng, &mut blob, |w| w.write_bytes(&body))?;
        let sealed = blob.get(..n).ok_or(Error::Truncated)?;
        let opened = envelope::open(&storage_key, sealed, 7, &mut scratch)?;
        Ok(opened.header == header && opened.generation == 7 && opened.body == body)
    })?;
    report("envelope-seal-open-256B", &cost, round_trip == Ok(true), &mut ops_ok, peak);
    let floors = ratchet::Floors {
        dh: cost_dh.instructions,
        public_key: cost_public_key.instructions,
        verify: cost_verify.instructions,
    };
    Ok((ops_ok, floors))
}

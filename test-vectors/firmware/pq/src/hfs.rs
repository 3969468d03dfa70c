//! Noise XXhfs (and classical XX, its reference) between two parties on
//! the device.
//!
//! `Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256` is XX with the `hfs`
//! modifier: message 1 adds `e1` (the initiator's ML-KEM-768 encapsulation
//! key, 1184 B), message 2 adds `ekem1` (the responder's ML-KEM ciphertext,
//! encrypted: 1088 + 16 B), whose secret is mixed into the chaining key.
//! So on top of XX the initiator makes one ML-KEM key pair and
//! decapsulates once (from the seed it kept: one more expansion), and the
//! responder encapsulates once.
//!
//! Each protocol runs twice with the same static keys and the same (not
//! random) ephemeral stream: once as one measurement of both parties
//! (`op pq-noise-<tag>-handshake`; its stack figure includes both
//! `HandshakeState`s), once call by call (`build`, each `write_message`
//! and `read_message`, `finish`), each call measured and summed per party
//! (`op pq-noise-<tag>-initiator` / `-responder`). Checked: every handshake
//! payload arrives, each side learns the other's static key, both
//! handshake hashes are equal and equal between the two runs, one 64-byte
//! transport message each way opens and a copy with a flipped bit is
//! refused first.

use crate::checks::Checks;
use crate::family::Family;
use crate::measure::{Cost, Meter, MeterError};
use crate::report;
use crate::test_rng::NotRandomTestRng;
use core::cell::RefCell;
use cortex_m::interrupt::{self, Mutex};
use cortex_m_semihosting::hprintln;
use securemesh_core::Secret;
use securemesh_core::crypto::{Dh, X25519};
use securemesh_noise::{Builder, HandshakeState, OVERHEAD, Protocol, Role, Transport, protocol};

/// The classical reference, then the hybrid.
const PROTOCOLS: [(&str, &str, Protocol); 2] = [
    ("xx", "pq noise xx", protocol!("Noise_XX_25519_ChaChaPoly_SHA256")),
    ("xxhfs", "pq noise xxhfs", protocol!("Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256")),
];
/// Payload of each handshake message and of the transport messages.
const PAYLOAD_LEN: usize = 64;
/// Room for the largest message (XXhfs message 1: 32 + 1184 + payload).
const MSG_CAP: usize = 2048;
/// Seeds of the static keys and of the ephemeral stream (not random).
const STATIC_SEED: u32 = 0x4846_5301;
const EPHEMERAL_SEED: u32 = 0x4846_5e02;
const PROLOGUE: &[u8] = b"securemesh pq firmware";

/// Message and payload buffers: static (`.bss`), off the stack.
struct Buffers {
    msg: [u8; MSG_CAP],
    out: [u8; MSG_CAP],
}

static BUFFERS: Mutex<RefCell<Buffers>> =
    Mutex::new(RefCell::new(Buffers { msg: [0; MSG_CAP], out: [0; MSG_CAP] }));

/// `[pq noise xx, pq noise xxhfs]`; prints the hybrid / classical ratio
/// and what `hfs` adds over the ML-KEM-768 operations it runs
/// (`ml_kem_ops`: keygen + encaps + decaps, measured earlier in the run).
#[inline(never)]
pub fn run_all(meter: &mut Meter, ml_kem_ops: u32, peak: &mut usize) -> Result<[Family; 2], MeterError> {
    hprintln!(
        "pq noise: HandshakeState {} B, Transport {} B",
        size_of::<HandshakeState>(),
        size_of::<Transport>()
    );
    // Nothing runs from an interrupt; the critical section only makes the
    // static buffers reachable without `unsafe`.
    interrupt::free(|cs| {
        let mut bufs = BUFFERS.borrow(cs).borrow_mut();
        let [xx, xxhfs] = PROTOCOLS;
        let (xx, xx_cost) = run_protocol(meter, &mut bufs, xx, peak)?;
        let (xxhfs, hfs_cost) = run_protocol(meter, &mut bufs, xxhfs, peak)?;
        let r = per_mille(hfs_cost, xx_cost);
        hprintln!(
            "ratio pq-noise-xxhfs/xx: handshake {}.{:03} ({} / {} instructions, both parties)",
            r / 1000,
            r % 1000,
            hfs_cost,
            xx_cost
        );
        let extra = hfs_cost.saturating_sub(xx_cost);
        let r = per_mille(extra, ml_kem_ops);
        hprintln!(
            "ratio pq-noise-xxhfs-extra/mlkem768-ops: {}.{:03} ({} instructions more than XX / {} for one ML-KEM-768 keygen + encaps + decaps)",
            r / 1000,
            r % 1000,
            extra,
            ml_kem_ops
        );
        Ok([xx, xxhfs])
    })
}

/// `a / b` in thousandths.
fn per_mille(a: u32, b: u32) -> u64 {
    (u64::from(a) * 1000).checked_div(u64::from(b)).unwrap_or(0)
}

/// Both parties' static keys.
struct Statics {
    secret: [Secret<[u8; 32]>; 2],
    public: [[u8; 32]; 2],
}

/// How the handshake calls run: plainly (inside one enclosing
/// measurement), or each measured with the cost summed per party.
struct Calls<'m> {
    meter: Option<&'m mut Meter>,
    /// Initiator's and responder's sums.
    sums: [Cost; 2],
    tag: &'static str,
}

impl Calls<'_> {
    fn run<T>(
        &mut self,
        party: usize,
        call: core::fmt::Arguments,
        f: impl FnOnce() -> T,
    ) -> Result<T, MeterError> {
        let Some(meter) = self.meter.as_deref_mut() else { return Ok(f()) };
        let (out, c) = meter.measure(f)?;
        let who = if party == 0 { "initiator" } else { "responder" };
        hprintln!(
            "call pq-noise-{} {} {}: {} instructions, {} B stack",
            self.tag,
            who,
            call,
            c.instructions,
            c.stack
        );
        if let Some(sum) = self.sums.get_mut(party) {
            sum.instructions = sum.instructions.saturating_add(c.instructions);
            sum.stack = sum.stack.max(c.stack);
            sum.depth = sum.depth.max(c.depth);
        }
        Ok(out)
    }
}

/// Build a party in place (`None` if the builder refused).
#[inline(never)]
fn build(slot: &mut Option<HandshakeState>, p: &Protocol, role: Role, key: &Secret<[u8; 32]>) {
    *slot = Builder::new(p).prologue(PROLOGUE).local_static(key.duplicate()).build(role).ok();
}

/// Finish a party into its transport in place.
#[inline(never)]
fn finish(hs: &mut Option<HandshakeState>, t: &mut Option<Transport>) {
    *t = hs.take().and_then(|h| h.finish().ok());
}

/// Payload byte `i` of message `n`.
fn payload(n: usize) -> [u8; PAYLOAD_LEN] {
    core::array::from_fn(|i| (i as u8).wrapping_mul(13) ^ (0x50 + n as u8))
}

/// One handshake: the two transports and the handshake hash, or `None`
/// (the failure is counted in `checks`). Message lengths go to `lens`.
#[inline(never)]
fn handshake(
    calls: &mut Calls,
    p: &Protocol,
    keys: &Statics,
    bufs: &mut Buffers,
    checks: &mut Checks,
    lens: &mut [usize; 3],
) -> Result<Option<(Transport, Transport, [u8; 32])>, MeterError> {
    let mut rng = NotRandomTestRng::new(EPHEMERAL_SEED);
    let mut hs: [Option<HandshakeState>; 2] = [None, None];
    let [i_slot, r_slot] = &mut hs;
    let ([ki, kr], [pi, pr]) = (&keys.secret, &keys.public);
    calls.run(0, format_args!("build"), || build(i_slot, p, Role::Initiator, ki))?;
    calls.run(1, format_args!("build"), || build(r_slot, p, Role::Responder, kr))?;
    let (Some(i), Some(r)) = (i_slot.as_mut(), r_slot.as_mut()) else {
        checks.check("build", false);
        return Ok(None);
    };
    for (n, len) in lens.iter_mut().enumerate() {
        let (from, s, rcv, expected) =
            if n % 2 == 0 { (0, &mut *i, &mut *r, pi) } else { (1, &mut *r, &mut *i, pr) };
        let sent = payload(n);
        let w = calls.run(from, format_args!("write message {}", n + 1), || {
            s.write_message(&sent, &mut bufs.msg, &mut rng)
        })?;
        let Some(msg) = w.ok().and_then(|l| bufs.msg.get(..l)) else {
            checks.check("handshake write", false);
            return Ok(None);
        };
        *len = msg.len();
        let read = calls
            .run(1 - from, format_args!("read message {}", n + 1), || rcv.read_message(msg, &mut bufs.out))?;
        if !checks.check(
            "handshake payload",
            read == Ok(PAYLOAD_LEN) && bufs.out.get(..PAYLOAD_LEN) == Some(&sent[..]),
        ) {
            return Ok(None);
        }
        if rcv.remote_static_pending() {
            // The policy check a real caller makes: is it the expected peer?
            checks.check("remote static key", rcv.remote_static() == Some(expected));
            rcv.accept_remote_static();
        }
    }
    let hash: Option<[u8; 32]> = i.handshake_hash().try_into().ok();
    checks.check(
        "complete, equal handshake hashes",
        i.is_complete() && r.is_complete() && hash.is_some_and(|h| h == r.handshake_hash()),
    );
    let (mut ti, mut tr) = (None, None);
    calls.run(0, format_args!("finish"), || finish(i_slot, &mut ti))?;
    calls.run(1, format_args!("finish"), || finish(r_slot, &mut tr))?;
    checks.check("finish", ti.is_some() && tr.is_some());
    Ok(ti.zip(tr).zip(hash).map(|((a, b), h)| (a, b, h)))
}

/// One transport message from `a` to `b`: a copy with a flipped bit is
/// refused first, then the message opens to its payload.
fn transport(a: &mut Transport, b: &mut Transport, bufs: &mut Buffers, n: usize) -> bool {
    let data = payload(n);
    let Some(msg) = a.write_message(&data, &mut bufs.msg).ok().and_then(|l| bufs.msg.get_mut(..l)) else {
        return false;
    };
    let sealed_ok = msg.len() == PAYLOAD_LEN + OVERHEAD;
    flip(msg);
    let forged_refused = b.read_message(msg, &mut bufs.out).is_err();
    flip(msg);
    let opened = b.read_message(msg, &mut bufs.out) == Ok(PAYLOAD_LEN)
        && bufs.out.get(..PAYLOAD_LEN) == Some(&data[..]);
    sealed_ok && forged_refused && opened
}

/// Flip a bit of the first byte of `msg`.
fn flip(msg: &mut [u8]) {
    if let Some(x) = msg.first_mut() {
        *x ^= 4;
    }
}

/// One protocol: its family and the instructions of the whole handshake.
#[inline(never)]
fn run_protocol(
    meter: &mut Meter,
    bufs: &mut Buffers,
    (tag, family, p): (&'static str, &'static str, Protocol),
    peak: &mut usize,
) -> Result<(Family, u32), MeterError> {
    hprintln!("pq noise {}: {}", tag, p.name());
    let mut checks = Checks::new(family);
    let mut rng = NotRandomTestRng::new(STATIC_SEED);
    let secret = [X25519::generate(&mut rng), X25519::generate(&mut rng)];
    let public = [X25519::public_key(&secret[0]), X25519::public_key(&secret[1])];
    let keys = Statics { secret, public };
    let mut lens = [0usize; 3];

    // 1. The whole handshake, both parties, one measurement.
    let mut plain = Calls { meter: None, sums: [ZERO; 2], tag };
    let (whole, cost) = meter.measure(|| handshake(&mut plain, &p, &keys, bufs, &mut checks, &mut lens))?;
    let pair = whole?;
    report(format_args!("noise-{tag}-handshake"), &cost, peak);
    hprintln!(
        "pq noise {}: messages {} / {} / {} B ({} B payload each)",
        tag,
        lens[0],
        lens[1],
        lens[2],
        PAYLOAD_LEN
    );

    // 2. The same handshake call by call, summed per party.
    let mut each = Calls { meter: Some(meter), sums: [ZERO; 2], tag };
    let again = handshake(&mut each, &p, &keys, bufs, &mut checks, &mut lens)?;
    let [ci, cr] = each.sums;
    report(format_args!("noise-{tag}-initiator"), &ci, peak);
    report(format_args!("noise-{tag}-responder"), &cr, peak);
    checks.check(
        "same handshake hash call by call",
        matches!((&pair, &again), (Some((_, _, a)), Some((_, _, b))) if a == b),
    );

    // 3. One transport message each way.
    match pair {
        Some((mut ti, mut tr, _)) => {
            checks.check("transport initiator to responder", transport(&mut ti, &mut tr, bufs, 7));
            checks.check("transport responder to initiator", transport(&mut tr, &mut ti, bufs, 8));
        }
        None => {
            checks.check("transport", false);
        }
    }
    Ok((checks.family(), cost.instructions))
}

const ZERO: Cost = Cost { instructions: 0, stack: 0, depth: 0 };

//! Noise handshakes and transport between two parties on the device.
//!
//! For each protocol (`Noise_XX_25519_ChaChaPoly_SHA256`,
//! `Noise_IK_25519_ChaChaPoly_SHA256`):
//!
//! 1. **Whole handshake**, one measurement: both parties built (each
//!    derives its static public key), every handshake message written and
//!    read (each with a small payload), the peers' static keys checked and
//!    accepted, both parties finished into [`Transport`]s. Its stack figure
//!    includes both `HandshakeState`s (they live in the measured closure).
//! 2. **The same handshake call by call**: the same keys and the same
//!    (not random) ephemeral stream, each `build`, `write_message`,
//!    `read_message` and `finish` measured on its own and summed per
//!    party. Its handshake hash must equal the first run's. Per-call stack
//!    figures exclude the `HandshakeState` (it is in the caller's frame).
//! 3. **1 KiB of transport data each way** (one 1024-byte message per
//!    direction), seal and open measured separately; a message with one
//!    flipped bit must be refused first (without consuming the nonce).
//!
//! The handshake's X25519 operations are counted from the pattern, per
//! party: one base-point multiplication for its static public key (derived
//! at build) and one per `e` it sends, and one scalar multiplication per
//! DH token of *every* message (both parties compute each DH: in XX that is
//! `ee`, `es`, `se` on each side, 5 operations per party; in IK `es`, `ss`,
//! `ee`, `se`, 6 per party). The ratio to the X25519 DH measured in the
//! same run shows what the rest of the handshake (SHA-256, HKDF,
//! ChaCha20-Poly1305, copies) costs on top.

use crate::measure::{Cost, Meter, MeterError};
use crate::test_rng::NotRandomTestRng;
use core::cell::RefCell;
use cortex_m::interrupt::{self, Mutex};
use cortex_m_semihosting::hprintln;
use securemesh_core::Secret;
use securemesh_core::crypto::{Dh, X25519};
use securemesh_noise::{
    Builder, HandshakePattern, HandshakeState, OVERHEAD, Protocol, Role, Token, Transport, protocol,
};

/// The protocols run, with the tag used in the output.
const PROTOCOLS: [(&str, Protocol); 2] = [
    ("xx", protocol!("Noise_XX_25519_ChaChaPoly_SHA256")),
    ("ik", protocol!("Noise_IK_25519_ChaChaPoly_SHA256")),
];

/// Transport payload per direction.
const TRANSPORT_LEN: usize = 1024;
/// Payload of each handshake message.
const HS_PAYLOAD_LEN: usize = 32;
/// Seed of the static keys (not random, see `NotRandomTestRng`).
const STATIC_SEED: u32 = 0x5747_1c00;
/// Seed of the ephemeral keys; both runs of one protocol use it, so they
/// produce the same messages and the same handshake hash.
const EPHEMERAL_SEED: u32 = 0x0e9e_3e7a;
/// Prologue both parties bind.
const PROLOGUE: &[u8] = b"securemesh firmware";

pub use crate::family::Family;

/// Run every protocol; print its figures; return one verdict per protocol.
/// `dh_instructions` is the X25519 DH measured earlier in the same run.
#[inline(never)]
pub fn run_all(meter: &mut Meter, dh_instructions: u32, peak: &mut usize) -> Result<[Family; 2], MeterError> {
    hprintln!(
        "noise: HandshakeState {} B, Transport {} B; {} B transport payload each way",
        core::mem::size_of::<HandshakeState>(),
        core::mem::size_of::<Transport>(),
        TRANSPORT_LEN
    );
    // Nothing here runs from an interrupt; the critical section only
    // makes the static buffers reachable without `unsafe`.
    interrupt::free(|cs| {
        let mut bufs = BUFFERS.borrow(cs).borrow_mut();
        let [(xx_tag, xx), (ik_tag, ik)] = PROTOCOLS;
        let xx = run_protocol(meter, &mut bufs, xx_tag, "noise xx", &xx, dh_instructions, peak)?;
        let ik = run_protocol(meter, &mut bufs, ik_tag, "noise ik", &ik, dh_instructions, peak)?;
        Ok([xx, ik])
    })
}

/// Transport payload, message and plaintext buffers: static (in `.bss`),
/// so that they take none of the stack.
struct Buffers {
    data: [u8; TRANSPORT_LEN],
    msg: [u8; TRANSPORT_LEN + OVERHEAD],
    out: [u8; TRANSPORT_LEN + OVERHEAD],
}

static BUFFERS: Mutex<RefCell<Buffers>> = Mutex::new(RefCell::new(Buffers {
    data: [0; TRANSPORT_LEN],
    msg: [0; TRANSPORT_LEN + OVERHEAD],
    out: [0; TRANSPORT_LEN + OVERHEAD],
}));

/// Both parties' static keys.
struct StaticKeys {
    initiator: Secret<[u8; 32]>,
    responder: Secret<[u8; 32]>,
    initiator_public: [u8; 32],
    responder_public: [u8; 32],
}

/// Pass/fail tally of one protocol; remembers the first failure.
struct Checks {
    passed: u32,
    total: u32,
    first_failure: Option<&'static str>,
}

impl Checks {
    fn check(&mut self, what: &'static str, ok: bool) {
        self.total += 1;
        if ok {
            self.passed += 1;
        } else if self.first_failure.is_none() {
            self.first_failure = Some(what);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Initiator,
    Responder,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Initiator => "initiator",
            Side::Responder => "responder",
        }
    }
}

/// One handshake call, for the per-call lines.
#[derive(Clone, Copy)]
enum Call {
    Build,
    Write(usize),
    Read(usize),
    Finish,
}

impl core::fmt::Display for Call {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Call::Build => f.write_str("build"),
            Call::Write(n) => write!(f, "write message {}", n + 1),
            Call::Read(n) => write!(f, "read message {}", n + 1),
            Call::Finish => f.write_str("finish"),
        }
    }
}

/// Runs each handshake call: plainly, or measured.
trait Stepper {
    fn step<T>(&mut self, side: Side, call: Call, f: impl FnOnce() -> T) -> Result<T, MeterError>;
}

/// Calls directly (inside one enclosing measurement).
struct Direct;

impl Stepper for Direct {
    #[inline(always)]
    fn step<T>(&mut self, _: Side, _: Call, f: impl FnOnce() -> T) -> Result<T, MeterError> {
        Ok(f())
    }
}

/// Measures every call and sums per party.
struct Metered<'m> {
    meter: &'m mut Meter,
    tag: &'static str,
    initiator: Cost,
    responder: Cost,
}

const ZERO: Cost = Cost { instructions: 0, stack: 0, depth: 0 };

fn add(total: &mut Cost, c: &Cost) {
    total.instructions = total.instructions.saturating_add(c.instructions);
    total.stack = total.stack.max(c.stack);
    total.depth = total.depth.max(c.depth);
}

impl Stepper for Metered<'_> {
    fn step<T>(&mut self, side: Side, call: Call, f: impl FnOnce() -> T) -> Result<T, MeterError> {
        let (out, cost) = self.meter.measure(f)?;
        hprintln!(
            "call noise-{} {} {}: {} instructions, {} B stack",
            self.tag,
            side.name(),
            call,
            cost.instructions,
            cost.stack
        );
        add(if side == Side::Initiator { &mut self.initiator } else { &mut self.responder }, &cost);
        Ok(out)
    }
}

/// Payload of handshake message `n` (distinct per message).
fn hs_payload(n: usize) -> [u8; HS_PAYLOAD_LEN] {
    let mut p = [0u8; HS_PAYLOAD_LEN];
    for (i, b) in p.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7) ^ (0xa0 + n as u8);
    }
    p
}

/// Transport payload: byte `i` of direction `seed`.
fn transport_byte(seed: u8, i: usize) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add((i >> 8) as u8) ^ seed
}

/// Build one party into `slot` (`None` if the builder refused), with the
/// keys the pattern needs. The state is written in place: the handshake
/// keeps each `HandshakeState` in one slot and never copies it around.
#[inline(never)]
fn build(slot: &mut Option<HandshakeState>, p: &Protocol, role: Role, keys: &StaticKeys) {
    let pat = p.pattern();
    let (own, peer_public, peer_pre) = match role {
        Role::Initiator => (&keys.initiator, keys.responder_public, pat.pre_responder()),
        Role::Responder => (&keys.responder, keys.initiator_public, pat.pre_initiator()),
    };
    let mut b = Builder::new(p).prologue(PROLOGUE).local_static(own.duplicate());
    if peer_pre.s {
        b = b.remote_static(peer_public);
    }
    *slot = b.build(role).ok();
}

/// `finish` the handshake in `hs` into `transport` (`None` if refused).
#[inline(never)]
fn finish(hs: &mut Option<HandshakeState>, transport: &mut Option<Transport>) {
    *transport = hs.take().and_then(|h| h.finish().ok());
}

/// One complete handshake; `Ok(None)` if a call failed (recorded in `checks`).
#[inline(never)]
fn handshake<S: Stepper>(
    st: &mut S,
    p: &Protocol,
    keys: &StaticKeys,
    bufs: &mut Buffers,
    checks: &mut Checks,
) -> Result<Option<(Transport, Transport)>, MeterError> {
    let mut rng = NotRandomTestRng::new(EPHEMERAL_SEED);
    let (mut i_slot, mut r_slot) = (None, None);
    st.step(Side::Initiator, Call::Build, || build(&mut i_slot, p, Role::Initiator, keys))?;
    st.step(Side::Responder, Call::Build, || build(&mut r_slot, p, Role::Responder, keys))?;
    checks.check("build", i_slot.is_some() && r_slot.is_some());
    let (Some(i), Some(r)) = (i_slot.as_mut(), r_slot.as_mut()) else { return Ok(None) };

    let mut n = 0usize;
    while !i.is_complete() || !r.is_complete() {
        let (sender, receiver, s_side, r_side, expected_static) = if n.is_multiple_of(2) {
            (&mut *i, &mut *r, Side::Initiator, Side::Responder, &keys.initiator_public)
        } else {
            (&mut *r, &mut *i, Side::Responder, Side::Initiator, &keys.responder_public)
        };
        let payload = hs_payload(n);
        let written =
            st.step(s_side, Call::Write(n), || sender.write_message(&payload, &mut bufs.msg, &mut rng))?;
        let Some(msg) = written.ok().and_then(|len| bufs.msg.get(..len)) else {
            checks.check("handshake write", false);
            return Ok(None);
        };
        let read = st.step(r_side, Call::Read(n), || receiver.read_message(msg, &mut bufs.out))?;
        let ok = read == Ok(HS_PAYLOAD_LEN) && bufs.out.get(..HS_PAYLOAD_LEN) == Some(&payload[..]);
        checks.check("handshake payload", ok);
        if !ok {
            return Ok(None);
        }
        if receiver.remote_static_pending() {
            // The policy check a real caller makes: is it the expected peer?
            checks.check("remote static key", receiver.remote_static() == Some(expected_static));
            receiver.accept_remote_static();
        }
        n += 1;
    }
    checks.check("handshake hashes equal", i.handshake_hash() == r.handshake_hash());
    checks.check(
        "both know the peer's static key",
        i.remote_static() == Some(&keys.responder_public)
            && r.remote_static() == Some(&keys.initiator_public),
    );
    let (mut ti, mut tr) = (None, None);
    st.step(Side::Initiator, Call::Finish, || finish(&mut i_slot, &mut ti))?;
    st.step(Side::Responder, Call::Finish, || finish(&mut r_slot, &mut tr))?;
    checks.check("finish", ti.is_some() && tr.is_some());
    Ok(ti.zip(tr))
}

/// X25519 operations of one party: (key derivations, DHs). One base-point
/// multiplication per static key (derived at build) and per ephemeral key
/// it sends, one scalar multiplication per DH token.
fn x25519_ops(pat: &HandshakePattern, initiator: bool) -> (u32, u32) {
    let (has_static, pre) = if initiator {
        (pat.initiator_has_static(), pat.pre_initiator())
    } else {
        (pat.responder_has_static(), pat.pre_responder())
    };
    let mut keys = u32::from(has_static) + u32::from(pre.e);
    let mut dhs = 0u32;
    for (n, m) in pat.messages().iter().enumerate() {
        let mine = n.is_multiple_of(2) == initiator;
        for t in m.tokens() {
            match t {
                Token::E if mine => keys += 1,
                Token::Ee | Token::Es | Token::Se | Token::Ss => dhs += 1,
                _ => {}
            }
        }
    }
    (keys, dhs)
}

fn print_op(name: &str, tag: &str, cost: &Cost, peak: &mut usize) {
    hprintln!("op noise-{}-{}: {} instructions, {} B stack", tag, name, cost.instructions, cost.stack);
    *peak = (*peak).max(cost.depth);
}

/// `instructions / (ops * dh)` to two decimals, as (whole, hundredths).
fn ratio(instructions: u32, ops: u32, dh: u32) -> (u64, u64) {
    let den = u64::from(ops) * u64::from(dh);
    let r = (u64::from(instructions) * 100 + den / 2).checked_div(den).unwrap_or(0);
    (r / 100, r % 100)
}

fn print_ratio(label: &str, tag: &str, instructions: u32, (keys, dhs): (u32, u32), dh: u32) {
    let ops = keys + dhs;
    let (w, f) = ratio(instructions, ops, dh);
    hprintln!(
        "ratio noise-{}{}: handshake / X25519 ops = {}.{:02} ({} ops: {} public-key + {} DH, {} instructions per DH)",
        tag,
        label,
        w,
        f,
        ops,
        keys,
        dhs,
        dh
    );
}

/// One direction of transport: seal `TRANSPORT_LEN` bytes, refuse a
/// tampered copy, open it. Returns (seal cost, open cost, correct).
#[inline(never)]
fn transport_leg(
    meter: &mut Meter,
    bufs: &mut Buffers,
    sender: &mut Transport,
    receiver: &mut Transport,
    seed: u8,
) -> Result<(Cost, Cost, bool), MeterError> {
    for (i, b) in bufs.data.iter_mut().enumerate() {
        *b = transport_byte(seed, i);
    }
    let data = &bufs.data;
    let (sealed, seal_cost) = meter.measure(|| sender.write_message(data, &mut bufs.msg))?;
    let Ok(len) = sealed else { return Ok((seal_cost, ZERO, false)) };
    let sealed_ok = len == TRANSPORT_LEN + OVERHEAD;
    // A flipped bit is refused and does not consume the nonce.
    let Some(msg) = bufs.msg.get_mut(..len) else { return Ok((seal_cost, ZERO, false)) };
    if let Some(b) = msg.get_mut(TRANSPORT_LEN / 2) {
        *b ^= 0x10;
    }
    let forged_refused = receiver.read_message(msg, &mut bufs.out).is_err();
    if let Some(b) = msg.get_mut(TRANSPORT_LEN / 2) {
        *b ^= 0x10;
    }
    let (opened, open_cost) = meter.measure(|| receiver.read_message(msg, &mut bufs.out))?;
    let opened_ok = opened == Ok(TRANSPORT_LEN) && bufs.out.get(..TRANSPORT_LEN) == Some(&data[..]);
    Ok((seal_cost, open_cost, sealed_ok && forged_refused && opened_ok))
}

/// The handshake call by call: (initiator's cost, responder's cost,
/// handshake hash).
#[inline(never)]
fn by_call(
    meter: &mut Meter,
    tag: &'static str,
    p: &Protocol,
    keys: &StaticKeys,
    bufs: &mut Buffers,
    checks: &mut Checks,
) -> Result<(Cost, Cost, Option<[u8; 32]>), MeterError> {
    let mut metered = Metered { meter, tag, initiator: ZERO, responder: ZERO };
    let pair = handshake(&mut metered, p, keys, bufs, checks)?;
    let hash = pair.and_then(|(ti, _)| ti.handshake_hash().try_into().ok());
    Ok((metered.initiator, metered.responder, hash))
}

#[inline(never)]
fn run_protocol(
    meter: &mut Meter,
    bufs: &mut Buffers,
    tag: &'static str,
    family: &'static str,
    p: &Protocol,
    dh: u32,
    peak: &mut usize,
) -> Result<Family, MeterError> {
    hprintln!("noise {}: {}", tag, p.name());
    let mut checks = Checks { passed: 0, total: 0, first_failure: None };
    let mut rng = NotRandomTestRng::new(STATIC_SEED);
    let (si, sr) = (X25519::generate(&mut rng), X25519::generate(&mut rng));
    let keys = StaticKeys {
        initiator_public: X25519::public_key(&si),
        responder_public: X25519::public_key(&sr),
        initiator: si,
        responder: sr,
    };

    // 1. The whole handshake, both parties, as one measurement.
    let (whole, whole_cost) = meter.measure(|| handshake(&mut Direct, p, &keys, bufs, &mut checks))?;
    let pair = whole?;
    print_op("handshake", tag, &whole_cost, peak);

    // 2. The same handshake call by call, summed per party.
    let (ci, cr, hash_again) = by_call(meter, tag, p, &keys, bufs, &mut checks)?;
    print_op("initiator", tag, &ci, peak);
    print_op("responder", tag, &cr, peak);
    let mut sum = ci;
    add(&mut sum, &cr);
    hprintln!(
        "op noise-{}-handshake-by-call: {} instructions, {} B stack (initiator + responder, call by call)",
        tag,
        sum.instructions,
        sum.stack
    );
    if let (Some((a, _)), Some(b)) = (&pair, &hash_again) {
        checks.check("same handshake hash call by call", a.handshake_hash() == &b[..]);
    }

    let pat = p.pattern();
    let (oi, or) = (x25519_ops(pat, true), x25519_ops(pat, false));
    print_ratio("", tag, whole_cost.instructions, (oi.0 + or.0, oi.1 + or.1), dh);
    print_ratio("-initiator", tag, ci.instructions, oi, dh);
    print_ratio("-responder", tag, cr.instructions, or, dh);

    // 3. 1 KiB of transport data each way.
    if let Some((mut ti, mut tr)) = pair {
        let (seal, open, ok) = transport_leg(meter, bufs, &mut ti, &mut tr, 0x3c)?;
        checks.check("transport initiator to responder", ok);
        let (seal_back, open_back, ok_back) = transport_leg(meter, bufs, &mut tr, &mut ti, 0xc3)?;
        checks.check("transport responder to initiator", ok_back);
        print_op("transport-seal-1KiB", tag, &seal, peak);
        print_op("transport-open-1KiB", tag, &open, peak);
        let mut both = seal;
        add(&mut both, &open);
        print_op("transport-seal-open-1KiB", tag, &both, peak);
        let mut back = seal_back;
        add(&mut back, &open_back);
        print_op("transport-seal-open-1KiB-reply", tag, &back, peak);
    } else {
        checks.check("transport", false);
    }

    if let Some(what) = checks.first_failure {
        hprintln!("noise {}: FAILED check: {}", tag, what);
    }
    Ok(Family { name: family, passed: checks.passed, total: checks.total })
}

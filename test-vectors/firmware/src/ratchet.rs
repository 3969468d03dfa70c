//! X3DH and Double Ratchet sessions between two parties on the device
//! (`securemesh-ratchet`).
//!
//! Setup (once): Alice's and Bob's identities, Bob's prekey pool of
//! [`POOL`] one-time prekeys, and the symmetric primitives a ratchet message
//! is made of (`KDF_CK`, the message-key expansion, ChaCha20-Poly1305 with
//! the session's 169-byte associated data, `KDF_RK`), each measured.
//!
//! Then two runs, one per header mode (clear headers, then encrypted
//! headers), each counted as one family:
//!
//! 1. Bob's bundle (with a fresh one-time prekey) is encoded, a copy with a
//!    flipped signature bit is refused, and `Bundle::decode` is measured
//!    (identity binding and signed-prekey signatures: 2 Ed25519 verifies).
//! 2. Alice's `Session::initiate` (X3DH: 1 X25519 key pair, 4 DH), her first
//!    `encrypt` (the initial message, which takes the sending half of the
//!    first DH ratchet step), Bob's `Session::respond` (it verifies the
//!    identity in the initial message, 1 Ed25519 verify, then X3DH, 4 DH,
//!    and the first receiving chain, 1 DH); replaying the initial message
//!    is refused (its one-time prekey is gone) and measured too.
//! 3. Bursts of messages that alternate direction, Bob first: every burst
//!    starts with a DH ratchet step on both sides (the sender's first
//!    `encrypt` makes a new ratchet key pair, the receiver's first `decrypt`
//!    of the new chain does one DH). One burst is delivered out of order
//!    (a skipped key is stored, then used), one has a tampered copy of a
//!    message refused before the genuine one opens, and a duplicate is
//!    refused after it. Every plaintext, message type and length, ratchet
//!    step event and skipped-key count is checked.
//!
//! Every encrypt and decrypt is measured; the figures printed are the
//! largest of each class (symmetric step, DH step, skip-ahead, stored key),
//! with the range and count. The sessions, identities, pool and message
//! buffers are statics (`.bss`), so the figures are what the calls
//! themselves need.

use crate::measure::{Cost, Meter, MeterError};
use crate::noise::Family;
use crate::slot::Slot;
use crate::test_rng::NotRandomTestRng;
use core::cell::RefCell;
use core::hint::black_box;
use cortex_m::interrupt::{self, Mutex};
use cortex_m_semihosting::hprintln;
use securemesh_core::crypto::{Aead, ChaChaPoly, Hash, Sha256};
use securemesh_core::{Instant, UnixTime, ct_eq};
use securemesh_ratchet::kdf::{self, Key32};
use securemesh_ratchet::{
    Bundle, Error, INITIAL_PREFIX_LEN, Identity, MSG_INITIAL, MSG_RATCHET, MSG_RATCHET_HE, PrekeyConfig,
    PrekeyPool, RATCHET_HE_OVERHEAD, RATCHET_OVERHEAD, Session, SessionConfig, SessionEvent,
};

/// Skipped message keys per chain (`MAX_SKIP`) of the sessions run here.
pub const MAX_SKIP: usize = 16;
/// Skipped message keys stored in all (`CAP`) by the sessions run here.
pub const SKIP_CAP: usize = 16;
/// One-time prekeys in Bob's pool.
pub const POOL: usize = 4;
/// The session type run on the device: 2.3 KB instead of the 12 KB of the
/// default `Session<128, 128>`. `initiate` and `respond` return a session
/// by value, and `respond` holds it on the stack above an Ed25519 verify:
/// with the default size that alone exceeds the 16 KiB stack.
type S = Session<MAX_SKIP, SKIP_CAP>;

/// Payload of every ratchet message.
const PAYLOAD_LEN: usize = 64;
/// Room for any message sent here (initial message with encrypted header: 333 B).
const MSG_CAP: usize = 384;
/// Longest burst.
const BURST_MAX: usize = 5;
/// Room for Bob's encoded bundle (267 B: no KEM prekey).
const BUNDLE_CAP: usize = 320;
/// Associated data of a ratchet message with a clear header: X3DH AD 128
/// and the message prefix (type 1, header 40).
const AD_LEN: usize = 128 + 1 + 40;
/// Wall-clock time of the prekey pool.
const T0: UnixTime = UnixTime(1_700_000_000);
/// Monotonic time of the sessions (the heartbeat never falls due).
const NOW: Instant = Instant(0);
/// Seeds of the (not random) streams: identities and prekeys, Alice, Bob.
const SETUP_SEED: u32 = 0x7a7c_4e70;
const ALICE_SEED: u32 = 0x0a11_ce00;
const BOB_SEED: u32 = 0x0b0b_0000;

/// X25519 and Ed25519 figures measured earlier in the same run.
#[derive(Clone, Copy, Debug)]
pub struct Floors {
    /// One X25519 scalar multiplication (DH).
    pub dh: u32,
    /// One X25519 base-point multiplication (public key).
    pub public_key: u32,
    /// One Ed25519 verification of a 64-byte message.
    pub verify: u32,
}

/// The symmetric work of one ratchet message, measured on the device.
#[derive(Clone, Copy)]
struct SymFloor {
    /// `KDF_CK`: 2 HMAC-SHA256.
    chain: u32,
    /// Message key to ChaCha20-Poly1305 key and nonce: HKDF-SHA256, 44 B.
    message_keys: u32,
    /// ChaCha20-Poly1305 seal of 64 B with the 169-byte AD.
    aead: u32,
}

impl SymFloor {
    fn sum(&self) -> u32 {
        self.chain.saturating_add(self.message_keys).saturating_add(self.aead)
    }
}

/// One burst: who sends, in which order the messages are delivered, and
/// the extra deliveries around it.
struct Burst {
    from_alice: bool,
    /// Delivery order of the burst's messages (a permutation of `0..len`).
    order: &'static [usize],
    /// Before message `k` is delivered, a copy with one flipped bit is refused.
    tamper: Option<usize>,
    /// After the burst, message `k` delivered again is refused as a duplicate.
    duplicate: Option<usize>,
}

const fn burst(from_alice: bool, order: &'static [usize]) -> Burst {
    Burst { from_alice, order, tamper: None, duplicate: None }
}

/// One run: a header mode and its conversation.
struct Run {
    /// Family name: `ratchet session`, `ratchet header-encryption`.
    family: &'static str,
    /// Prefix of the `op` and `ratio` lines.
    tag: &'static str,
    header_encryption: bool,
    bursts: &'static [Burst],
}

/// Clear headers: 4 bursts of 5, 20 messages, 2 DH steps per direction.
const CLEAR: Run = Run {
    family: "ratchet session",
    tag: "ratchet",
    header_encryption: false,
    bursts: &[
        burst(false, &[0, 1, 2, 3, 4]),
        burst(true, &[0, 1, 3, 2, 4]),
        Burst { from_alice: false, order: &[0, 1, 2, 3, 4], tamper: Some(1), duplicate: Some(1) },
        burst(true, &[0, 1, 2, 3, 4]),
    ],
};

/// Encrypted headers: 4 bursts of 3, 12 messages, 2 DH steps per direction.
const HEADER_ENCRYPTION: Run = Run {
    family: "ratchet header-encryption",
    tag: "ratchet-he",
    header_encryption: true,
    bursts: &[
        burst(false, &[0, 1, 2]),
        burst(true, &[0, 2, 1]),
        Burst { from_alice: false, order: &[0, 1, 2], tamper: Some(1), duplicate: Some(1) },
        burst(true, &[0, 1, 2]),
    ],
};

/// Identities, prekey pool and sessions: static (in `.bss`), so they take
/// none of the stack.
struct Parties {
    alice: Slot<Identity>,
    bob: Slot<Identity>,
    pool: Slot<PrekeyPool<POOL>>,
    a: Slot<S>,
    b: Slot<S>,
}

static PARTIES: Mutex<RefCell<Parties>> = Mutex::new(RefCell::new(Parties {
    alice: Slot::Empty,
    bob: Slot::Empty,
    pool: Slot::Empty,
    a: Slot::Empty,
    b: Slot::Empty,
}));

/// Bundle and message buffers: static as well.
struct Buffers {
    bundle: [u8; BUNDLE_CAP],
    initial: [u8; MSG_CAP],
    wire: [[u8; MSG_CAP]; BURST_MAX],
    lens: [usize; BURST_MAX],
    out: [u8; MSG_CAP],
}

static BUFFERS: Mutex<RefCell<Buffers>> = Mutex::new(RefCell::new(Buffers {
    bundle: [0; BUNDLE_CAP],
    initial: [0; MSG_CAP],
    wire: [[0; MSG_CAP]; BURST_MAX],
    lens: [0; BURST_MAX],
    out: [0; MSG_CAP],
}));

/// Pass/fail tally of one run; remembers the first failure.
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

/// Costs of one class of calls (largest, smallest, count, deepest stack).
#[derive(Clone, Copy)]
struct Stats {
    n: u32,
    min: u32,
    max: u32,
    stack: usize,
    depth: usize,
}

impl Stats {
    const EMPTY: Stats = Stats { n: 0, min: u32::MAX, max: 0, stack: 0, depth: 0 };

    fn add(&mut self, c: &Cost) {
        self.n += 1;
        self.min = self.min.min(c.instructions);
        self.max = self.max.max(c.instructions);
        self.stack = self.stack.max(c.stack);
        self.depth = self.depth.max(c.depth);
    }
}

/// The message costs of one run, by class.
struct MessageStats {
    sym_encrypt: Stats,
    dh_encrypt: Stats,
    sym_decrypt: Stats,
    dh_decrypt: Stats,
    skip_ahead: Stats,
    stored_key: Stats,
}

impl MessageStats {
    /// Whether every class saw at least one message.
    #[inline(never)]
    fn all_measured(&self) -> bool {
        let classes = [
            &self.sym_encrypt,
            &self.dh_encrypt,
            &self.sym_decrypt,
            &self.dh_decrypt,
            &self.skip_ahead,
            &self.stored_key,
        ];
        classes.iter().all(|c| c.n > 0)
    }
}

/// `num / den` with `digits` decimals.
struct Fixed {
    num: u64,
    den: u64,
    digits: u32,
}

impl core::fmt::Display for Fixed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let scale = 10u64.pow(self.digits);
        let r = (self.num * scale + self.den / 2).checked_div(self.den).unwrap_or(0);
        write!(f, "{}.{:0width$}", r / scale, r % scale, width = self.digits as usize)
    }
}

fn fixed(num: u32, den: u64, digits: u32) -> Fixed {
    Fixed { num: u64::from(num), den, digits }
}

fn print_op(tag: &str, name: &str, cost: &Cost, peak: &mut usize) {
    hprintln!("op {}-{}: {} instructions, {} B stack", tag, name, cost.instructions, cost.stack);
    *peak = (*peak).max(cost.depth);
}

fn print_stats(tag: &str, name: &str, s: &Stats, peak: &mut usize) {
    if s.n == 0 {
        hprintln!("op {}-{}: NOT MEASURED", tag, name);
        return;
    }
    hprintln!(
        "op {}-{}: {} instructions, {} B stack (the largest of {} calls: {}..{})",
        tag,
        name,
        s.max,
        s.stack,
        s.n,
        s.min,
        s.max
    );
    *peak = (*peak).max(s.depth);
}

/// Payload of message `i` of burst `burst` (distinct per message).
fn payload(from_alice: bool, burst: usize, i: usize) -> [u8; PAYLOAD_LEN] {
    let mut p = [0u8; PAYLOAD_LEN];
    let seed = (u8::from(from_alice) << 7) ^ ((burst as u8) << 4) ^ (i as u8);
    for (j, b) in p.iter_mut().enumerate() {
        *b = (j as u8).wrapping_mul(29).wrapping_add(seed);
    }
    p
}

/// Generate an identity into `slot`.
#[inline(never)]
fn identity_into(slot: &mut Slot<Identity>, rng: &mut NotRandomTestRng) {
    *slot = Slot::Full(Identity::generate(rng));
}

/// A fresh prekey pool for `bob` into `slot`.
#[inline(never)]
fn pool_into(slot: &mut Slot<PrekeyPool<POOL>>, bob: &Identity, rng: &mut NotRandomTestRng) {
    *slot = Slot::Full(PrekeyPool::new(bob, rng, T0, PrekeyConfig::default()));
}

/// Alice's `initiate` into `slot`.
#[inline(never)]
fn initiate_into(
    slot: &mut Slot<S>,
    alice: &Identity,
    bundle: &Bundle<'_>,
    config: SessionConfig,
    rng: &mut NotRandomTestRng,
) -> Result<(), Error> {
    *slot = Slot::Full(S::initiate(alice, bundle, config, rng, NOW)?);
    Ok(())
}

/// Bob's `respond` into `slot`; returns the payload length.
#[inline(never)]
fn respond_into(
    slot: &mut Slot<S>,
    bob: &Identity,
    pool: &mut PrekeyPool<POOL>,
    msg: &[u8],
    out: &mut [u8],
) -> Result<usize, Error> {
    *slot = Slot::Empty;
    match S::respond(bob, pool, msg, out, SessionConfig::default(), NOW) {
        Ok((s, n)) => {
            *slot = Slot::Full(s);
            Ok(n)
        }
        Err(e) => Err(e),
    }
}

/// `respond` whose session is dropped (the replay check).
#[inline(never)]
fn respond_discard(
    bob: &Identity,
    pool: &mut PrekeyPool<POOL>,
    msg: &[u8],
    out: &mut [u8],
) -> Result<usize, Error> {
    match S::respond(bob, pool, msg, out, SessionConfig::default(), NOW) {
        Ok((_, n)) => Ok(n),
        Err(e) => Err(e),
    }
}

/// The next event is exactly `expected` (a step of this kind, or none).
fn events_are(s: &mut S, step: Option<bool>) -> bool {
    let first = s.poll_event();
    let rest = s.poll_event();
    first == step.map(|sending| SessionEvent::RatchetStepped { sending }) && rest.is_none()
}

/// Everything: setup, then the two runs. One verdict per run.
#[inline(never)]
pub fn run_all(meter: &mut Meter, floors: &Floors, peak: &mut usize) -> Result<[Family; 2], MeterError> {
    hprintln!(
        "ratchet: Session<{}, {}> {} B (default Session<128, 128>: {} B), PrekeyPool<{}> {} B, Identity {} B, Bundle {} B; {} B payloads",
        MAX_SKIP,
        SKIP_CAP,
        core::mem::size_of::<S>(),
        core::mem::size_of::<Session>(),
        POOL,
        core::mem::size_of::<PrekeyPool<POOL>>(),
        core::mem::size_of::<Identity>(),
        core::mem::size_of::<Bundle<'_>>(),
        PAYLOAD_LEN
    );
    // Nothing here runs from an interrupt; the critical section only makes
    // the statics reachable without `unsafe`.
    interrupt::free(|cs| {
        let mut parties = PARTIES.borrow(cs).borrow_mut();
        let mut bufs = BUFFERS.borrow(cs).borrow_mut();
        let (setup_ok, sym) = setup(meter, &mut parties, peak)?;
        let clear = run_session(meter, &mut parties, &mut bufs, &CLEAR, floors, &sym, setup_ok, peak)?;
        let he =
            run_session(meter, &mut parties, &mut bufs, &HEADER_ENCRYPTION, floors, &sym, setup_ok, peak)?;
        Ok([clear, he])
    })
}

/// Identities, pool and the symmetric primitives: (all right, their costs).
#[inline(never)]
fn setup(meter: &mut Meter, p: &mut Parties, peak: &mut usize) -> Result<(bool, SymFloor), MeterError> {
    let mut rng = NotRandomTestRng::new(SETUP_SEED);
    identity_into(&mut p.alice, &mut rng);
    let ((), cost) = meter.measure(|| identity_into(&mut p.bob, &mut rng))?;
    print_op("ratchet", "identity-generate", &cost, peak);
    let mut ok = p.alice.get().is_some();
    if let Some(bob) = p.bob.get() {
        let ((), cost) = meter.measure(|| pool_into(&mut p.pool, bob, &mut rng))?;
        print_op("ratchet", "prekey-pool-4-new", &cost, peak);
    }
    ok &= p.pool.get().is_some_and(|pool| pool.available() == POOL as u32);

    // The symmetric work of one message, piece by piece.
    let ck = Key32::new(black_box([0x5cu8; 32]));
    let ((next, mk), chain) = meter.measure(|| kdf::chain(&ck))?;
    print_op("ratchet", "kdf-chain", &chain, peak);
    ok &= ct_eq(mk.expose(), &Sha256::hmac(ck.expose(), &[&[0x01]]))
        && ct_eq(next.expose(), &Sha256::hmac(ck.expose(), &[&[0x02]]));
    let (keys, message_keys) = meter.measure(|| kdf::message_keys(&mk))?;
    print_op("ratchet", "message-keys", &message_keys, peak);
    ok &= keys.is_ok();
    let (key, nonce) = keys.unwrap_or((Key32::zeroed(), [0u8; 12]));
    let ad = black_box([0xa5u8; AD_LEN]);
    let mut buf = [0x3cu8; PAYLOAD_LEN];
    let (tag, aead) = meter.measure(|| ChaChaPoly::seal_detached(&key, &nonce, &ad, &mut buf))?;
    print_op("ratchet", "aead-seal-64B-ad169", &aead, peak);
    ok &= tag.is_ok_and(|t| ChaChaPoly::open_detached(&key, &nonce, &ad, &mut buf, &t).is_ok())
        && buf == [0x3cu8; PAYLOAD_LEN];
    let (rk, dh_out) = (Key32::new(black_box([0x11u8; 32])), Key32::new(black_box([0x22u8; 32])));
    let (keys, root) = meter.measure(|| kdf::root(&rk, &dh_out, false))?;
    print_op("ratchet", "kdf-root", &root, peak);
    ok &= keys.is_ok_and(|(rk2, ck2, none)| none.is_none() && !ct_eq(rk2.expose(), ck2.expose()));
    let sym = SymFloor {
        chain: chain.instructions,
        message_keys: message_keys.instructions,
        aead: aead.instructions,
    };
    hprintln!(
        "ratchet: symmetric floor of one message (kdf-chain + message-keys + aead-seal-64B-ad169): {} instructions",
        sym.sum()
    );
    if !ok {
        hprintln!("ratchet: setup FAILED");
    }
    Ok((ok, sym))
}

/// What the X3DH part of a run cost (instructions).
struct StartCosts {
    bundle_decode: u32,
    initiate: u32,
    initial_encrypt: u32,
    respond: u32,
    replay_refused: u32,
}

/// One run: bundle, X3DH, the bursts; prints its figures.
///
/// Its frame is kept small (the X3DH part is its own function, the
/// sessions are statics): `respond`, measured below it, is the deepest
/// call of the whole firmware.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn run_session(
    meter: &mut Meter,
    p: &mut Parties,
    bufs: &mut Buffers,
    run: &Run,
    floors: &Floors,
    sym: &SymFloor,
    setup_ok: bool,
    peak: &mut usize,
) -> Result<Family, MeterError> {
    hprintln!(
        "{}: {} headers, Session<{}, {}>",
        run.family,
        if run.header_encryption { "encrypted" } else { "clear" },
        MAX_SKIP,
        SKIP_CAP
    );
    let mut checks = Checks { passed: 0, total: 0, first_failure: None };
    checks.check("setup", setup_ok);
    let mut rng_a = NotRandomTestRng::new(ALICE_SEED ^ u32::from(run.header_encryption));
    let mut rng_b = NotRandomTestRng::new(BOB_SEED ^ u32::from(run.header_encryption));
    let Some(costs) = start(meter, p, bufs, run, &mut rng_a, &mut checks, peak)? else {
        return Ok(done(run, checks));
    };
    let (Some(sa), Some(sb)) = (p.a.get_mut(), p.b.get_mut()) else {
        checks.check("sessions", false);
        return Ok(done(run, checks));
    };

    // The bursts.
    let mut st = MessageStats {
        sym_encrypt: Stats::EMPTY,
        dh_encrypt: Stats::EMPTY,
        sym_decrypt: Stats::EMPTY,
        dh_decrypt: Stats::EMPTY,
        skip_ahead: Stats::EMPTY,
        stored_key: Stats::EMPTY,
    };
    let mut messages = 0usize;
    for (k, burst) in run.bursts.iter().enumerate() {
        let (sender, receiver, rng) = if burst.from_alice {
            (&mut *sa, &mut *sb, &mut rng_a)
        } else {
            (&mut *sb, &mut *sa, &mut rng_b)
        };
        let mut io = Io { wire: &mut bufs.wire, lens: &mut bufs.lens, out: &mut bufs.out };
        send_burst(meter, sender, receiver, rng, &mut io, burst, k + 1, run, &mut checks, &mut st)?;
        messages += burst.order.len();
    }
    checks.check("Alice no longer sends the X3DH header", !sa.awaiting_reply());
    checks.check("no skipped keys left", sa.skipped_keys() == 0 && sb.skipped_keys() == 0);
    checks.check("every message class measured", st.all_measured());
    hprintln!(
        "{}: {} messages in {} bursts, {} DH steps (each burst: sending half at its first encrypt, receiving half at its first decrypt)",
        run.family,
        messages,
        run.bursts.len(),
        st.dh_encrypt.n
    );
    print_run(run.tag, &costs, &st, floors, sym, peak);
    Ok(done(run, checks))
}

/// Bob's bundle, X3DH and the first message: the costs, or `None` if a
/// step failed (recorded in `checks`).
#[inline(never)]
fn start(
    meter: &mut Meter,
    p: &mut Parties,
    bufs: &mut Buffers,
    run: &Run,
    rng_a: &mut NotRandomTestRng,
    checks: &mut Checks,
    peak: &mut usize,
) -> Result<Option<StartCosts>, MeterError> {
    let tag = run.tag;
    let Parties { alice, bob, pool, a, b } = p;
    let (Some(alice), Some(bob), Some(pool)) = (alice.get(), bob.get(), pool.get_mut()) else {
        checks.check("parties", false);
        return Ok(None);
    };
    let available = pool.available();
    let opk = pool.one_time_ids().next();
    let Some((bundle_decode, initiate)) =
        decode_and_initiate(meter, alice, pool, opk, &mut bufs.bundle, a, run, rng_a, checks, peak)?
    else {
        return Ok(None);
    };
    let Some(sa) = a.get_mut() else { return Ok(None) };

    // Alice's first message: the sending half of the first DH step.
    let first = payload(true, 0, 0);
    let initial = &mut bufs.initial;
    let (sent, cost) = meter.measure(|| sa.encrypt(black_box(&first), initial, rng_a, NOW))?;
    print_op(tag, "initial-encrypt-64B", &cost, peak);
    let initial_encrypt = cost.instructions;
    let overhead = if run.header_encryption { RATCHET_HE_OVERHEAD } else { RATCHET_OVERHEAD };
    checks.check(
        "initial message",
        sent == Ok(INITIAL_PREFIX_LEN + overhead + PAYLOAD_LEN)
            && initial.first() == Some(&MSG_INITIAL)
            && sa.awaiting_reply()
            && events_are(sa, Some(true)),
    );
    let Some(msg) = sent.ok().and_then(|n| initial.get(..n)) else { return Ok(None) };

    // Bob answers it.
    let out = &mut bufs.out;
    let (opened, cost) = meter.measure(|| respond_into(b, bob, pool, msg, out))?;
    print_op(tag, "respond-64B", &cost, peak);
    let respond = cost.instructions;
    let Some(sb) = b.get_mut() else {
        checks.check("respond", false);
        return Ok(None);
    };
    checks.check(
        "respond: first plaintext, peer, AD, one-time prekey consumed",
        opened == Ok(PAYLOAD_LEN)
            && out.get(..PAYLOAD_LEN) == Some(&first[..])
            && sb.remote_identity() == alice.public()
            && sb.associated_data() == sa.associated_data()
            && pool.available() + 1 == available
            && opk.is_some_and(|id| pool.one_time_ids().all(|i| i != id))
            && events_are(sb, Some(false)),
    );
    // The same initial message again cannot open a second session.
    let (replayed, cost) = meter.measure(|| respond_discard(bob, pool, msg, out))?;
    print_op(tag, "respond-replay-refused", &cost, peak);
    checks.check(
        "replayed initial message refused",
        replayed == Err(Error::UnknownPrekey) && pool.available() + 1 == available,
    );
    Ok(Some(StartCosts {
        bundle_decode,
        initiate,
        initial_encrypt,
        respond,
        replay_refused: cost.instructions,
    }))
}

/// Bob's bundle encoded, a tampered copy refused, the bundle decoded
/// (measured) and Alice's `initiate` from it (measured): their costs.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn decode_and_initiate(
    meter: &mut Meter,
    alice: &Identity,
    pool: &PrekeyPool<POOL>,
    opk: Option<u32>,
    bundle_buf: &mut [u8; BUNDLE_CAP],
    a: &mut Slot<S>,
    run: &Run,
    rng_a: &mut NotRandomTestRng,
    checks: &mut Checks,
    peak: &mut usize,
) -> Result<Option<(u32, u32)>, MeterError> {
    let published = pool.bundle(opk);
    let encoded = published.encode(bundle_buf);
    checks.check("bundle encode", encoded.is_ok() && opk.is_some());
    let Some(encoded) = encoded.ok().and_then(|n| bundle_buf.get_mut(..n)) else { return Ok(None) };
    // The signed prekey's signature, one bit flipped: refused.
    const SPK_SIG: usize = 1 + 128 + 4 + 32;
    if let Some(x) = encoded.get_mut(SPK_SIG) {
        *x ^= 0x01;
    }
    checks.check("tampered bundle refused", Bundle::decode(encoded) == Err(Error::BadSignature));
    if let Some(x) = encoded.get_mut(SPK_SIG) {
        *x ^= 0x01;
    }
    let encoded = &*encoded;
    let (decoded, cost) = meter.measure(|| Bundle::decode(black_box(encoded)))?;
    print_op(run.tag, "bundle-decode", &cost, peak);
    let bundle_decode = cost.instructions;
    checks.check("bundle decoded and verified", decoded == Ok(published));
    let Ok(bundle) = decoded else { return Ok(None) };

    let config = SessionConfig { header_encryption: run.header_encryption, ..SessionConfig::default() };
    let (started, cost) = meter.measure(|| initiate_into(a, alice, &bundle, config, rng_a))?;
    print_op(run.tag, "initiate", &cost, peak);
    checks.check("initiate", started.is_ok() && a.get().is_some());
    Ok(started.is_ok().then_some((bundle_decode, cost.instructions)))
}

/// The figures of one run and their ratios to the X25519 / Ed25519 floors.
#[inline(never)]
fn print_run(
    tag: &str,
    c: &StartCosts,
    st: &MessageStats,
    floors: &Floors,
    sym: &SymFloor,
    peak: &mut usize,
) {
    print_stats(tag, "symmetric-encrypt-64B", &st.sym_encrypt, peak);
    print_stats(tag, "symmetric-decrypt-64B", &st.sym_decrypt, peak);
    print_stats(tag, "dh-step-encrypt-64B", &st.dh_encrypt, peak);
    print_stats(tag, "dh-step-decrypt-64B", &st.dh_decrypt, peak);
    print_stats(tag, "decrypt-skip-ahead-64B", &st.skip_ahead, peak);
    print_stats(tag, "decrypt-skipped-key-64B", &st.stored_key, peak);

    let (dh, pk, verify) = (u64::from(floors.dh), u64::from(floors.public_key), u64::from(floors.verify));
    hprintln!(
        "ratio {}-bundle-decode: decode / 2 Ed25519 verify = {}x ({} instructions per verify)",
        tag,
        fixed(c.bundle_decode, 2 * verify, 2),
        floors.verify
    );
    hprintln!(
        "ratio {}-initiate: initiate / (1 X25519 public-key + 4 DH) = {}x",
        tag,
        fixed(c.initiate, pk + 4 * dh, 2)
    );
    hprintln!(
        "ratio {}-initial-encrypt: encrypt / (1 X25519 public-key + 1 DH) = {}x",
        tag,
        fixed(c.initial_encrypt, pk + dh, 2)
    );
    hprintln!(
        "ratio {}-respond: respond / (5 X25519 DH + 1 Ed25519 verify) = {}x (the initial message's identity is verified)",
        tag,
        fixed(c.respond, 5 * dh + verify, 2)
    );
    hprintln!(
        "ratio {}-respond-replay-refused: refusal / 1 Ed25519 verify = {}x",
        tag,
        fixed(c.replay_refused, verify, 2)
    );
    hprintln!(
        "ratio {}-dh-step-encrypt: encrypt / (1 X25519 public-key + 1 DH) = {}x ({} + {} instructions)",
        tag,
        fixed(st.dh_encrypt.max, pk + dh, 2),
        floors.public_key,
        floors.dh
    );
    hprintln!(
        "ratio {}-dh-step-decrypt: decrypt / 1 X25519 DH = {}x ({} instructions)",
        tag,
        fixed(st.dh_decrypt.max, dh, 2),
        floors.dh
    );
    let floor = u64::from(sym.sum());
    hprintln!(
        "ratio {}-symmetric-encrypt: encrypt / (KDF_CK + message keys + AEAD 64 B) = {}x; / 1 X25519 DH = {}x",
        tag,
        fixed(st.sym_encrypt.max, floor, 2),
        fixed(st.sym_encrypt.max, dh, 3)
    );
    hprintln!(
        "ratio {}-symmetric-decrypt: decrypt / (KDF_CK + message keys + AEAD 64 B) = {}x; / 1 X25519 DH = {}x",
        tag,
        fixed(st.sym_decrypt.max, floor, 2),
        fixed(st.sym_decrypt.max, dh, 3)
    );
}

/// The verdict of a run (and its first failure, if any).
fn done(run: &Run, checks: Checks) -> Family {
    if let Some(what) = checks.first_failure {
        hprintln!("{}: FAILED check: {}", run.family, what);
    }
    Family { name: run.family, passed: checks.passed, total: checks.total }
}

/// The message buffers of a burst.
struct Io<'b> {
    wire: &'b mut [[u8; MSG_CAP]; BURST_MAX],
    lens: &'b mut [usize; BURST_MAX],
    out: &'b mut [u8; MSG_CAP],
}

/// One burst: every message encrypted, then delivered in `burst.order`,
/// each call measured and checked.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn send_burst(
    meter: &mut Meter,
    sender: &mut S,
    receiver: &mut S,
    rng: &mut NotRandomTestRng,
    io: &mut Io<'_>,
    burst: &Burst,
    k: usize,
    run: &Run,
    checks: &mut Checks,
    st: &mut MessageStats,
) -> Result<(), MeterError> {
    let len = burst.order.len().min(BURST_MAX);
    let (ty, overhead) = if run.header_encryption {
        (MSG_RATCHET_HE, RATCHET_HE_OVERHEAD)
    } else {
        (MSG_RATCHET, RATCHET_OVERHEAD)
    };
    for i in 0..len {
        let pt = payload(burst.from_alice, k, i);
        let Some(dst) = io.wire.get_mut(i) else { break };
        let (sent, cost) = meter.measure(|| sender.encrypt(black_box(&pt), dst, rng, NOW))?;
        (if i == 0 { &mut st.dh_encrypt } else { &mut st.sym_encrypt }).add(&cost);
        let ok = sent == Ok(overhead + PAYLOAD_LEN)
            && dst.first() == Some(&ty)
            && sender.sending_index() == i as u32 + 1
            && events_are(sender, (i == 0).then_some(true));
        checks.check("encrypt: length, type, DH step at the first message only", ok);
        if let Some(l) = io.lens.get_mut(i) {
            *l = sent.unwrap_or(0);
        }
    }

    let mut next = 0usize; // one past the highest message delivered
    let mut skipped = receiver.skipped_keys();
    for &i in burst.order.iter().take(len) {
        let Some(msg) = io.wire.get_mut(i).zip(io.lens.get(i)).and_then(|(w, &l)| w.get_mut(..l)) else {
            checks.check("message buffer", false);
            continue;
        };
        if burst.tamper == Some(i) {
            let flip = msg.len().saturating_sub(17); // last payload byte
            if let Some(x) = msg.get_mut(flip) {
                *x ^= 0x40;
            }
            let refused = receiver.decrypt(msg, io.out, NOW).is_err();
            if let Some(x) = msg.get_mut(flip) {
                *x ^= 0x40;
            }
            checks.check(
                "tampered message refused, session unchanged",
                refused && receiver.skipped_keys() == skipped && events_are(receiver, None),
            );
        }
        let msg = &*msg;
        let out = &mut *io.out;
        let (opened, cost) = meter.measure(|| receiver.decrypt(black_box(msg), out, NOW))?;
        let class = if i == 0 {
            &mut st.dh_decrypt
        } else if i > next {
            skipped += i - next;
            &mut st.skip_ahead
        } else if i < next {
            skipped = skipped.saturating_sub(1);
            &mut st.stored_key
        } else {
            &mut st.sym_decrypt
        };
        class.add(&cost);
        next = next.max(i + 1);
        let pt = payload(burst.from_alice, k, i);
        let ok = opened == Ok(PAYLOAD_LEN)
            && out.get(..PAYLOAD_LEN) == Some(&pt[..])
            && receiver.skipped_keys() == skipped
            && events_are(receiver, (i == 0).then_some(false));
        checks.check("decrypt: plaintext, skipped keys, DH step at the first message only", ok);
    }
    if let Some(d) = burst.duplicate {
        let dup = io.wire.get(d).zip(io.lens.get(d)).and_then(|(w, &l)| w.get(..l));
        let refused = dup.is_some_and(|m| receiver.decrypt(m, io.out, NOW) == Err(Error::Duplicate));
        checks.check("duplicate refused", refused && receiver.skipped_keys() == skipped);
    }
    Ok(())
}

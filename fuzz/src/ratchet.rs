//! Deterministic ratchet fixtures for the `ratchet_*` targets and the seed
//! generator.
//!
//! Both identities are fixed ([`ALICE_SECRETS`], [`BOB_SECRETS`]) and every
//! other "random" value (prekeys, ephemerals, ratchet keys, header nonces)
//! comes from a `securemesh_core::testing::TestRng` with a fixed seed. So
//! every run of a target rebuilds exactly the same bundles, prekey pools,
//! sessions and messages, and the seeds (written by `gen_seeds` from the
//! same functions) hold the genuine ones. Never use these keys for anything
//! else.

use std::sync::OnceLock;

use securemesh_core::envelope::Persist;
use securemesh_core::testing::TestRng;
use securemesh_core::{Instant, Secret, UnixTime};
use securemesh_ratchet::{
    Bundle, BundlePqStorage, Identity, KemAlgorithm, KemPrekey, MAX_HYBRID_BUNDLE_LEN, MAX_KEM_CIPHERTEXT_LEN,
    MAX_KEM_PUBLIC_LEN, PqIdentity, PrekeyConfig, PrekeyPool, RATCHET_HE_OVERHEAD, RATCHET_OVERHEAD, Session,
    SessionConfig,
};

use crate::noise::encode_state;

/// Alice's stored secrets (Ed25519 seed, X25519 private key).
pub const ALICE_SECRETS: ([u8; 32], [u8; 32]) = ([0xa0; 32], [0xa1; 32]);
/// Bob's stored secrets (Ed25519 seed, X25519 private key).
pub const BOB_SECRETS: ([u8; 32], [u8; 32]) = ([0xb0; 32], [0xb1; 32]);

/// Wall-clock time the pools are created at.
pub const T0: UnixTime = UnixTime(1_700_000_000);
/// When Bob's pool rotates its signed prekey (the first one stays as the
/// previous signed prekey, within its grace period).
pub const T_ROTATE: UnixTime = UnixTime(1_700_000_000 + 1000);
/// The `Instant` every session call of the fixtures and targets uses.
pub const NOW: Instant = Instant(5_000);

/// The session type of the targets (`MAX_SKIP = 128`, `CAP = 128`).
pub type FuzzSession = Session<128, 128>;
/// Bob's prekey pool in the fixtures, and the small-capacity pool of
/// `ratchet_state_decode`.
pub type SmallPool = PrekeyPool<4>;
/// The default-capacity pool of `ratchet_state_decode`.
pub type LargePool = PrekeyPool<200>;

/// Alice's identity (computed once).
pub fn alice() -> &'static Identity {
    static I: OnceLock<Identity> = OnceLock::new();
    I.get_or_init(|| identity(ALICE_SECRETS))
}

/// Bob's identity (computed once).
pub fn bob() -> &'static Identity {
    static I: OnceLock<Identity> = OnceLock::new();
    I.get_or_init(|| identity(BOB_SECRETS))
}

fn identity((seed, dh): ([u8; 32], [u8; 32])) -> Identity {
    Identity::from_secrets(Secret::new(seed), Secret::new(dh))
}

/// Bob's ML-DSA-65 seed (his `PqIdentity`, for the hybrid bundles).
pub const BOB_PQ_SEED: [u8; 32] = [0xb2; 32];

/// Encode a bundle (classical or hybrid).
pub fn encode_bundle(b: &Bundle<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_HYBRID_BUNDLE_LEN];
    let n = b.encode(&mut buf).expect("encode bundle");
    buf.truncate(n);
    buf
}

/// A genuine KEM prekey slot of `identity` (`KemPrekey::sign`).
pub fn kem_prekey<'a>(identity: &Identity, id: u32, alg: u16, public: &'a [u8]) -> KemPrekey<'a> {
    KemPrekey::sign(identity, id, alg, public).expect("KEM prekey within bounds")
}

/// The encapsulation key carried by the KEM bundle (not a real ML-KEM key:
/// the slot is only carried and verified).
pub fn kem_public() -> Vec<u8> {
    (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5c).collect()
}

/// Bob's prekey pool and bundles: a `PrekeyPool<4>` created at [`T0`]
/// (signed prekey 1, one-time prekeys 2 to 5), then rotated at
/// [`T_ROTATE`] (signed prekey 6; 1 is kept as the previous one).
pub struct BobSetup {
    /// The pool after the rotation.
    pub pool: SmallPool,
    /// Encoded bundles, in this order: spk 1 + opk 2, spk 1 without a
    /// one-time prekey (both published before the rotation), spk 6 + opk 3,
    /// spk 6 + opk 4, spk 6 without a one-time prekey, spk 6 + opk 5 with a
    /// KEM prekey.
    pub bundles: Vec<Vec<u8>>,
}

/// Index into [`BobSetup::bundles`].
pub mod bundle_ix {
    /// Previous signed prekey (1) with one-time prekey 2.
    pub const OLD_OPK2: usize = 0;
    /// Previous signed prekey (1), no one-time prekey.
    pub const OLD_NO_OPK: usize = 1;
    /// Current signed prekey (6) with one-time prekey 3.
    pub const OPK3: usize = 2;
    /// Current signed prekey (6) with one-time prekey 4.
    pub const OPK4: usize = 3;
    /// Current signed prekey (6), no one-time prekey.
    pub const NO_OPK: usize = 4;
    /// Current signed prekey (6) with one-time prekey 5 and a KEM prekey.
    pub const KEM: usize = 5;
}

/// Build [`BobSetup`] (deterministic).
pub fn bob_setup() -> BobSetup {
    let bob = bob();
    let mut rng = TestRng::new(0xb0b);
    let mut pool = SmallPool::new(bob, &mut rng, T0, PrekeyConfig::default());
    let ids: Vec<u32> = pool.one_time_ids().collect();
    assert_eq!(ids, [2, 3, 4, 5], "pool layout changed");
    let mut bundles = vec![encode_bundle(&pool.bundle(Some(2))), encode_bundle(&pool.bundle(None))];
    pool.rotate(bob, &mut rng, T_ROTATE).expect("owner");
    assert_eq!(pool.signed_public().id, 6);
    for opk in [Some(3), Some(4), None] {
        bundles.push(encode_bundle(&pool.bundle(opk)));
    }
    let kem_pub = kem_public();
    let with_kem = pool.bundle(Some(5)).with_kem(kem_prekey(bob, 100, 1, &kem_pub)).expect("signed");
    bundles.push(encode_bundle(&with_kem));
    BobSetup { pool, bundles }
}

/// Every genuine bundle of the `ratchet_bundle_decode` target: Bob's
/// ([`BobSetup::bundles`]) and one of Alice's (a `PrekeyPool<1>`, no
/// one-time prekey, a KEM prekey with an empty encapsulation key).
/// Then the PQXDH bundles of [`pq_bundles`] and the hybrid bundles of
/// [`hybrid_bundles`].
pub fn genuine_bundles() -> Vec<(&'static str, Vec<u8>)> {
    let names = ["bob_old_spk_opk", "bob_old_spk", "bob_opk3", "bob_opk4", "bob_no_opk", "bob_opk_kem"];
    let mut v: Vec<(&'static str, Vec<u8>)> = names.into_iter().zip(bob_setup().bundles).collect();
    let alice = alice();
    let pool: PrekeyPool<1> = PrekeyPool::new(alice, &mut TestRng::new(0xa11ce), T0, PrekeyConfig::default());
    let b = pool.bundle(None).with_kem(kem_prekey(alice, 7, 2, &[])).expect("signed");
    v.push(("alice_kem_empty", encode_bundle(&b)));
    v.extend(pq_bundles());
    v.extend(hybrid_bundles());
    v
}

/// Bob's hybrid bundles (bundle version 3, ratchet spec §3.1): his
/// ML-DSA-65 key ([`BOB_PQ_SEED`]) and hybrid signatures of signed prekey 6
/// with one-time prekey 3 (no KEM prekey), and of signed prekey 6 with
/// one-time prekey 5 and the KEM prekey of [`bundle_ix::KEM`]. The ML-DSA
/// halves are hedged, from a fixed `TestRng`, so they are the same on
/// every run.
pub fn hybrid_bundles() -> Vec<(&'static str, Vec<u8>)> {
    let bob = bob();
    let pq = PqIdentity::from_seed(bob, &Secret::new(BOB_PQ_SEED));
    let setup = bob_setup();
    let mut rng = TestRng::new(0xb0b_00a1);
    let kem_pub = kem_public();
    let kem = kem_prekey(bob, 100, 1, &kem_pub);
    let (mut s1, mut s2) = (BundlePqStorage::new(), BundlePqStorage::new());
    let no_kem = setup.pool.bundle(Some(3)).sign_pq(&pq, &mut rng, &mut s1).expect("Bob's key");
    let with_kem = setup.pool.bundle(Some(5)).with_kem(kem).expect("signed").sign_pq(&pq, &mut rng, &mut s2).expect("Bob's key");
    vec![("bob_hybrid_opk3", encode_bundle(&no_kem)), ("bob_hybrid_opk5_kem", encode_bundle(&with_kem))]
}

/// Alice starts a session from `bundle` and encrypts `payloads` (every one
/// carries the X3DH prefix: Bob has not answered). Returns the messages and
/// her session.
fn alice_sends(bundle: &[u8], he: bool, rng_seed: u64, payloads: &[&[u8]]) -> (Vec<Vec<u8>>, FuzzSession) {
    let bundle = Bundle::decode(bundle).expect("genuine bundle");
    let mut rng = TestRng::new(rng_seed);
    let cfg = SessionConfig { header_encryption: he, ..SessionConfig::default() };
    let mut s = FuzzSession::initiate(alice(), &bundle, cfg, &mut rng, NOW).expect("initiate");
    let msgs = payloads.iter().map(|p| encrypt(&mut s, &mut rng, p)).collect();
    (msgs, s)
}

/// Encrypt with the fixture clock.
pub fn encrypt(s: &mut FuzzSession, rng: &mut TestRng, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; s.encrypted_len(payload.len())];
    let n = s.encrypt(payload, &mut out, rng, NOW).expect("encrypt");
    out.truncate(n);
    out
}

/// Decrypt with the fixture clock (the payload must be `expected`).
pub fn decrypt(s: &mut FuzzSession, message: &[u8], expected: &[u8]) {
    let mut out = vec![0u8; message.len()];
    let n = s.decrypt(message, &mut out, NOW).expect("genuine message refused");
    assert_eq!(&out[..n], expected);
}

/// A genuine initial message of `ratchet_initial_message`.
pub struct InitialMessage {
    /// Seed name.
    pub name: &'static str,
    /// The message as Alice sent it.
    pub message: Vec<u8>,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Header encryption.
    pub he: bool,
    /// The one-time prekey it names.
    pub opk: Option<u32>,
    /// Alice's session (`encode_state`) after she sent it and the other
    /// messages of the same session.
    pub alice: Vec<u8>,
}

/// What `ratchet_initial_message` starts from: Bob's pool and the genuine
/// initial messages Alice sent to his bundles.
pub struct InitialFixture {
    /// `encode_state` of Bob's pool ([`BobSetup::pool`]).
    pub pool: Vec<u8>,
    /// The genuine initial messages.
    pub messages: Vec<InitialMessage>,
}

/// Build the [`InitialFixture`]: sessions to the current and the previous
/// signed prekey, with and without a one-time prekey, clear and encrypted
/// headers, and second messages (Bob skips the first).
pub fn initial_fixture() -> InitialFixture {
    use bundle_ix::*;
    let setup = bob_setup();
    // (names, bundle, he, opk, payloads)
    #[allow(clippy::type_complexity)]
    let sessions: [(&[&'static str], usize, bool, Option<u32>, &[&[u8]]); 5] = [
        (&["clear_opk3_msg0", "clear_opk3_msg1"], OPK3, false, Some(3), &[b"task 1", b"task 1, part 2"]),
        (&["clear_no_opk"], NO_OPK, false, None, &[b"task 2"]),
        (&["clear_previous_spk_opk2"], OLD_OPK2, false, Some(2), &[b"task 3"]),
        (&["he_opk4_msg0", "he_opk4_msg1_empty"], OPK4, true, Some(4), &[b"task 4", b""]),
        (&["he_previous_spk_no_opk"], OLD_NO_OPK, true, None, &[b"task 5"]),
    ];
    let mut messages = Vec::new();
    for (i, (names, bundle, he, opk, payloads)) in sessions.into_iter().enumerate() {
        let (msgs, s) = alice_sends(&setup.bundles[bundle], he, 0xa000 + i as u64, payloads);
        let alice = encode_state(&s);
        for ((name, message), payload) in names.iter().zip(msgs).zip(payloads) {
            messages.push(InitialMessage {
                name,
                message,
                payload: payload.to_vec(),
                he,
                opk,
                alice: alice.clone(),
            });
        }
    }
    InitialFixture { pool: encode_state(&setup.pool), messages }
}

/// A genuine message the receiver of a [`DecryptFixture`] has not received.
pub struct Genuine {
    /// The message as sent (Alice's first chain carries the X3DH prefix).
    pub message: Vec<u8>,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// What `ratchet_decrypt` / `ratchet_decrypt_he` start from, for one
/// receiver.
pub struct DecryptFixture {
    /// Whether Bob (who answered the X3DH) receives; else Alice.
    pub receiver_is_bob: bool,
    /// `encode_state` of the receiving session.
    pub receiver: Vec<u8>,
    /// The X3DH prefix of Alice's initial messages when Bob receives (his
    /// session accepts it in front of any of Alice's ratchet messages: it is
    /// checked field by field, not authenticated); empty when Alice
    /// receives.
    pub prefix: Vec<u8>,
    /// The genuine messages not yet received, by chain and number: first
    /// chain 1 and 3 (skipped keys), second chain 1 (a skipped key) and 3
    /// (ahead in the current receiving chain), third chain 0 and 1 (a chain
    /// the receiver has not seen).
    pub pending: Vec<Genuine>,
    /// Genuine messages already received (first chain 0 and 2, second
    /// chain 0 and 2).
    pub received: Vec<Vec<u8>>,
}

impl DecryptFixture {
    /// The ratchet message inside `frame`: without the X3DH prefix if Bob
    /// receives and the frame starts with it.
    pub fn inner<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        if !self.prefix.is_empty() && frame.starts_with(&self.prefix) {
            &frame[self.prefix.len()..]
        } else {
            frame
        }
    }
}

/// Payload of message `n` of chain `chain` of the decrypt fixtures.
fn chain_payload(chain: usize, n: usize) -> Vec<u8> {
    if chain == 3 && n == 1 { Vec::new() } else { format!("c{chain}m{n}").into_bytes() }
}

/// Build a [`DecryptFixture`]. The sender S sends chain 1 (messages 0 to
/// 3), the receiver R gets 0 and 2 and answers (R's answer makes S step),
/// S sends chain 2 (0 to 3), R gets 0 and 2 and answers, S sends chain 3
/// (0 and 1); then R's state is taken. If Bob receives, chain 1 is Alice's
/// X3DH chain (all four carry the prefix, Bob opens the session with
/// message 0); else Alice opens the session with one message, Bob answers
/// with chain 1.
pub fn decrypt_fixture(he: bool, receiver_is_bob: bool) -> DecryptFixture {
    let setup = bob_setup();
    let mut pool = setup.pool;
    let mut rng = TestRng::new(if he { 0xd0e } else { 0xd0c } + u64::from(receiver_is_bob));
    let bundle = Bundle::decode(&setup.bundles[bundle_ix::OPK3]).expect("genuine bundle");
    let cfg = SessionConfig { header_encryption: he, ..SessionConfig::default() };
    let mut a = FuzzSession::initiate(alice(), &bundle, cfg, &mut rng, NOW).expect("initiate");
    let respond = |pool: &mut SmallPool, m: &[u8], expected: &[u8]| -> FuzzSession {
        let mut out = vec![0u8; m.len()];
        let (b, n) =
            FuzzSession::respond(bob(), pool, m, &mut out, SessionConfig::default(), NOW).expect("respond");
        assert_eq!(&out[..n], expected);
        b
    };
    let mut pending = Vec::new();
    let mut received = Vec::new();
    let mut prefix = Vec::new();
    let (mut s, mut r, chain1) = if receiver_is_bob {
        let chain1: Vec<Vec<u8>> = (0..4).map(|n| encrypt(&mut a, &mut rng, &chain_payload(1, n))).collect();
        let overhead = if he { RATCHET_HE_OVERHEAD } else { RATCHET_OVERHEAD };
        prefix = chain1[0][..chain1[0].len() - overhead - chain_payload(1, 0).len()].to_vec();
        assert!(chain1.iter().all(|m| m.starts_with(&prefix)), "X3DH prefix differs between messages");
        let b = respond(&mut pool, &chain1[0], &chain_payload(1, 0));
        (a, b, chain1)
    } else {
        let first = encrypt(&mut a, &mut rng, b"hello bob");
        let mut b = respond(&mut pool, &first, b"hello bob");
        let chain1: Vec<Vec<u8>> = (0..4).map(|n| encrypt(&mut b, &mut rng, &chain_payload(1, n))).collect();
        decrypt(&mut a, &chain1[0], &chain_payload(1, 0));
        (b, a, chain1)
    };
    // R gets chain 1 message 2 (message 1 becomes a skipped key) and answers.
    decrypt(&mut r, &chain1[2], &chain_payload(1, 2));
    let m = encrypt(&mut r, &mut rng, b"answer 1");
    decrypt(&mut s, &m, b"answer 1");
    // S steps: chain 2. R gets 0 (chain 1 message 3 becomes a skipped key)
    // and 2 (message 1 too), and answers.
    let chain2: Vec<Vec<u8>> = (0..4).map(|n| encrypt(&mut s, &mut rng, &chain_payload(2, n))).collect();
    decrypt(&mut r, &chain2[0], &chain_payload(2, 0));
    decrypt(&mut r, &chain2[2], &chain_payload(2, 2));
    let m = encrypt(&mut r, &mut rng, b"answer 2");
    decrypt(&mut s, &m, b"answer 2");
    // S steps again: chain 3, which R has not seen.
    let chain3: Vec<Vec<u8>> = (0..2).map(|n| encrypt(&mut s, &mut rng, &chain_payload(3, n))).collect();
    let chains = [chain1, chain2, chain3];
    for (c, chain) in chains.iter().enumerate() {
        for (n, m) in chain.iter().enumerate() {
            if c < 2 && n % 2 == 0 {
                received.push(m.clone());
            } else {
                pending.push(Genuine { message: m.clone(), payload: chain_payload(c + 1, n) });
            }
        }
    }
    assert_eq!(r.skipped_keys(), 3, "fixture history changed");
    DecryptFixture { receiver_is_bob, receiver: encode_state(&r), prefix, pending, received }
}

/// Both receivers of a mode: `[Alice receives, Bob receives]` (indexed by
/// bit 0 of the target's first input byte).
pub fn decrypt_fixtures(he: bool) -> [DecryptFixture; 2] {
    [decrypt_fixture(he, false), decrypt_fixture(he, true)]
}

/// The body of `ratchet_decrypt` and `ratchet_decrypt_he` (see their
/// module docs). Input: `receiver u8 | frames` (bit 0 of the first byte:
/// 0 Alice receives, 1 Bob receives; frames as in
/// [`crate::noise::split_frames`]).
pub fn run_decrypt(fixtures: &[DecryptFixture; 2], data: &[u8]) {
    use crate::noise::{all_zero, split_frames};
    use securemesh_ratchet::Error;

    let Some((&selector, rest)) = data.split_first() else { return };
    let fx = &fixtures[usize::from(selector & 1)];
    let mut s = FuzzSession::decode_state(&fx.receiver).expect("fixture state decodes");
    let inners: Vec<&[u8]> = fx.pending.iter().map(|g| fx.inner(&g.message)).collect();
    let mut accepted = vec![false; fx.pending.len()];

    for frame in split_frames(rest) {
        let before = encode_state(&s);
        let inner = fx.inner(frame);
        let expected = inners.iter().position(|m| *m == inner).filter(|&i| !accepted[i]);
        let mut out = vec![0u8; frame.len()];
        match expected {
            Some(i) => {
                let payload = fx.pending[i].payload.as_slice();
                if let Some(short_len) = payload.len().checked_sub(1) {
                    let mut short = vec![0u8; short_len];
                    assert_eq!(
                        s.decrypt(frame, &mut short, NOW),
                        Err(Error::BufferTooSmall { needed: payload.len() }),
                        "short output buffer"
                    );
                    assert!(all_zero(&short), "BufferTooSmall wrote to the output");
                    assert_eq!(encode_state(&s), before, "BufferTooSmall changed the session");
                }
                let r = s.decrypt(frame, &mut out, NOW);
                assert_eq!(r, Ok(payload.len()), "genuine pending message {i} refused");
                assert_eq!(&out[..payload.len()], payload, "wrong plaintext of message {i}");
                assert!(all_zero(&out[payload.len()..]), "decrypt wrote past the payload");
                assert_ne!(encode_state(&s), before, "an accepted message left the session unchanged");
                accepted[i] = true;
            }
            None => {
                let r = s.decrypt(frame, &mut out, NOW);
                assert!(r.is_err(), "accepted a frame that is not a pending genuine message: {r:?}");
                assert!(all_zero(&out), "a failed decrypt left bytes in the output");
                assert_eq!(encode_state(&s), before, "a failed decrypt changed the session ({r:?})");
            }
        }
    }

    // Nothing refused above used up a key: the genuine messages not yet
    // accepted all go through (in fixture order), then each fails a second
    // time, changing nothing. (The messages received before the snapshot
    // are refused when they come as frames; the seeds hold some. Checking
    // them here too would cost two X25519 operations per run.)
    for (i, g) in fx.pending.iter().enumerate().filter(|(i, _)| !accepted[*i]) {
        let mut out = vec![0u8; g.message.len()];
        let r = s.decrypt(&g.message, &mut out, NOW);
        assert_eq!(r, Ok(g.payload.len()), "genuine message {i} refused after the input frames");
        assert_eq!(&out[..g.payload.len()], g.payload.as_slice());
    }
    let done = encode_state(&s);
    for g in fx.pending.iter() {
        let mut out = vec![0u8; g.message.len()];
        assert!(s.decrypt(&g.message, &mut out, NOW).is_err(), "a genuine message was accepted twice");
        assert!(all_zero(&out));
    }
    assert_eq!(encode_state(&s), done, "a refused duplicate changed the session");
}

/// The session type of an initiator of PQXDH in the fixtures.
pub type FuzzPqSession = Session<128, 128, MAX_KEM_CIPHERTEXT_LEN>;
/// Bob's PQXDH pool: 4 one-time prekeys, 2 one-time ML-KEM-768 prekeys.
pub type PqPool = PrekeyPool<4, 2>;

/// A genuine PQXDH initial message of `ratchet_initial_message`.
pub struct PqInitialMessage {
    /// Seed name.
    pub name: &'static str,
    /// The message as Alice sent it.
    pub message: Vec<u8>,
    /// Its payload.
    pub payload: Vec<u8>,
    /// The one-time prekey it names.
    pub opk: Option<u32>,
    /// The one-time KEM prekey it names (`None`: the last-resort one).
    pub one_time_kem: Option<u32>,
    /// Offset of `kem_count` in the message.
    pub kem_count_at: usize,
    /// Length of its prefix.
    pub prefix_len: usize,
}

impl PqInitialMessage {
    /// The message with its KEM slot removed (`kem_count = 0`): a downgrade.
    pub fn stripped(&self) -> Vec<u8> {
        [&self.message[..self.kem_count_at], &[0], &self.message[self.prefix_len - 1..]].concat()
    }
}

/// What the PQXDH half of `ratchet_initial_message` starts from.
pub struct PqFixture {
    /// `encode_state` of Bob's PQXDH pool (signed prekey 1, one-time
    /// prekeys 2-5, last-resort KEM prekey 6, one-time KEM prekeys 7, 8).
    pub pool: Vec<u8>,
    /// Genuine PQXDH initial messages to it.
    pub messages: Vec<PqInitialMessage>,
}

/// Build the [`PqFixture`] (deterministic): clear and encrypted headers,
/// one-time and last-resort KEM prekeys, with and without a one-time
/// prekey, a second message of one session.
pub fn pq_fixture() -> PqFixture {
    let bob = bob();
    let mut rng = TestRng::new(0xb0b_0009);
    let pool =
        PqPool::new_pq(bob, &mut rng, T0, PrekeyConfig::default(), KemAlgorithm::MlKem768).expect("pool");
    assert_eq!(pool.kem_one_time_ids().collect::<Vec<_>>(), [7, 8], "pool layout changed");
    assert_eq!(pool.last_resort_kem_id(), Some(6));
    #[allow(clippy::type_complexity)]
    let sessions: [(&[&'static str], Option<u32>, Option<u32>, bool, &[&[u8]]); 3] = [
        (&["pq_clear_opk2_kem7"], Some(2), Some(7), false, &[b"pq task 1"]),
        (&["pq_clear_last_resort"], None, None, false, &[b"pq task 2"]),
        (
            &["pq_he_opk3_last_resort_msg0", "pq_he_opk3_last_resort_msg1"],
            Some(3),
            None,
            true,
            &[b"pq task 3", b"more"],
        ),
    ];
    let mut messages = Vec::new();
    for (i, (names, opk, kem, he, payloads)) in sessions.into_iter().enumerate() {
        let mut kem_buf = [0u8; MAX_KEM_PUBLIC_LEN];
        let bundle = encode_bundle(&pool.bundle_pq(opk, kem, &mut kem_buf).expect("bundle"));
        let bundle = Bundle::decode(&bundle).expect("genuine bundle");
        let mut rng = TestRng::new(0xa900 + i as u64);
        let cfg = SessionConfig { header_encryption: he, ..SessionConfig::default() };
        let mut s = FuzzPqSession::initiate_pq(alice(), &bundle, cfg, &mut rng, NOW).expect("initiate_pq");
        let kem_count_at = 1 + 128 + 32 + 4 + 1 + if opk.is_some() { 4 } else { 0 };
        for (name, payload) in names.iter().zip(payloads) {
            let mut out = vec![0u8; s.encrypted_len(payload.len())];
            let n = s.encrypt(payload, &mut out, &mut rng, NOW).expect("encrypt");
            out.truncate(n);
            let prefix_len = kem_count_at + 1 + 8 + KemAlgorithm::MlKem768.ciphertext_len() + 1;
            messages.push(PqInitialMessage {
                name,
                message: out,
                payload: payload.to_vec(),
                opk,
                one_time_kem: kem,
                kem_count_at,
                prefix_len,
            });
        }
    }
    PqFixture { pool: encode_state(&pool), messages }
}

/// Genuine PQXDH bundles of Bob's PQXDH pool (one-time and last-resort
/// ML-KEM-768 prekeys), for `ratchet_bundle_decode`.
pub fn pq_bundles() -> Vec<(&'static str, Vec<u8>)> {
    let pool = PqPool::new_pq(
        bob(),
        &mut TestRng::new(0xb0b_0009),
        T0,
        PrekeyConfig::default(),
        KemAlgorithm::MlKem768,
    )
    .expect("pool");
    let mut kem_buf = [0u8; MAX_KEM_PUBLIC_LEN];
    let one_time = encode_bundle(&pool.bundle_pq(Some(2), Some(7), &mut kem_buf).expect("bundle"));
    let last_resort = encode_bundle(&pool.bundle_pq(None, None, &mut kem_buf).expect("bundle"));
    vec![("bob_pq_opk2_kem7", one_time), ("bob_pq_last_resort", last_resort)]
}

/// PQXDH states for `ratchet_state_decode` (body version 3): Bob's PQXDH
/// pool before and after a one-time KEM prekey is consumed, Alice's
/// session awaiting Bob's answer (its pending ciphertext), and Bob's
/// session just after `respond` (the KEM slot of Alice's header).
pub fn pq_state_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let fx = pq_fixture();
    let mut pool = PqPool::decode_state(&fx.pool).expect("fixture pool");
    let m = fx.messages.first().expect("a PQXDH message");
    let mut out = vec![0u8; m.message.len()];
    let (b, _) = FuzzSession::respond(bob(), &mut pool, &m.message, &mut out, SessionConfig::default(), NOW)
        .expect("genuine");
    let mut kem_buf = [0u8; MAX_KEM_PUBLIC_LEN];
    let bundle = encode_bundle(&pool.bundle_pq(None, None, &mut kem_buf).expect("bundle"));
    let bundle = Bundle::decode(&bundle).expect("genuine bundle");
    let mut rng = TestRng::new(0xa9ff);
    let mut a = FuzzPqSession::initiate_pq(alice(), &bundle, SessionConfig::default(), &mut rng, NOW)
        .expect("initiate");
    let mut wire = vec![0u8; a.encrypted_len(1)];
    a.encrypt(b"x", &mut wire, &mut rng, NOW).expect("encrypt");
    vec![
        ("pq_pool", fx.pool.clone()),
        ("pq_pool_kem7_consumed", encode_state(&pool)),
        ("pq_alice_awaiting_reply", encode_state(&a)),
        ("pq_bob_after_respond", encode_state(&b)),
    ]
}

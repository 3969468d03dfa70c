//! PQXDH (feature `pq`): sessions from KEM prekeys (one-time and
//! last-resort, ML-KEM-768 and ML-KEM-1024), the pool lifecycle of KEM
//! prekeys, refused downgrades and forgeries (typed errors, nothing
//! consumed), persistence of PQXDH pools and sessions.
#![cfg(feature = "pq")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use proptest::prelude::*;
use securemesh_core::envelope::Persist;
use securemesh_core::testing::TestRng;
use securemesh_core::{Instant, UnixTime};
use securemesh_ratchet::{
    Bundle, Error, INITIAL_PREFIX_LEN, Identity, KemAlgorithm, MAX_BUNDLE_LEN, MAX_KEM_PUBLIC_LEN,
    PqxdhSession, PrekeyConfig, PrekeyPool, Session, SessionConfig, pqxdh_prefix_extra,
};

const T0: UnixTime = UnixTime(1_700_000_000);
const NOW: Instant = Instant(0);
type Pool = PrekeyPool<4, 2>;

/// Offset of `kem_count` in an initial message with a one-time prekey.
const KEM_COUNT: usize = INITIAL_PREFIX_LEN - 2;

struct Bob {
    id: Identity,
    pool: Pool,
}

fn bob(rng: &mut TestRng, alg: KemAlgorithm) -> Bob {
    let id = Identity::generate(rng);
    let pool = Pool::new_pq(&id, rng, T0, PrekeyConfig::default(), alg).unwrap();
    Bob { id, pool }
}

fn state<T: Persist>(x: &T) -> Vec<u8> {
    let mut buf = vec![0u8; T::MAX_ENCODED_LEN];
    let n = x.encode_state(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Bob's bundle as Alice receives it (encoded, decoded, verified), with
/// the one-time prekeys given.
fn bundle_bytes(b: &Bob, opk: Option<u32>, kem: Option<u32>) -> Vec<u8> {
    let mut kem_buf = [0u8; MAX_KEM_PUBLIC_LEN];
    let bundle = b.pool.bundle_pq(opk, kem, &mut kem_buf).unwrap();
    let mut wire = vec![0u8; MAX_BUNDLE_LEN];
    let n = bundle.encode(&mut wire).unwrap();
    wire.truncate(n);
    wire
}

fn initiate(rng: &mut TestRng, alice: &Identity, bundle: &[u8], he: bool) -> PqxdhSession {
    let bundle = Bundle::decode(bundle).unwrap();
    let cfg = SessionConfig { header_encryption: he, ..SessionConfig::default() };
    PqxdhSession::initiate_pq(alice, &bundle, cfg, rng, NOW).unwrap()
}

fn send<const K: usize>(s: &mut Session<128, 128, K>, rng: &mut TestRng, text: &[u8]) -> Vec<u8> {
    let mut wire = vec![0u8; s.encrypted_len(text.len())];
    let n = s.encrypt(text, &mut wire, rng, NOW).unwrap();
    assert_eq!(n, wire.len());
    wire
}

fn respond(b: &mut Bob, msg: &[u8]) -> Result<(Session, Vec<u8>), Error> {
    let mut out = vec![0u8; msg.len()];
    let (s, n) = Session::respond(&b.id, &mut b.pool, msg, &mut out, SessionConfig::default(), NOW)?;
    out.truncate(n);
    Ok((s, out))
}

fn open<const K: usize>(s: &mut Session<128, 128, K>, msg: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; msg.len()];
    let n = s.decrypt(msg, &mut out, NOW)?;
    out.truncate(n);
    Ok(out)
}

/// The full exchange for every KEM, header mode and prekey choice: the
/// prefix has the size the spec gives, Alice's repeated initial message is
/// accepted, the conversation goes on both ways and the prefix disappears
/// once Bob answered.
#[test]
fn pqxdh_sessions_roundtrip() {
    for (i, alg) in [KemAlgorithm::MlKem768, KemAlgorithm::MlKem1024].into_iter().enumerate() {
        for he in [false, true] {
            for one_time_kem in [false, true] {
                let mut rng = TestRng::new(
                    0x5100 + (i as u64) * 0x100 + u64::from(he) * 0x10 + u64::from(one_time_kem),
                );
                let alice = Identity::generate(&mut rng);
                let mut b = bob(&mut rng, alg);
                let kem_id = if one_time_kem { b.pool.kem_one_time_ids().next() } else { None };
                let bundle = bundle_bytes(&b, b.pool.one_time_ids().next(), kem_id);
                let mut a = initiate(&mut rng, &alice, &bundle, he);
                let m1 = send(&mut a, &mut rng, b"first");
                let m2 = send(&mut a, &mut rng, b"second");
                let overhead = if he {
                    securemesh_ratchet::RATCHET_HE_OVERHEAD
                } else {
                    securemesh_ratchet::RATCHET_OVERHEAD
                };
                assert_eq!(m1.len(), INITIAL_PREFIX_LEN + pqxdh_prefix_extra(alg) + overhead + 5);
                let kem_before = b.pool.kem_available();
                let (mut bs, p) = respond(&mut b, &m1).unwrap();
                assert_eq!(p, b"first");
                assert_eq!(b.pool.kem_available(), kem_before - u32::from(one_time_kem));
                assert_eq!(open(&mut bs, &m2).unwrap(), b"second");
                let r = send(&mut bs, &mut rng, b"reply");
                assert_eq!(open(&mut a, &r).unwrap(), b"reply");
                assert!(!a.awaiting_reply());
                let m3 = send(&mut a, &mut rng, b"third");
                assert_eq!(m3.len(), overhead + 5);
                assert_eq!(open(&mut bs, &m3).unwrap(), b"third");
            }
        }
    }
}

/// A one-time KEM prekey opens one session: a second initial message
/// naming it (another Alice, a fresh ephemeral) is `UnknownPrekey`, and
/// nothing of the pool changes.
#[test]
fn one_time_kem_prekeys_are_consumed_once() {
    let mut rng = TestRng::new(0x5200);
    let (alice, carol) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
    let mut b = bob(&mut rng, KemAlgorithm::MlKem768);
    let kem_id = b.pool.kem_one_time_ids().next();
    // Without an EC one-time prekey, so only the KEM prekey is spent.
    let bundle = bundle_bytes(&b, None, kem_id);
    let mut a = initiate(&mut rng, &alice, &bundle, false);
    let mut c = initiate(&mut rng, &carol, &bundle, false);
    let ma = send(&mut a, &mut rng, b"from alice");
    let mc = send(&mut c, &mut rng, b"from carol");
    respond(&mut b, &ma).unwrap();
    assert!(!b.pool.kem_one_time_ids().any(|id| Some(id) == kem_id));
    let before = state(&b.pool);
    assert_eq!(respond(&mut b, &mc).unwrap_err(), Error::UnknownPrekey);
    assert_eq!(respond(&mut b, &ma).unwrap_err(), Error::UnknownPrekey);
    assert_eq!(state(&b.pool), before);
    // Refilled with a new identifier, never the spent one.
    assert_eq!(b.pool.refill_kem(&b.id, &mut rng).unwrap(), 1);
    assert!(!b.pool.kem_one_time_ids().any(|id| Some(id) == kem_id));
}

/// The last-resort KEM prekey is never consumed: any number of sessions.
#[test]
fn the_last_resort_kem_prekey_is_reused() {
    let mut rng = TestRng::new(0x5300);
    let mut b = bob(&mut rng, KemAlgorithm::MlKem1024);
    let last = b.pool.last_resort_kem_id().unwrap();
    for i in 0..3 {
        let alice = Identity::generate(&mut rng);
        let bundle = bundle_bytes(&b, None, None);
        assert_eq!(Bundle::decode(&bundle).unwrap().kem().unwrap().id, last);
        let mut a = initiate(&mut rng, &alice, &bundle, i % 2 == 1);
        let m = send(&mut a, &mut rng, b"again");
        assert_eq!(respond(&mut b, &m).unwrap().1, b"again");
        assert_eq!(b.pool.last_resort_kem_id(), Some(last));
        assert_eq!(b.pool.kem_available(), 2);
    }
}

/// The initial message with its KEM slot removed, as a downgrading
/// attacker would send it (type through `opk_id`, `kem_count = 0`, the
/// header mode and the inner message).
fn strip_kem(m: &[u8], alg: KemAlgorithm) -> Vec<u8> {
    let extra = pqxdh_prefix_extra(alg);
    let mut out = m[..KEM_COUNT].to_vec();
    out.push(0);
    out.extend_from_slice(&m[KEM_COUNT + 1 + extra..]);
    out
}

/// Downgrades are refused with `Downgrade` and consume nothing: an X3DH
/// initial message to a PQXDH bundle (Alice used `initiate`), and a PQXDH
/// message with its KEM slot stripped. A KEM ciphertext to an X3DH pool
/// (no KEM prekey published) is `UnknownPrekey`.
#[test]
fn downgrades_are_refused_and_consume_nothing() {
    let mut rng = TestRng::new(0x5400);
    let alice = Identity::generate(&mut rng);
    let mut b = bob(&mut rng, KemAlgorithm::MlKem768);
    let bundle = bundle_bytes(&b, b.pool.one_time_ids().next(), b.pool.kem_one_time_ids().next());
    let before = state(&b.pool);

    let decoded = Bundle::decode(&bundle).unwrap();
    let mut x3dh: Session =
        Session::initiate(&alice, &decoded, SessionConfig::default(), &mut rng, NOW).unwrap();
    let m = send(&mut x3dh, &mut rng, b"classical");
    assert_eq!(m[KEM_COUNT], 0);
    assert_eq!(respond(&mut b, &m).unwrap_err(), Error::Downgrade);

    let mut a = initiate(&mut rng, &alice, &bundle, false);
    let m = send(&mut a, &mut rng, b"hybrid");
    assert_eq!(respond(&mut b, &strip_kem(&m, KemAlgorithm::MlKem768)).unwrap_err(), Error::Downgrade);
    assert_eq!(state(&b.pool), before);
    // The genuine message still opens the session.
    assert_eq!(respond(&mut b, &m).unwrap().1, b"hybrid");

    // The other way around: a KEM ciphertext for a bundle without KEM prekey.
    let x3dh_bob = Identity::generate(&mut rng);
    let mut x3dh_pool: PrekeyPool<4> = PrekeyPool::new(&x3dh_bob, &mut rng, T0, PrekeyConfig::default());
    let mut c = initiate(&mut rng, &alice, &bundle, false);
    let mut forged = send(&mut c, &mut rng, b"to x3dh");
    forged[161..165].copy_from_slice(&x3dh_pool.signed_public().id.to_be_bytes());
    let before = state(&x3dh_pool);
    let mut out = vec![0u8; forged.len()];
    let r = Session::<128, 128>::respond(
        &x3dh_bob,
        &mut x3dh_pool,
        &forged,
        &mut out,
        SessionConfig::default(),
        NOW,
    );
    assert_eq!(r.unwrap_err(), Error::UnknownPrekey);
    assert_eq!(state(&x3dh_pool), before);
}

/// `initiate_pq` needs a KEM prekey of a known algorithm.
#[test]
fn initiate_pq_needs_a_usable_kem_prekey() {
    let mut rng = TestRng::new(0x5500);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    let pool: PrekeyPool<4> = PrekeyPool::new(&bob, &mut rng, T0, PrekeyConfig::default());
    let cfg = SessionConfig::default();
    let r = PqxdhSession::initiate_pq(&alice, &pool.bundle(None), cfg, &mut rng, NOW);
    assert_eq!(r.unwrap_err(), Error::UnsupportedKem);
    // A session type without room for the ciphertext it must repeat.
    let pq_bob = Identity::generate(&mut rng);
    let pq_pool =
        Pool::new_pq(&pq_bob, &mut rng, T0, PrekeyConfig::default(), KemAlgorithm::MlKem768).unwrap();
    let mut kem_buf = [0u8; MAX_KEM_PUBLIC_LEN];
    let pq_bundle = pq_pool.bundle_pq(None, None, &mut kem_buf).unwrap();
    let r = Session::<128, 128>::initiate_pq(&alice, &pq_bundle, cfg, &mut rng, NOW);
    assert_eq!(r.unwrap_err(), Error::UnsupportedKem);
    assert!(Session::<128, 128, 1088>::initiate_pq(&alice, &pq_bundle, cfg, &mut rng, NOW).is_ok());
    // Signed, of ML-KEM-768 length, but an X-Wing code: not run.
    let key = [7u8; 1184];
    let kem = securemesh_ratchet::KemPrekey::sign(&bob, 9, 2, &key).unwrap();
    let bundle = pool.bundle(None).with_kem(kem).unwrap();
    let r = PqxdhSession::initiate_pq(&alice, &bundle, cfg, &mut rng, NOW);
    assert_eq!(r.unwrap_err(), Error::UnsupportedKem);
    // An ML-KEM-768 key that fails the FIPS 203 modulus check.
    let kem = securemesh_ratchet::KemPrekey::sign(&bob, 9, 1, &[0xff; 1184]).unwrap();
    let bundle = pool.bundle(None).with_kem(kem).unwrap();
    let r = PqxdhSession::initiate_pq(&alice, &bundle, cfg, &mut rng, NOW);
    assert_eq!(r.unwrap_err(), Error::Malformed);
    // A wrong length for its algorithm.
    let kem = securemesh_ratchet::KemPrekey::sign(&bob, 9, 1, &[1; 1183]).unwrap();
    let bundle = pool.bundle(None).with_kem(kem).unwrap();
    let r = PqxdhSession::initiate_pq(&alice, &bundle, cfg, &mut rng, NOW);
    assert_eq!(r.unwrap_err(), Error::Malformed);
}

/// Forged KEM slots: a changed ciphertext byte gives another shared
/// secret (ML-KEM's implicit rejection) and so `Decrypt`; an unknown KEM
/// identifier `UnknownPrekey`; a wrong algorithm or ciphertext length
/// `Malformed`. Each leaves the pool as it was.
#[test]
fn forged_kem_slots_are_refused_with_nothing_consumed() {
    let mut rng = TestRng::new(0x5600);
    let alice = Identity::generate(&mut rng);
    let mut b = bob(&mut rng, KemAlgorithm::MlKem768);
    let bundle = bundle_bytes(&b, b.pool.one_time_ids().next(), b.pool.kem_one_time_ids().next());
    let mut a = initiate(&mut rng, &alice, &bundle, false);
    let m = send(&mut a, &mut rng, b"payload");
    let before = state(&b.pool);
    let ct = KEM_COUNT + 1 + 8;
    for (name, i, bit, want) in [
        ("ciphertext first byte", ct, 1u8, Error::Decrypt),
        ("ciphertext last byte", ct + 1087, 0x80, Error::Decrypt),
        // (The low bits could name another KEM prekey of the pool: Decrypt.)
        ("kem_id", KEM_COUNT + 1, 0x80, Error::UnknownPrekey),
        ("kem_alg", KEM_COUNT + 6, 2, Error::Malformed),
        ("kem_count", KEM_COUNT, 2, Error::UnknownVersion),
    ] {
        let mut f = m.clone();
        f[i] ^= bit;
        assert_eq!(respond(&mut b, &f).unwrap_err(), want, "{name}");
        assert_eq!(state(&b.pool), before, "{name}");
    }
    assert_eq!(respond(&mut b, &m).unwrap().1, b"payload");
}

/// Rotation: the last-resort KEM prekey rotates with the signed prekey;
/// the previous one opens sessions during the grace period and is erased
/// with its signed prekey.
#[test]
fn the_last_resort_kem_prekey_rotates_with_the_signed_prekey() {
    let mut rng = TestRng::new(0x5700);
    let alice = Identity::generate(&mut rng);
    let mut b = bob(&mut rng, KemAlgorithm::MlKem768);
    let old = b.pool.last_resort_kem_id().unwrap();
    let old_bundle = bundle_bytes(&b, None, None);
    let cfg = PrekeyConfig::default();
    let rotate_at = UnixTime(T0.0 + cfg.rotation_interval_secs);
    b.pool.handle_timeout(&b.id, &mut rng, rotate_at).unwrap();
    let new = b.pool.last_resort_kem_id().unwrap();
    assert_ne!(new, old);
    let new_bundle = bundle_bytes(&b, None, None);
    assert_eq!(Bundle::decode(&new_bundle).unwrap().kem().unwrap().id, new);
    for bundle in [&old_bundle, &new_bundle] {
        let mut a = initiate(&mut rng, &alice, bundle, false);
        let m = send(&mut a, &mut rng, b"rotated");
        assert_eq!(respond(&mut b, &m).unwrap().1, b"rotated");
    }
    let mut a = initiate(&mut rng, &alice, &old_bundle, false);
    let m = send(&mut a, &mut rng, b"too late");
    b.pool.handle_timeout(&b.id, &mut rng, UnixTime(rotate_at.0 + cfg.grace_period_secs)).unwrap();
    assert_eq!(respond(&mut b, &m).unwrap_err(), Error::UnknownPrekey);
}

/// PQXDH pools and sessions persist (body version 3) and behave as before
/// after a restore: Alice's pending ciphertext, Bob's record of her
/// initial header, the pool's KEM prekeys. X3DH states keep version 2.
#[test]
fn pqxdh_states_persist() {
    let mut rng = TestRng::new(0x5800);
    let alice = Identity::generate(&mut rng);
    let mut b = bob(&mut rng, KemAlgorithm::MlKem1024);
    let pool_bytes = state(&b.pool);
    assert_eq!(u16::from_be_bytes([pool_bytes[5], pool_bytes[6]]), 3);
    let restored = Pool::decode_state(&pool_bytes).unwrap();
    assert_eq!(state(&restored), pool_bytes);
    assert_eq!(restored.last_resort_kem_id(), b.pool.last_resort_kem_id());
    assert!(restored.kem_one_time_ids().eq(b.pool.kem_one_time_ids()));
    b.pool = restored;

    let bundle = bundle_bytes(&b, b.pool.one_time_ids().next(), b.pool.kem_one_time_ids().next());
    let mut a = initiate(&mut rng, &alice, &bundle, true);
    let m1 = send(&mut a, &mut rng, b"one");
    let a_bytes = state(&a);
    assert_eq!(u16::from_be_bytes([a_bytes[5], a_bytes[6]]), 3);
    let mut a = PqxdhSession::decode_state(&a_bytes).unwrap();
    assert_eq!(state(&a), a_bytes);
    let m2 = send(&mut a, &mut rng, b"two");
    assert_eq!(m2.len(), m1.len());
    let (bs, p) = respond(&mut b, &m1).unwrap();
    assert_eq!(p, b"one");
    let b_bytes = state(&bs);
    let mut bs = Session::<128, 128>::decode_state(&b_bytes).unwrap();
    assert_eq!(state(&bs), b_bytes);
    // The repeated initial message is recognised after the restore; one
    // with another ciphertext is not.
    assert_eq!(open(&mut bs, &m2).unwrap(), b"two");
    let mut f = m2.clone();
    f[KEM_COUNT + 9] ^= 1;
    assert_eq!(open(&mut bs, &f).unwrap_err(), Error::Malformed);
    // A corrupt KEM seed (its `d` half: the key pair's public part) makes
    // the signature fail and the state is refused. The layout ends with
    // the last-resort key (seed 64, signature 64) and the previous flag.
    let mut bad = state(&b.pool);
    let len = bad.len();
    bad[len - 1 - 64 - 64 + 3] ^= 1;
    assert!(Pool::decode_state(&bad).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Any flipped byte of a PQXDH initial message is refused and changes
    /// nothing of the pool; the genuine one is accepted afterwards.
    #[test]
    fn flipped_initial_messages_change_nothing(pos in any::<prop::sample::Index>(), bit in 0u8..8, he in any::<bool>()) {
        let mut rng = TestRng::new(0x5900 + u64::from(he) * 0x1000);
        let alice = Identity::generate(&mut rng);
        let mut b = bob(&mut rng, KemAlgorithm::MlKem768);
        let bundle = bundle_bytes(&b, b.pool.one_time_ids().next(), b.pool.kem_one_time_ids().next());
        let mut a = initiate(&mut rng, &alice, &bundle, he);
        let m = send(&mut a, &mut rng, b"proptest");
        let before = state(&b.pool);
        let mut f = m.clone();
        let i = pos.index(f.len());
        f[i] ^= 1 << bit;
        prop_assert!(respond(&mut b, &f).is_err());
        prop_assert_eq!(state(&b.pool), before);
        prop_assert_eq!(respond(&mut b, &m).unwrap().1, b"proptest".to_vec());
    }
}

/// Version 3 is written only for PQXDH state, so a version-3 body without
/// any PQXDH slot (an X3DH state relabelled, empty sections appended) is
/// refused: every accepted encoding is the one the writer produces.
#[test]
fn version_3_without_pqxdh_state_is_refused() {
    use securemesh_core::Error as CoreError;
    let mut rng = TestRng::new(0x5a00);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    let pool: PrekeyPool<4, 2> = PrekeyPool::new(&bob, &mut rng, T0, PrekeyConfig::default());
    let a: Session =
        Session::initiate(&alice, &pool.bundle(None), SessionConfig::default(), &mut rng, NOW).unwrap();
    // Envelope: magic 4 | kind 1 | version u16 | suite u16 | len u32 | body.
    let relabel = |mut bytes: Vec<u8>, empty: &[u8]| {
        assert_eq!(u16::from_be_bytes([bytes[5], bytes[6]]), 2);
        bytes[6] = 3;
        let len = u32::from_be_bytes(bytes[9..13].try_into().unwrap()) + empty.len() as u32;
        bytes[9..13].copy_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(empty);
        bytes
    };
    let session = relabel(state(&a), &[0, 0]);
    assert_eq!(Session::<128, 128>::decode_state(&session).unwrap_err(), CoreError::InvalidValue);
    let pool_v3 = relabel(state(&pool), &[0, 0, 0, 0]);
    assert_eq!(PrekeyPool::<4, 2>::decode_state(&pool_v3).unwrap_err(), CoreError::InvalidValue);
}

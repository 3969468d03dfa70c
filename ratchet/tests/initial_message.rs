//! The X3DH prefix of an initial message is bound into `SK` (wire version
//! 2): no other encoding of Alice's ephemeral key, and no other prefix
//! byte, opens a session.
//!
//! X25519 clamps private keys to multiples of the cofactor 8, so adding a
//! point of small order to `ek_pub` leaves DH2..DH4 unchanged: each of the
//! 7 variants is a canonical key that Bob's DHs cannot tell apart from the
//! genuine one. Version 1 accepted all of them; version 2 refuses them
//! because `ek_pub` enters the KDF byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_core::testing::{TestRng, x25519_small_order_variants};
use securemesh_core::{Instant, UnixTime};
use securemesh_ratchet::{
    Bundle, Error, Identity, MAX_BUNDLE_LEN, MSG_INITIAL, MSG_INITIAL_V1, PrekeyConfig, PrekeyPool,
    PublicIdentity, Session, SessionConfig,
};

const T0: UnixTime = UnixTime(1_700_000_000);
const NOW: Instant = Instant(0);
/// Offset of `ek_pub` in an initial message (type byte, Alice's identity).
const EK: usize = 1 + PublicIdentity::LEN;

/// The 7 other canonical encodings of `u` that act like it for every
/// private key.
fn small_order_variants(u: [u8; 32]) -> Vec<[u8; 32]> {
    let v = x25519_small_order_variants(&u).unwrap().to_vec();
    assert!(v.iter().all(|x| *x != u) && (1..v.len()).all(|i| !v[..i].contains(&v[i])));
    v
}

struct Setup {
    bob: Identity,
    pool: PrekeyPool<8>,
}

/// Bob with his pool, and Alice's first message to him.
fn setup(seed: u64, one_time: bool, he: bool) -> (Setup, Vec<u8>) {
    let mut rng = TestRng::new(seed);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    let pool: PrekeyPool<8> = PrekeyPool::new(&bob, &mut rng, T0, PrekeyConfig::default());
    let mut buf = [0u8; MAX_BUNDLE_LEN];
    let opk = if one_time { pool.one_time_ids().next() } else { None };
    let n = pool.bundle(opk).encode(&mut buf).unwrap();
    let bundle = Bundle::decode(&buf[..n]).unwrap();
    let cfg = SessionConfig { header_encryption: he, ..SessionConfig::default() };
    let mut a: Session = Session::initiate(&alice, &bundle, cfg, &mut rng, NOW).unwrap();
    let mut wire = vec![0u8; 512];
    let m = a.encrypt(b"open valve 7", &mut wire, &mut rng, NOW).unwrap();
    wire.truncate(m);
    assert_eq!(wire[0], MSG_INITIAL);
    (Setup { bob, pool }, wire)
}

fn respond(s: &mut Setup, msg: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; msg.len()];
    let (_, k) =
        Session::<128, 128>::respond(&s.bob, &mut s.pool, msg, &mut out, SessionConfig::default(), NOW)?;
    out.truncate(k);
    Ok(out)
}

fn with_ek(msg: &[u8], ek: [u8; 32]) -> Vec<u8> {
    let mut m = msg.to_vec();
    m[EK..EK + 32].copy_from_slice(&ek);
    m
}

#[test]
fn every_small_order_variant_of_ek_pub_is_refused() {
    for (seed, one_time, he) in [(1, true, false), (2, false, false), (3, true, true), (4, false, true)] {
        let (mut s, initial) = setup(seed, one_time, he);
        let ek: [u8; 32] = initial[EK..EK + 32].try_into().unwrap();
        let variants = small_order_variants(ek);
        assert_eq!(variants.len(), 7);
        for v in &variants {
            // Each variant arrives before the genuine message: refused, and
            // it changes nothing (the one-time prekey stays).
            assert_eq!(respond(&mut s, &with_ek(&initial, *v)), Err(Error::Decrypt), "variant {v:02x?}");
        }
        // The genuine message still opens the session.
        assert_eq!(respond(&mut s, &initial).unwrap(), b"open valve 7");
        // And afterwards none of the variants opens another one, with or
        // without a one-time prekey.
        for v in &variants {
            let e = respond(&mut s, &with_ek(&initial, *v)).unwrap_err();
            assert_eq!(e, if one_time { Error::UnknownPrekey } else { Error::Decrypt });
        }
    }
}

#[test]
fn every_prefix_byte_is_bound() {
    for he in [false, true] {
        let (mut s, initial) = setup(10 + u64::from(he), true, he);
        let prefix_len = securemesh_ratchet::INITIAL_PREFIX_LEN;
        for i in 1..prefix_len {
            for bit in [0x01u8, 0x80] {
                let mut m = initial.clone();
                m[i] ^= bit;
                let e = respond(&mut s, &m).unwrap_err();
                assert!(
                    matches!(
                        e,
                        Error::Decrypt
                            | Error::Malformed
                            | Error::UnknownPrekey
                            | Error::UnknownVersion
                            | Error::BadSignature
                            | Error::NonContributory
                    ),
                    "byte {i} bit {bit:#x}: {e:?}"
                );
            }
        }
        assert_eq!(respond(&mut s, &initial).unwrap(), b"open valve 7");
    }
}

#[test]
fn version_1_initial_messages_are_refused() {
    let (mut s, initial) = setup(20, true, false);
    let mut m = initial.clone();
    m[0] = MSG_INITIAL_V1;
    assert_eq!(respond(&mut s, &m), Err(Error::UnknownVersion));
    // Also at an existing session (Alice's repeated initial message).
    let mut out = vec![0u8; 512];
    let (mut b, _) =
        Session::<128, 128>::respond(&s.bob, &mut s.pool, &initial, &mut out, SessionConfig::default(), NOW)
            .unwrap();
    assert_eq!(b.decrypt(&m, &mut out, NOW), Err(Error::UnknownVersion));
}

#[test]
fn without_a_one_time_prekey_only_the_genuine_message_opens_sessions() {
    let (mut s, initial) = setup(30, false, false);
    let ek: [u8; 32] = initial[EK..EK + 32].try_into().unwrap();
    let opened = core::iter::once(ek)
        .chain(small_order_variants(ek))
        .filter(|v| respond(&mut s, &with_ek(&initial, *v)).is_ok())
        .count();
    // X3DH §4.2: a replay of the genuine message without a one-time prekey
    // opens a session again (applications detect it); none of the 7
    // variants does, so one recorded message is good for one key, not 8.
    assert_eq!(opened, 1);
}

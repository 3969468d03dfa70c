//! Handshake properties over every supported protocol name (each pattern and
//! PSK placement, SHA-256 and SHA-512), between two of our own parties:
//!
//! - with random prologue, payloads, static keys, PSKs and ephemerals, every
//!   handshake completes, both sides agree on `h` after every message, and
//!   transport messages flow both ways (one way for N, K, X);
//! - any single flipped bit of an authenticated handshake message is refused
//!   with `Decrypt`, poisons the reader for good and leaves no plaintext; a
//!   flipped bit of an unauthenticated (cleartext) message makes the
//!   handshake fail later and never yields equal handshake hashes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::{Keys, TestRng, ours, public};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use securemesh_noise::{Error, HandshakeState, MAX_MESSAGES, Protocol, Role, Token};

fn names() -> Vec<String> {
    let mut v = common::protocol_names("25519_ChaChaPoly_SHA256");
    v.extend(common::protocol_names("25519_ChaChaPoly_SHA512"));
    #[cfg(feature = "aes-gcm")]
    v.extend(common::protocol_names("25519_AESGCM_SHA256"));
    #[cfg(feature = "blake2")]
    v.extend(common::protocol_names("25519_ChaChaPoly_BLAKE2b"));
    #[cfg(all(feature = "aes-gcm", feature = "blake2"))]
    v.extend(common::protocol_names("25519_AESGCM_BLAKE2s"));
    v
}

/// Whether every byte of message `m` is authenticated by its sender, i.e.
/// whether the sender holds a cipher key once the message's tokens are
/// processed, so that the payload carries a tag whose associated data `h`
/// covers every earlier byte of the message.
///
/// The rule, from the pattern: a key is set by any DH token (`ee`, `es`,
/// `se`, `ss`) or `psk` token in messages `0..=m`, and, in PSK mode, by any
/// `e` token (`MixKey(e)`). Otherwise the message is cleartext (e.g. the
/// first message of NN or XX: `e` and a cleartext payload; of IN and IX:
/// `e, s`), and Noise cannot detect a change to it until a later message.
fn authenticated(p: &Protocol, m: usize) -> bool {
    let psk_mode = p.pattern().uses_psk();
    p.pattern().messages()[..=m].iter().flat_map(|mp| mp.tokens()).any(|t| match t {
        Token::E => psk_mode,
        Token::S => false,
        Token::Ee | Token::Es | Token::Se | Token::Ss | Token::Psk => true,
        #[cfg(feature = "hfs")]
        Token::E1 => false,
        #[cfg(feature = "hfs")]
        Token::Ekem1 => true,
    })
}

fn keys(i_s: [u8; 32], r_s: [u8; 32], psks: [[u8; 32]; 5], prologue: Vec<u8>) -> Keys {
    Keys { i_s, r_s, psks, prologue }
}

/// `(writer, reader)` for message `m`.
fn turn<'a>(
    m: usize,
    i: &'a mut HandshakeState,
    r: &'a mut HandshakeState,
) -> (&'a mut HandshakeState, &'a mut HandshakeState) {
    if m.is_multiple_of(2) { (i, r) } else { (r, i) }
}

fn payloads_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), MAX_MESSAGES + 3)
}

// Case counts keep this file at a few seconds in a debug build.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_protocol_completes_and_agrees(
        name in select(names()),
        i_s in any::<[u8; 32]>(),
        r_s in any::<[u8; 32]>(),
        psks in any::<[[u8; 32]; 5]>(),
        prologue in prop::collection::vec(any::<u8>(), 0..100),
        payloads in payloads_strategy(),
        seed in any::<u64>(),
    ) {
        let p = Protocol::parse(&name).unwrap();
        let k = keys(i_s, r_s, psks, prologue);
        let mut rng = TestRng(seed);
        let (mut i, mut r) = (ours(&p, Role::Initiator, &k), ours(&p, Role::Responder, &k));
        let (mut msg, mut pl) = (vec![0u8; 1024], vec![0u8; 1024]);
        let hp = *p.pattern();
        for (m, sent) in payloads.iter().enumerate().take(hp.messages().len()) {
            let (w, rd) = turn(m, &mut i, &mut r);
            prop_assert!(w.is_my_turn() && !rd.is_my_turn());
            let expected_len = w.next_message_len(sent.len()).unwrap();
            let n = w.write_message(sent, &mut msg, &mut rng).unwrap();
            prop_assert_eq!(n, expected_len);
            let got = rd.read_message(&msg[..n], &mut pl).unwrap();
            prop_assert_eq!(&pl[..got], &sent[..]);
            if rd.remote_static_pending() {
                // The key surfaced for policy is the peer's real static key.
                let peer = if rd.is_initiator() { k.r_s } else { k.i_s };
                prop_assert_eq!(rd.remote_static(), Some(&public(&peer)));
                rd.accept_remote_static();
            }
            prop_assert_eq!(w.handshake_hash(), rd.handshake_hash());
        }
        prop_assert!(i.is_complete() && r.is_complete());
        let hash = i.handshake_hash().to_vec();
        prop_assert_eq!(hash.len(), p.hash().hash_len());

        let (mut ti, mut tr) = (i.finish().unwrap(), r.finish().unwrap());
        prop_assert_eq!(ti.handshake_hash(), &hash[..]);
        prop_assert_eq!(tr.handshake_hash(), &hash[..]);
        prop_assert!(ti.is_initiator() && !tr.is_initiator());
        let i_knows_r = hp.responder_has_static();
        let r_knows_i = hp.initiator_has_static();
        prop_assert_eq!(ti.remote_static().copied(), i_knows_r.then(|| public(&k.r_s)));
        prop_assert_eq!(tr.remote_static().copied(), r_knows_i.then(|| public(&k.i_s)));

        for (round, data) in payloads.iter().enumerate().take(3) {
            let n = ti.write_message(data, &mut msg).unwrap();
            let got = tr.read_message(&msg[..n], &mut pl).unwrap();
            prop_assert_eq!(&pl[..got], &data[..], "round {} i->r", round);
            if hp.is_one_way() {
                prop_assert_eq!(tr.write_message(data, &mut msg), Err(Error::OneWay));
                prop_assert_eq!(ti.read_message(&msg[..n], &mut pl), Err(Error::OneWay));
            } else {
                let n = tr.write_message(data, &mut msg).unwrap();
                let got = ti.read_message(&msg[..n], &mut pl).unwrap();
                prop_assert_eq!(&pl[..got], &data[..], "round {} r->i", round);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn flipped_bit_in_a_handshake_message(
        name in select(names()),
        seed in any::<u64>(),
        payloads in payloads_strategy(),
        which in any::<Index>(),
        byte in any::<Index>(),
        bit in 0u8..8,
    ) {
        let p = Protocol::parse(&name).unwrap();
        let mut rng = TestRng(seed);
        let k = Keys::new(&mut rng);
        let (mut i, mut r) = (ours(&p, Role::Initiator, &k), ours(&p, Role::Responder, &k));
        let (mut msg, mut pl) = (vec![0u8; 1024], vec![0u8; 1024]);
        let count = p.pattern().messages().len();
        let m = which.index(count);
        for (j, sent) in payloads.iter().enumerate().take(m) {
            let (w, rd) = turn(j, &mut i, &mut r);
            let n = w.write_message(sent, &mut msg, &mut rng).unwrap();
            rd.read_message(&msg[..n], &mut pl).unwrap();
            if rd.remote_static_pending() {
                rd.accept_remote_static();
            }
        }
        let (w, rd) = turn(m, &mut i, &mut r);
        let n = w.write_message(&payloads[m], &mut msg, &mut rng).unwrap();
        let genuine = msg[..n].to_vec();
        let mut bad = genuine.clone();
        let at = byte.index(n);
        bad[at] ^= 1 << bit;

        if authenticated(&p, m) {
            let h_before = rd.handshake_hash().to_vec();
            let payload_len = payloads[m].len();
            pl.fill(0xAA);
            prop_assert_eq!(rd.read_message(&bad, &mut pl), Err(Error::Decrypt), "byte {} bit {}", at, bit);
            prop_assert!(rd.is_poisoned());
            prop_assert!(pl[..payload_len].iter().all(|&b| b == 0), "plaintext left in the payload buffer");
            prop_assert!(pl[payload_len..].iter().all(|&b| b == 0xAA), "wrote past the payload");
            prop_assert_eq!(rd.handshake_hash(), &h_before[..]);
            // Poisoned for good: even the genuine message is refused now.
            prop_assert_eq!(rd.read_message(&genuine, &mut pl), Err(Error::Poisoned));
            prop_assert_eq!(rd.write_message(b"", &mut msg, &mut rng), Err(Error::Poisoned));
            let rd_is_initiator = rd.is_initiator();
            let (i, r) = (i, r);
            let reader = if rd_is_initiator { i } else { r };
            prop_assert_eq!(reader.finish().unwrap_err(), Error::Poisoned);
        } else {
            // A cleartext message: Noise cannot notice the change now. The
            // reader may accept it, but the handshake must then fail at a
            // later message (or at the first transport message) and must
            // never complete with equal handshake hashes.
            match rd.read_message(&bad, &mut pl) {
                Err(e) => {
                    prop_assert_eq!(e, Error::Decrypt);
                    prop_assert!(rd.is_poisoned());
                    return Ok(());
                }
                Ok(_) => {
                    if rd.remote_static_pending() {
                        rd.accept_remote_static();
                    }
                }
            }
            let mut failed = false;
            for (j, sent) in payloads.iter().enumerate().take(count).skip(m + 1) {
                let (w, rd) = turn(j, &mut i, &mut r);
                let n = w.write_message(sent, &mut msg, &mut rng).unwrap();
                match rd.read_message(&msg[..n], &mut pl) {
                    Ok(_) => {
                        if rd.remote_static_pending() {
                            rd.accept_remote_static();
                        }
                    }
                    Err(e) => {
                        prop_assert_eq!(e, Error::Decrypt);
                        prop_assert!(rd.is_poisoned());
                        failed = true;
                        break;
                    }
                }
            }
            if !failed {
                prop_assert_ne!(i.handshake_hash(), r.handshake_hash());
                let (mut ti, mut tr) = (i.finish().unwrap(), r.finish().unwrap());
                let n = ti.write_message(b"first transport message", &mut msg).unwrap();
                prop_assert_eq!(tr.read_message(&msg[..n], &mut pl), Err(Error::Decrypt));
            }
        }
    }
}

/// The rule above, checked on a few patterns by hand.
#[test]
fn authenticated_rule_examples() {
    let p = |n: &str| Protocol::parse(&format!("Noise_{n}_25519_ChaChaPoly_SHA256")).unwrap();
    assert!(!authenticated(&p("NN"), 0));
    assert!(authenticated(&p("NN"), 1));
    assert!(!authenticated(&p("XX"), 0));
    assert!(!authenticated(&p("IX"), 0));
    assert!(authenticated(&p("IK"), 0));
    assert!(authenticated(&p("N"), 0));
    assert!(authenticated(&p("NNpsk2"), 0), "psk mode: MixKey(e) keys the first message");
    assert!(authenticated(&p("XXpsk3"), 0));
    assert!(!authenticated(&p("X1N"), 0));
    for n in securemesh_noise::pattern_names() {
        let pr = p(n);
        for m in 1..pr.pattern().messages().len() {
            assert!(authenticated(&pr, m), "{n} message {m}: only a first message can be cleartext");
        }
    }
}

/// Every bit of the cleartext first message of NN, XX, IN and IX flipped in
/// turn (including bit 7 of the last byte of `e`, which X25519 ignores, so
/// only `h` can catch it): the reader accepts it, and the next message fails.
#[test]
fn cleartext_first_message_tampering_fails_at_the_next_message() {
    for pattern in ["NN", "XX", "IN", "IX", "NX", "KN"] {
        let p = Protocol::parse(&format!("Noise_{pattern}_25519_ChaChaPoly_SHA256")).unwrap();
        assert!(!authenticated(&p, 0));
        let mut rng = TestRng(0xc1ea);
        let k = Keys::new(&mut rng);
        let (mut msg, mut pl) = ([0u8; 512], [0u8; 512]);
        let mut i = ours(&p, Role::Initiator, &k);
        let n = i.write_message(b"hello", &mut msg, &mut rng).unwrap();
        let genuine = msg[..n].to_vec();
        for at in 0..n {
            for bit in 0..8 {
                let mut bad = genuine.clone();
                bad[at] ^= 1 << bit;
                // A fresh initiator state with the same ephemeral each time.
                let mut rng_i = TestRng(0xc1ea);
                let k = Keys::new(&mut rng_i);
                let mut i = ours(&p, Role::Initiator, &k);
                assert_eq!(i.write_message(b"hello", &mut msg, &mut rng_i).unwrap(), n);
                assert_eq!(&msg[..n], &genuine[..]);
                let mut r = ours(&p, Role::Responder, &k);
                assert!(r.read_message(&bad, &mut pl).is_ok(), "{pattern}: cleartext is not checked");
                if r.remote_static_pending() {
                    r.accept_remote_static();
                }
                let n2 = r.write_message(b"reply", &mut msg, &mut rng).unwrap();
                assert_eq!(
                    i.read_message(&msg[..n2], &mut pl),
                    Err(Error::Decrypt),
                    "{pattern} byte {at} bit {bit}"
                );
                assert!(i.is_poisoned());
            }
        }
    }
}

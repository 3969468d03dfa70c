//! First-use ergonomics (issue 13): static key pairs, the generic handshake
//! loop, the default datagram window without annotations, and the words of
//! the error messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::{Keys, TestRng, ours, protocol_names, public};
use securemesh_core::crypto::{Dh, X25519};
use securemesh_core::envelope::Persist;
use securemesh_noise::{
    Builder, DatagramTransport, DefaultDatagramTransport, Error, Keypair, Protocol, Role, Token, protocol,
};

const XX: Protocol = protocol!("Noise_XX_25519_ChaChaPoly_SHA256");

#[test]
fn keypair_generate_and_from_secret_agree_and_hide_the_secret() {
    let mut rng = TestRng(11);
    let kp = Keypair::generate(&mut rng);
    assert_eq!(kp.public(), X25519::public_key(kp.secret()));
    assert_eq!(Keypair::from_secret(kp.secret().duplicate()).public(), kp.public());
    assert_eq!(Keypair::from(kp.secret().duplicate()).public(), kp.public());
    assert_ne!(Keypair::generate(&mut rng).public(), kp.public(), "the RNG is drawn from");

    let secret = *kp.secret().expose();
    let shown = format!("{kp:?}");
    assert!(shown.starts_with("Keypair"), "{shown}");
    assert!(!shown.contains(&format!("{secret:?}")), "the private key is printed: {shown}");
    assert_eq!(*kp.duplicate().into_secret().expose(), secret);
}

#[test]
fn generated_keypairs_drive_a_handshake_and_are_surfaced_as_remote_static() {
    let mut rng = TestRng(12);
    let (alice, bob) = (Keypair::generate(&mut rng), Keypair::generate(&mut rng));
    let (alice_pub, bob_pub) = (alice.public(), bob.public());
    // A Keypair and a bare Secret are both accepted as the local static key.
    let mut a = Builder::new(&XX).local_static(alice).build_initiator().unwrap();
    let mut b = Builder::new(&XX).local_static(bob.into_secret()).build_responder().unwrap();
    let (mut msg, mut payload) = ([0u8; 256], [0u8; 256]);
    let n = a.write_message(b"", &mut msg, &mut rng).unwrap();
    b.read_message(&msg[..n], &mut payload).unwrap();
    let n = b.write_message(b"", &mut msg, &mut rng).unwrap();
    a.read_message(&msg[..n], &mut payload).unwrap();
    assert_eq!(a.remote_static(), Some(&bob_pub));
    a.accept_remote_static();
    let n = a.write_message(b"", &mut msg, &mut rng).unwrap();
    b.read_message(&msg[..n], &mut payload).unwrap();
    assert_eq!(b.remote_static(), Some(&alice_pub));
    b.accept_remote_static();
    assert_eq!(a.finish().unwrap().remote_static(), Some(&bob_pub));
    assert_eq!(b.finish().unwrap().remote_static(), Some(&alice_pub));
}

/// The loop of the `HandshakeState` rustdoc, run on every pattern and PSK
/// position: it ends after exactly the pattern's messages, each side is
/// asked to accept the peer's static key once, when it reads it (never when
/// it was a pre-message), and until accepted nothing goes on.
#[test]
fn the_generic_loop_completes_every_pattern_and_surfaces_each_remote_static_once() {
    let mut rng = TestRng(13);
    for name in protocol_names("25519_ChaChaPoly_SHA256") {
        let p = Protocol::parse(&name).unwrap();
        let k = Keys::new(&mut rng);
        let (mut i, mut r) = (ours(&p, Role::Initiator, &k), ours(&p, Role::Responder, &k));
        let (mut msg, mut payload) = ([0u8; 512], [0u8; 512]);
        let (mut steps, mut surfaced) = (0, [0usize; 2]);
        while !i.is_complete() || !r.is_complete() {
            let (writer, reader, who) =
                if i.is_my_turn() { (&mut i, &mut r, 1) } else { (&mut r, &mut i, 0) };
            let n = writer.write_message(b"", &mut msg, &mut rng).unwrap();
            reader.read_message(&msg[..n], &mut payload).unwrap();
            let carried_s = p.pattern().messages()[steps].tokens().contains(&Token::S);
            assert_eq!(reader.remote_static_pending(), carried_s, "{name} message {steps}");
            if reader.remote_static_pending() {
                surfaced[who] += 1;
                if !reader.is_complete() {
                    let n = reader.write_message(b"", &mut msg, &mut rng);
                    assert_eq!(n, Err(Error::RemoteStaticPending), "{name}");
                }
                reader.accept_remote_static();
            }
            steps += 1;
            assert!(steps <= p.pattern().messages().len(), "{name}: the loop does not end");
        }
        let pat = p.pattern();
        let expect_r = usize::from(pat.initiator_has_static() && !pat.pre_initiator().s);
        let expect_i = usize::from(pat.responder_has_static() && !pat.pre_responder().s);
        assert_eq!(surfaced, [expect_i, expect_r], "{name}");
        let (ti, tr) = (i.finish().unwrap(), r.finish().unwrap());
        assert_eq!(ti.handshake_hash(), tr.handshake_hash(), "{name}");
        if pat.responder_has_static() {
            assert_eq!(ti.remote_static(), Some(&public(&k.r_s)), "{name}");
        }
    }
}

/// The default window needs no annotation: `into_datagram`, the alias for
/// paths in expressions, and `DatagramTransport` in a signature are one type.
#[test]
fn the_default_datagram_window_needs_no_annotation() {
    fn roundtrip(a: &mut DatagramTransport, b: &mut DatagramTransport) {
        let (mut packet, mut out) = ([0u8; 64], [0u8; 64]);
        let n = a.seal(b"ping", &mut packet).unwrap();
        assert_eq!(b.open(&packet[..n], &mut out).unwrap(), 4);
    }
    let (a, b) = common::transports("Noise_NN_25519_ChaChaPoly_SHA256", 14);
    let (mut a, mut b) = (a.into_datagram(), b.into_datagram());
    roundtrip(&mut a, &mut b);

    let mut blob = vec![0u8; DefaultDatagramTransport::MAX_ENCODED_LEN];
    let n = b.encode_state(&mut blob).unwrap();
    let mut b = DefaultDatagramTransport::decode_state(&blob[..n]).unwrap();
    assert_eq!(b.window().highest(), Some(0));
    roundtrip(&mut a, &mut b);
    // Another window is asked for by name and does not decode the default one.
    assert!(DatagramTransport::<5>::decode_state(&blob[..n]).is_err());
    let (c, _) = common::transports("Noise_NN_25519_ChaChaPoly_SHA256", 15);
    assert_eq!(c.into_datagram_with_window::<5>().window().highest(), None);
}

/// Error texts are words, not variant names; a primitive that is known but
/// not compiled in names the cargo feature that enables it.
#[test]
fn error_display_texts_are_words_and_name_the_missing_feature() {
    let shown = |name: &str| Error::from(Protocol::parse(name).unwrap_err()).to_string();
    assert_eq!(
        shown("Noise_XY_25519_ChaChaPoly_SHA256"),
        "invalid Noise protocol name: unknown handshake pattern"
    );
    assert_eq!(
        shown("Noise_XX_448_ChaChaPoly_SHA256"),
        "invalid Noise protocol name: unknown DH function (25519 is supported)"
    );
    assert!(shown("Noise_XX_25519_Rot13_SHA256").contains("feature `aes-gcm`"));
    assert!(shown("Noise_XX_25519_ChaChaPoly_MD5").contains("feature `blake2`"));

    #[cfg(not(feature = "aes-gcm"))]
    assert_eq!(
        shown("Noise_XX_25519_AESGCM_SHA256"),
        "invalid Noise protocol name: AESGCM needs the securemesh-noise feature `aes-gcm`"
    );
    #[cfg(feature = "aes-gcm")]
    assert!(Protocol::parse("Noise_XX_25519_AESGCM_SHA256").is_ok());
    #[cfg(not(feature = "blake2"))]
    for hash in ["BLAKE2s", "BLAKE2b"] {
        assert_eq!(
            Protocol::parse(&format!("Noise_NN_25519_ChaChaPoly_{hash}")).unwrap_err().to_string(),
            format!("{hash} needs the securemesh-noise feature `blake2`")
        );
    }
    #[cfg(feature = "blake2")]
    assert!(Protocol::parse("Noise_NN_25519_ChaChaPoly_BLAKE2b").is_ok());

    for (e, text) in [
        (Error::BufferTooSmall { needed: 48 }, "output buffer too small: 48 bytes needed; nothing changed"),
        (Error::Decrypt, "decryption failed or the message is malformed"),
        (Error::RemoteStaticPending, "the peer's static key must be accepted before the handshake can go on"),
        (Error::Replay, "datagram already received or older than the replay window"),
    ] {
        assert_eq!(e.to_string(), text);
    }
    // No variant names (CamelCase words) in any text.
    let all = [
        Error::MessageTooLong,
        Error::Poisoned,
        Error::WrongTurn,
        Error::MissingKey,
        Error::UnexpectedKey,
        Error::Incomplete,
        Error::NonceExhausted,
        Error::OneWay,
        Error::Name(securemesh_noise::NameError::InvalidFallback),
        Error::Name(securemesh_noise::NameError::InvalidModifier),
        Error::Name(securemesh_noise::NameError::Syntax),
        Error::Name(securemesh_noise::NameError::TooLong),
    ];
    for e in all {
        let text = e.to_string();
        let debug = format!("{e:?}");
        let variant = debug.split(['(', ' ', '{']).next_back().unwrap_or(&debug).trim_end_matches(')');
        assert!(!text.contains(variant), "{text:?} shows {variant}");
    }
}

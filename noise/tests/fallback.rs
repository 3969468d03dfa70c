//! Noise Pipes (§10.4 of the Noise spec, rev 34): IK with a fallback to
//! XXfallback when the initiator's copy of the responder's static key is
//! wrong, the successful IK path, and `XXfallback+psk0` built directly. The
//! published noise-c fallback vectors run in the conformance run
//! (`test-vectors/noise/noise-c-fallback.json`).
//!
//! snow does not implement `fallback`, so the expected pattern comes from the
//! spec text (§10.2): XX is `-> e; <- e, ee, s, es; -> s, se`. With
//! `fallback`, Alice's first message becomes her pre-message and Bob
//! initiates. Written Bob-first (canonical form, roles swapped, `es`/`se`
//! exchanged): initiator (Bob) pre-message empty, responder (Alice)
//! pre-message `e`, then `-> e, ee, s, se` and `<- s, es`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::{TestRng, public};
use securemesh_core::Secret;
use securemesh_noise::{
    Builder, Error, HandshakeState, NameError, PreMessage, Protocol, Token, Transport, protocol,
};

const IK: Protocol = protocol!("Noise_IK_25519_ChaChaPoly_SHA256");
const XXFB: Protocol = protocol!("Noise_XXfallback_25519_ChaChaPoly_SHA256");

#[test]
fn xxfallback_pattern_matches_the_spec() {
    for name in ["Noise_XXfallback_25519_ChaChaPoly_SHA256", "Noise_XXfallback_25519_ChaChaPoly_SHA512"] {
        let p = Protocol::parse(name).unwrap();
        assert!(p.is_fallback());
        let hp = p.pattern();
        assert_eq!(hp.pre_initiator(), PreMessage { e: false, s: false }, "Bob: no pre-message");
        assert_eq!(hp.pre_responder(), PreMessage { e: true, s: false }, "Alice: `e` from her first message");
        let msgs: Vec<&[Token]> = hp.messages().iter().map(|m| m.tokens()).collect();
        assert_eq!(msgs, vec![&[Token::E, Token::Ee, Token::S, Token::Se][..], &[Token::S, Token::Es][..]]);
        assert!(!hp.is_one_way());
        assert!(hp.initiator_has_static() && hp.responder_has_static());
    }
    let p = Protocol::parse("Noise_XXfallback+psk0_25519_ChaChaPoly_SHA256").unwrap();
    assert!(p.is_fallback() && p.has_psk(0));
    assert_eq!(p.pattern().messages()[0].tokens(), &[Token::Psk, Token::E, Token::Ee, Token::S, Token::Se]);
    assert_eq!(p.pattern().messages()[1].tokens(), &[Token::S, Token::Es]);
    assert_eq!(
        Protocol::parse("Noise_IKfallback_25519_ChaChaPoly_SHA256"),
        Err(NameError::InvalidFallback),
        "IK's first message (e, es, s, ss) cannot be a pre-message"
    );
}

struct Party {
    s: [u8; 32],
}

impl Party {
    fn new(rng: &mut TestRng) -> Self {
        Party { s: rng.bytes() }
    }
    fn public(&self) -> [u8; 32] {
        public(&self.s)
    }
    fn secret(&self) -> Secret<[u8; 32]> {
        Secret::new(self.s)
    }
}

/// Exchange `rounds` transport messages both ways and check them.
fn talk(a: &mut Transport, b: &mut Transport, rounds: usize) {
    let (mut msg, mut out) = ([0u8; 128], [0u8; 128]);
    for round in 0..rounds {
        let text = format!("round {round}");
        let n = a.write_message(text.as_bytes(), &mut msg).unwrap();
        let m = b.read_message(&msg[..n], &mut out).unwrap();
        assert_eq!(&out[..m], text.as_bytes());
        let n = b.write_message(text.as_bytes(), &mut msg).unwrap();
        let m = a.read_message(&msg[..n], &mut out).unwrap();
        assert_eq!(&out[..m], text.as_bytes());
    }
}

/// The whole Noise Pipes flow with a stale key. With `alice_tries_ik`,
/// Alice first feeds Bob's fallback message to her IK state (which fails);
/// otherwise she switches on a transport-level signal without trying.
fn pipes_with_stale_key(alice_tries_ik: bool, seed: u64) {
    let mut rng = TestRng(seed);
    let (alice, bob, stale) = (Party::new(&mut rng), Party::new(&mut rng), Party::new(&mut rng));
    let prologue = b"pipes v1";
    let (mut msg, mut pl) = ([0u8; 512], [0u8; 512]);

    let mut a = Builder::new(&IK)
        .prologue(prologue)
        .local_static(alice.secret())
        .remote_static(stale.public())
        .build_initiator()
        .unwrap();
    let mut b = Builder::new(&IK).prologue(prologue).local_static(bob.secret()).build_responder().unwrap();

    // Message 1 of IK, encrypted to the stale key: Bob cannot read it.
    let n = a.write_message(b"0-RTT data", &mut msg, &mut rng).unwrap();
    let ik_message = msg[..n].to_vec();
    pl.fill(0xAA);
    assert_eq!(b.read_message(&ik_message, &mut pl), Err(Error::Decrypt));
    assert!(b.is_poisoned());
    assert!(pl[..10].iter().all(|&x| x == 0), "no plaintext left");
    assert_eq!(b.read_message(&ik_message, &mut pl), Err(Error::Poisoned));
    let alice_e = *b.remote_ephemeral().expect("the ephemeral key is kept for the fallback");
    assert_eq!(&alice_e[..], &ik_message[..32]);
    assert!(b.remote_static().is_none(), "the static key was not authenticated: not kept");

    // Bob falls back and initiates XXfallback. The prologue binds the
    // failed message (both sides have it).
    let mut b = b.fallback(&XXFB, &ik_message).unwrap();
    assert!(b.is_initiator() && b.is_my_turn() && !b.is_poisoned());
    assert_eq!(b.remote_ephemeral(), Some(&alice_e));
    let n = b.write_message(b"fallback, please", &mut msg, &mut rng).unwrap();
    assert_eq!(n, 32 + 48 + 16 + 16, "e, encrypted s, payload and tag");
    let fb_message = msg[..n].to_vec();

    if alice_tries_ik {
        // To Alice's IK state this is a broken IK message 2.
        assert_eq!(a.read_message(&fb_message, &mut pl), Err(Error::Decrypt));
        assert!(a.is_poisoned());
    }
    let mut a = a.fallback(&XXFB, &ik_message).unwrap();
    assert!(!a.is_initiator() && !a.is_my_turn());
    let got = a.read_message(&fb_message, &mut pl).unwrap();
    assert_eq!(&pl[..got], b"fallback, please");
    assert!(a.remote_static_pending());
    assert_eq!(a.remote_static(), Some(&bob.public()), "Alice learns Bob's real key");
    a.accept_remote_static();
    let n = a.write_message(b"hello again", &mut msg, &mut rng).unwrap();
    assert_eq!(n, 48 + 11 + 16, "s and payload only: Alice's e was the pre-message");
    let got = b.read_message(&msg[..n], &mut pl).unwrap();
    assert_eq!(&pl[..got], b"hello again");
    assert_eq!(b.remote_static(), Some(&alice.public()));
    b.accept_remote_static();
    assert!(a.is_complete() && b.is_complete());
    assert_eq!(a.handshake_hash(), b.handshake_hash());

    let (mut ta, mut tb) = (a.finish().unwrap(), b.finish().unwrap());
    assert_eq!(ta.handshake_hash(), tb.handshake_hash());
    assert!(tb.is_initiator() && !ta.is_initiator(), "Bob initiated the fallback");
    assert_eq!(tb.remote_static(), Some(&alice.public()));
    assert_eq!(ta.remote_static(), Some(&bob.public()));
    talk(&mut ta, &mut tb, 3);
}

#[test]
fn noise_pipes_stale_key_falls_back_to_xxfallback() {
    for seed in 0..8 {
        pipes_with_stale_key(true, seed);
        pipes_with_stale_key(false, seed);
    }
}

#[test]
fn noise_pipes_ik_succeeds_with_the_right_key() {
    let mut rng = TestRng(100);
    let (alice, bob) = (Party::new(&mut rng), Party::new(&mut rng));
    let (mut msg, mut pl) = ([0u8; 512], [0u8; 512]);
    let mut a =
        Builder::new(&IK).local_static(alice.secret()).remote_static(bob.public()).build_initiator().unwrap();
    let mut b = Builder::new(&IK).local_static(bob.secret()).build_responder().unwrap();
    let n = a.write_message(b"0-RTT data", &mut msg, &mut rng).unwrap();
    assert_eq!(b.read_message(&msg[..n], &mut pl), Ok(10));
    assert_eq!(&pl[..10], b"0-RTT data");
    assert_eq!(b.remote_static(), Some(&alice.public()));
    b.accept_remote_static();
    let n = b.write_message(b"welcome", &mut msg, &mut rng).unwrap();
    assert_eq!(a.read_message(&msg[..n], &mut pl), Ok(7));
    assert!(!a.remote_static_pending(), "IK: Bob's key was a pre-message");
    assert_eq!(a.handshake_hash(), b.handshake_hash());
    let (mut ta, mut tb) = (a.finish().unwrap(), b.finish().unwrap());
    assert_eq!(ta.remote_static(), Some(&bob.public()));
    assert_eq!(tb.remote_static(), Some(&alice.public()));
    talk(&mut ta, &mut tb, 2);
}

#[test]
fn xxfallback_psk0_built_directly() {
    let p = Protocol::parse("Noise_XXfallback+psk0_25519_ChaChaPoly_SHA256").unwrap();
    let mut rng = TestRng(200);
    let (alice, bob) = (Party::new(&mut rng), Party::new(&mut rng));
    let alice_e: [u8; 32] = rng.bytes();
    let psk: [u8; 32] = rng.bytes();
    let prologue = b"psk fallback";
    let build = |bob_psk: [u8; 32]| -> (HandshakeState, HandshakeState) {
        let b = Builder::new(&p)
            .prologue(prologue)
            .local_static(bob.secret())
            .remote_ephemeral(public(&alice_e))
            .psk(0, Secret::new(bob_psk))
            .build_initiator()
            .unwrap();
        let a = Builder::new(&p)
            .prologue(prologue)
            .local_static(alice.secret())
            .pre_ephemeral(Secret::new(alice_e))
            .psk(0, Secret::new(psk))
            .build_responder()
            .unwrap();
        (b, a)
    };
    let (mut msg, mut pl) = ([0u8; 512], [0u8; 512]);
    let (mut b, mut a) = build(psk);
    assert_eq!(a.handshake_hash(), b.handshake_hash(), "same pre-messages");
    let n = b.write_message(b"one", &mut msg, &mut rng).unwrap();
    assert_eq!(a.read_message(&msg[..n], &mut pl), Ok(3));
    assert_eq!(a.remote_static(), Some(&bob.public()));
    a.accept_remote_static();
    let n = a.write_message(b"two", &mut msg, &mut rng).unwrap();
    assert_eq!(b.read_message(&msg[..n], &mut pl), Ok(3));
    assert_eq!(b.remote_static(), Some(&alice.public()));
    b.accept_remote_static();
    assert_eq!(a.handshake_hash(), b.handshake_hash());
    let (mut ta, mut tb) = (a.finish().unwrap(), b.finish().unwrap());
    talk(&mut tb, &mut ta, 2);

    // A different PSK: the first message does not authenticate.
    let (mut b, mut a) = build([0x42; 32]);
    let n = b.write_message(b"one", &mut msg, &mut rng).unwrap();
    assert_eq!(a.read_message(&msg[..n], &mut pl), Err(Error::Decrypt));
    assert!(a.is_poisoned());

    // The builder insists on exactly the keys the pattern needs.
    let missing = Builder::new(&p).local_static(alice.secret()).psk(0, Secret::new(psk)).build_responder();
    assert_eq!(missing.unwrap_err(), Error::MissingKey, "no pre-message e");
    let wrong_side = Builder::new(&p)
        .local_static(bob.secret())
        .pre_ephemeral(Secret::new(alice_e))
        .psk(0, Secret::new(psk))
        .build_initiator();
    assert_eq!(wrong_side.unwrap_err(), Error::UnexpectedKey, "the initiator has no pre-message e");
}

#[test]
fn fallback_refusals() {
    let mut rng = TestRng(300);
    let (alice, bob) = (Party::new(&mut rng), Party::new(&mut rng));
    let a =
        Builder::new(&IK).local_static(alice.secret()).remote_static(bob.public()).build_initiator().unwrap();
    // Not a fallback protocol.
    assert_eq!(a.fallback(&IK, b"").unwrap_err(), Error::Name(NameError::InvalidFallback));
    // Bob has read nothing: no ephemeral key to fall back with.
    let b = Builder::new(&IK).local_static(bob.secret()).build_responder().unwrap();
    assert_eq!(b.fallback(&XXFB, b"").unwrap_err(), Error::MissingKey);
    // Alice has not written her first message: no ephemeral key either.
    let a =
        Builder::new(&IK).local_static(alice.secret()).remote_static(bob.public()).build_initiator().unwrap();
    assert_eq!(a.fallback(&XXFB, b"").unwrap_err(), Error::MissingKey);
    // XXfallback needs a static key, which an NN party does not have.
    let nn = protocol!("Noise_NN_25519_ChaChaPoly_SHA256");
    let mut a = Builder::new(&nn).build_initiator().unwrap();
    a.write_message(b"", &mut [0u8; 64], &mut rng).unwrap();
    assert_eq!(a.fallback(&XXFB, b"").unwrap_err(), Error::MissingKey);
}

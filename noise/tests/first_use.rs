//! First-use ergonomics (issue 13): static key pairs, the generic handshake
//! loop, the default datagram window without annotations, and the words of
//! the error messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::TestRng;
use securemesh_core::crypto::{Dh, X25519};
use securemesh_noise::{Builder, Keypair, Protocol, protocol};

const XX: Protocol = protocol!("Noise_XX_25519_ChaChaPoly_SHA256");

#[test]
fn keypair_generate_and_from_secret_agree_and_hide_the_secret() {
    let mut rng = TestRng(11);
    let kp = Keypair::generate(&mut rng);
    assert_eq!(kp.public(), X25519::public_key(kp.secret()));
    assert_eq!(Keypair::from_secret(kp.secret().clone()).public(), kp.public());
    assert_eq!(Keypair::from(kp.secret().clone()).public(), kp.public());
    assert_ne!(Keypair::generate(&mut rng).public(), kp.public(), "the RNG is drawn from");

    let secret = *kp.secret().expose();
    let shown = format!("{kp:?}");
    assert!(shown.starts_with("Keypair"), "{shown}");
    assert!(!shown.contains(&format!("{secret:?}")), "the private key is printed: {shown}");
    assert_eq!(*kp.clone().into_secret().expose(), secret);
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

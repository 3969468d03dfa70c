//! Two (and three) agents in memory: Noise when both are online, a ratchet
//! session through a mailbox when one is offline, policy refusals,
//! identity-binding refusals and tampered envelopes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh::envelope::{Envelope, handshake_prologue};
use securemesh::policy::DenyReason;
use securemesh::{
    AuthFailure, Channel, ChannelKind, Config, DefaultAgent, Delivery, Error, Event, NOISE_IK, NOISE_XX,
    PeerId, Permissions, Reason, Role, Roles, SessionKind,
};
use securemesh_core::Instant;
use securemesh_core::testing::TestRng;
use securemesh_noise::{Builder, Keypair};
use securemesh_ratchet::Identity;

mod common;
use common::{SENSOR, T0, TASK, TELEMETRY, WALL, WORKER, agent, events, feed, transmits};

/// `a` knows `b`'s identity (so its static key), grants it `role`, and
/// sees it reachable or not.
fn know(a: &mut DefaultAgent, b: &DefaultAgent, role: Role, reachable: bool) -> PeerId {
    let id = a.add_peer_identity(b.public_identity()).unwrap();
    a.policy_mut().grant(id, Roles::of(&[role])).unwrap();
    a.set_reachable(&id, reachable).unwrap();
    id
}

/// Carry direct envelopes both ways until neither side has any; returns
/// what each side received (mailbox envelopes are refused here).
fn pump(a: &mut DefaultAgent, ra: &mut TestRng, b: &mut DefaultAgent, rb: &mut TestRng) -> common::Received2 {
    common::pump(a, ra, b, rb, true)
}

/// Alice knows Bob's identity: IK; Bob answers over the established
/// session. Both report the completed handshake; routes are observable.
#[test]
fn noise_ik_when_both_online() {
    let (mut alice, mut ra) = agent(0x0A11_CE00);
    let (mut bob, mut rb) = agent(0x0B0B_0000);
    let bob_id = know(&mut alice, &bob, WORKER, true);
    let alice_id = know(&mut bob, &alice, WORKER, true);

    let route = alice.send(&bob_id, TASK, b"measure tank 3", T0, &mut ra).unwrap();
    assert_eq!((route.channel, route.reason), (Channel::NoiseIk, Reason::OnlineStaticKnown));
    // The message waits for the handshake: only the first handshake message is ready.
    assert_eq!(alice.queued(), 2);
    let (_, at_bob) = pump(&mut alice, &mut ra, &mut bob, &mut rb);
    assert_eq!(at_bob.len(), 1);
    let (r, payload) = &at_bob[0];
    assert_eq!((r.from, r.kind, r.channel), (alice_id, TASK, ChannelKind::NoiseTransport));
    assert_eq!(payload, b"measure tank 3");

    let route = bob.send(&alice_id, TASK, b"3.2 m", T0, &mut rb).unwrap();
    assert_eq!((route.channel, route.reason), (Channel::NoiseSession, Reason::SessionEstablished));
    let (at_alice, _) = pump(&mut alice, &mut ra, &mut bob, &mut rb);
    assert_eq!(at_alice.len(), 1);
    assert_eq!(at_alice[0].1, b"3.2 m");

    let ea = events(&mut alice);
    assert!(ea.contains(&Event::RouteChosen {
        peer: bob_id,
        route: securemesh::Route { channel: Channel::NoiseIk, reason: Reason::OnlineStaticKnown }
    }));
    assert!(ea.iter().any(|e| matches!(e, Event::HandshakeComplete { peer, pattern: ChannelKind::NoiseIk, .. } if *peer == bob_id)));
    assert!(ea.contains(&Event::Received { from: bob_id, kind: TASK, len: 5 }));
    let eb = events(&mut bob);
    assert!(eb.iter().any(|e| matches!(e, Event::HandshakeComplete { peer, .. } if *peer == alice_id)));
    assert_eq!(alice.counters().sent, 1);
    assert_eq!(bob.counters().received, 1);
    assert_eq!(bob.counters().denied, 0);
    let kinds: Vec<_> = alice.sessions().map(|s| s.kind).collect();
    assert_eq!(kinds, [SessionKind::Noise]);
    assert_eq!(alice.poll_timeout(), None);
}

/// Alice knows Bob by id only: XX; the handshake teaches her his
/// identity, checked against the id, so the next session can be IK.
#[test]
fn noise_xx_learns_the_identity() {
    let (mut alice, mut ra) = agent(0x0A11_CE01);
    let (mut bob, mut rb) = agent(0x0B0B_0101);
    let bob_id = bob.peer_id();
    alice.add_peer(bob_id).unwrap();
    alice.policy_mut().grant(bob_id, Roles::of(&[WORKER])).unwrap();
    alice.set_reachable(&bob_id, true).unwrap();
    let alice_id = know(&mut bob, &alice, WORKER, true);

    let route = alice.send(&bob_id, TASK, b"hello", T0, &mut ra).unwrap();
    assert_eq!((route.channel, route.reason), (Channel::NoiseXx, Reason::OnlineStaticUnknown));
    // A second message while the handshake runs waits too, in order.
    let route = alice.send(&bob_id, TASK, b"again", T0, &mut ra).unwrap();
    assert_eq!(route.reason, Reason::HandshakeInProgress);
    assert!(alice.poll_timeout().is_some());
    let (_, at_bob) = pump(&mut alice, &mut ra, &mut bob, &mut rb);
    let got: Vec<_> = at_bob.iter().map(|(r, p)| (r.from, p.clone())).collect();
    assert_eq!(got, [(alice_id, b"hello".to_vec()), (alice_id, b"again".to_vec())]);
    assert_eq!(alice.directory().get(&bob_id).unwrap().identity(), Some(bob.public_identity()));
    assert_eq!(alice.poll_timeout(), None);
}

/// Bob is offline: Alice's messages go through a ratchet session from his
/// bundle into a mailbox and wait there. Bob comes online, reads them, and
/// replies (Alice offline to him: ratchet again). When Alice sees Bob
/// online, the conversation moves to Noise.
#[test]
fn ratchet_through_a_mailbox_then_upgrade_to_noise() {
    let (mut alice, mut ra) = agent(0x0A11_CE02);
    let (mut bob, mut rb) = agent(0x0B0B_0202);
    let mut bundle = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
    let n = bob.bundle(&mut bundle).unwrap();
    let bob_id = alice.set_peer_bundle(&bundle[..n]).unwrap();
    assert_eq!(bob_id, bob.peer_id());
    alice.policy_mut().grant(bob_id, Roles::of(&[WORKER])).unwrap();
    let alice_id = know(&mut bob, &alice, WORKER, false);

    // Bob offline: two messages into his mailbox.
    let r1 = alice.send(&bob_id, TASK, b"run task 42", T0, &mut ra).unwrap();
    assert_eq!((r1.channel, r1.reason), (Channel::RatchetX3dh, Reason::OfflineBundle));
    let r2 = alice.send(&bob_id, TASK, b"and task 43", T0, &mut ra).unwrap();
    assert_eq!((r2.channel, r2.reason), (Channel::RatchetSession, Reason::OfflineSession));
    // The bundle's one-time prekey is spent: the bundle is forgotten.
    assert!(alice.directory().get(&bob_id).unwrap().bundle().is_none());
    let mailbox = transmits(&mut alice);
    assert_eq!(mailbox.len(), 2);
    assert!(mailbox.iter().all(|(to, d, _)| *to == bob_id && *d == Delivery::Mailbox));
    assert_eq!(Envelope::parse(&mailbox[0].2).unwrap().channel, ChannelKind::RatchetInitial);

    // Bob comes online and reads his mailbox.
    let got = feed(&mut bob, &mailbox, &mut rb);
    let got: Vec<_> = got.iter().map(|(r, p)| (r.from, r.channel, p.clone())).collect();
    assert_eq!(
        got,
        [
            (alice_id, ChannelKind::RatchetInitial, b"run task 42".to_vec()),
            (alice_id, ChannelKind::RatchetInitial, b"and task 43".to_vec()),
        ]
    );

    // Bob answers; to him Alice is offline: the ratchet session, mailbox.
    let r = bob.send(&alice_id, TASK, b"42 done", T0, &mut rb).unwrap();
    assert_eq!((r.channel, r.reason), (Channel::RatchetSession, Reason::OfflineSession));
    let reply = transmits(&mut bob);
    assert_eq!(reply[0].1, Delivery::Mailbox);
    assert_eq!(Envelope::parse(&reply[0].2).unwrap().channel, ChannelKind::RatchetMessage);
    let got = feed(&mut alice, &reply, &mut ra);
    assert_eq!(got[0].1, b"42 done");

    // Both online now: the next message upgrades to Noise IK.
    alice.set_reachable(&bob_id, true).unwrap();
    bob.set_reachable(&alice_id, true).unwrap();
    let r = alice.send(&bob_id, TASK, b"live now", T0, &mut ra).unwrap();
    assert_eq!((r.channel, r.reason), (Channel::NoiseIk, Reason::OnlineUpgrade));
    let (_, at_bob) = pump(&mut alice, &mut ra, &mut bob, &mut rb);
    assert_eq!(at_bob[0].0.channel, ChannelKind::NoiseTransport);
    assert_eq!(at_bob[0].1, b"live now");
    let mut kinds: Vec<_> = alice.sessions().map(|s| s.kind).collect();
    kinds.sort_by_key(|k| *k as u8);
    assert_eq!(kinds, [SessionKind::Noise, SessionKind::Ratchet]);
}

/// A peer whose roles do not permit the kind is refused: nothing
/// delivered, the buffer holds no plaintext, counted, `Denied`. A peer
/// unknown to the policy cannot even open a session.
#[test]
fn a_peer_without_the_role_is_refused() {
    let (mut bob, mut rb) = agent(0x0B0B_0303);
    let (mut carol, mut rc) = agent(0x0CA7_0303);
    let (mut dave, mut rd) = agent(0x0DAE_0303);
    let carol_id = know(&mut bob, &carol, SENSOR, true);
    let bob_id = know(&mut carol, &bob, WORKER, true);
    know(&mut dave, &bob, WORKER, true);

    // Carol may send telemetry, not tasks.
    carol.send(&bob_id, TELEMETRY, b"21.5 C", T0, &mut rc).unwrap();
    carol.send(&bob_id, TASK, b"open valve", T0, &mut rc).unwrap();
    let mut delivered = Vec::new();
    loop {
        let cb = transmits(&mut carol);
        let bc = transmits(&mut bob);
        if cb.is_empty() && bc.is_empty() {
            break;
        }
        for (_, _, bytes) in &cb {
            let mut out = [0u8; 2048];
            let r = bob.handle_input(bytes, &mut out, T0, &mut rb).unwrap();
            if let Some(r) = r {
                delivered.push(out[..r.len].to_vec());
            } else {
                assert!(!out.windows(10).any(|w| w == b"open valve"), "plaintext left in out");
            }
        }
        feed(&mut carol, &bc, &mut rc);
    }
    assert_eq!(delivered, [b"21.5 C".to_vec()]);
    assert_eq!(bob.counters().denied, 1);
    assert_eq!(bob.counters().received, 1);
    let eb = events(&mut bob);
    assert!(eb.contains(&Event::Denied { from: carol_id, reason: DenyReason::NotPermitted { kind: TASK } }));
    assert!(!eb.iter().any(|e| matches!(e, Event::Received { kind, .. } if *kind == TASK)));

    // Dave is in neither Bob's directory nor his policy: default deny.
    let dave_id = dave.peer_id();
    dave.send(&bob_id, TASK, b"hi", T0, &mut rd).unwrap();
    let first = transmits(&mut dave);
    let mut out = [0u8; 2048];
    assert_eq!(bob.handle_input(&first[0].2, &mut out, T0, &mut rb).unwrap(), None);
    assert_eq!(bob.counters().denied, 2);
    assert!(events(&mut bob).contains(&Event::Denied { from: dave_id, reason: DenyReason::UnknownPeer }));
    assert!(!bob.sessions().any(|s| s.peer == dave_id));
    assert_eq!(bob.queued(), 0);
}

/// Mallory, with her own static key, opens an IK handshake to Bob
/// claiming to be Alice: with Alice's public identity as payload (the
/// static key is not its X25519 key) or with her own (it does not hash to
/// Alice's id). Bob refuses both: `AuthFailed`, no session, nothing sent.
#[test]
fn a_static_key_that_does_not_match_the_identity_is_refused() {
    let (alice, _) = agent(0x0A11_CE04);
    let (mut bob, mut rb) = agent(0x0B0B_0404);
    let (mallory_agent, _) = agent(0x3A11_0404);
    let mut rm = TestRng::new(0x3A11_0505);
    let alice_id = know(&mut bob, &alice, WORKER, true);
    let bob_id = bob.peer_id();
    let mallory_static = Keypair::generate(&mut rm);

    let cases = [
        (alice.public_identity().to_bytes(), AuthFailure::StaticKeyMismatch),
        (mallory_agent.public_identity().to_bytes(), AuthFailure::IdentityMismatch),
    ];
    for (i, (claimed_identity, reason)) in cases.into_iter().enumerate() {
        let session = securemesh::SessionId(77 + i as u64);
        let prologue = handshake_prologue(ChannelKind::NoiseIk, &alice_id, &bob_id, session);
        let mut hs = Builder::new(&NOISE_IK)
            .prologue(&prologue)
            .local_static(mallory_static.duplicate())
            .remote_static(*bob.public_identity().dh_public())
            .build_initiator()
            .unwrap();
        let mut body = [0u8; 512];
        let n = hs.write_message(&claimed_identity, &mut body, &mut rm).unwrap();
        let env = Envelope { channel: ChannelKind::NoiseIk, sender: alice_id, session, body: &body[..n] };
        let mut wire = [0u8; 600];
        let len = env.encode(&mut wire).unwrap();
        let mut out = [0u8; 64];
        assert_eq!(bob.handle_input(&wire[..len], &mut out, T0, &mut rb).unwrap(), None);
        assert_eq!(events(&mut bob), [Event::AuthFailed { peer: alice_id, reason }]);
    }
    assert_eq!(bob.counters().auth_failed, 2);
    assert_eq!(bob.sessions().count(), 0);
    assert_eq!(bob.queued(), 0);
}

/// Alice dials Bob by id (XX). Mallory answers as Bob with her own static
/// key and Bob's public identity: Alice refuses the handshake, and the
/// message that waited for it is dropped, never sent.
#[test]
fn an_xx_responder_with_the_wrong_static_key_is_refused() {
    let (mut alice, mut ra) = agent(0x0A11_CE05);
    let (bob, _) = agent(0x0B0B_0505);
    let mut rm = TestRng::new(0x3A11_0606);
    let bob_id = bob.peer_id();
    let alice_id = alice.peer_id();
    alice.add_peer(bob_id).unwrap();
    alice.policy_mut().grant(bob_id, Roles::of(&[WORKER])).unwrap();
    alice.set_reachable(&bob_id, true).unwrap();
    alice.send(&bob_id, TASK, b"secret task", T0, &mut ra).unwrap();
    let first = transmits(&mut alice);
    assert_eq!(first.len(), 1);
    let msg1 = Envelope::parse(&first[0].2).unwrap();
    assert_eq!(msg1.channel, ChannelKind::NoiseXx);

    let prologue = handshake_prologue(ChannelKind::NoiseXx, &alice_id, &bob_id, msg1.session);
    let mut hs = Builder::new(&NOISE_XX)
        .prologue(&prologue)
        .local_static(Keypair::generate(&mut rm))
        .build_responder()
        .unwrap();
    let mut scratch = [0u8; 512];
    hs.read_message(msg1.body, &mut scratch).unwrap();
    let mut body = [0u8; 512];
    let n = hs.write_message(&bob.public_identity().to_bytes(), &mut body, &mut rm).unwrap();
    let env =
        Envelope { channel: ChannelKind::NoiseXx, sender: bob_id, session: msg1.session, body: &body[..n] };
    let mut wire = [0u8; 600];
    let len = env.encode(&mut wire).unwrap();
    let mut out = [0u8; 64];
    assert_eq!(alice.handle_input(&wire[..len], &mut out, T0, &mut ra).unwrap(), None);
    let ea = events(&mut alice);
    assert_eq!(ea.last(), Some(&Event::AuthFailed { peer: bob_id, reason: AuthFailure::StaticKeyMismatch }));
    assert_eq!(alice.counters().auth_failed, 1);
    assert_eq!(alice.sessions().count(), 0);
    assert_eq!(alice.queued(), 0, "the waiting message is dropped, never sent");
    assert!(alice.directory().get(&bob_id).unwrap().identity().is_none());
}

/// Every single-byte change of an envelope of an established session
/// (Noise transport and ratchet message, header and body) is an error and
/// changes nothing: no event, no counter, and the genuine envelope is
/// still delivered afterwards.
#[test]
fn a_tampered_envelope_is_an_error_and_changes_nothing() {
    let (mut alice, mut ra) = agent(0x0A11_CE06);
    let (mut bob, mut rb) = agent(0x0B0B_0606);
    let bob_id = know(&mut alice, &bob, WORKER, true);
    let alice_id = know(&mut bob, &alice, WORKER, false);
    // A Noise session, opened by Alice.
    alice.send(&bob_id, TASK, b"first", T0, &mut ra).unwrap();
    pump(&mut alice, &mut ra, &mut bob, &mut rb);
    // A ratchet session, opened by Bob from Alice's bundle (she is offline
    // to him) and answered by Alice (he is offline to her), so that Bob's
    // next ratchet message is a plain Double Ratchet message.
    let mut bundle = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
    let n = alice.bundle(&mut bundle).unwrap();
    bob.set_peer_bundle(&bundle[..n]).unwrap();
    bob.send(&alice_id, TASK, b"via mailbox", T0, &mut rb).unwrap();
    let initial = transmits(&mut bob);
    feed(&mut alice, &initial, &mut ra);
    alice.set_reachable(&bob_id, false).unwrap();
    alice.send(&bob_id, TASK, b"ack", T0, &mut ra).unwrap();
    let ack = transmits(&mut alice);
    assert_eq!(ack[0].1, Delivery::Mailbox);
    feed(&mut bob, &ack, &mut rb);
    bob.send(&alice_id, TASK, b"ratchet msg", T0, &mut rb).unwrap();
    let ratchet_msg = transmits(&mut bob).remove(0).2;
    // And one over Noise, once Alice is online to Bob.
    bob.set_reachable(&alice_id, true).unwrap();
    bob.send(&alice_id, TASK, b"noise msg", T0, &mut rb).unwrap();
    let noise_msg = transmits(&mut bob).remove(0).2;
    assert_eq!(Envelope::parse(&noise_msg).unwrap().channel, ChannelKind::NoiseTransport);
    assert_eq!(Envelope::parse(&ratchet_msg).unwrap().channel, ChannelKind::RatchetMessage);
    events(&mut alice);

    let before = (alice.counters(), alice.sessions().collect::<Vec<_>>(), alice.queued());
    for genuine in [&noise_msg, &ratchet_msg] {
        for i in 0..genuine.len() {
            for flip in [0x01u8, 0x80] {
                let mut bad = genuine.clone();
                bad[i] ^= flip;
                let mut out = [0u8; 2048];
                let r = alice.handle_input(&bad, &mut out, T0, &mut ra);
                assert!(r.is_err(), "byte {i} ^ {flip:#x} accepted: {r:?}");
                assert!(out.iter().all(|&b| b == 0), "plaintext left after byte {i}");
            }
        }
        let mut out = [0u8; 2048];
        assert!(matches!(
            alice.handle_input(&genuine[..genuine.len() - 1], &mut out, T0, &mut ra),
            Err(Error::Envelope(_))
        ));
        let mut long = genuine.clone();
        long.push(0);
        assert!(matches!(alice.handle_input(&long, &mut out, T0, &mut ra), Err(Error::Envelope(_))));
        assert!(events(&mut alice).is_empty());
        assert_eq!(before, (alice.counters(), alice.sessions().collect::<Vec<_>>(), alice.queued()));
    }
    // The genuine envelopes still open: nothing moved.
    let got = feed(
        &mut alice,
        &[(alice_id, Delivery::Direct, noise_msg), (alice_id, Delivery::Mailbox, ratchet_msg)],
        &mut ra,
    );
    let got: Vec<_> = got.into_iter().map(|(_, p)| p).collect();
    assert_eq!(got, [b"noise msg".to_vec(), b"ratchet msg".to_vec()]);
}

/// A handshake the peer never answers is dropped at its deadline, with
/// the message that waited for it.
#[test]
fn an_unanswered_handshake_times_out() {
    let (mut alice, mut ra) = agent(0x0A11_CE07);
    let (bob, _) = agent(0x0B0B_0707);
    let bob_id = know(&mut alice, &bob, WORKER, true);
    alice.send(&bob_id, TASK, b"anyone?", T0, &mut ra).unwrap();
    transmits(&mut alice);
    let deadline = alice.poll_timeout().unwrap();
    assert_eq!(deadline, Instant(T0.0 + 10_000));
    alice.handle_timeout(Instant(deadline.0 - 1), &mut ra);
    assert_eq!(alice.sessions().count(), 1);
    alice.handle_timeout(deadline, &mut ra);
    assert_eq!(alice.sessions().count(), 0);
    assert_eq!(alice.queued(), 0);
    let ea = events(&mut alice);
    assert!(matches!(
        ea.last(),
        Some(Event::HandshakeFailed { peer, reason: securemesh::HandshakeFailure::TimedOut, dropped: 1, .. }) if *peer == bob_id
    ));
    assert_eq!(alice.poll_timeout(), None);
}

/// The agent's footprint with the default capacities (printed for the
/// record; a ceiling so growth is a decision). One MLS group slot
/// (`securemesh::group::GROUP_SLOT_BYTES`, 56 KB) is most of it since the
/// groups slice; an agent without groups (`GROUPS = 0`) pays nothing.
#[test]
fn default_agent_size() {
    let size = core::mem::size_of::<DefaultAgent>();
    println!("size_of::<DefaultAgent>() = {size}, group slot = {}", securemesh::group::GROUP_SLOT_BYTES);
    assert!(size <= common::DEFAULT_AGENT_CEILING, "{size}");
    const {
        assert!(
            securemesh::group::GROUP_SLOT_BYTES
                <= if common::XWING_KEY_ROOM { 120 * 1024 } else { 56 * 1024 }
        )
    };
}

/// Bob restarts six times (same identity, state lost) and opens a new
/// Noise session each time. Alice's table of four never fills: a session
/// superseded by a newer one with the same peer gives its slot up, and
/// her replies go over the newest session, the one Bob knows.
#[test]
fn a_restarted_peer_supersedes_its_old_sessions() {
    let (mut alice, mut ra) = agent(0x0A11_CE08);
    let mut seed_rng = TestRng::new(0x0B0B_0808);
    let bob_identity = Identity::generate(&mut seed_rng);
    let (seed, dh) = (bob_identity.signing_seed(), bob_identity.dh_secret());
    for round in 0..6u64 {
        let mut rb = TestRng::new(0x0B0B_1000 + round * 0x0101_0000);
        let identity = Identity::from_secrets(seed.duplicate(), dh.duplicate());
        let mut bob = Box::new(DefaultAgent::new(identity, securemesh::Config::default(), &mut rb, WALL));
        bob.policy_mut().define_role(WORKER, Permissions::of(&[TASK])).unwrap();
        let alice_id = know(&mut bob, &alice, WORKER, true);
        if round == 0 {
            know(&mut alice, &bob, WORKER, true);
        }
        let bob_id = bob.peer_id();
        let hello = format!("hello {round}");
        let r = bob.send(&alice_id, TASK, hello.as_bytes(), T0, &mut rb).unwrap();
        assert_eq!(r.channel, Channel::NoiseIk);
        let (at_alice, _) = pump(&mut alice, &mut ra, &mut bob, &mut rb);
        assert_eq!(at_alice[0].1, hello.as_bytes());
        let reply = format!("reply {round}");
        let r = alice.send(&bob_id, TASK, reply.as_bytes(), T0, &mut ra).unwrap();
        assert_eq!(r.channel, Channel::NoiseSession);
        let (_, at_bob) = pump(&mut alice, &mut ra, &mut bob, &mut rb);
        assert_eq!(at_bob[0].1, reply.as_bytes(), "round {round}");
        assert!(alice.sessions().count() <= 4);
    }
    assert_eq!(alice.sessions().count(), 4);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// Envelopes with a valid header and any body, from a known or an
    /// unknown sender, on any channel, never panic and never deliver.
    #[test]
    fn arbitrary_envelopes_never_panic_nor_deliver(
        tag in 1u8..=8,
        known_sender in proptest::bool::ANY,
        session in proptest::num::u64::ANY,
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
        first in proptest::num::u8::ANY,
    ) {
        let (mut bob, mut rb) = agent(0x0B0B_0909);
        let (alice, _) = agent(0x0A11_CE09);
        let alice_id = know(&mut bob, &alice, WORKER, true);
        let sender = if known_sender { alice_id } else { PeerId([first; 32]) };
        let mut body = body;
        if let Some(b) = body.first_mut() {
            // Often a plausible ratchet type byte.
            *b = [first, 0x02, 0x03, 0x04][usize::from(first % 4)];
        }
        let env = Envelope { channel: ChannelKind::from_tag(tag).unwrap(), sender, session: securemesh::SessionId(session), body: &body };
        let mut wire = vec![0u8; env.encoded_len()];
        env.encode(&mut wire).unwrap();
        let mut out = [0u8; 1024];
        let r = bob.handle_input(&wire, &mut out, T0, &mut rb);
        proptest::prop_assert!(!matches!(r, Ok(Some(_))));
        proptest::prop_assert_eq!(bob.counters().received, 0);
    }
}

/// Simultaneous X3DH ("glare", mesh-bugs BUG 1): Alice and Bob, offline to
/// each other, each start a ratchet session from the other's bundle
/// before either initial message arrives. A session the peer sends on is
/// promoted to the one we send on, so after one exchange both directions
/// use one session and every reply steps its DH ratchet.
#[test]
fn simultaneous_x3dh_converges_on_one_session() {
    let (mut alice, mut ra) = agent(0x0A11_CE09);
    let (mut bob, mut rb) = agent(0x0B0B_0909);
    let mut bundle = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
    let n = bob.bundle(&mut bundle).unwrap();
    let bob_id = alice.set_peer_bundle(&bundle[..n]).unwrap();
    let n = alice.bundle(&mut bundle).unwrap();
    let alice_id = bob.set_peer_bundle(&bundle[..n]).unwrap();
    alice.policy_mut().grant(bob_id, Roles::of(&[WORKER])).unwrap();
    bob.policy_mut().grant(alice_id, Roles::of(&[WORKER])).unwrap();

    alice.send(&bob_id, TASK, b"a0", T0, &mut ra).unwrap();
    bob.send(&alice_id, TASK, b"b0", T0, &mut rb).unwrap();
    let (a0, b0) = (transmits(&mut alice), transmits(&mut bob));
    assert_eq!(feed(&mut bob, &a0, &mut rb).len(), 1);
    assert_eq!(feed(&mut alice, &b0, &mut ra).len(), 1);
    assert_eq!((alice.sessions().count(), bob.sessions().count()), (2, 2));

    let session = |e: &[(PeerId, Delivery, Vec<u8>)]| Envelope::parse(&e[0].2).unwrap().session;
    let steps = |a: &DefaultAgent, b: &DefaultAgent| a.metrics().ratchet_steps + b.metrics().ratchet_steps;
    let mut used = Vec::new();
    let before = steps(&alice, &bob);
    for round in 0..4 {
        alice.send(&bob_id, TASK, format!("a{round}").as_bytes(), T0, &mut ra).unwrap();
        let m = transmits(&mut alice);
        used.push(session(&m));
        assert_eq!(feed(&mut bob, &m, &mut rb).len(), 1);
        bob.send(&alice_id, TASK, format!("b{round}").as_bytes(), T0, &mut rb).unwrap();
        let m = transmits(&mut bob);
        used.push(session(&m));
        assert_eq!(feed(&mut alice, &m, &mut ra).len(), 1);
    }
    // From Bob's first reply on, one session carries both directions.
    assert!(used[1..].iter().all(|s| *s == used[1]), "{used:?}");
    // Each of the seven replies on it stepped a DH ratchet.
    assert!(steps(&alice, &bob) - before >= 7, "{}", steps(&alice, &bob) - before);

    // Heartbeats (mesh-bugs BUG 4) keep only that session stepping, and a
    // heartbeat never moves the conversation: the next messages stay on it.
    let later = Instant(T0.0 + securemesh_ratchet::SessionConfig::default().heartbeat_ms * 3);
    alice.handle_timeout(later, &mut ra);
    bob.handle_timeout(later, &mut rb);
    let (ha, hb) = (transmits(&mut alice), transmits(&mut bob));
    assert!(!ha.is_empty() || !hb.is_empty(), "a heartbeat is due");
    for h in ha.iter().chain(&hb) {
        assert_eq!(Envelope::parse(&h.2).unwrap().session, used[1], "heartbeat on the other session");
    }
    assert!(feed(&mut bob, &ha, &mut rb).is_empty());
    assert!(feed(&mut alice, &hb, &mut ra).is_empty());
    alice.send(&bob_id, TASK, b"after heartbeats", later, &mut ra).unwrap();
    let m = transmits(&mut alice);
    assert_eq!(session(&m), used[1]);
    bob.send(&alice_id, TASK, b"reply", later, &mut rb).unwrap();
    let m = transmits(&mut bob);
    assert_eq!(session(&m), used[1]);
}

/// A half-open IK session (mesh-bugs BUG 2): Alice's handshake times out
/// before Bob's message 2 reaches her. Bob's transport is unconfirmed: his
/// message is held, not lost on the wire; at its deadline the transport is
/// dropped with the held message (`HandshakeFailed`), and Bob's next
/// message opens a handshake of his own that works. A transport confirmed
/// by Alice's first message releases what Bob held.
#[test]
fn an_unconfirmed_ik_responder_holds_and_then_gives_up() {
    let (mut alice, mut ra) = agent(0x0A11_CE0A);
    let (mut bob, mut rb) = agent(0x0B0B_0A0A);
    let bob_id = know(&mut alice, &bob, WORKER, true);
    let alice_id = know(&mut bob, &alice, WORKER, true);
    let timeout = Config::default().handshake_timeout_ms;

    alice.send(&bob_id, TASK, b"lost with the handshake", T0, &mut ra).unwrap();
    let msg1 = transmits(&mut alice);
    assert_eq!(msg1.len(), 1);
    assert!(feed(&mut bob, &msg1, &mut rb).is_empty());
    let msg2 = transmits(&mut bob);
    // Alice gives up before message 2 arrives; it is then refused.
    let late = Instant(T0.0 + timeout);
    alice.handle_timeout(late, &mut ra);
    assert_eq!(alice.sessions().count(), 0);
    let mut out = [0u8; 2048];
    assert!(alice.handle_input(&msg2[0].2, &mut out, late, &mut ra).is_err());
    assert_eq!(alice.sessions().count(), 0);

    // Bob's message waits for confirmation instead of going to a dead session.
    events(&mut bob);
    bob.send(&alice_id, TASK, b"held", T0, &mut rb).unwrap();
    assert!(transmits(&mut bob).is_empty());
    assert_eq!(bob.queued(), 1);
    assert_eq!(bob.poll_timeout(), Some(Instant(T0.0 + timeout)));
    bob.handle_timeout(Instant(T0.0 + timeout), &mut rb);
    assert_eq!((bob.sessions().count(), bob.queued()), (0, 0));
    assert!(events(&mut bob).iter().any(|e| matches!(
        e,
        Event::HandshakeFailed { peer, reason: securemesh::HandshakeFailure::TimedOut, dropped: 1, .. } if *peer == alice_id
    )));

    // Bob's next message opens his own handshake, and arrives.
    let r = bob.send(&alice_id, TASK, b"again", late, &mut rb).unwrap();
    assert_eq!(r.channel, Channel::NoiseIk);
    let (_, at_alice) = pump(&mut bob, &mut rb, &mut alice, &mut ra);
    assert_eq!(at_alice.iter().map(|(_, p)| p.as_slice()).collect::<Vec<_>>(), [&b"again"[..]]);

    // Confirmation releases what was held: Alice (now the IK responder's
    // peer) answers on Bob's session; Alice is confirmed at once, and
    // Bob's held messages go out when Alice's first message arrives.
    let (mut carol, mut rc) = agent(0x0C0C_0A0A);
    let carol_id = know(&mut bob, &carol, WORKER, true);
    know(&mut carol, &bob, WORKER, true);
    carol.send(&bob_id, TASK, b"hello bob", T0, &mut rc).unwrap();
    let c1 = transmits(&mut carol);
    assert!(feed(&mut bob, &c1, &mut rb).is_empty());
    let b2 = transmits(&mut bob);
    bob.send(&carol_id, TASK, b"0.5-RTT, held", T0, &mut rb).unwrap();
    assert!(transmits(&mut bob).is_empty());
    assert!(feed(&mut carol, &b2, &mut rc).is_empty());
    let c2 = transmits(&mut carol); // Carol's message that waited for the handshake
    assert_eq!(feed(&mut bob, &c2, &mut rb).len(), 1);
    let released = transmits(&mut bob);
    assert_eq!(released.len(), 1);
    let got = feed(&mut carol, &released, &mut rc);
    assert_eq!(got[0].1, b"0.5-RTT, held");
}

/// Bob restarts (his Noise state is gone) and opens a new IK session with
/// Alice (mesh-bugs BUG 3). What Alice sends before Bob's first transport
/// message confirms it is held for the new session, not sent on the old
/// one Bob no longer has; and if Bob gives the new handshake up, Alice
/// drops it *and* the old one at its deadline, so her next message opens
/// a handshake that works.
#[test]
fn a_restarted_peer_gets_what_was_sent_in_the_handshake_window() {
    let (mut alice, mut ra) = agent(0x0A11_CE0B);
    let mut seed_rng = TestRng::new(0x0B0B_0B0B);
    let bob_identity = Identity::generate(&mut seed_rng);
    let (seed, dh) = (bob_identity.signing_seed(), bob_identity.dh_secret());
    let timeout = Config::default().handshake_timeout_ms;
    let incarnation = |n: u64| {
        let mut rb = TestRng::new(0x0B0B_2000 + n * 0x0101_0000);
        let identity = Identity::from_secrets(seed.duplicate(), dh.duplicate());
        let mut bob = Box::new(DefaultAgent::new(identity, Config::default(), &mut rb, WALL));
        bob.policy_mut().define_role(WORKER, Permissions::of(&[TASK])).unwrap();
        (bob, rb)
    };
    let (mut bob, mut rb) = incarnation(0);
    let alice_id = know(&mut bob, &alice, WORKER, true);
    let bob_id = know(&mut alice, &bob, WORKER, true);
    alice.send(&bob_id, TASK, b"first", T0, &mut ra).unwrap();
    bob.send(&alice_id, TASK, b"ack", T0, &mut rb).unwrap();
    pump(&mut alice, &mut ra, &mut bob, &mut rb);
    assert!(alice.sessions().all(|s| s.confirmed));

    // Bob restarts and says hello: Alice answers message 1 and, before
    // Bob's first transport message, sends him something.
    let (mut bob, mut rb) = incarnation(1);
    know(&mut bob, &alice, WORKER, true);
    bob.send(&alice_id, TASK, b"hello again", T0, &mut rb).unwrap();
    let m1 = transmits(&mut bob);
    assert!(feed(&mut alice, &m1, &mut ra).is_empty());
    assert!(alice.sessions().any(|s| !s.confirmed));
    alice.send(&bob_id, TASK, b"in the window", T0, &mut ra).unwrap();
    let m2 = transmits(&mut alice);
    assert_eq!(m2.len(), 1, "only message 2: the message is held");
    assert!(feed(&mut bob, &m2, &mut rb).is_empty());
    let (at_bob, at_alice) = pump(&mut bob, &mut rb, &mut alice, &mut ra);
    assert_eq!(at_alice.iter().map(|(_, p)| p.as_slice()).collect::<Vec<_>>(), [&b"hello again"[..]]);
    assert_eq!(at_bob.iter().map(|(_, p)| p.as_slice()).collect::<Vec<_>>(), [&b"in the window"[..]]);

    // Bob restarts again and gives his handshake up: Alice's held message
    // and both transports are dropped at the deadline; her next message
    // opens a new handshake that Bob's incarnation completes.
    let (mut bob, mut rb) = incarnation(2);
    know(&mut bob, &alice, WORKER, true);
    bob.send(&alice_id, TASK, b"lost", T0, &mut rb).unwrap();
    let m1 = transmits(&mut bob);
    bob.handle_timeout(Instant(T0.0 + timeout), &mut rb);
    assert!(feed(&mut alice, &m1, &mut ra).is_empty());
    let _late_m2 = transmits(&mut alice);
    alice.send(&bob_id, TASK, b"held, then dropped", T0, &mut ra).unwrap();
    assert!(transmits(&mut alice).is_empty());
    events(&mut alice);
    alice.handle_timeout(Instant(T0.0 + timeout), &mut ra);
    let dropped: usize = events(&mut alice)
        .iter()
        .map(|e| match e {
            Event::HandshakeFailed { dropped, .. } => *dropped,
            _ => 0,
        })
        .sum();
    assert_eq!(dropped, 1);
    assert_eq!(alice.sessions().filter(|s| s.kind == SessionKind::Noise).count(), 0);
    let r = alice.send(&bob_id, TASK, b"after", T0, &mut ra).unwrap();
    assert_eq!(r.channel, Channel::NoiseIk);
    let (_, at_bob) = pump(&mut alice, &mut ra, &mut bob, &mut rb);
    assert_eq!(at_bob.iter().map(|(_, p)| p.as_slice()).collect::<Vec<_>>(), [&b"after"[..]]);
}

//! Telemetry over the Noise datagram transport: its own handshake and
//! session, loss, reordering and replay, the policy, and the matrix's
//! refusal to put telemetry in a mailbox.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh::envelope::{Envelope, HEADER_LEN};
use securemesh::policy::DenyReason;
use securemesh::route::NoRoute;
use securemesh::{
    Channel, ChannelKind, DATAGRAM_SESSION, DefaultAgent, Delivery, Error, Event, MessageKind, PeerId,
    Reason, Role, Roles, SessionKind,
};
use securemesh_core::testing::TestRng;

mod common;
use common::{SENSOR, T0, TASK, TELEMETRY, WORKER, agent};

/// Two online agents that know each other's identities; Bob grants Alice
/// `role`.
fn pair(role: Role) -> (Box<DefaultAgent>, TestRng, Box<DefaultAgent>, TestRng) {
    let (mut alice, ra) = agent(0x7E1E_0001);
    let (mut bob, rb) = agent(0x7E1E_0B0B);
    let b = alice.add_peer_identity(bob.public_identity()).unwrap();
    alice.policy_mut().grant(b, Roles::of(&[WORKER])).unwrap();
    alice.set_reachable(&b, true).unwrap();
    let a = bob.add_peer_identity(alice.public_identity()).unwrap();
    bob.policy_mut().grant(a, Roles::of(&[role])).unwrap();
    bob.set_reachable(&a, true).unwrap();
    (alice, ra, bob, rb)
}

fn transmits(from: &mut DefaultAgent) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Some(t) = from.poll_transmit(&mut buf).unwrap() {
        assert_eq!(t.delivery, Delivery::Direct);
        out.push(buf[..t.len].to_vec());
    }
    out
}

/// Carry envelopes both ways until none is left; returns what Bob got.
fn pump(
    alice: &mut DefaultAgent,
    ra: &mut TestRng,
    bob: &mut DefaultAgent,
    rb: &mut TestRng,
) -> Vec<(ChannelKind, MessageKind, Vec<u8>)> {
    let mut got = Vec::new();
    loop {
        let (ab, ba) = (transmits(alice), transmits(bob));
        if ab.is_empty() && ba.is_empty() {
            return got;
        }
        let mut out = [0u8; 2048];
        for e in ab {
            if let Some(r) = bob.handle_input(&e, &mut out, T0, rb).unwrap() {
                got.push((r.channel, r.kind, out[..r.len].to_vec()));
            }
        }
        for e in ba {
            alice.handle_input(&e, &mut out, T0, ra).unwrap();
        }
    }
}

/// The first datagram opens an IK handshake of its own (its session id
/// marked as a datagram session) and waits for it; then datagrams go out
/// at once. Messages keep their stream session: the two never mix.
#[test]
fn telemetry_opens_its_own_datagram_session() {
    let (mut alice, mut ra, mut bob, mut rb) = pair(WORKER);
    let bob_id = bob.peer_id();
    let r = alice.send_telemetry(&bob_id, TELEMETRY, b"21.5 C", T0, &mut ra).unwrap();
    assert_eq!((r.channel, r.reason), (Channel::NoiseDatagram, Reason::LossTolerant));
    let hs = alice.sessions().next().unwrap();
    assert_eq!(hs.kind, SessionKind::NoiseHandshake);
    assert_ne!(hs.id.0 & DATAGRAM_SESSION, 0);
    // A second reading waits for the same handshake.
    alice.send_telemetry(&bob_id, TELEMETRY, b"21.6 C", T0, &mut ra).unwrap();
    let got = pump(&mut alice, &mut ra, &mut bob, &mut rb);
    assert_eq!(
        got,
        [
            (ChannelKind::NoiseDatagram, TELEMETRY, b"21.5 C".to_vec()),
            (ChannelKind::NoiseDatagram, TELEMETRY, b"21.6 C".to_vec())
        ]
    );
    for a in [&alice, &bob] {
        assert_eq!(a.sessions().map(|s| s.kind).collect::<Vec<_>>(), [SessionKind::NoiseDatagram]);
    }
    assert!(core::iter::from_fn(|| alice.poll_event()).any(|e| matches!(
        e,
        Event::RouteChosen { route, .. } if route.channel == Channel::NoiseDatagram
    )));

    // A message is not carried by the datagram session: a stream session
    // of its own (IK), beside it.
    let r = alice.send(&bob_id, TASK, b"open valve", T0, &mut ra).unwrap();
    assert_eq!(r.channel, Channel::NoiseIk);
    let got = pump(&mut alice, &mut ra, &mut bob, &mut rb);
    assert_eq!(got, [(ChannelKind::NoiseTransport, TASK, b"open valve".to_vec())]);
    let mut kinds: Vec<_> = alice.sessions().map(|s| s.kind).collect();
    kinds.sort_by_key(|k| *k as u8);
    assert_eq!(kinds, [SessionKind::Noise, SessionKind::NoiseDatagram]);

    // Established: the next datagram leaves at once, no handshake.
    alice.send_telemetry(&bob_id, TELEMETRY, b"21.7 C", T0, &mut ra).unwrap();
    let ab = transmits(&mut alice);
    assert_eq!(ab.len(), 1);
    assert_eq!(Envelope::parse(&ab[0]).unwrap().channel, ChannelKind::NoiseDatagram);
    let m = alice.metrics();
    assert_eq!(m.noise.sent, 4);
}

/// Lost and reordered datagrams are fine; a replayed or changed one is
/// refused and changes nothing.
#[test]
fn loss_reordering_replay_and_tampering() {
    let (mut alice, mut ra, mut bob, mut rb) = pair(WORKER);
    let bob_id = bob.peer_id();
    alice.send_telemetry(&bob_id, TELEMETRY, b"r0", T0, &mut ra).unwrap();
    assert_eq!(pump(&mut alice, &mut ra, &mut bob, &mut rb).len(), 1);
    for i in 1..=5 {
        alice.send_telemetry(&bob_id, TELEMETRY, format!("r{i}").as_bytes(), T0, &mut ra).unwrap();
    }
    let d = transmits(&mut alice);
    assert_eq!(d.len(), 5);
    let mut out = [0u8; 2048];
    let mut open = |bytes: &[u8], bob: &mut DefaultAgent, rb: &mut TestRng| {
        bob.handle_input(bytes, &mut out, T0, rb).map(|r| r.map(|r| out[..r.len].to_vec()))
    };
    // r5, r3, r1 arrive (r2 and r4 lost), out of order.
    for i in [4, 2, 0] {
        assert_eq!(open(&d[i], &mut bob, &mut rb).unwrap(), Some(format!("r{}", i + 1).into_bytes()));
    }
    // Replays and changed bytes are refused, with nothing delivered.
    let mut bad = vec![d[2].clone(), d[4].clone()];
    for at in [HEADER_LEN, HEADER_LEN + 7, HEADER_LEN + 9, d[1].len() - 1] {
        let mut b = d[1].clone();
        b[at] ^= 0x20;
        bad.push(b);
    }
    let received = bob.metrics().noise.received;
    while bob.poll_event().is_some() {}
    for b in &bad {
        assert!(open(b, &mut bob, &mut rb).is_err());
        assert!(bob.poll_event().is_none());
    }
    assert!(matches!(open(&d[0], &mut bob, &mut rb), Err(Error::Noise(securemesh_noise::Error::Replay))));
    assert_eq!(bob.metrics().noise.received, received);
    // The genuine r2 still opens (its counter was never accepted).
    assert_eq!(open(&d[1], &mut bob, &mut rb).unwrap(), Some(b"r2".to_vec()));
}

/// The policy applies to datagrams: a sensor may send telemetry, not
/// tasks; telemetry to a peer that is not reachable has no route.
#[test]
fn policy_and_offline_peers() {
    let (mut alice, mut ra, mut bob, mut rb) = pair(SENSOR);
    let (alice_id, bob_id) = (alice.peer_id(), bob.peer_id());
    alice.send_telemetry(&bob_id, TELEMETRY, b"ok", T0, &mut ra).unwrap();
    alice.send_telemetry(&bob_id, TASK, b"not allowed", T0, &mut ra).unwrap();
    let got = pump(&mut alice, &mut ra, &mut bob, &mut rb);
    assert_eq!(got, [(ChannelKind::NoiseDatagram, TELEMETRY, b"ok".to_vec())]);
    assert!(
        core::iter::from_fn(|| bob.poll_event())
            .any(|e| e == Event::Denied { from: alice_id, reason: DenyReason::NotPermitted { kind: TASK } })
    );
    assert_eq!(bob.metrics().noise.denied, 1);

    alice.set_reachable(&bob_id, false).unwrap();
    let queued = alice.queued();
    assert_eq!(
        alice.send_telemetry(&bob_id, TELEMETRY, b"x", T0, &mut ra),
        Err(Error::NoRoute(NoRoute::TelemetryNeedsOnline))
    );
    assert_eq!(alice.queued(), queued);
    let too_long = vec![0u8; DefaultAgent::MAX_DATAGRAM_PAYLOAD + 1];
    alice.set_reachable(&bob_id, true).unwrap();
    assert!(matches!(
        alice.send_telemetry(&bob_id, TELEMETRY, &too_long, T0, &mut ra),
        Err(Error::PayloadTooLong { .. })
    ));
}

/// A peer known by id only is reached with XX, which teaches its identity.
#[test]
fn telemetry_to_a_peer_known_by_id_uses_xx() {
    let (mut alice, mut ra) = agent(0x7E1E_0002);
    let (mut bob, mut rb) = agent(0x7E1E_0C0C);
    let bob_id: PeerId = bob.peer_id();
    alice.add_peer(bob_id).unwrap();
    alice.policy_mut().grant(bob_id, Roles::of(&[WORKER])).unwrap();
    alice.set_reachable(&bob_id, true).unwrap();
    let a = bob.add_peer_identity(alice.public_identity()).unwrap();
    bob.policy_mut().grant(a, Roles::of(&[SENSOR])).unwrap();
    bob.set_reachable(&a, true).unwrap();
    alice.send_telemetry(&bob_id, TELEMETRY, b"hello", T0, &mut ra).unwrap();
    let first = alice.sessions().next().unwrap();
    assert_eq!(first.kind, SessionKind::NoiseHandshake);
    let got = pump(&mut alice, &mut ra, &mut bob, &mut rb);
    assert_eq!(got, [(ChannelKind::NoiseDatagram, TELEMETRY, b"hello".to_vec())]);
    assert!(alice.directory().get(&bob_id).unwrap().identity().is_some());
}

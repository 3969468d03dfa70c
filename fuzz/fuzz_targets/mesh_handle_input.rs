//! Untrusted envelopes into `Agent::handle_input` (`mesh/src/agent.rs`).
//!
//! Input: `situation u8 | frames` (frames as in `noise::split_frames`:
//! `len u16 | bytes`, at most 24). The receiver is rebuilt for every run
//! from the sealed records of `securemesh_fuzz::mesh` (restore, plus the
//! genuine handshake message or the session record the situation needs):
//!
//! | byte % 6 | receiver | genuine frames |
//! | --- | --- | --- |
//! | 0 | Bob, no session (holds Alice's bundle: a ratchet message of hers on a session he does not hold re-establishes one) | IK `[m0, t0]`, XX `[m0, m2, t0]`, ratchet `[initial, r1, r2, r3]`, Carol's initial |
//! | 1 | Bob, Noise IK session with Alice | Alice's transports `[t0..t3]` |
//! | 2 | Bob, ratchet session with Alice (restored record) | `[r1, r2, r3]` |
//! | 3 | Alice, IK handshake under way | Bob's IK `m1` |
//! | 4 | Alice, XX handshake under way | Bob's XX `m1` |
//! | 5 | Bob, member of Alice's MLS group (restored records) | Alice's group messages `[g0..g3]` |
//!
//! Bit 7 of the first byte: the receiver's policy revokes the sender first.
//! Every frame goes to `handle_input`; then, as a host does, the pending
//! records are handed out and the transmits taken.
//!
//! Properties checked, for every frame:
//! - nothing panics;
//! - `Err`: nothing delivered (no `Received` event, `received` unchanged);
//!   `sent`, `denied`, `auth_failed` unchanged; for every channel but a
//!   Noise handshake the session table and all counters are unchanged and
//!   no record is marked for persistence (all-or-nothing); a failed
//!   handshake message may only drop sessions (the handshake) and count it
//!   in `handshakes_failed`;
//! - `Ok(Some(r))`: only from the one peer the receiver knows, never when
//!   the policy denies it (`policy().check(from, kind)` holds, and never in
//!   the revoked variant), over the frame's channel, counted and reported;
//! - `Ok(None)`: nothing delivered;
//! - situation 0: a ratchet message (not an initial one) claimed by
//!   Alice on a session Bob does not hold, while he holds no ratchet
//!   session with her, she is not revoked and his table has room,
//!   re-establishes a session (`Ok(None)`, `Event::ReestablishRequested`,
//!   one ratchet session).
//!
//! Exact models, while every frame is a `NoiseTransport` (situation 1),
//! `RatchetMessage` (situation 2) or `MlsMessage` (situation 5) envelope or
//! does not parse: a frame is delivered iff it is the next genuine
//! transport (in order), or a genuine ratchet or group message not yet
//! delivered (any order), and then with its
//! payload; afterwards every genuine message not yet delivered still
//! delivers (in order). An input that is exactly a genuine sequence
//! delivers exactly its payloads (none with bit 7 set, and then at least
//! one refusal is counted).
#![no_main]

use libfuzzer_sys::fuzz_target;
use securemesh::envelope::Envelope;
use securemesh::{ChannelKind, Event, SessionInfo, SessionKind};
use securemesh_fuzz::mesh::{
    self, BOB_FRESH, BOB_GROUP, BOB_NOISE, BOB_RATCHET, DENY, SITUATIONS, T0, drain_persist, drain_transmits,
    events, fixture,
};
use securemesh_fuzz::noise::split_frames;
use securemesh_ratchet::MSG_INITIAL;

fuzz_target!(|data: &[u8]| {
    let Some((&s, rest)) = data.split_first() else { return };
    let fx = fixture();
    let (mut a, mut rng, peer) = mesh::situation(fx, s);
    let deny = s & DENY != 0;
    let sit = (s & !DENY) % SITUATIONS;
    let frames = split_frames(rest);
    let mut out = vec![0u8; 70_000];
    let mut delivered: Vec<Vec<u8>> = Vec::new();

    // Exact models (situations 1 and 2).
    let (genuine, payloads) = match sit {
        BOB_NOISE => (fx.ik.transports.clone(), mesh::PAYLOADS.to_vec()),
        BOB_RATCHET => (fx.ratchet[1..].to_vec(), mesh::PAYLOADS[1..].to_vec()),
        BOB_GROUP => (fx.group.clone(), mesh::PAYLOADS.to_vec()),
        _ => (Vec::new(), Vec::new()),
    };
    let model_channel = match sit {
        BOB_NOISE => ChannelKind::NoiseTransport,
        BOB_GROUP => ChannelKind::MlsMessage,
        _ => ChannelKind::RatchetMessage,
    };
    let mut exact = !genuine.is_empty() && !deny;
    let mut accepted = vec![false; genuine.len()];

    for frame in &frames {
        let parsed = Envelope::parse(frame).ok();
        if parsed.is_some_and(|e| e.channel != model_channel) {
            exact = false;
        }
        let sessions: Vec<SessionInfo> = a.sessions().collect();
        let before = a.counters();
        let result = a.handle_input(frame, &mut out, T0, &mut rng);
        let result_none = matches!(result, Ok(None));
        let evs = events(&mut a);
        let after = a.counters();
        let got_event = evs.iter().any(|e| matches!(e, Event::Received { .. }));
        let mut got = None;
        match result {
            Err(e) => {
                assert!(!got_event, "Received event with {e:?}");
                assert_eq!(
                    (after.received, after.sent, after.denied, after.auth_failed),
                    (before.received, before.sent, before.denied, before.auth_failed),
                    "counters changed by a refused envelope ({e:?})"
                );
                let handshake =
                    parsed.is_some_and(|p| matches!(p.channel, ChannelKind::NoiseIk | ChannelKind::NoiseXx));
                let now: Vec<SessionInfo> = a.sessions().collect();
                if handshake {
                    assert!(
                        now.iter().all(|x| sessions.contains(x)),
                        "a failed handshake message added a session"
                    );
                    assert!(after.handshakes_failed <= before.handshakes_failed + 1);
                } else {
                    assert_eq!(now, sessions, "sessions changed by a refused envelope ({e:?})");
                    assert_eq!(after, before, "counters changed by a refused envelope ({e:?})");
                    assert!(!a.persist_pending(), "a refused envelope marked a record ({e:?})");
                    assert!(evs.is_empty(), "events from a refused envelope ({e:?}): {evs:?}");
                }
            }
            Ok(Some(r)) => {
                assert!(!deny, "delivered from a revoked peer: {r:?}");
                assert_eq!(r.from, peer, "delivered from an unexpected peer");
                assert!(a.policy().check(&r.from, r.kind).is_ok(), "delivered a denied kind");
                assert_eq!(Some(r.channel), parsed.map(|p| p.channel));
                assert_eq!(after.received, before.received + 1);
                assert!(evs.contains(&Event::Received { from: r.from, kind: r.kind, len: r.len }));
                got = Some(out[..r.len].to_vec());
            }
            Ok(None) => {
                assert!(!got_event, "Received event without a delivery");
                assert_eq!(after.received, before.received);
            }
        }
        if exact {
            let hit = genuine.iter().enumerate().position(|(i, g)| {
                g == frame
                    && !accepted[i]
                    && (sit == BOB_RATCHET || sit == BOB_GROUP || accepted[..i].iter().all(|x| *x))
            });
            match hit {
                Some(i) => {
                    assert_eq!(got.as_deref(), Some(payloads[i]), "genuine message {i} not delivered");
                    accepted[i] = true;
                }
                None => assert!(got.is_none(), "a non-genuine or replayed frame was delivered"),
            }
        }
        // Situation 0 (Bob holds Alice's bundle): a ratchet message (not an
        // initial one) claimed by Alice on a session Bob does not hold,
        // while he holds no ratchet session with her, she is not revoked
        // and his session table (4 slots, which forged XX openings may
        // fill) has room, re-establishes one: his state was lost, and he
        // cannot tell (the message cannot be decrypted, so its sender is
        // a claim; `Agent::handle_input` bounds what a forger gains).
        let ratchet_before = sessions.iter().filter(|x| x.kind == SessionKind::Ratchet).count();
        let lost = parsed.is_some_and(|p| {
            p.channel == ChannelKind::RatchetMessage
                && p.sender == fx.alice
                && p.body.first().is_some_and(|&t| t != MSG_INITIAL)
                && !sessions.iter().any(|x| x.peer == p.sender && x.id == p.session)
        });
        if sit == BOB_FRESH && !deny && ratchet_before == 0 && sessions.len() < 4 && lost {
            assert!(result_none, "Alice's message on a lost session did not re-establish");
            assert!(
                evs.iter().any(|e| matches!(e, Event::ReestablishRequested { peer: p, .. } if *p == peer)),
                "no ReestablishRequested: {evs:?}"
            );
            assert_eq!(a.sessions().filter(|x| x.kind == SessionKind::Ratchet).count(), 1);
        }
        if let Some(g) = got {
            delivered.push(g);
        }
        drain_persist(&mut a, &mut rng);
        drain_transmits(&mut a);
    }

    if exact {
        for (i, g) in genuine.iter().enumerate() {
            if accepted[i] {
                continue;
            }
            let r = a.handle_input(g, &mut out, T0, &mut rng);
            match r {
                Ok(Some(r)) => assert_eq!(&out[..r.len], payloads[i], "genuine {i}"),
                other => panic!("genuine message {i} no longer delivers: {other:?}"),
            }
            drain_persist(&mut a, &mut rng);
        }
    }

    // A genuine sequence, exactly.
    for (seq, want) in mesh::genuine(fx, s) {
        if frames.len() == seq.len() && frames.iter().zip(&seq).all(|(f, g)| *f == &g[..]) {
            if deny {
                assert!(delivered.is_empty());
                if !want.is_empty() {
                    assert!(a.counters().denied > 0, "a revoked peer's genuine messages were not refused");
                }
            } else {
                let want: Vec<Vec<u8>> = want.iter().map(|p| p.to_vec()).collect();
                assert_eq!(delivered, want, "a genuine sequence did not deliver its payloads");
            }
        }
    }
});

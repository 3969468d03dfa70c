//! Deterministic mesh agents for the `mesh_*` targets and their seeds.
//!
//! Two agents, Alice and Bob (`DefaultAgent`, identities and everything
//! else from `TestRng`), persist under [`fuzz_key`](crate::fuzz_key).
//! Their sealed agent records are made once per process; every run
//! rebuilds its agent from them with [`DefaultAgent::restore`] (plus
//! [`DefaultAgent::restore_record`] for a ratchet session) and, where the
//! situation needs a live Noise session, by feeding the genuine handshake
//! message with the fixed run RNG. Every run thus starts from exactly the
//! state the genuine envelopes (computed here the same way) were made for.
//!
//! The agents are driven as a host would: after every `handle_input` the
//! pending records are handed out (`poll_persist`), then the transmits.

use std::sync::OnceLock;

use securemesh::envelope::Envelope;
use securemesh::{Config, DefaultAgent, Event, MessageKind, PeerId, Permissions, RecordId, Role, Roles};
use securemesh_core::envelope::StorageKey;
use securemesh_core::testing::TestRng;
use securemesh_core::{Instant, UnixTime};
use securemesh_ratchet::Identity;

use crate::fuzz_key;

/// The one message kind the policy permits.
pub const TASK: MessageKind = MessageKind(1);
/// A kind no role permits.
pub const OTHER: MessageKind = MessageKind(9);
const WORKER: Role = Role(0);
/// The time of every call.
pub const T0: Instant = Instant(1_000);
const WALL: UnixTime = UnixTime(1_700_000_000);
/// Alice's identity seed (even: `TestRng` ignores the lowest bit).
const ALICE_SEED: u64 = 0x0A11_CE00;
/// Bob's identity seed.
const BOB_SEED: u64 = 0x0B0B_0000;
/// Carol's (a third agent Bob knows nothing of).
const CAROL_SEED: u64 = 0x0CA0_0000;
/// The RNG of Bob's runs.
pub const BOB_RUN: u64 = 0xB0B0_0100;
/// The RNG of Alice's runs.
pub const ALICE_RUN: u64 = 0xA11C_0100;
/// Payloads Alice sends, in order.
pub const PAYLOADS: [&[u8]; 4] = [b"measure tank 3", b"", b"open valve 7", b"report level"];

/// The storage key of every record.
pub fn key() -> StorageKey {
    fuzz_key()
}

/// A sealed record and its generation.
#[derive(Clone)]
pub struct Blob {
    /// Which record.
    pub id: RecordId,
    /// Its generation.
    pub generation: u64,
    /// The sealed bytes.
    pub bytes: Vec<u8>,
}

/// Hand out every pending record (the host's store).
pub fn drain_persist(a: &mut DefaultAgent, rng: &mut TestRng) -> Vec<Blob> {
    let mut buf = vec![0u8; DefaultAgent::MAX_RECORD_LEN];
    let mut v = Vec::new();
    while let Ok(Some(r)) = a.poll_persist(&mut buf, rng) {
        v.push(Blob { id: r.id, generation: r.generation, bytes: buf[..r.len].to_vec() });
    }
    v
}

/// Every transmit ready (after the records).
pub fn drain_transmits(a: &mut DefaultAgent) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    let mut v = Vec::new();
    while let Ok(Some(t)) = a.poll_transmit(&mut buf) {
        v.push(buf[..t.len].to_vec());
    }
    v
}

/// All pending events.
pub fn events(a: &mut DefaultAgent) -> Vec<Event> {
    core::iter::from_fn(|| a.poll_event()).collect()
}

fn fresh(seed: u64) -> (Box<DefaultAgent>, TestRng) {
    let mut rng = TestRng::new(seed);
    let identity = Identity::generate(&mut rng);
    let mut a = Box::new(DefaultAgent::new(identity, Config::default(), &mut rng, WALL));
    a.policy_mut().define_role(WORKER, Permissions::of(&[TASK])).expect("role");
    (a, rng)
}

fn agent_record(a: &mut DefaultAgent, rng: &mut TestRng) -> Blob {
    a.enable_persistence(key());
    drain_persist(a, rng).into_iter().find(|b| b.id == RecordId::Agent).expect("agent record")
}

/// How Alice knows Bob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AliceView {
    /// His identity, online: Noise IK.
    Identity,
    /// His peer id only, online: Noise XX.
    IdOnly,
    /// His bundle, offline: the ratchet through his mailbox.
    Bundle,
}

/// The once-made records and genuine envelopes.
pub struct Fixture {
    /// Alice's and Bob's peer ids.
    pub alice: PeerId,
    /// Bob's.
    pub bob: PeerId,
    /// Alice's agent records, one per [`AliceView`] (in its order).
    pub alice_records: [Blob; 3],
    /// Bob's agent record (knows Alice's identity and bundle, grants her
    /// TASK).
    pub bob_record: Blob,
    /// Bob's records after the ratchet initial message: agent, slot 0.
    pub bob_ratchet: [Blob; 2],
    /// IK: Alice's message 0, Bob's message 1, Alice's transports (the
    /// first carries the message queued before the handshake).
    pub ik: Exchange,
    /// XX: Alice's 0, Bob's 1, Alice's 2, Alice's transports.
    pub xx: Exchange,
    /// Ratchet: Alice's initial message, then her ratchet messages.
    pub ratchet: Vec<Vec<u8>>,
    /// A ratchet initial message from Carol (unknown to Bob).
    pub carol_initial: Vec<u8>,
    /// Alice's application messages to her MLS group of Alice and Bob
    /// (payloads [`PAYLOADS`] in order).
    pub group: Vec<Vec<u8>>,
    /// Bob's records after joining that group from its Welcome (his
    /// KeyPackage record and group slot 0; his agent record is
    /// `bob_record`).
    pub bob_group: Vec<Blob>,
}

/// The envelopes of one Noise exchange.
pub struct Exchange {
    /// Handshake messages in order (Alice's at even, Bob's at odd indices).
    pub handshake: Vec<Vec<u8>>,
    /// Alice's transport messages (payloads [`PAYLOADS`] in order).
    pub transports: Vec<Vec<u8>>,
}

/// Restore Alice as she knows Bob in `view`.
fn alice_restored(fx: &Fixture, view: AliceView) -> (Box<DefaultAgent>, TestRng) {
    let rec = &fx.alice_records[view as usize];
    let mut scratch = vec![0u8; DefaultAgent::MAX_RECORD_LEN];
    let a = Box::new(
        DefaultAgent::restore(key(), Config::default(), &rec.bytes, rec.generation, &mut scratch)
            .expect("alice restores"),
    );
    (a, TestRng::new(ALICE_RUN))
}

/// Restore Alice as she knows Bob in `view`, and send the first payload
/// (so a Noise handshake is under way, or the ratchet message queued).
pub fn alice_sending(fx: &Fixture, view: AliceView) -> (Box<DefaultAgent>, TestRng) {
    let (mut a, mut rng) = alice_restored(fx, view);
    if view != AliceView::Bundle {
        a.set_reachable(&fx.bob, true).expect("reachable");
    }
    a.send(&fx.bob, TASK, PAYLOADS[0], T0, &mut rng).expect("send");
    drain_persist(&mut a, &mut rng);
    (a, rng)
}

/// Restore Bob from his first agent record (no session).
pub fn bob_fresh(fx: &Fixture) -> (Box<DefaultAgent>, TestRng) {
    let mut scratch = vec![0u8; DefaultAgent::MAX_RECORD_LEN];
    let r = &fx.bob_record;
    let b = Box::new(
        DefaultAgent::restore(key(), Config::default(), &r.bytes, r.generation, &mut scratch)
            .expect("bob restores"),
    );
    (b, TestRng::new(BOB_RUN))
}

/// Restore Bob with his ratchet session with Alice (after her initial message).
pub fn bob_with_ratchet(fx: &Fixture) -> (Box<DefaultAgent>, TestRng) {
    let mut scratch = vec![0u8; DefaultAgent::MAX_RECORD_LEN];
    let [a, s] = &fx.bob_ratchet;
    let mut b = Box::new(
        DefaultAgent::restore(key(), Config::default(), &a.bytes, a.generation, &mut scratch)
            .expect("bob restores"),
    );
    b.restore_record(&s.bytes, s.generation, &mut scratch).expect("session restores");
    (b, TestRng::new(BOB_RUN))
}

/// Restore Bob as a member of Alice's group (agent, KeyPackage and group
/// records).
pub fn bob_in_group(fx: &Fixture) -> (Box<DefaultAgent>, TestRng) {
    let (mut b, rng) = bob_fresh(fx);
    let mut scratch = vec![0u8; DefaultAgent::MAX_RECORD_LEN];
    for r in &fx.bob_group {
        b.restore_record(&r.bytes, r.generation, &mut scratch).expect("group records restore");
    }
    (b, rng)
}

/// Feed `env` to `a` as the host does; returns the delivered payload.
pub fn host_input(a: &mut DefaultAgent, rng: &mut TestRng, env: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 2048];
    let got = a.handle_input(env, &mut out, T0, rng).expect("genuine input").map(|r| out[..r.len].to_vec());
    drain_persist(a, rng);
    got
}

fn build() -> Fixture {
    // Bob: knows Alice's identity and holds her bundle (so a ratchet
    // message of hers on a session he does not hold makes him
    // re-establish: `Agent::handle_input`'s lost-state path), grants her
    // TASK. Every Alice is made from the same seed, so the bundle is
    // theirs too.
    let (alice0, _) = fresh(ALICE_SEED);
    let (mut bob0, mut rb0) = fresh(BOB_SEED);
    let alice = alice0.peer_id();
    let bob = bob0.peer_id();
    bob0.add_peer_identity(alice0.public_identity()).expect("add");
    let mut alice_bundle = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
    let an = alice0.bundle(&mut alice_bundle).expect("alice's bundle");
    bob0.set_peer_bundle(&alice_bundle[..an]).expect("alice's bundle");
    bob0.policy_mut().grant(alice, Roles::of(&[WORKER])).expect("grant");
    let mut bundle = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
    let n = bob0.bundle(&mut bundle).expect("bundle");
    let bob_record = agent_record(&mut bob0, &mut rb0);

    // Alice in three views of Bob.
    let mut alice_records = Vec::new();
    for view in [AliceView::Identity, AliceView::IdOnly, AliceView::Bundle] {
        let (mut a, mut ra) = fresh(ALICE_SEED);
        match view {
            AliceView::Identity => {
                a.add_peer_identity(bob0.public_identity()).expect("add");
            }
            AliceView::IdOnly => a.add_peer(bob).expect("add"),
            AliceView::Bundle => {
                a.set_peer_bundle(&bundle[..n]).expect("bundle");
            }
        }
        a.policy_mut().grant(bob, Roles::of(&[WORKER])).expect("grant");
        alice_records.push(agent_record(&mut a, &mut ra));
    }
    drop(alice0);
    let alice_records: [Blob; 3] = alice_records.try_into().ok().expect("three");
    let mut fx = Fixture {
        alice,
        bob,
        alice_records,
        bob_record,
        bob_ratchet: [
            Blob { id: RecordId::Agent, generation: 0, bytes: Vec::new() },
            Blob { id: RecordId::Agent, generation: 0, bytes: Vec::new() },
        ],
        ik: Exchange { handshake: Vec::new(), transports: Vec::new() },
        xx: Exchange { handshake: Vec::new(), transports: Vec::new() },
        ratchet: Vec::new(),
        carol_initial: Vec::new(),
        group: Vec::new(),
        bob_group: Vec::new(),
    };

    // Noise IK and XX: Alice restored and sending, Bob restored fresh.
    for view in [AliceView::Identity, AliceView::IdOnly] {
        let (mut a, mut ra) = alice_sending(&fx, view);
        let (mut b, mut rb) = bob_fresh(&fx);
        let mut ex = Exchange { handshake: Vec::new(), transports: Vec::new() };
        let mut to_bob = drain_transmits(&mut a);
        loop {
            let mut to_alice = Vec::new();
            for env in to_bob.drain(..) {
                let parsed = Envelope::parse(&env).expect("parse");
                if parsed.channel == securemesh::ChannelKind::NoiseTransport {
                    ex.transports.push(env.clone());
                } else {
                    ex.handshake.push(env.clone());
                }
                host_input(&mut b, &mut rb, &env);
                to_alice.extend(drain_transmits(&mut b));
            }
            if to_alice.is_empty() {
                break;
            }
            for env in to_alice {
                ex.handshake.push(env.clone());
                host_input(&mut a, &mut ra, &env);
                to_bob.extend(drain_transmits(&mut a));
            }
        }
        for p in &PAYLOADS[1..] {
            a.send(&fx.bob, TASK, p, T0, &mut ra).expect("send");
            drain_persist(&mut a, &mut ra);
            ex.transports.extend(drain_transmits(&mut a));
        }
        assert_eq!(ex.transports.len(), PAYLOADS.len(), "{view:?} transports");
        match view {
            AliceView::Identity => fx.ik = ex,
            _ => fx.xx = ex,
        }
    }

    // The ratchet: Alice's initial message, Bob's records after it, then
    // her following messages.
    let (mut a, mut ra) = alice_sending(&fx, AliceView::Bundle);
    fx.ratchet.extend(drain_transmits(&mut a));
    for p in &PAYLOADS[1..] {
        a.send(&fx.bob, TASK, p, T0, &mut ra).expect("send");
        drain_persist(&mut a, &mut ra);
        fx.ratchet.extend(drain_transmits(&mut a));
    }
    assert_eq!(fx.ratchet.len(), PAYLOADS.len(), "ratchet messages");
    let (mut b, mut rb) = bob_fresh(&fx);
    let mut out = vec![0u8; 2048];
    b.handle_input(&fx.ratchet[0], &mut out, T0, &mut rb).expect("initial");
    let recs = drain_persist(&mut b, &mut rb);
    let agent = recs.iter().find(|r| r.id == RecordId::Agent).expect("agent record").clone();
    let slot = recs.iter().find(|r| r.id == RecordId::Session(0)).expect("slot record").clone();
    fx.bob_ratchet = [agent, slot];

    // Carol, unknown to Bob, with his bundle.
    let (mut c, mut rc) = fresh(CAROL_SEED);
    c.set_peer_bundle(&bundle[..n]).expect("bundle");
    c.policy_mut().grant(bob, Roles::of(&[WORKER])).expect("grant");
    c.send(&bob, TASK, b"from carol", T0, &mut rc).expect("send");
    fx.carol_initial = drain_transmits(&mut c).pop().expect("carol's message");

    // A group: Bob publishes a KeyPackage, Alice creates a group and adds
    // him; her commit comes back to her in the delivery order (merged, the
    // Welcome released) and Bob joins from the Welcome. Then Alice's
    // application messages to the group.
    let (mut b, mut rb) = bob_fresh(&fx);
    let mut kp = [0u8; securemesh::group::MAX_KEY_PACKAGE_LEN];
    let n = b.publish_key_package(WALL, &mut kp, &mut rb).expect("key package");
    drain_persist(&mut b, &mut rb);
    let (mut a, mut ra) = alice_restored(&fx, AliceView::Identity);
    a.set_peer_key_package(&kp[..n], WALL).expect("bob's key package");
    let g = a.create_group(&mut ra).expect("group");
    let mut scratch = vec![0u8; securemesh::group::COMMIT_SCRATCH_LEN];
    a.add_members(g, &[bob], &mut ra, &mut scratch).expect("add bob");
    drain_persist(&mut a, &mut ra);
    let mut out = vec![0u8; 65_536];
    for commit in drain_transmits(&mut a) {
        a.handle_input(&commit, &mut out, T0, &mut ra).expect("own commit");
    }
    drain_persist(&mut a, &mut ra);
    for welcome in drain_transmits(&mut a) {
        b.handle_input(&welcome, &mut out, T0, &mut rb).expect("welcome");
    }
    fx.bob_group = drain_persist(&mut b, &mut rb);
    assert_eq!(b.groups().count(), 1, "bob joined");
    for p in PAYLOADS {
        a.send(&g, TASK, p, T0, &mut ra).expect("group send");
        drain_persist(&mut a, &mut ra);
        fx.group.extend(drain_transmits(&mut a));
    }
    assert_eq!(fx.group.len(), PAYLOADS.len(), "group messages");
    fx
}

/// The fixture, made once per process.
pub fn fixture() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(build)
}

/// The situations of `mesh_handle_input` (first input byte modulo 6; bit 7
/// revokes the sender's grant first).
pub const SITUATIONS: u8 = 6;
/// Situation: Bob restored, no session.
pub const BOB_FRESH: u8 = 0;
/// Situation: Bob with a Noise IK session with Alice (fed her message 0).
pub const BOB_NOISE: u8 = 1;
/// Situation: Bob with his ratchet session with Alice (restored record).
pub const BOB_RATCHET: u8 = 2;
/// Situation: Alice waiting for Bob's IK message 1.
pub const ALICE_IK: u8 = 3;
/// Situation: Alice waiting for Bob's XX message 1.
pub const ALICE_XX: u8 = 4;
/// Situation: Bob a member of Alice's MLS group (restored records).
pub const BOB_GROUP: u8 = 5;
/// Bit 7 of the situation byte: the receiver's policy revokes the sender.
pub const DENY: u8 = 0x80;

/// The receiver of a situation, ready, and the peer it hears from.
pub fn situation(fx: &Fixture, s: u8) -> (Box<DefaultAgent>, TestRng, PeerId) {
    let (mut a, mut rng, from) = match (s & !DENY) % SITUATIONS {
        BOB_FRESH => {
            let (b, r) = bob_fresh(fx);
            (b, r, fx.alice)
        }
        BOB_NOISE => {
            let (mut b, mut r) = bob_fresh(fx);
            host_input(&mut b, &mut r, &fx.ik.handshake[0]);
            drain_transmits(&mut b);
            (b, r, fx.alice)
        }
        BOB_RATCHET => {
            let (b, r) = bob_with_ratchet(fx);
            (b, r, fx.alice)
        }
        ALICE_IK => {
            let (mut a, r) = alice_sending(fx, AliceView::Identity);
            drain_transmits(&mut a);
            (a, r, fx.bob)
        }
        BOB_GROUP => {
            let (b, r) = bob_in_group(fx);
            (b, r, fx.alice)
        }
        _ => {
            let (mut a, r) = alice_sending(fx, AliceView::IdOnly);
            drain_transmits(&mut a);
            (a, r, fx.bob)
        }
    };
    if s & DENY != 0 {
        a.policy_mut().revoke(&from);
    }
    events(&mut a);
    drain_persist(&mut a, &mut rng);
    (a, rng, from)
}

/// Genuine frame sequences of a situation, with the payloads they deliver
/// (without [`DENY`]).
pub fn genuine(fx: &Fixture, s: u8) -> Vec<(Vec<Vec<u8>>, Vec<&'static [u8]>)> {
    let ik = &fx.ik;
    let xx = &fx.xx;
    match s % SITUATIONS {
        BOB_FRESH => vec![
            (vec![ik.handshake[0].clone(), ik.transports[0].clone()], vec![PAYLOADS[0]]),
            (
                vec![xx.handshake[0].clone(), xx.handshake[2].clone(), xx.transports[0].clone()],
                vec![PAYLOADS[0]],
            ),
            (fx.ratchet.clone(), PAYLOADS.to_vec()),
            (vec![fx.carol_initial.clone()], vec![]),
        ],
        BOB_NOISE => vec![(ik.transports.clone(), PAYLOADS.to_vec())],
        BOB_RATCHET => vec![(fx.ratchet[1..].to_vec(), PAYLOADS[1..].to_vec())],
        ALICE_IK => vec![(vec![ik.handshake[1].clone()], vec![])],
        BOB_GROUP => vec![(fx.group.clone(), PAYLOADS.to_vec())],
        _ => vec![(vec![xx.handshake[1].clone()], vec![])],
    }
}

/// Bob restored from his agent record after Alice's initial message (the
/// one-time prekey consumed), his session slot empty: the base of
/// `mesh_record`'s `restore_record` runs.
pub fn bob_fresh_after_initial(fx: &Fixture) -> (Box<DefaultAgent>, TestRng) {
    let mut scratch = vec![0u8; DefaultAgent::MAX_RECORD_LEN];
    let a = &fx.bob_ratchet[0];
    let b = Box::new(
        DefaultAgent::restore(key(), Config::default(), &a.bytes, a.generation, &mut scratch)
            .expect("bob restores"),
    );
    (b, TestRng::new(BOB_RUN))
}

//! MLS groups in the agent: creation, adds and removes with the
//! pending-commit discipline, application messages under the policy,
//! concurrent commits, persistence and restore, forged and tampered
//! envelopes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh::group::{COMMIT_SCRATCH_LEN, MAX_KEY_PACKAGE_LEN};
use securemesh::policy::DenyReason;
use securemesh::{
    Channel, ChannelKind, Config, DefaultAgent, Delivery, Error, Event, GroupId, MessageKind, PeerId, Reason,
    RecordId, Roles,
};
use securemesh_core::UnixTime;
use securemesh_core::envelope::StorageKey;
use securemesh_core::testing::TestRng;
use securemesh_ratchet::Identity;
use std::collections::BTreeMap;

mod common;
use common::{SENSOR, T0, TASK, TELEMETRY, WALL, WORKER};
const KEY: [u8; 32] = [0x42; 32];

type Store = BTreeMap<RecordId, (Vec<u8>, u64)>;

struct Node {
    agent: Box<DefaultAgent>,
    rng: TestRng,
    /// Persisted records (when persistence is on).
    store: Store,
    /// Payloads delivered: (group, from, kind, bytes).
    got: Vec<(Option<GroupId>, PeerId, MessageKind, Vec<u8>)>,
    events: Vec<Event>,
    /// Errors returned by `handle_input`.
    errors: Vec<Error>,
}

/// Agents that all know each other's identities and grant each other
/// `WORKER` (tasks and telemetry), plus a delivery service with one order
/// for everyone.
struct Mesh {
    nodes: Vec<Node>,
    /// Envelopes in delivery order: (recipient index, bytes).
    fifo: std::collections::VecDeque<(usize, Vec<u8>)>,
    /// The longest envelope of each channel seen.
    longest: BTreeMap<u8, usize>,
}

impl Mesh {
    fn new(n: usize, seed: u64, persist: bool) -> Self {
        let mut nodes: Vec<Node> = (0..n)
            .map(|i| {
                let (mut agent, rng) =
                    common::agent(seed.wrapping_mul(0x1_0000).wrapping_add(0x100 * i as u64 + 0x37));
                if persist {
                    agent.enable_persistence(StorageKey::new(KEY));
                }
                Node { agent, rng, store: Store::new(), got: vec![], events: vec![], errors: vec![] }
            })
            .collect();
        let ids: Vec<_> = nodes.iter().map(|n| *n.agent.public_identity()).collect();
        for (i, node) in nodes.iter_mut().enumerate() {
            for (j, id) in ids.iter().enumerate() {
                if i != j {
                    let p = node.agent.add_peer_identity(id).unwrap();
                    node.agent.policy_mut().grant(p, Roles::of(&[WORKER])).unwrap();
                }
            }
        }
        let mut m = Mesh { nodes, fifo: Default::default(), longest: BTreeMap::new() };
        m.drain_all();
        m
    }

    fn id(&self, i: usize) -> PeerId {
        self.nodes[i].agent.peer_id()
    }

    fn index_of(&self, p: &PeerId) -> usize {
        self.nodes.iter().position(|n| n.agent.peer_id() == *p).unwrap()
    }

    /// Store node `i`'s records and collect its events.
    fn drain(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut rec = vec![0u8; DefaultAgent::MAX_RECORD_LEN];
        while let Some(r) = node.agent.poll_persist(&mut rec, &mut node.rng).unwrap() {
            node.store.insert(r.id, (rec[..r.len].to_vec(), r.generation));
        }
        node.events.extend(core::iter::from_fn(|| node.agent.poll_event()));
    }

    fn drain_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
    }

    /// Move node `i`'s transmits into the delivery order: a group envelope
    /// to every member the sender knows (itself included), a Welcome to
    /// its joiner.
    fn collect(&mut self, i: usize) {
        self.drain(i);
        let mut buf = vec![0u8; 64 * 1024];
        while let Some(t) = self.nodes[i].agent.poll_transmit(&mut buf).unwrap() {
            let bytes = buf[..t.len].to_vec();
            let longest = self.longest.entry(bytes[2]).or_default();
            *longest = (*longest).max(t.len);
            match t.delivery {
                Delivery::Group(g) => {
                    assert_eq!(t.to, self.id(i));
                    let members: Vec<_> = self.nodes[i].agent.group_members(g).collect();
                    for m in members {
                        let r = self.index_of(&m);
                        self.fifo.push_back((r, bytes.clone()));
                    }
                }
                Delivery::Mailbox | Delivery::Direct => {
                    let r = self.index_of(&t.to);
                    self.fifo.push_back((r, bytes));
                }
            }
        }
    }

    fn deliver_one(&mut self) -> bool {
        let Some((r, bytes)) = self.fifo.pop_front() else { return false };
        let node = &mut self.nodes[r];
        let mut out = vec![0u8; DefaultAgent::input_buffer_len(bytes.len()).max(4096)];
        match node.agent.handle_input(&bytes, &mut out, T0, &mut node.rng) {
            Ok(Some(m)) => node.got.push((m.group, m.from, m.kind, out[..m.len].to_vec())),
            Ok(None) => {}
            Err(e) => node.errors.push(e),
        }
        self.drain(r);
        true
    }

    /// Collect from every node and deliver until nothing moves.
    fn pump(&mut self) {
        loop {
            for i in 0..self.nodes.len() {
                self.collect(i);
            }
            if self.fifo.is_empty() {
                break;
            }
            while self.deliver_one() {}
        }
    }

    /// Node `j` publishes a KeyPackage, node `i` learns it.
    fn share_key_package(&mut self, j: usize, i: usize) {
        let mut kp = [0u8; MAX_KEY_PACKAGE_LEN];
        let n = {
            let node = &mut self.nodes[j];
            node.agent.publish_key_package(WALL, &mut kp, &mut node.rng).unwrap()
        };
        let peer = self.nodes[i].agent.set_peer_key_package(&kp[..n], WALL).unwrap();
        assert_eq!(peer, self.id(j));
        self.drain(i);
        self.drain(j);
    }

    /// Node `i` commits adds and removes to `g`.
    fn commit(&mut self, i: usize, g: GroupId, add: &[usize], remove: &[usize]) -> Result<u64, Error> {
        let add: Vec<_> = add.iter().map(|&j| self.id(j)).collect();
        let remove: Vec<_> = remove.iter().map(|&j| self.id(j)).collect();
        let mut scratch = vec![0u8; COMMIT_SCRATCH_LEN];
        let node = &mut self.nodes[i];
        let r = node.agent.commit_members(g, &add, &remove, &mut node.rng, &mut scratch);
        self.drain(i);
        r
    }

    /// A group with node 0 as creator and `members` added by node 0.
    fn group(&mut self, members: &[usize]) -> GroupId {
        let g = {
            let node = &mut self.nodes[0];
            node.agent.create_group(&mut node.rng).unwrap()
        };
        for &j in members {
            self.share_key_package(j, 0);
        }
        self.commit(0, g, members, &[]).unwrap();
        self.pump();
        g
    }

    fn send(&mut self, i: usize, g: GroupId, kind: MessageKind, payload: &[u8]) -> Result<(), Error> {
        let node = &mut self.nodes[i];
        let route = node.agent.send(&g, kind, payload, T0, &mut node.rng)?;
        assert_eq!((route.channel, route.reason), (Channel::Mls, Reason::Group));
        self.drain(i);
        Ok(())
    }

    fn epoch(&self, i: usize, g: GroupId) -> Option<u64> {
        self.nodes[i].agent.groups().find(|x| x.id == g).map(|x| x.epoch)
    }

    /// Every node of `members` is at the same epoch with the same epoch
    /// authenticator and roster.
    fn assert_converged(&self, g: GroupId, members: &[usize]) -> u64 {
        let e = self.epoch(members[0], g).unwrap();
        let auth = self.nodes[members[0]].agent.group_epoch_authenticator(g).unwrap();
        let mut roster: Vec<_> = self.nodes[members[0]].agent.group_members(g).collect();
        roster.sort();
        let mut want: Vec<_> = members.iter().map(|&i| self.id(i)).collect();
        want.sort();
        assert_eq!(roster, want);
        for &i in members {
            assert_eq!(self.epoch(i, g), Some(e), "epoch of node {i}");
            assert_eq!(self.nodes[i].agent.group_epoch_authenticator(g).unwrap(), auth, "node {i}");
        }
        e
    }

    /// Node `i` restarts from its stored records alone.
    fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut scratch = vec![0u8; DefaultAgent::MAX_RECORD_LEN];
        let (blob, generation) = &node.store[&RecordId::Agent];
        let mut a = Box::new(
            DefaultAgent::restore(StorageKey::new(KEY), Config::default(), blob, *generation, &mut scratch)
                .unwrap(),
        );
        for (id, (blob, generation)) in node.store.iter().filter(|(id, _)| **id != RecordId::Agent) {
            assert_eq!(a.restore_record(blob, *generation, &mut scratch).unwrap(), *id);
        }
        node.agent = a;
    }

    fn take_got(&mut self, i: usize) -> Vec<(Option<GroupId>, PeerId, MessageKind, Vec<u8>)> {
        std::mem::take(&mut self.nodes[i].got)
    }
}

/// Three agents: a group is created, grows by two Welcomes, carries
/// messages from each member to the others, and shrinks: the removed
/// member reads and sends nothing more.
#[test]
fn three_agents_add_exchange_remove() {
    let mut m = Mesh::new(3, 0x6A01, false);
    let g = m.group(&[1, 2]);
    assert_eq!(m.assert_converged(g, &[0, 1, 2]), 1);
    for i in [1, 2] {
        assert!(
            m.nodes[i]
                .events
                .iter()
                .any(|e| matches!(e, Event::GroupJoined { group, epoch: 1, members: 3 } if *group == g))
        );
        assert_eq!(m.nodes[i].agent.key_packages_available(), 0, "the KeyPackage is consumed");
    }
    let ev = &m.nodes[0].events;
    assert!(ev.iter().any(|e| matches!(e, Event::EpochChanged { group, epoch: 1 } if *group == g)));
    assert_eq!(ev.iter().filter(|e| matches!(e, Event::MemberAdded { .. })).count(), 2);

    // Each member sends; the two others receive it once, from it.
    for i in 0..3 {
        m.send(i, g, TASK, format!("task from {i}").as_bytes()).unwrap();
        m.pump();
        for j in 0..3 {
            let got = m.take_got(j);
            if j == i {
                assert!(got.is_empty());
            } else {
                assert_eq!(got, vec![(Some(g), m.id(i), TASK, format!("task from {i}").into_bytes())]);
            }
        }
    }
    assert!(
        m.nodes.iter().all(|n| n.errors.is_empty()),
        "{:?}",
        m.nodes.iter().map(|n| &n.errors).collect::<Vec<_>>()
    );

    // A message node 2 made before its removal, held back by the network.
    m.send(2, g, TASK, b"late").unwrap();
    let mut held = vec![0u8; 4096];
    let t = m.nodes[2].agent.poll_transmit(&mut held).unwrap().unwrap();
    let late = held[..t.len].to_vec();

    // Node 1 removes node 2 (any member may commit).
    assert_eq!(m.commit(1, g, &[], &[2]), Ok(2));
    assert_eq!(m.epoch(1, g), Some(1), "pending until the delivery order confirms it");
    m.pump();
    assert_eq!(m.assert_converged(g, &[0, 1]), 2);
    assert!(m.nodes[2].agent.groups().next().is_none());
    assert!(m.nodes[2].events.iter().any(|e| matches!(e, Event::GroupLeft { group } if *group == g)));
    assert!(
        m.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::MemberRemoved { group, peer } if *group == g && *peer == m.id(2)))
    );

    // The removed member can neither send nor read.
    let node = &mut m.nodes[2];
    assert_eq!(node.agent.send(&g, TASK, b"x", T0, &mut node.rng), Err(Error::UnknownGroup));
    m.send(0, g, TASK, b"after removal").unwrap();
    let mut buf = vec![0u8; 4096];
    let t = m.nodes[0].agent.poll_transmit(&mut buf).unwrap().unwrap();
    let env = buf[..t.len].to_vec();
    let mut out = vec![0u8; DefaultAgent::input_buffer_len(env.len())];
    let node = &mut m.nodes[2];
    assert_eq!(node.agent.handle_input(&env, &mut out, T0, &mut node.rng), Err(Error::UnknownGroup));
    // Its late message of the old epoch is never delivered.
    let node = &mut m.nodes[1];
    let mut out = vec![0u8; DefaultAgent::input_buffer_len(late.len())];
    assert_eq!(
        node.agent.handle_input(&late, &mut out, T0, &mut node.rng),
        Err(Error::GroupEpoch { message: 1, current: 2 })
    );
    let node = &mut m.nodes[1];
    let mut out = vec![0u8; DefaultAgent::input_buffer_len(env.len())];
    let r = node.agent.handle_input(&env, &mut out, T0, &mut node.rng).unwrap().unwrap();
    assert_eq!((r.from, r.group, &out[..r.len]), (m.id(0), Some(g), &b"after removal"[..]));
    let metrics = m.nodes[1].agent.metrics();
    assert_eq!((metrics.groups, metrics.mls.received), (1, 3));
}

/// A member whose role does not permit a kind is denied (counted, never
/// delivered); a member unknown to the policy is denied too.
#[test]
fn policy_denies_a_member_without_the_role() {
    let mut m = Mesh::new(3, 0x6A02, false);
    let g = m.group(&[1, 2]);
    // Node 0 lets node 2 send telemetry only.
    let c = m.id(2);
    m.nodes[0].agent.policy_mut().revoke(&c);
    m.nodes[0].agent.policy_mut().grant(c, Roles::of(&[SENSOR])).unwrap();
    m.drain(0);
    m.nodes[0].events.clear();

    m.send(2, g, TASK, b"open valve").unwrap();
    m.send(2, g, TELEMETRY, b"21.5").unwrap();
    m.pump();
    assert_eq!(m.take_got(0), vec![(Some(g), c, TELEMETRY, b"21.5".to_vec())]);
    assert_eq!(m.take_got(1).len(), 2, "node 1 grants node 2 WORKER");
    assert!(m.nodes[0].events.iter().any(|e| matches!(
        e,
        Event::Denied { from, reason: DenyReason::NotPermitted { kind: TASK } } if *from == c
    )));
    assert_eq!(m.nodes[0].agent.metrics().mls.denied, 1);

    // Unknown to node 1's policy: everything refused.
    m.nodes[1].agent.policy_mut().revoke(&c);
    m.send(2, g, TELEMETRY, b"22.0").unwrap();
    m.pump();
    assert!(m.take_got(1).is_empty());
    assert!(
        m.nodes[1]
            .events
            .iter()
            .any(|e| matches!(e, Event::Denied { from, reason: DenyReason::UnknownPeer } if *from == c))
    );
}

/// Two members commit in the same epoch: the delivery order picks one,
/// the other committer discards its own (and its Welcome), and every
/// member ends in the same epoch.
#[test]
fn concurrent_commits_one_wins_all_converge() {
    let mut m = Mesh::new(4, 0x6A03, false);
    let g = m.group(&[1, 2]);
    m.share_key_package(3, 0);
    // Node 0 adds node 3; node 1 removes node 2; both in epoch 1. Node 1's
    // commit reaches the delivery service first.
    assert_eq!(m.commit(1, g, &[], &[2]), Ok(2));
    m.collect(1);
    assert_eq!(m.commit(0, g, &[3], &[]), Ok(2));
    assert_eq!(m.commit(0, g, &[], &[]), Err(Error::CommitPending));
    // Nothing is sent in an epoch our pending commit is about to end.
    assert_eq!(m.send(0, g, TASK, b"x"), Err(Error::CommitPending));
    m.collect(0);
    m.pump();
    assert_eq!(m.assert_converged(g, &[0, 1]), 2);
    assert!(
        m.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::CommitDiscarded { group, epoch: 1 } if *group == g))
    );
    assert!(m.nodes[3].agent.groups().next().is_none(), "the losing commit's Welcome never left");
    assert!(m.nodes[2].agent.groups().next().is_none());
    // Node 0's commit, ordered second, was refused by everyone else (its
    // epoch has passed); node 0 ignores its own.
    assert!(m.nodes[1].errors.iter().all(|e| matches!(e, Error::GroupEpoch { message: 1, current: 2 })));
    assert_eq!(m.nodes[0].agent.metrics().group_commits_discarded, 1);

    // Node 0 adds node 3 again with a new KeyPackage: it works.
    m.share_key_package(3, 0);
    m.commit(0, g, &[3], &[]).unwrap();
    m.pump();
    assert_eq!(m.assert_converged(g, &[0, 1, 3]), 3);
    m.send(3, g, TASK, b"hello").unwrap();
    m.pump();
    assert_eq!(m.take_got(0), vec![(Some(g), m.id(3), TASK, b"hello".to_vec())]);
}

/// Restore every agent from its records in the middle of a group's life:
/// it keeps its epoch, reads and sends, a pending commit survives the
/// restart, and an older group record is refused as a rollback.
#[test]
fn persist_restore_mid_group() {
    let mut m = Mesh::new(3, 0x6A04, true);
    let g = m.group(&[1]);
    m.send(0, g, TASK, b"one").unwrap();
    m.pump();
    assert_eq!(m.take_got(1).len(), 1);
    let old_group_record = m.nodes[1].store[&RecordId::Group(0)].clone();
    m.send(0, g, TASK, b"two").unwrap();
    m.pump();
    assert_eq!(m.take_got(1).len(), 1);
    // Node 0 adds node 2 and restarts before its commit is confirmed.
    m.share_key_package(2, 0);
    m.commit(0, g, &[2], &[]).unwrap();
    m.collect(0); // the commit is on its way (records stored first)

    for i in 0..3 {
        m.restart(i);
    }
    assert!(m.nodes[0].agent.groups().next().unwrap().commit_pending);
    assert_eq!(m.nodes[2].agent.key_packages_available(), 1);
    m.pump();
    assert_eq!(m.assert_converged(g, &[0, 1, 2]), 2);
    // Node 1 read "one" and "two" before the restart: a replay is refused.
    m.send(1, g, TASK, b"three").unwrap();
    m.pump();
    assert_eq!(m.take_got(0), vec![(Some(g), m.id(1), TASK, b"three".to_vec())]);
    assert_eq!(m.take_got(2).len(), 1);

    // A rollback of node 1's group record is refused.
    let node = &mut m.nodes[1];
    let mut scratch = vec![0u8; DefaultAgent::MAX_RECORD_LEN];
    let (blob, generation) = &node.store[&RecordId::Agent];
    let mut a = Box::new(
        DefaultAgent::restore(StorageKey::new(KEY), Config::default(), blob, *generation, &mut scratch)
            .unwrap(),
    );
    let newest = node.store[&RecordId::Group(0)].1;
    assert!(matches!(
        a.restore_record(&old_group_record.0, newest, &mut scratch),
        Err(Error::Storage(securemesh_core::Error::Rollback { .. }))
    ));
    assert!(a.groups().next().is_none(), "a refused record restores nothing");
    println!(
        "size_of::<DefaultAgent>() = {}, group slot = {} B, MAX_GROUP_RECORD_LEN = {}, group record (2 members) = {} B, \
         MAX_KEY_PACKAGE_RECORD_LEN = {}, MAX_RECORD_LEN = {}",
        core::mem::size_of::<DefaultAgent>(),
        securemesh::group::GROUP_SLOT_BYTES,
        DefaultAgent::MAX_GROUP_RECORD_LEN,
        old_group_record.0.len(),
        DefaultAgent::MAX_KEY_PACKAGE_RECORD_LEN,
        DefaultAgent::MAX_RECORD_LEN,
    );
    assert!(old_group_record.0.len() <= DefaultAgent::MAX_GROUP_RECORD_LEN);
}

/// Forged and tampered group envelopes are refused with the agent
/// unchanged: the genuine envelope is delivered afterwards, once.
#[test]
fn forged_or_tampered_group_envelopes_change_nothing() {
    let mut m = Mesh::new(4, 0x6A05, true);
    let g = m.group(&[1, 2]);
    m.send(0, g, TASK, b"genuine").unwrap();
    let mut buf = vec![0u8; 4096];
    let t = m.nodes[0].agent.poll_transmit(&mut buf).unwrap().unwrap();
    let genuine = buf[..t.len].to_vec();
    let hdr = securemesh::envelope::HEADER_LEN;

    let mut forgeries: Vec<(Vec<u8>, &str)> = Vec::new();
    for at in [hdr + 1, hdr + 20, genuine.len() / 2, genuine.len() - 1] {
        let mut b = genuine.clone();
        b[at] ^= 0x01;
        forgeries.push((b, "flipped body byte"));
    }
    let mut b = genuine.clone();
    b[3..35].copy_from_slice(&m.id(2).0); // claims another sender
    forgeries.push((b, "sender changed"));
    let mut b = genuine.clone();
    b[35] ^= 1; // another group
    forgeries.push((b, "group changed"));
    let mut b = genuine.clone();
    b[2] = ChannelKind::MlsWelcome.tag();
    forgeries.push((b, "channel changed"));
    // An outsider (node 3, not a member) with its own group of that id.
    let outsider = {
        let node = &mut m.nodes[3];
        let own = node.agent.create_group(&mut node.rng).unwrap();
        node.agent.send(&own, TASK, b"forged", T0, &mut node.rng).unwrap();
        m.drain(3);
        let t = m.nodes[3].agent.poll_transmit(&mut buf).unwrap().unwrap();
        let mut b = buf[..t.len].to_vec();
        b[35..43].copy_from_slice(&g.0.to_be_bytes());
        b
    };
    forgeries.push((outsider, "outsider's message"));

    let node = &mut m.nodes[1];
    let auth = node.agent.group_epoch_authenticator(g).unwrap();
    let metrics = node.agent.metrics();
    for (bytes, what) in &forgeries {
        let mut out = vec![0u8; DefaultAgent::input_buffer_len(bytes.len())];
        let r = node.agent.handle_input(bytes, &mut out, T0, &mut node.rng);
        assert!(r.is_err(), "{what}: {r:?}");
        assert!(node.agent.poll_event().is_none(), "{what}");
        assert!(!node.agent.persist_pending(), "{what}");
        assert_eq!(node.agent.group_epoch_authenticator(g).unwrap(), auth);
    }
    assert_eq!(node.agent.metrics().mls.received, metrics.mls.received);
    let mut out = vec![0u8; DefaultAgent::input_buffer_len(genuine.len())];
    let r = node.agent.handle_input(&genuine, &mut out, T0, &mut node.rng).unwrap().unwrap();
    assert_eq!((&out[..r.len], r.channel), (&b"genuine"[..], ChannelKind::MlsMessage));
    // Once only.
    assert!(node.agent.handle_input(&genuine, &mut out, T0, &mut node.rng).is_err());
}

/// A KeyPackage is accepted only from the identity its credential names.
#[test]
fn key_packages_are_bound_to_identities() {
    use securemesh_mls_lite::key_package::{KeyPackageParams, create_key_package, key_package_len};
    let mut m = Mesh::new(3, 0x6A06, false);
    // Node 2 makes a KeyPackage claiming node 1's peer id, signed by itself.
    let claimed = m.id(1);
    let params =
        KeyPackageParams { identity: &claimed.0, not_before: 0, not_after: u64::MAX, last_resort: false };
    let mut rng = TestRng::new(0x6A66);
    let forger = Identity::generate(&mut rng);
    let mut kp = vec![0u8; key_package_len(32)];
    let mut scratch = vec![0u8; 2 * kp.len()];
    let (n, _) = create_key_package(&params, forger.signing_seed(), &mut rng, &mut kp, &mut scratch).unwrap();
    assert_eq!(m.nodes[0].agent.set_peer_key_package(&kp[..n], WALL), Err(Error::KeyPackageIdentity));
    assert!(!m.nodes[0].agent.has_peer_key_package(&claimed));
    // Expired, and unknown peers, refused; a genuine one accepted.
    let mut genuine = [0u8; MAX_KEY_PACKAGE_LEN];
    let node = &mut m.nodes[1];
    let n = node.agent.publish_key_package(WALL, &mut genuine, &mut node.rng).unwrap();
    let late = UnixTime(WALL.0 + 31 * 86_400);
    assert!(matches!(m.nodes[0].agent.set_peer_key_package(&genuine[..n], late), Err(Error::Mls(_))));
    let mut stranger = Mesh::new(1, 0x6A07, false);
    assert_eq!(stranger.nodes[0].agent.set_peer_key_package(&genuine[..n], WALL), Err(Error::UnknownPeer));
    assert_eq!(m.nodes[0].agent.set_peer_key_package(&genuine[..n], WALL), Ok(claimed));
    // Four own slots: the fifth is refused.
    let node = &mut m.nodes[1];
    for _ in 0..3 {
        node.agent.publish_key_package(WALL, &mut genuine, &mut node.rng).unwrap();
    }
    assert_eq!(
        node.agent.publish_key_package(WALL, &mut genuine, &mut node.rng),
        Err(Error::KeyPackagesFull)
    );
    stranger.drain_all();
}

#[derive(Clone, Debug)]
enum Op {
    /// Member `.0` (an index into the members) sends.
    Send(usize),
    /// A member adds a non-member.
    Add(usize, usize),
    /// A member removes another.
    Remove(usize, usize),
    /// Two members commit in the same epoch (updates); the delivery order
    /// takes the first.
    Concurrent(usize, usize),
    /// An agent restarts from its records.
    Restart(usize),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        3 => any::<usize>().prop_map(Op::Send),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::Add(a, b)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::Remove(a, b)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::Concurrent(a, b)),
        1 => any::<usize>().prop_map(Op::Restart),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
    /// Random group histories (sends, adds, removes, concurrent commits,
    /// restarts from the records) over five agents: after every step all
    /// members agree on the epoch, its authenticator and the roster; every
    /// message reaches every other member exactly once and nobody else;
    /// the only refusals are the losing commits' late copies.
    #[test]
    fn random_group_histories_converge(ops in proptest::collection::vec(op(), 1..14), seed in 1u64..1_000) {
        let n = 5;
        let mut m = Mesh::new(n, 0x6B00 + seed * 0x101, true);
        let g = m.group(&[1]);
        let mut members: Vec<usize> = vec![0, 1];
        let mut sent = 0u32;
        for op in ops {
            let outsiders: Vec<usize> = (0..n).filter(|i| !members.contains(i)).collect();
            match op {
                Op::Send(a) => {
                    let from = members[a % members.len()];
                    let text = format!("m{sent}");
                    sent += 1;
                    m.send(from, g, TASK, text.as_bytes()).unwrap();
                    m.pump();
                    for i in 0..n {
                        let got = m.take_got(i);
                        if members.contains(&i) && i != from {
                            proptest::prop_assert_eq!(got, vec![(Some(g), m.id(from), TASK, text.clone().into_bytes())]);
                        } else {
                            proptest::prop_assert!(got.is_empty());
                        }
                    }
                }
                Op::Add(a, b) if !outsiders.is_empty() => {
                    let (c, j) = (members[a % members.len()], outsiders[b % outsiders.len()]);
                    m.share_key_package(j, c);
                    m.commit(c, g, &[j], &[]).unwrap();
                    m.pump();
                    members.push(j);
                }
                Op::Remove(a, b) if members.len() > 2 => {
                    let c = members[a % members.len()];
                    let others: Vec<usize> = members.iter().copied().filter(|x| *x != c).collect();
                    let j = others[b % others.len()];
                    m.commit(c, g, &[], &[j]).unwrap();
                    m.pump();
                    members.retain(|x| *x != j);
                    proptest::prop_assert!(m.nodes[j].agent.groups().next().is_none());
                }
                Op::Concurrent(a, b) => {
                    let c1 = members[a % members.len()];
                    let c2 = members[(a + 1 + b % (members.len() - 1)) % members.len()];
                    proptest::prop_assert_ne!(c1, c2);
                    m.commit(c1, g, &[], &[]).unwrap();
                    m.commit(c2, g, &[], &[]).unwrap();
                    m.collect(c1);
                    m.collect(c2);
                    m.pump();
                    let discarded = m.nodes[c2].events.iter().any(|e| matches!(e, Event::CommitDiscarded { .. }));
                    proptest::prop_assert!(discarded, "the second commit lost");
                }
                Op::Restart(a) => {
                    m.restart(a % n);
                }
                _ => {}
            }
            members.sort();
            m.assert_converged(g, &members);
            for (i, node) in m.nodes.iter_mut().enumerate() {
                // Only stale copies of a losing commit are refused.
                for e in node.errors.drain(..) {
                    proptest::prop_assert!(matches!(e, Error::GroupEpoch { .. }), "node {}: {:?}", i, e);
                }
                node.events.clear();
            }
        }
    }
}

/// The largest group `DefaultAgent`s form (9: each knows its 8 peers),
/// grown by one commit of the most changes a commit takes: the commit and
/// the Welcome for 8 fit the agent's outgoing buffer, the group record its
/// bound; the figures are printed.
#[test]
fn a_full_group_fits_its_buffers_and_record() {
    let n = 1 + securemesh::group::MAX_GROUP_CHANGES;
    let mut m = Mesh::new(n, 0x6A08, true);
    let g = {
        let node = &mut m.nodes[0];
        node.agent.create_group(&mut node.rng).unwrap()
    };
    let mut members = vec![0];
    for chunk in (1..n).collect::<Vec<_>>().chunks(securemesh::group::MAX_GROUP_CHANGES) {
        for &j in chunk {
            m.share_key_package(j, 0);
        }
        m.commit(0, g, chunk, &[]).unwrap();
        m.pump();
        members.extend_from_slice(chunk);
    }
    assert_eq!(m.assert_converged(g, &members), 1);
    // A path commit over the whole tree, by the last member.
    m.commit(n - 1, g, &[], &[]).unwrap();
    m.pump();
    assert_eq!(m.assert_converged(g, &members), 2);
    let record = m.nodes[0].store[&RecordId::Group(0)].0.len();
    let (commit, welcome) =
        (m.longest[&ChannelKind::MlsMessage.tag()], m.longest[&ChannelKind::MlsWelcome.tag()]);
    println!(
        "group of {n}: group record {record} B (MAX_GROUP_RECORD_LEN {}), KeyPackage record {} B, \
         longest commit envelope {commit} B (room {}), Welcome for {} {welcome} B (room {})",
        DefaultAgent::MAX_GROUP_RECORD_LEN,
        m.nodes[0].store[&RecordId::KeyPackages].0.len(),
        securemesh::group::MAX_COMMIT_LEN + securemesh::envelope::HEADER_LEN,
        n - 1,
        securemesh::group::MAX_WELCOME_LEN + securemesh::envelope::HEADER_LEN,
    );
    assert!(commit <= securemesh::group::MAX_COMMIT_LEN + securemesh::envelope::HEADER_LEN);
    assert!(welcome <= securemesh::group::MAX_WELCOME_LEN + securemesh::envelope::HEADER_LEN);
    assert!(record <= DefaultAgent::MAX_GROUP_RECORD_LEN);
    m.send(5, g, TASK, b"all hands").unwrap();
    m.pump();
    assert!((0..n).filter(|&i| i != 5).all(|i| m.take_got(i).len() == 1));
}

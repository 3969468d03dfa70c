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
         MAX_KEY_PACKAGE_RECORD_LEN = {}, MAX_RECORD_LEN = {}, input_buffer_len(largest commit) = {}",
        core::mem::size_of::<DefaultAgent>(),
        securemesh::group::GROUP_SLOT_BYTES,
        DefaultAgent::MAX_GROUP_RECORD_LEN,
        old_group_record.0.len(),
        DefaultAgent::MAX_KEY_PACKAGE_RECORD_LEN,
        DefaultAgent::MAX_RECORD_LEN,
        DefaultAgent::input_buffer_len(securemesh::envelope::HEADER_LEN + securemesh::group::MAX_COMMIT_LEN),
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

/// A malicious member outside the agents: Mallory, with her own identity
/// (known to every agent and granted `WORKER`), driving `mls-lite`
/// directly so that she can build what an agent never would.
mod mallory {
    use super::*;
    use securemesh::envelope::HEADER_LEN;
    use securemesh::group::{MAX_COMMIT_LEN, MAX_WELCOME_LEN, MlsGroup};
    use securemesh_mls_lite::JoinKeys;
    use securemesh_mls_lite::key_package::{KeyPackageParams, create_key_package};
    use securemesh_mls_lite::messages::KeyPackage;
    use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
    use securemesh_mls_lite::pending_commit::CommitOptions;

    pub struct Mallory {
        pub identity: Identity,
        pub id: PeerId,
        pub rng: TestRng,
        pub group: Box<MlsGroup>,
        next: Box<MlsGroup>,
    }

    impl Mallory {
        /// Mallory, known to and granted by every node of `m`.
        pub fn join(m: &mut Mesh, seed: u64) -> Self {
            let mut rng = TestRng::new(seed);
            let identity = Identity::generate(&mut rng);
            let id = PeerId::of(identity.public());
            for node in m.nodes.iter_mut() {
                let p = node.agent.add_peer_identity(identity.public()).unwrap();
                node.agent.policy_mut().grant(p, Roles::of(&[WORKER])).unwrap();
            }
            m.drain_all();
            Mallory { identity, id, rng, group: Box::new(MlsGroup::new()), next: Box::new(MlsGroup::new()) }
        }

        /// A KeyPackage claiming `claimed`, signed with Mallory's
        /// identity key, and its private keys.
        pub fn key_package(
            &mut self,
            claimed: &PeerId,
        ) -> (Vec<u8>, securemesh_mls_lite::key_package::KeyPackageSecrets) {
            key_package_signed(claimed, &self.identity, &mut self.rng)
        }

        /// A KeyPackage claiming `claimed`, signed with a second key of
        /// Mallory's (a tree holds each signature key once, so an Add in
        /// her own group cannot reuse her identity's).
        pub fn impostor(&mut self, claimed: &PeerId) -> Vec<u8> {
            let other = Identity::generate(&mut self.rng);
            key_package_signed(claimed, &other, &mut self.rng).0
        }

        /// Join with `welcome` (an envelope) made for `kp`.
        pub fn accept(
            &mut self,
            welcome: &[u8],
            kp: &[u8],
            secrets: &securemesh_mls_lite::key_package::KeyPackageSecrets,
        ) {
            let body = &welcome[HEADER_LEN..];
            let MlsMessageBody::Welcome(w) = MlsMessage::from_bytes(body).unwrap().body else {
                panic!("not a Welcome")
            };
            let keys = JoinKeys {
                key_package: KeyPackage::from_bytes(kp).unwrap(),
                init_priv: &secrets.init_priv,
                encryption_priv: &secrets.encryption_priv,
                signature_priv: self.identity.signing_seed(),
            };
            let mut scratch = vec![0u8; MlsGroup::scratch_len(body.len())];
            self.group.join_into(&w, &keys, None, &[], &mut scratch).unwrap();
        }

        /// Create a group of Mallory alone.
        pub fn create(&mut self, g: GroupId) {
            let (kp, secrets) = self.key_package(&self.id.clone());
            let keys = JoinKeys {
                key_package: KeyPackage::from_bytes(&kp).unwrap(),
                init_priv: &secrets.init_priv,
                encryption_priv: &secrets.encryption_priv,
                signature_priv: self.identity.signing_seed(),
            };
            self.group.create_into(&g.to_bytes(), &keys, &[], &mut self.rng).unwrap();
        }

        /// A commit adding `adds` to Mallory's group (not merged), with
        /// `ad` as its authenticated data, as the envelope of `sender`;
        /// and its Welcome envelope (from Mallory), if any.
        pub fn commit(
            &mut self,
            g: GroupId,
            adds: &[&[u8]],
            ad: &PeerId,
            sender: &PeerId,
        ) -> (Vec<u8>, Vec<u8>) {
            let kps: Vec<_> = adds.iter().map(|k| KeyPackage::from_bytes(k).unwrap()).collect();
            let options = CommitOptions { authenticated_data: &ad.0, ..CommitOptions::default() };
            let (mut commit, mut welcome) = (vec![0u8; MAX_COMMIT_LEN], vec![0u8; MAX_WELCOME_LEN]);
            let mut scratch = vec![0u8; COMMIT_SCRATCH_LEN];
            let out = self
                .group
                .commit(
                    &kps,
                    &[],
                    &options,
                    &mut self.rng,
                    &mut self.next,
                    &mut commit,
                    &mut welcome,
                    &mut scratch,
                )
                .unwrap();
            let w = if out.welcome_len > 0 {
                envelope(ChannelKind::MlsWelcome, &self.id, g, &welcome[..out.welcome_len])
            } else {
                vec![]
            };
            (envelope(ChannelKind::MlsMessage, sender, g, &commit[..out.commit_len]), w)
        }
    }

    /// A KeyPackage claiming `claimed`, signed with `signer`'s key.
    fn key_package_signed(
        claimed: &PeerId,
        signer: &Identity,
        rng: &mut TestRng,
    ) -> (Vec<u8>, securemesh_mls_lite::key_package::KeyPackageSecrets) {
        let params =
            KeyPackageParams { identity: &claimed.0, not_before: 0, not_after: u64::MAX, last_resort: false };
        let mut kp = vec![0u8; MAX_KEY_PACKAGE_LEN];
        let mut scratch = vec![0u8; 2 * MAX_KEY_PACKAGE_LEN];
        let (n, secrets) =
            create_key_package(&params, signer.signing_seed(), rng, &mut kp, &mut scratch).unwrap();
        kp.truncate(n);
        (kp, secrets)
    }

    /// An envelope as an agent writes it (magic, version, channel, sender,
    /// session, body length, body).
    pub fn envelope(channel: ChannelKind, sender: &PeerId, g: GroupId, body: &[u8]) -> Vec<u8> {
        let mut e = vec![securemesh::envelope::MAGIC, securemesh::envelope::VERSION, channel.tag()];
        e.extend_from_slice(&sender.0);
        e.extend_from_slice(&g.0.to_be_bytes());
        e.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        assert_eq!(e.len(), HEADER_LEN);
        e.extend_from_slice(body);
        e
    }
}

/// What a member sees of a group: epoch, authenticator, roster.
fn snapshot(m: &Mesh, i: usize, g: GroupId) -> (Option<u64>, [u8; 32], Vec<PeerId>) {
    let a = &m.nodes[i].agent;
    (m.epoch(i, g), a.group_epoch_authenticator(g).unwrap(), a.group_members(g).collect())
}

/// Alice (node 0) creates a group with Carol (node 2) and adds Mallory,
/// who joins with `mls-lite`. Returns the group.
fn group_with_mallory(m: &mut Mesh, mallory: &mut mallory::Mallory) -> GroupId {
    let g = m.group(&[2]);
    let own = mallory.id;
    let (kp, secrets) = mallory.key_package(&own);
    assert_eq!(m.nodes[0].agent.set_peer_key_package(&kp, WALL), Ok(own));
    let mut scratch = vec![0u8; COMMIT_SCRATCH_LEN];
    let node = &mut m.nodes[0];
    node.agent.add_members(g, &[own], &mut node.rng, &mut scratch).unwrap();
    m.collect(0);
    while m.deliver_one() {}
    m.drain_all();
    let mut buf = vec![0u8; 64 * 1024];
    let t = m.nodes[0].agent.poll_transmit(&mut buf).unwrap().unwrap();
    assert_eq!((t.to, t.delivery), (own, Delivery::Mailbox));
    mallory.accept(&buf[..t.len], &kp, &secrets);
    assert_eq!(mallory.group.epoch(), m.epoch(0, g).unwrap());
    assert_eq!(m.assert_converged_with(g, &[0, 2], own), 2);
    m.drain_all();
    g
}

impl Mesh {
    /// `assert_converged` for a group with one outside member `extra`.
    fn assert_converged_with(&self, g: GroupId, members: &[usize], extra: PeerId) -> u64 {
        let e = self.epoch(members[0], g).unwrap();
        let mut want: Vec<_> = members.iter().map(|&i| self.id(i)).chain([extra]).collect();
        want.sort();
        for &i in members {
            let mut roster: Vec<_> = self.nodes[i].agent.group_members(g).collect();
            roster.sort();
            assert_eq!(roster, want, "roster of node {i}");
            assert_eq!(self.epoch(i, g), Some(e));
        }
        e
    }
}

/// A member adding a leaf that claims another peer (Bob) but carries the
/// member's own key is refused by every other member, the group exactly
/// as it was (and still working): the host would otherwise fan the group
/// out to Bob's id for the impostor.
#[test]
fn an_impostor_add_is_refused_with_the_group_unchanged() {
    let mut m = Mesh::new(3, 0x6A31, true);
    let mut mallory = mallory::Mallory::join(&mut m, 0x6A31_7777);
    let g = group_with_mallory(&mut m, &mut mallory);
    let bob = m.id(1);
    let impostor = mallory.impostor(&bob);
    let (commit, _) = mallory.commit(g, &[&impostor], &mallory.id.clone(), &mallory.id.clone());
    for i in [0, 2] {
        let before = snapshot(&m, i, g);
        let node = &mut m.nodes[i];
        let mut out = vec![0u8; DefaultAgent::input_buffer_len(commit.len())];
        let r = node.agent.handle_input(&commit, &mut out, T0, &mut node.rng);
        assert_eq!(r, Err(Error::UnboundMember), "node {i}");
        let ev = node.agent.poll_event();
        assert!(ev.is_none(), "node {i}: {ev:?}");
        assert!(!node.agent.persist_pending(), "node {i}");
        assert_eq!(snapshot(&m, i, g), before, "node {i}");
        assert!(!m.nodes[i].agent.group_members(g).any(|p| p == bob));
    }
    // The kept state still works: Carol reads Alice.
    m.send(0, g, TASK, b"still here").unwrap();
    let mut buf = vec![0u8; 4096];
    let t = m.nodes[0].agent.poll_transmit(&mut buf).unwrap().unwrap();
    m.fifo.push_back((2, buf[..t.len].to_vec()));
    while m.deliver_one() {}
    assert_eq!(m.take_got(2), vec![(Some(g), m.id(0), TASK, b"still here".to_vec())]);
}

/// A commit whose committer (Mallory) is not the envelope's sender (it
/// claims Carol, in the header and the authenticated data) is refused.
#[test]
fn a_commit_from_another_member_than_the_sender_is_refused() {
    let mut m = Mesh::new(3, 0x6A32, false);
    let mut mallory = mallory::Mallory::join(&mut m, 0x6A32_7777);
    let g = group_with_mallory(&mut m, &mut mallory);
    let carol = m.id(2);
    let (commit, _) = mallory.commit(g, &[], &carol, &carol);
    let before = snapshot(&m, 0, g);
    let node = &mut m.nodes[0];
    let mut out = vec![0u8; DefaultAgent::input_buffer_len(commit.len())];
    assert_eq!(node.agent.handle_input(&commit, &mut out, T0, &mut node.rng), Err(Error::UnboundMember));
    assert!(node.agent.poll_event().is_none());
    assert_eq!(snapshot(&m, 0, g), before);
    // The same commit under Mallory's own name is followed.
    let (commit, _) = mallory.commit(g, &[], &mallory.id.clone(), &mallory.id.clone());
    let node = &mut m.nodes[0];
    let mut out = vec![0u8; DefaultAgent::input_buffer_len(commit.len())];
    assert_eq!(node.agent.handle_input(&commit, &mut out, T0, &mut node.rng), Ok(None));
    assert_eq!(m.epoch(0, g), before.0.map(|e| e + 1));
}

/// A Welcome whose roster holds a leaf not bound to the peer it claims
/// (Bob's id, Mallory's key) is refused, though its inviter is bound.
#[test]
fn a_welcome_with_an_unbound_leaf_is_refused() {
    let mut m = Mesh::new(2, 0x6A33, false);
    let mut mallory = mallory::Mallory::join(&mut m, 0x6A33_7777);
    let g = GroupId(0x6A33);
    mallory.create(g);
    let bob = m.id(1);
    let impostor = mallory.impostor(&bob);
    let mut alice_kp = [0u8; MAX_KEY_PACKAGE_LEN];
    let node = &mut m.nodes[0];
    let n = node.agent.publish_key_package(WALL, &mut alice_kp, &mut node.rng).unwrap();
    m.drain(0);
    let (_, welcome) =
        mallory.commit(g, &[&impostor, &alice_kp[..n]], &mallory.id.clone(), &mallory.id.clone());
    let node = &mut m.nodes[0];
    let mut out = vec![0u8; DefaultAgent::input_buffer_len(welcome.len())];
    assert_eq!(node.agent.handle_input(&welcome, &mut out, T0, &mut node.rng), Err(Error::UnboundMember));
    assert!(node.agent.groups().next().is_none());
    assert_eq!(node.agent.key_packages_available(), 1);
    assert!(node.agent.poll_event().is_none());
    // Without the impostor, the same inviter's Welcome is taken.
    let (_, welcome) = mallory.commit(g, &[&alice_kp[..n]], &mallory.id.clone(), &mallory.id.clone());
    let node = &mut m.nodes[0];
    assert_eq!(node.agent.handle_input(&welcome, &mut out, T0, &mut node.rng), Ok(None));
    assert_eq!(node.agent.groups().next().map(|i| (i.id, i.members)), Some((g, 2)));
}

/// The agent crashes after storing its pending commit and before handing
/// it out: restored, it sends the commit again and the group converges.
#[test]
fn a_pending_commit_not_sent_before_a_crash_is_sent_after_restore() {
    let mut m = Mesh::new(3, 0x6A34, true);
    let g = m.group(&[1]);
    m.share_key_package(2, 0);
    m.commit(0, g, &[2], &[]).unwrap();
    m.drain(0); // records stored; nothing transmitted
    m.restart(0);
    assert!(m.nodes[0].agent.groups().next().unwrap().commit_pending);
    m.pump();
    assert_eq!(m.assert_converged(g, &[0, 1, 2]), 2);
    assert!(m.nodes.iter().all(|n| n.errors.is_empty()));
    m.send(2, g, TASK, b"joined").unwrap();
    m.pump();
    assert_eq!(m.take_got(0), vec![(Some(g), m.id(2), TASK, b"joined".to_vec())]);
}

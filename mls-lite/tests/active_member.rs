//! The active member: KeyPackages, group creation, add commits as pending
//! commits, Welcomes. Each new epoch is checked by our passive side
//! (`join_into`, `process_commit`), itself checked against the mlswg
//! vectors: every member must agree on the epoch, the epoch
//! authenticator and an exporter value after every step.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use securemesh_core::envelope::Persist;
use securemesh_core::testing::TestRng;
use securemesh_mls_lite::key_package::KeyPackageParams;
use securemesh_mls_lite::messages::{KeyPackage, WireFormat};
use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
use securemesh_mls_lite::pending_commit::{CommitOptions, CommitOutput};
use securemesh_mls_lite::testing::Candidate;
use securemesh_mls_lite::{CommitEvent, Error, Group, ProposalCache, PskStore};

type G = Group<8, 384, 32, 64>;

/// A would-be member (its KeyPackage and keys), and how it joins.
struct Agent(Candidate);

impl Agent {
    fn new(name: &[u8], rng: &mut TestRng) -> Agent {
        let params =
            KeyPackageParams { identity: name, not_before: 0, not_after: u64::MAX, last_resort: false };
        Agent(Candidate::new(&params, rng).unwrap())
    }

    fn join(&self, welcome: &[u8], tree: Option<&[u8]>) -> Result<Box<G>, Error> {
        let MlsMessageBody::Welcome(w) = MlsMessage::from_bytes(welcome)?.body else {
            return Err(Error::Malformed);
        };
        let mut g: Box<G> = Box::default();
        let mut scratch = vec![0u8; G::scratch_len(welcome.len())];
        g.join_into(&w, &self.0.keys()?, tree, &[], &mut scratch)?;
        Ok(g)
    }
}

struct Sent {
    commit: Vec<u8>,
    welcome: Vec<u8>,
    pending: Box<G>,
}

fn commit_adds(
    g: &mut G,
    agents: &[&Agent],
    options: &CommitOptions<'_>,
    rng: &mut TestRng,
) -> Result<Sent, Error> {
    commit_with(g, agents, &[], options, rng)
}

/// `g` commits adding `agents` and removing `removes`.
fn commit_with(
    g: &mut G,
    agents: &[&Agent],
    removes: &[u32],
    options: &CommitOptions<'_>,
    rng: &mut TestRng,
) -> Result<Sent, Error> {
    let kps: Vec<KeyPackage<'_>> = agents.iter().map(|a| a.0.key_package().unwrap()).collect();
    let total: usize = agents.iter().map(|a| a.0.key_package_bytes().len()).sum();
    let mut pending: Box<G> = Box::default();
    let mut commit = vec![0u8; total + 8192];
    let mut welcome = vec![0u8; G::welcome_len(agents.len(), options.ratchet_tree_in_welcome)];
    let mut scratch = vec![0u8; G::send_commit_scratch_len(total)];
    let CommitOutput { commit_len, welcome_len, epoch } =
        g.commit(&kps, removes, options, rng, &mut pending, &mut commit, &mut welcome, &mut scratch)?;
    assert_eq!(epoch, g.epoch() + 1);
    assert_eq!(pending.epoch(), epoch);
    commit.truncate(commit_len);
    welcome.truncate(welcome_len);
    Ok(Sent { commit, welcome, pending })
}

fn process(g: &mut G, commit: &[u8]) -> Result<CommitEvent, Error> {
    common::process_commit(g, commit)
}

fn agree(members: &[&G]) {
    common::assert_agree(members);
}

use common::talk;

fn encoded(g: &G) -> Vec<u8> {
    let mut out = vec![0u8; G::MAX_ENCODED_LEN];
    let n = g.encode_state(&mut out).unwrap();
    out.truncate(n);
    out
}

fn creator(rng: &mut TestRng) -> (Agent, Box<G>) {
    let alice = Agent::new(b"alice", rng);
    let mut g: Box<G> = Box::default();
    g.create_into(b"fleet", &alice.0.keys().unwrap(), &[], rng).unwrap();
    (alice, g)
}

/// Alice creates the group and adds Bob, who joins (epoch 1).
fn alice_and_bob(rng: &mut TestRng) -> (Box<G>, Box<G>) {
    let (_a, mut alice) = creator(rng);
    let bob_agent = Agent::new(b"bob", rng);
    let mut sent = commit_adds(&mut alice, &[&bob_agent], &CommitOptions::default(), rng).unwrap();
    alice.merge_pending_commit(&mut sent.pending).unwrap();
    let bob = bob_agent.join(&sent.welcome, None).unwrap();
    (alice, bob)
}

#[test]
fn a_created_group_grows_to_four_members_with_commits_from_two_of_them() {
    let mut rng = TestRng::new(11);
    let (_alice_agent, mut alice) = creator(&mut rng);
    assert_eq!((alice.epoch(), alice.members().count()), (0, 1));

    // Alice adds Bob: PrivateMessage commit, Welcome with the tree.
    let bob_agent = Agent::new(b"bob", &mut rng);
    let mut sent = commit_adds(&mut alice, &[&bob_agent], &CommitOptions::default(), &mut rng).unwrap();
    assert_eq!(alice.epoch(), 0, "a pending commit changes nothing");
    alice.merge_pending_commit(&mut sent.pending).unwrap();
    assert!(!sent.pending.is_joined());
    let mut bob = bob_agent.join(&sent.welcome, None).unwrap();
    agree(&[&alice, &bob]);
    talk(&mut alice, &mut [&mut bob], b"hello bob", &mut rng);
    talk(&mut bob, &mut [&mut alice], b"hello alice", &mut rng);

    // Alice adds Carol: PublicMessage commit, Welcome without the tree.
    let carol_agent = Agent::new(b"carol", &mut rng);
    let options = CommitOptions {
        wire_format: WireFormat::PublicMessage,
        ratchet_tree_in_welcome: false,
        authenticated_data: b"add carol",
        padding: 0,
        update_path: false,
    };
    let mut sent = commit_adds(&mut alice, &[&carol_agent], &options, &mut rng).unwrap();
    assert_eq!(process(&mut bob, &sent.commit).unwrap(), CommitEvent::NewEpoch { epoch: 2 });
    alice.merge_pending_commit(&mut sent.pending).unwrap();
    assert!(carol_agent.join(&sent.welcome, None).is_err(), "no tree: the joiner needs it");
    let mut tree = vec![0u8; G::MAX_TREE_LEN];
    let n = alice.export_ratchet_tree(&mut tree).unwrap();
    let mut carol = carol_agent.join(&sent.welcome, Some(&tree[..n])).unwrap();
    agree(&[&alice, &bob, &carol]);

    // Bob adds Dave and Erin in one commit (PrivateMessage, padded).
    let dave_agent = Agent::new(b"dave", &mut rng);
    let erin_agent = Agent::new(b"erin", &mut rng);
    let options = CommitOptions { padding: 32, ..CommitOptions::default() };
    let mut sent = commit_adds(&mut bob, &[&dave_agent, &erin_agent], &options, &mut rng).unwrap();
    for g in [&mut alice, &mut carol] {
        assert_eq!(process(g, &sent.commit).unwrap(), CommitEvent::NewEpoch { epoch: 3 });
    }
    bob.merge_pending_commit(&mut sent.pending).unwrap();
    let mut dave = dave_agent.join(&sent.welcome, None).unwrap();
    let mut erin = erin_agent.join(&sent.welcome, None).unwrap();
    agree(&[&alice, &bob, &carol, &dave, &erin]);
    assert_eq!((dave.own_leaf(), erin.own_leaf()), (3, 4));
    talk(&mut erin, &mut [&mut alice, &mut bob, &mut carol, &mut dave], b"hi all", &mut rng);
    talk(&mut carol, &mut [&mut alice, &mut bob, &mut dave, &mut erin], b"welcome", &mut rng);
}

#[test]
fn when_two_members_commit_in_one_epoch_the_loser_discards_its_pending_commit() {
    let mut rng = TestRng::new(12);
    let (mut alice, mut bob) = alice_and_bob(&mut rng);

    // Both commit for epoch 1 → 2; the delivery service orders Bob's first.
    let carol_agent = Agent::new(b"carol", &mut rng);
    let dave_agent = Agent::new(b"dave", &mut rng);
    let mut alices = commit_adds(&mut alice, &[&carol_agent], &CommitOptions::default(), &mut rng).unwrap();
    let mut bobs = commit_adds(&mut bob, &[&dave_agent], &CommitOptions::default(), &mut rng).unwrap();
    bob.merge_pending_commit(&mut bobs.pending).unwrap();
    alices.pending.clear();
    assert_eq!(process(&mut alice, &bobs.commit).unwrap(), CommitEvent::NewEpoch { epoch: 2 });
    // Alice's commit is now of an old epoch: refused by Bob.
    assert!(process(&mut bob, &alices.commit).is_err());
    let dave = dave_agent.join(&bobs.welcome, None).unwrap();
    agree(&[&alice, &bob, &dave]);
    // Carol's Welcome belongs to the losing commit: it opens a group state
    // nobody is in (its epoch secrets differ from the real epoch 2).
    let carol = carol_agent.join(&alices.welcome, None).unwrap();
    assert_ne!(carol.epoch_authenticator().expose(), alice.epoch_authenticator().expose());
}

#[test]
fn a_tampered_commit_or_welcome_changes_nothing() {
    let mut rng = TestRng::new(13);
    let (mut alice, mut bob) = alice_and_bob(&mut rng);
    for wire_format in [WireFormat::PublicMessage, WireFormat::PrivateMessage] {
        let carol_agent = Agent::new(b"carol", &mut rng);
        let options = CommitOptions { wire_format, ..CommitOptions::default() };
        let sent = commit_adds(&mut alice, &[&carol_agent], &options, &mut rng).unwrap();
        let before = encoded(&bob);
        // Every 7th byte (the whole message is too slow in debug builds).
        for i in (0..sent.commit.len()).step_by(7) {
            let mut bad = sent.commit.clone();
            bad[i] ^= 0x20;
            assert!(process(&mut bob, &bad).is_err(), "{wire_format:?} byte {i}");
            assert_eq!(encoded(&bob), before, "byte {i}");
        }
        for i in (0..sent.welcome.len()).step_by(11) {
            let mut bad = sent.welcome.clone();
            bad[i] ^= 0x20;
            assert!(carol_agent.join(&bad, None).is_err(), "welcome byte {i}");
        }
        // The genuine ones still work; then drop this commit.
        let mut probe: Box<G> = Box::default();
        probe.decode_state_into(&before).unwrap();
        assert_eq!(process(&mut probe, &sent.commit).unwrap(), CommitEvent::NewEpoch { epoch: 2 });
        carol_agent.join(&sent.welcome, None).unwrap();
    }
}

#[test]
fn a_commit_that_cannot_be_made_changes_nothing() {
    let mut rng = TestRng::new(14);
    let (_a, mut alice) = creator(&mut rng);
    let before = encoded(&alice);
    // A KeyPackage with a broken signature.
    let mut bob_agent = Agent::new(b"bob", &mut rng);
    let kp = bob_agent.0.key_package_bytes_mut();
    let last = kp.len() - 1;
    kp[last] ^= 1;
    assert_eq!(
        commit_adds(&mut alice, &[&bob_agent], &CommitOptions::default(), &mut rng).err(),
        Some(Error::BadSignature)
    );
    // The same member twice: its keys would repeat in the tree.
    let carol = Agent::new(b"carol", &mut rng);
    assert!(commit_adds(&mut alice, &[&carol, &carol], &CommitOptions::default(), &mut rng).is_err());
    // Short buffers.
    let kp = carol.0.key_package().unwrap();
    let mut pending: Box<G> = Box::default();
    let (mut c, mut w, mut s) = (
        vec![0u8; 16],
        vec![0u8; 4096],
        vec![0u8; G::send_commit_scratch_len(carol.0.key_package_bytes().len())],
    );
    let r =
        alice.commit(&[kp], &[], &CommitOptions::default(), &mut rng, &mut pending, &mut c, &mut w, &mut s);
    assert!(matches!(r, Err(Error::BufferTooSmall { .. })));
    assert!(!pending.is_joined());
    let mut c = vec![0u8; 4096];
    let mut w = vec![0u8; 16];
    let r =
        alice.commit(&[kp], &[], &CommitOptions::default(), &mut rng, &mut pending, &mut c, &mut w, &mut s);
    assert!(matches!(r, Err(Error::BufferTooSmall { .. })));
    assert_eq!(encoded(&alice), before);
    // Merging something that is not the next epoch is refused.
    let mut other: Box<G> = Box::default();
    assert_eq!(alice.merge_pending_commit(&mut other), Err(Error::Malformed));
    assert_eq!(encoded(&alice), before);
}

#[test]
fn a_created_group_persists_and_restores() {
    let mut rng = TestRng::new(15);
    let (_a, mut alice) = creator(&mut rng);
    let bob_agent = Agent::new(b"bob", &mut rng);
    let mut sent = commit_adds(&mut alice, &[&bob_agent], &CommitOptions::default(), &mut rng).unwrap();
    // The pending commit survives a restart of the committer too.
    let staged = encoded(&sent.pending);
    let mut restored: Box<G> = Box::default();
    restored.decode_state_into(&staged).unwrap();
    alice.merge_pending_commit(&mut restored).unwrap();
    let mut bob = bob_agent.join(&sent.welcome, None).unwrap();
    agree(&[&alice, &bob]);
    talk(&mut bob, &mut [&mut alice], b"after restore", &mut rng);
    sent.pending.clear();
}

/// One step of a random group history.
#[derive(Clone, Debug)]
enum Op {
    /// Member `by` (modulo the member count) adds `n` new members.
    Add { by: usize, n: usize, public: bool, tree: bool },
    /// Member `by` sends application data.
    Talk { by: usize, len: usize },
    /// Member `by` removes member `who` (both modulo the member count).
    Remove { by: usize, who: usize },
    /// Member `by` commits nothing but a new path.
    Update { by: usize, public: bool },
    /// Member `by` proposes an Update of its leaf, member `committer`
    /// commits it by reference.
    ProposeUpdate { by: usize, committer: usize, public: bool },
    /// A new member joins by an external commit from member `by`'s
    /// GroupInfo.
    ExternalJoin { by: usize, tree: bool },
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        (0usize..8, 1usize..3, any::<bool>(), any::<bool>()).prop_map(|(by, n, public, tree)| Op::Add {
            by,
            n,
            public,
            tree
        }),
        (0usize..8, 0usize..200).prop_map(|(by, len)| Op::Talk { by, len }),
        (0usize..8, 0usize..8).prop_map(|(by, who)| Op::Remove { by, who }),
        (0usize..8, any::<bool>()).prop_map(|(by, public)| Op::Update { by, public }),
        (0usize..8, 0usize..8, any::<bool>()).prop_map(|(by, committer, public)| Op::ProposeUpdate {
            by,
            committer,
            public
        }),
        (0usize..8, any::<bool>()).prop_map(|(by, tree)| Op::ExternalJoin { by, tree }),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 24, ..Default::default() })]

    /// A random sequence of adds (by any member, either framing, with or
    /// without the tree in the Welcome), removes, path-only commits,
    /// Update proposals committed by another member, external joins and
    /// application messages keeps
    /// every member in the same epoch with the same authenticator and
    /// exporter; a commit with one flipped byte changes no member.
    #[test]
    fn random_histories_keep_every_member_in_step(
        seed in proptest::prelude::any::<u64>(),
        ops in proptest::collection::vec(op(), 1..10),
        flip in proptest::prelude::any::<proptest::sample::Index>(),
    ) {
        let mut rng = TestRng::new(seed);
        let (_a, alice) = creator(&mut rng);
        let mut members: Vec<Box<G>> = vec![alice];
        for op in ops {
            match op {
                Op::Add { by, n, public, tree } => {
                    let by = by % members.len();
                    if members.len() + n > 8 {
                        continue;
                    }
                    let agents: Vec<Agent> = (0..n).map(|i| Agent::new(format!("m{}", members.len() + i).as_bytes(), &mut rng)).collect();
                    let options = CommitOptions {
                        wire_format: if public { WireFormat::PublicMessage } else { WireFormat::PrivateMessage },
                        ratchet_tree_in_welcome: tree,
                        ..CommitOptions::default()
                    };
                    let refs: Vec<&Agent> = agents.iter().collect();
                    let mut sent = commit_adds(&mut members[by], &refs, &options, &mut rng).unwrap();
                    for (i, m) in members.iter_mut().enumerate() {
                        if i == by {
                            continue;
                        }
                        let before = encoded(m);
                        let mut bad = sent.commit.clone();
                        let at = flip.index(bad.len());
                        bad[at] ^= 0x04;
                        proptest::prop_assert!(process(m, &bad).is_err());
                        proptest::prop_assert_eq!(encoded(m), before);
                        let processed = matches!(process(m, &sent.commit), Ok(CommitEvent::NewEpoch { .. }));
                        proptest::prop_assert!(processed);
                    }
                    members[by].merge_pending_commit(&mut sent.pending).unwrap();
                    let mut tree_bytes = vec![0u8; G::MAX_TREE_LEN];
                    let t = members[by].export_ratchet_tree(&mut tree_bytes).unwrap();
                    for a in &agents {
                        let given = if tree { None } else { Some(&tree_bytes[..t]) };
                        members.push(a.join(&sent.welcome, given).unwrap());
                    }
                    let refs: Vec<&G> = members.iter().map(|m| &**m).collect();
                    agree(&refs);
                }
                Op::Remove { by, who } => {
                    let (by, who) = (by % members.len(), who % members.len());
                    if by == who {
                        continue;
                    }
                    let leaf = members[who].own_leaf();
                    let mut sent = commit_with(&mut members[by], &[], &[leaf], &CommitOptions::default(), &mut rng).unwrap();
                    let mut gone = members.remove(who);
                    proptest::prop_assert_eq!(process(&mut gone, &sent.commit).unwrap(), CommitEvent::Removed);
                    let by = if who < by { by - 1 } else { by };
                    deliver(&mut members, by, &mut sent);
                    let refs: Vec<&G> = members.iter().map(|m| &**m).collect();
                    agree(&refs);
                }
                Op::Update { by, public } => {
                    let by = by % members.len();
                    if members.len() == 1 {
                        continue;
                    }
                    let wire_format = if public { WireFormat::PublicMessage } else { WireFormat::PrivateMessage };
                    let options = CommitOptions { wire_format, ..CommitOptions::default() };
                    let mut sent = commit_with(&mut members[by], &[], &[], &options, &mut rng).unwrap();
                    deliver(&mut members, by, &mut sent);
                    let refs: Vec<&G> = members.iter().map(|m| &**m).collect();
                    agree(&refs);
                }
                Op::ProposeUpdate { by, committer, public } => {
                    let (by, committer) = (by % members.len(), committer % members.len());
                    if by == committer {
                        continue;
                    }
                    use securemesh_mls_lite::proposal::OutgoingProposal;
                    let wire_format = if public { WireFormat::PublicMessage } else { WireFormat::PrivateMessage };
                    let mut caches: Vec<Box<ProposalCache>> = members.iter().map(|_| Box::default()).collect();
                    let mut msg = vec![0u8; 2048];
                    let mut scratch = vec![0u8; G::propose_scratch_len(512)];
                    let none = PskStore::default();
                    let n = members[by]
                        .propose(&OutgoingProposal::Update, wire_format, &none, &mut caches[by], &mut rng, &mut msg, &mut scratch)
                        .unwrap()
                        .len;
                    for (i, m) in members.iter_mut().enumerate() {
                        if i != by {
                            let mut scratch = vec![0u8; G::commit_scratch_len(n)];
                            m.process_proposal(&msg[..n], &mut caches[i], &mut scratch).unwrap();
                        }
                    }
                    let mut pending: Box<G> = Box::default();
                    let mut commit = vec![0u8; 8192];
                    let total = caches[committer].encoded_len(members[committer].epoch());
                    let mut scratch = vec![0u8; G::send_commit_scratch_len(total)];
                    let out = members[committer]
                        .commit_with(
                            &securemesh_mls_lite::pending_commit::Proposals::default(),
                            &caches[committer],
                            &none,
                            &CommitOptions::default(),
                            &mut rng,
                            &mut pending,
                            &mut commit,
                            &mut [],
                            &mut scratch,
                        )
                        .unwrap();
                    let old_key = members[by].tree().leaf(members[by].own_leaf()).unwrap().encryption_key.to_vec();
                    for (i, m) in members.iter_mut().enumerate() {
                        if i != committer {
                            let mut spare: Box<G> = Box::default();
                            let mut scratch = vec![0u8; G::commit_scratch_len(out.commit_len)];
                            let event = m.process_commit(&commit[..out.commit_len], &mut caches[i], &none, &mut spare, &mut scratch);
                            proptest::prop_assert!(matches!(event, Ok(CommitEvent::NewEpoch { .. })), "{:?}", event);
                        }
                    }
                    members[committer].merge_pending_commit(&mut pending).unwrap();
                    let new_key = members[by].tree().leaf(members[by].own_leaf()).unwrap().encryption_key.to_vec();
                    proptest::prop_assert_ne!(new_key, old_key);
                    let refs: Vec<&G> = members.iter().map(|m| &**m).collect();
                    agree(&refs);
                }
                Op::ExternalJoin { by, tree } => {
                    use securemesh_core::crypto::{Ed25519, Signature};
                    let by = by % members.len();
                    if members.len() == 8 {
                        continue;
                    }
                    let info = group_info(&mut members[by], tree);
                    let mut tree_bytes = vec![0u8; G::MAX_TREE_LEN];
                    let t = members[by].export_ratchet_tree(&mut tree_bytes).unwrap();
                    let given = if tree { None } else { Some(&tree_bytes[..t]) };
                    let seed = Ed25519::generate(&mut rng);
                    let public = CommitOptions { wire_format: WireFormat::PublicMessage, ..CommitOptions::default() };
                    let name = format!("x{}", members.len());
                    let none = PskStore::default();
                    let proposals = securemesh_mls_lite::pending_commit::Proposals::default();
                    let (joiner, commit) =
                        join_externally(&info, given, name.as_bytes(), &seed, &proposals, &none, &public, &mut rng).unwrap();
                    for m in members.iter_mut() {
                        let before = encoded(m);
                        let mut bad = commit.clone();
                        let at = flip.index(bad.len());
                        bad[at] ^= 0x04;
                        proptest::prop_assert!(process(m, &bad).is_err());
                        proptest::prop_assert_eq!(encoded(m), before);
                        let processed = matches!(process(m, &commit), Ok(CommitEvent::NewEpoch { .. }));
                        proptest::prop_assert!(processed);
                    }
                    members.push(joiner);
                    let refs: Vec<&G> = members.iter().map(|m| &**m).collect();
                    agree(&refs);
                }
                Op::Talk { by, len } => {
                    let by = by % members.len();
                    let data = vec![0x5a; len];
                    let (left, rest) = members.split_at_mut(by);
                    let (from, right) = rest.split_first_mut().unwrap();
                    let mut to: Vec<&mut G> = left.iter_mut().chain(right.iter_mut()).map(|m| &mut **m).collect();
                    talk(from, &mut to, &data, &mut rng);
                }
            }
        }
    }
}

/// Everyone in `members` but `by` processes `sent.commit`; `by` merges.
fn deliver(members: &mut [Box<G>], by: usize, sent: &mut Sent) {
    for (i, m) in members.iter_mut().enumerate() {
        if i != by {
            assert!(matches!(process(m, &sent.commit).unwrap(), CommitEvent::NewEpoch { .. }), "member {i}");
        }
    }
    members[by].merge_pending_commit(&mut sent.pending).unwrap();
}

#[test]
fn commits_with_an_update_path_remove_refresh_and_add_with_a_path_secret() {
    let mut rng = TestRng::new(21);
    let (mut alice, bob) = alice_and_bob(&mut rng);
    let carol_agent = Agent::new(b"carol", &mut rng);
    let dave_agent = Agent::new(b"dave", &mut rng);
    let mut sent =
        commit_adds(&mut alice, &[&carol_agent, &dave_agent], &CommitOptions::default(), &mut rng).unwrap();
    let mut members = vec![alice, bob];
    deliver(&mut members, 0, &mut sent);
    members.push(carol_agent.join(&sent.welcome, None).unwrap());
    members.push(dave_agent.join(&sent.welcome, None).unwrap());
    let refs: Vec<&G> = members.iter().map(|m| &**m).collect();
    agree(&refs);

    // An empty commit (path only) from Carol, as a PublicMessage.
    let public = CommitOptions { wire_format: WireFormat::PublicMessage, ..CommitOptions::default() };
    let old_leaf_key = members[2].tree().leaf(2).unwrap().encryption_key.to_owned();
    let mut sent = commit_with(&mut members[2], &[], &[], &public, &mut rng).unwrap();
    assert!(sent.welcome.is_empty());
    deliver(&mut members, 2, &mut sent);
    assert_ne!(members[2].tree().leaf(2).unwrap().encryption_key, &old_leaf_key, "a new leaf key");
    let refs: Vec<&G> = members.iter().map(|m| &**m).collect();
    agree(&refs);

    // Bob removes Carol (PrivateMessage): Carol learns she is out.
    let mut sent = commit_with(&mut members[1], &[], &[2], &CommitOptions::default(), &mut rng).unwrap();
    let mut carol = members.remove(2);
    assert_eq!(process(&mut carol, &sent.commit).unwrap(), CommitEvent::Removed);
    deliver(&mut members, 1, &mut sent);
    let refs: Vec<&G> = members.iter().map(|m| &**m).collect();
    agree(&refs);
    let (a, rest) = members.split_first_mut().unwrap();
    talk(a, &mut rest.iter_mut().map(|m| &mut **m).collect::<Vec<_>>(), b"carol is gone", &mut rng);

    // Dave removes Bob and adds Erin in one commit with a path: Erin's
    // Welcome carries a path secret.
    let erin_agent = Agent::new(b"erin", &mut rng);
    let mut sent =
        commit_with(&mut members[2], &[&erin_agent], &[1], &CommitOptions::default(), &mut rng).unwrap();
    let mut bob = members.remove(1);
    assert_eq!(process(&mut bob, &sent.commit).unwrap(), CommitEvent::Removed);
    deliver(&mut members, 1, &mut sent);
    let erin = erin_agent.join(&sent.welcome, None).unwrap();
    assert_eq!(erin.own_leaf(), 1, "the leftmost blank leaf");
    assert!(!erin.path_keys().is_empty(), "a path secret came with the Welcome");
    members.push(erin);
    let refs: Vec<&G> = members.iter().map(|m| &**m).collect();
    agree(&refs);

    // Alice adds nobody but refreshes her path on request.
    let refresh = CommitOptions { update_path: true, ..CommitOptions::default() };
    let mut sent = commit_with(&mut members[0], &[], &[], &refresh, &mut rng).unwrap();
    deliver(&mut members, 0, &mut sent);
    let refs: Vec<&G> = members.iter().map(|m| &**m).collect();
    agree(&refs);
    let (e, rest) = members.split_last_mut().unwrap();
    talk(e, &mut rest.iter_mut().map(|m| &mut **m).collect::<Vec<_>>(), b"hello from erin", &mut rng);
}

#[test]
fn removing_ourselves_or_a_blank_leaf_is_refused() {
    let mut rng = TestRng::new(22);
    let (mut alice, _bob) = alice_and_bob(&mut rng);
    let before = encoded(&alice);
    for removes in [&[0u32][..], &[5], &[1, 1]] {
        assert_eq!(
            commit_with(&mut alice, &[], removes, &CommitOptions::default(), &mut rng).err(),
            Some(Error::Malformed),
            "{removes:?}"
        );
    }
    assert_eq!(encoded(&alice), before);
}

#[test]
fn an_exported_group_info_is_signed_and_carries_the_tree_and_the_transcript() {
    use securemesh_mls_lite::transcript::InterimTranscriptHashInput;
    use securemesh_mls_lite::welcome::{RATCHET_TREE_EXTENSION, find_extension};
    let mut rng = TestRng::new(23);
    let (mut alice, bob) = alice_and_bob(&mut rng);
    let mut out = vec![0u8; G::MAX_GROUP_INFO_LEN];
    let mut scratch = vec![0u8; G::MAX_GROUP_INFO_LEN];
    let n = alice.export_group_info(true, &mut out, &mut scratch).unwrap();
    let MlsMessageBody::GroupInfo(gi) = MlsMessage::from_bytes(&out[..n]).unwrap().body else {
        panic!("not a GroupInfo")
    };
    gi.verify(alice.tree().leaf(0).unwrap().signature_key, &mut scratch).unwrap();
    assert!(gi.verify(alice.tree().leaf(1).unwrap().signature_key, &mut scratch).is_err());
    assert_eq!(gi.signer, 0);
    let gc = gi.group_context;
    assert_eq!((gc.group_id, gc.epoch, gc.tree_hash), (&b"fleet"[..], 1, &bob.tree_hash()[..]));
    // The confirmation tag is the epoch's: it gives the interim hash.
    let interim = InterimTranscriptHashInput { confirmation_tag: gi.confirmation_tag }
        .interim_transcript_hash(gc.confirmed_transcript_hash)
        .unwrap();
    assert_eq!(&interim, bob.interim_transcript_hash());
    // The tree it carries lets a new member join from a Welcome without one.
    let tree = find_extension(gi.extensions, RATCHET_TREE_EXTENSION).unwrap().unwrap().to_vec();
    let carol_agent = Agent::new(b"carol", &mut rng);
    let options = CommitOptions { ratchet_tree_in_welcome: false, ..CommitOptions::default() };
    let mut sent = commit_adds(&mut alice, &[&carol_agent], &options, &mut rng).unwrap();
    alice.merge_pending_commit(&mut sent.pending).unwrap();
    let n = alice.export_group_info(true, &mut out, &mut scratch).unwrap();
    let MlsMessageBody::GroupInfo(gi) = MlsMessage::from_bytes(&out[..n]).unwrap().body else {
        panic!("not a GroupInfo")
    };
    let new_tree = find_extension(gi.extensions, RATCHET_TREE_EXTENSION).unwrap().unwrap();
    assert_ne!(new_tree, &tree[..]);
    let carol = carol_agent.join(&sent.welcome, Some(new_tree)).unwrap();
    assert_eq!(carol.epoch_authenticator().expose(), alice.epoch_authenticator().expose());
    // Without the tree: smaller, still signed.
    let m = alice.export_group_info(false, &mut out, &mut scratch).unwrap();
    assert!(m < n);
}

/// `g`'s GroupInfo (with or without the tree) as `MLSMessage` bytes.
fn group_info(g: &mut G, with_tree: bool) -> Vec<u8> {
    let mut out = vec![0u8; G::MAX_GROUP_INFO_LEN];
    let mut scratch = vec![0u8; G::MAX_GROUP_INFO_LEN];
    let n = g.export_group_info(with_tree, &mut out, &mut scratch).unwrap();
    out.truncate(n);
    out
}

/// Join from `info` by an external commit: the new member and the commit.
/// On error both slots are empty.
#[allow(clippy::too_many_arguments)]
fn join_externally(
    info: &[u8],
    tree: Option<&[u8]>,
    identity: &[u8],
    seed: &securemesh_mls_lite::crypto::Secret32,
    proposals: &securemesh_mls_lite::pending_commit::Proposals<'_>,
    psks: &PskStore<'_>,
    options: &CommitOptions<'_>,
    rng: &mut TestRng,
) -> Result<(Box<G>, Vec<u8>), Error> {
    use securemesh_mls_lite::external_commit::ExternalJoin;
    let MlsMessageBody::GroupInfo(group_info) = MlsMessage::from_bytes(info)?.body else {
        return Err(Error::Malformed);
    };
    let join = ExternalJoin { group_info, ratchet_tree: tree, identity, signature_priv: seed };
    let (mut g, mut spare): (Box<G>, Box<G>) = (Box::default(), Box::default());
    let mut commit = vec![0u8; 8192];
    let mut scratch = vec![0u8; G::external_commit_scratch_len(info.len() + tree.map_or(0, <[u8]>::len))];
    let out = g.join_by_external_commit(
        &join,
        proposals,
        psks,
        options,
        rng,
        &mut spare,
        &mut commit,
        &mut scratch,
    );
    assert!(!spare.is_joined(), "the spare slot is emptied");
    if out.is_err() {
        assert!(!g.is_joined(), "a failed join leaves the slot empty");
    }
    let out = out?;
    commit.truncate(out.commit_len);
    assert_eq!(g.epoch(), out.epoch);
    Ok((g, commit))
}

#[test]
fn new_members_join_by_external_commits_and_a_member_rejoins() {
    use securemesh_core::crypto::{Ed25519, Signature};
    use securemesh_mls_lite::ExternalPsk;
    use securemesh_mls_lite::pending_commit::Proposals;
    let mut rng = TestRng::new(24);
    let (mut alice, bob) = alice_and_bob(&mut rng);
    let public = CommitOptions { wire_format: WireFormat::PublicMessage, ..CommitOptions::default() };
    let none = PskStore::default();

    // Carol joins from a GroupInfo that carries the tree.
    let carol_seed = Ed25519::generate(&mut rng);
    let info = group_info(&mut alice, true);
    let (carol, commit) =
        join_externally(&info, None, b"carol", &carol_seed, &Proposals::default(), &none, &public, &mut rng)
            .unwrap();
    assert_eq!(carol.own_leaf(), 2);
    let mut members = vec![alice, bob];
    for m in members.iter_mut() {
        assert_eq!(process(m, &commit).unwrap(), CommitEvent::NewEpoch { epoch: 2 });
    }
    members.push(carol);
    let refs: Vec<&G> = members.iter().map(|m| &**m).collect();
    agree(&refs);

    // Dave joins from a GroupInfo without the tree (given out of band),
    // injecting an external PSK the members know.
    let psk = [ExternalPsk { id: b"fleet", psk: &[3; 32] }];
    let store = PskStore { external: &psk, resumption: &[] };
    let info = group_info(&mut members[1], false);
    let mut tree = vec![0u8; G::MAX_TREE_LEN];
    let n = members[1].export_ratchet_tree(&mut tree).unwrap();
    tree.truncate(n);
    let dave_seed = Ed25519::generate(&mut rng);
    let with_psk = Proposals {
        psks: &[securemesh_mls_lite::messages::Psk::External { psk_id: b"fleet" }],
        ..Proposals::default()
    };
    let (dave, commit) =
        join_externally(&info, Some(&tree), b"dave", &dave_seed, &with_psk, &store, &public, &mut rng)
            .unwrap();
    for m in members.iter_mut() {
        let mut cache: Box<ProposalCache> = Box::default();
        let mut spare: Box<G> = Box::default();
        let mut scratch = vec![0u8; G::commit_scratch_len(commit.len())];
        let before = encoded(m);
        assert_eq!(
            m.process_commit(&commit, &mut cache, &none, &mut spare, &mut scratch),
            Err(Error::Unsupported)
        );
        assert_eq!(encoded(m), before, "without the PSK: unchanged");
        m.process_commit(&commit, &mut cache, &store, &mut spare, &mut scratch).unwrap();
    }
    members.push(dave);
    let refs: Vec<&G> = members.iter().map(|m| &**m).collect();
    agree(&refs);
    let (d, rest) = members.split_last_mut().unwrap();
    talk(d, &mut rest.iter_mut().map(|m| &mut **m).collect::<Vec<_>>(), b"dave is in", &mut rng);

    // Carol lost her state: she rejoins with the same credential, removing
    // her old leaf in the same external commit. Her old state sees that it
    // was removed.
    let info = group_info(&mut members[0], true);
    let resync = Proposals { removes: &[2], ..Proposals::default() };
    let (carol, commit) =
        join_externally(&info, None, b"carol", &carol_seed, &resync, &none, &public, &mut rng).unwrap();
    assert_eq!(carol.own_leaf(), 2, "the leftmost blank leaf: her old one");
    let mut old_carol = members.remove(2);
    assert_eq!(process(&mut old_carol, &commit).unwrap(), CommitEvent::Removed);
    for m in members.iter_mut() {
        assert!(matches!(process(m, &commit).unwrap(), CommitEvent::NewEpoch { .. }));
    }
    members.push(carol);
    let refs: Vec<&G> = members.iter().map(|m| &**m).collect();
    agree(&refs);

    // Every 7th byte of an external commit flipped is refused by a member,
    // which is left unchanged.
    let info = group_info(&mut members[0], true);
    let erin_seed = Ed25519::generate(&mut rng);
    let (_, commit) =
        join_externally(&info, None, b"erin", &erin_seed, &Proposals::default(), &none, &public, &mut rng)
            .unwrap();
    let before = encoded(&members[0]);
    for i in (0..commit.len()).step_by(7) {
        let mut forged = commit.clone();
        forged[i] ^= 0x10;
        assert!(process(&mut members[0], &forged).is_err(), "byte {i}");
        assert_eq!(encoded(&members[0]), before);
    }
}

#[test]
fn an_external_commit_that_cannot_be_made_leaves_both_slots_empty() {
    use securemesh_core::crypto::{Ed25519, Signature};
    use securemesh_mls_lite::pending_commit::Proposals;
    let mut rng = TestRng::new(25);
    let (mut alice, _bob) = alice_and_bob(&mut rng);
    let seed = Ed25519::generate(&mut rng);
    let none = PskStore::default();
    let public = CommitOptions { wire_format: WireFormat::PublicMessage, ..CommitOptions::default() };
    let info = group_info(&mut alice, true);
    let private = CommitOptions::default();
    let frank = Agent::new(b"frank", &mut rng);
    let kps = [frank.0.key_package().unwrap()];
    let add = Proposals { adds: &kps, ..Proposals::default() };
    let no_tree = group_info(&mut alice, false);
    let mut forged = info.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1; // the signature
    let cases: [(&[u8], &Proposals<'_>, &CommitOptions<'_>, &str); 5] = [
        (&info, &Proposals::default(), &private, "a PrivateMessage"),
        (&info, &add, &public, "an Add"),
        (&info, &Proposals { removes: &[7], ..Proposals::default() }, &public, "a remove of a blank leaf"),
        (&no_tree, &Proposals::default(), &public, "no tree"),
        (&forged, &Proposals::default(), &public, "a bad signature"),
    ];
    for (info, proposals, options, what) in cases {
        assert!(
            join_externally(info, None, b"erin", &seed, proposals, &none, options, &mut rng).is_err(),
            "{what}"
        );
    }
}

#[test]
fn a_member_left_alone_commits_and_grows_the_group_again() {
    let mut rng = TestRng::new(26);
    // A lone creator's empty commit: a path of its new leaf only.
    let (_a, mut alice) = creator(&mut rng);
    let old_key = alice.tree().leaf(0).unwrap().encryption_key.to_vec();
    let mut sent = commit_adds(&mut alice, &[], &CommitOptions::default(), &mut rng).unwrap();
    alice.merge_pending_commit(&mut sent.pending).unwrap();
    assert_eq!(alice.epoch(), 1);
    assert_ne!(alice.tree().leaf(0).unwrap().encryption_key, &old_key[..]);

    // Alice adds Bob and Carol, then removes both in one commit.
    let (bob_agent, carol_agent) = (Agent::new(b"bob", &mut rng), Agent::new(b"carol", &mut rng));
    let mut sent =
        commit_adds(&mut alice, &[&bob_agent, &carol_agent], &CommitOptions::default(), &mut rng).unwrap();
    alice.merge_pending_commit(&mut sent.pending).unwrap();
    let mut bob = bob_agent.join(&sent.welcome, None).unwrap();
    let mut carol = carol_agent.join(&sent.welcome, None).unwrap();
    agree(&[&alice, &bob, &carol]);
    let mut sent = commit_with(&mut alice, &[], &[1, 2], &CommitOptions::default(), &mut rng).unwrap();
    assert_eq!(process(&mut bob, &sent.commit).unwrap(), CommitEvent::Removed);
    assert_eq!(process(&mut carol, &sent.commit).unwrap(), CommitEvent::Removed);
    alice.merge_pending_commit(&mut sent.pending).unwrap();
    assert_eq!((alice.members().count(), alice.tree().leaf_count()), (1, 1));

    // Alone, she adds Dave, who joins and talks with her.
    let dave_agent = Agent::new(b"dave", &mut rng);
    let mut sent = commit_adds(&mut alice, &[&dave_agent], &CommitOptions::default(), &mut rng).unwrap();
    alice.merge_pending_commit(&mut sent.pending).unwrap();
    let mut dave = dave_agent.join(&sent.welcome, None).unwrap();
    agree(&[&alice, &dave]);
    talk(&mut dave, &mut [&mut alice], b"just us", &mut rng);
}

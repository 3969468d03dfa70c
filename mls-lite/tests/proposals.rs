//! The active member's proposals: Add, Remove, PSK and
//! GroupContextExtensions sent by reference (`Group::propose`) and
//! committed from the cache, PSK and GroupContextExtensions by value
//! (`Group::commit_with`). Each epoch is checked by our passive side (the
//! mlswg vectors check it): every member must agree on the epoch, the
//! epoch authenticator, the tree hash and an exporter value, and a refused
//! call changes nothing.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use securemesh_core::envelope::Persist;
use securemesh_core::testing::TestRng;
use securemesh_mls_lite::key_package::KeyPackageParams;
use securemesh_mls_lite::messages::{Psk, ResumptionPskUsage, WireFormat};
use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
use securemesh_mls_lite::pending_commit::{CommitOptions, Proposals};
use securemesh_mls_lite::proposal::OutgoingProposal;
use securemesh_mls_lite::testing::Candidate;
use securemesh_mls_lite::{CommitEvent, Error, ExternalPsk, Group, ProposalCache, PskStore};

type G = Group<8, 384, 32, 64>;

const PSK_ID: &[u8] = b"fleet psk";
const PSK: [u8; 32] = [0x5a; 32];

/// What a commit gives: the commit, the Welcome and the pending epoch.
type Sent = (Vec<u8>, Vec<u8>, Box<G>);

/// One member: its group and its proposal cache.
struct Member {
    group: Box<G>,
    cache: Box<ProposalCache>,
}

impl Member {
    fn new(group: Box<G>) -> Member {
        Member { group, cache: Box::default() }
    }

    fn state(&self) -> Vec<u8> {
        let mut out = vec![0u8; G::MAX_ENCODED_LEN];
        let n = self.group.encode_state(&mut out).unwrap();
        out.truncate(n);
        out
    }

    fn propose(
        &mut self,
        proposal: &OutgoingProposal<'_>,
        wire_format: WireFormat,
        store: &PskStore<'_>,
        rng: &mut TestRng,
    ) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; 2048];
        let mut scratch = vec![0u8; G::propose_scratch_len(1024)];
        let sent =
            self.group.propose(proposal, wire_format, store, &mut self.cache, rng, &mut out, &mut scratch)?;
        out.truncate(sent.len);
        Ok(out)
    }

    fn receive_proposal(&mut self, message: &[u8]) -> Result<[u8; 32], Error> {
        let mut scratch = vec![0u8; G::commit_scratch_len(message.len())];
        self.group.process_proposal(message, &mut self.cache, &mut scratch)
    }

    /// Commit `by_value` and the cache: the commit, the Welcome and the
    /// pending epoch.
    fn commit(
        &mut self,
        by_value: &Proposals<'_>,
        store: &PskStore<'_>,
        options: &CommitOptions<'_>,
        rng: &mut TestRng,
    ) -> Result<Sent, Error> {
        let kps: usize = by_value.adds.iter().map(|kp| kp.as_bytes().len()).sum();
        let total = kps + self.cache.encoded_len(self.group.epoch());
        let mut pending: Box<G> = Box::default();
        let mut commit = vec![0u8; total + 4096];
        let mut welcome = vec![0u8; G::welcome_len(4, true) + 256];
        let mut scratch = vec![0u8; G::send_commit_scratch_len(total)];
        let out = self.group.commit_with(
            by_value,
            &self.cache,
            store,
            options,
            rng,
            &mut pending,
            &mut commit,
            &mut welcome,
            &mut scratch,
        )?;
        commit.truncate(out.commit_len);
        welcome.truncate(out.welcome_len);
        Ok((commit, welcome, pending))
    }

    fn process(&mut self, commit: &[u8], store: &PskStore<'_>) -> Result<CommitEvent, Error> {
        let mut spare: Box<G> = Box::default();
        let mut scratch = vec![0u8; G::commit_scratch_len(commit.len())];
        self.group.process_commit(commit, &mut self.cache, store, &mut spare, &mut scratch)
    }
}

fn candidate(name: &[u8], rng: &mut TestRng) -> Candidate {
    let params = KeyPackageParams { identity: name, not_before: 0, not_after: u64::MAX, last_resort: false };
    Candidate::new(&params, rng).unwrap()
}

fn join(c: &Candidate, welcome: &[u8], psks: &[ExternalPsk<'_>]) -> Result<Member, Error> {
    let MlsMessageBody::Welcome(w) = MlsMessage::from_bytes(welcome)?.body else {
        return Err(Error::Malformed);
    };
    let mut g: Box<G> = Box::default();
    let mut scratch = vec![0u8; G::scratch_len(welcome.len())];
    g.join_into(&w, &c.keys()?, None, psks, &mut scratch)?;
    Ok(Member::new(g))
}

/// Alice creates the group and adds the others in one commit.
fn group_of(names: &[&[u8]], rng: &mut TestRng) -> Vec<Member> {
    let alice = candidate(names[0], rng);
    let mut g: Box<G> = Box::default();
    g.create_into(b"fleet", &alice.keys().unwrap(), &[], rng).unwrap();
    let mut alice = Member::new(g);
    let others: Vec<Candidate> = names[1..].iter().map(|n| candidate(n, rng)).collect();
    let kps: Vec<_> = others.iter().map(|c| c.key_package().unwrap()).collect();
    let by_value = Proposals { adds: &kps, ..Proposals::default() };
    let (_, welcome, mut pending) =
        alice.commit(&by_value, &PskStore::default(), &CommitOptions::default(), rng).unwrap();
    alice.group.merge_pending_commit(&mut pending).unwrap();
    let mut members = vec![alice];
    for c in &others {
        members.push(join(c, &welcome, &[]).unwrap());
    }
    agree(&members);
    members
}

/// Every member is in the same epoch with the same authenticator,
/// exporter value, tree hash, extensions and member count.
fn agree(members: &[Member]) {
    let first = &members[0].group;
    let mut want = [0u8; 32];
    first.export_secret(b"test", b"ctx", &mut want).unwrap();
    for m in members {
        let g = &m.group;
        assert_eq!(g.epoch(), first.epoch());
        assert_eq!(g.epoch_authenticator().expose(), first.epoch_authenticator().expose());
        assert_eq!(g.tree_hash(), first.tree_hash());
        assert_eq!(g.extensions(), first.extensions());
        assert_eq!(g.members().count(), members.len());
        let mut got = [0u8; 32];
        g.export_secret(b"test", b"ctx", &mut got).unwrap();
        assert_eq!(got, want);
    }
}

/// `by` sends `proposal`; every other member caches it under the same
/// reference.
fn propose_to_all(
    members: &mut [Member],
    by: usize,
    proposal: &OutgoingProposal<'_>,
    wire_format: WireFormat,
    rng: &mut TestRng,
) {
    let store = PskStore { external: &[ExternalPsk { id: PSK_ID, psk: &PSK }], resumption: &[] };
    let message = members[by].propose(proposal, wire_format, &store, rng).unwrap();
    let epoch = members[by].group.epoch();
    let own: Vec<[u8; 32]> = members[by].cache.references(epoch).collect();
    for (i, m) in members.iter_mut().enumerate() {
        if i != by {
            let reference = m.receive_proposal(&message).unwrap();
            assert_eq!(Some(&reference), own.last(), "the same ProposalRef at member {i}");
        }
    }
}

/// `by` commits; the others process it (`removed`: those it removes, who
/// leave `members`), `by` merges. Returns the Welcome.
fn commit_to_all(
    members: &mut Vec<Member>,
    by: usize,
    by_value: &Proposals<'_>,
    store: &PskStore<'_>,
    options: &CommitOptions<'_>,
    removed: &[usize],
    rng: &mut TestRng,
) -> Vec<u8> {
    let (commit, welcome, mut pending) = members[by].commit(by_value, store, options, rng).unwrap();
    for (i, m) in members.iter_mut().enumerate() {
        if i == by {
            continue;
        }
        let event = m.process(&commit, store).unwrap();
        if removed.contains(&i) {
            assert_eq!(event, CommitEvent::Removed, "member {i}");
        } else {
            assert!(matches!(event, CommitEvent::NewEpoch { .. }), "member {i}");
            assert!(m.cache.is_empty(), "the old epoch's proposals are gone");
        }
    }
    members[by].group.merge_pending_commit(&mut pending).unwrap();
    members[by].cache.clear();
    let mut i = 0;
    members.retain(|_| {
        i += 1;
        !removed.contains(&(i - 1))
    });
    welcome
}

#[test]
fn proposals_by_reference_in_both_framings_are_committed_by_another_member() {
    let mut rng = TestRng::new(31);
    let mut members = group_of(&[b"alice", b"bob", b"carol", b"dave"], &mut rng);
    let store = PskStore { external: &[ExternalPsk { id: PSK_ID, psk: &PSK }], resumption: &[] };

    // Bob proposes to remove Dave (PublicMessage), Carol proposes to add
    // Erin (PrivateMessage) and a PSK; Alice commits all three by
    // reference (and nothing by value).
    propose_to_all(&mut members, 1, &OutgoingProposal::Remove(3), WireFormat::PublicMessage, &mut rng);
    let erin = candidate(b"erin", &mut rng);
    let add = OutgoingProposal::Add(erin.key_package().unwrap());
    propose_to_all(&mut members, 2, &add, WireFormat::PrivateMessage, &mut rng);
    let psk = OutgoingProposal::PreSharedKey(Psk::External { psk_id: PSK_ID });
    propose_to_all(&mut members, 2, &psk, WireFormat::PrivateMessage, &mut rng);
    assert_eq!(members[0].cache.len(), 3);
    let welcome = commit_to_all(
        &mut members,
        0,
        &Proposals::default(),
        &store,
        &CommitOptions::default(),
        &[3],
        &mut rng,
    );
    assert_eq!(members.len(), 3);

    // Erin joins from the Welcome (its GroupSecrets name the PSK).
    let psks = [ExternalPsk { id: PSK_ID, psk: &PSK }];
    assert_eq!(join(&erin, &welcome, &[]).err(), Some(Error::Unsupported), "without the PSK");
    let erin = join(&erin, &welcome, &psks).unwrap();
    assert_eq!(erin.group.own_leaf(), 3, "Dave's leaf");
    members.push(erin);
    agree(&members);

    // New GroupContext extensions proposed by Erin, committed by Bob as a
    // PublicMessage: the extension is in everyone's GroupContext.
    let extensions = [0xff, 0x00, 0x02, 0xbe, 0xef]; // type 0xff00, 2 bytes of data
    let gce = OutgoingProposal::GroupContextExtensions(&extensions);
    propose_to_all(&mut members, 3, &gce, WireFormat::PublicMessage, &mut rng);
    let public = CommitOptions { wire_format: WireFormat::PublicMessage, ..CommitOptions::default() };
    commit_to_all(&mut members, 1, &Proposals::default(), &store, &public, &[], &mut rng);
    agree(&members);
    assert_eq!(members[0].group.extensions(), &extensions);
}

#[test]
fn psks_and_extensions_by_value_with_an_add_in_one_commit() {
    let mut rng = TestRng::new(32);
    let mut members = group_of(&[b"alice", b"bob"], &mut rng);
    let external = [ExternalPsk { id: PSK_ID, psk: &PSK }];
    let store = PskStore { external: &external, resumption: &[] };

    // The current epoch's resumption PSK, an external PSK, new extensions
    // and an Add, all by value.
    let epoch = members[0].group.epoch();
    let psks = [
        Psk::Resumption { usage: ResumptionPskUsage::Application, psk_group_id: b"fleet", psk_epoch: epoch },
        Psk::External { psk_id: PSK_ID },
    ];
    let carol = candidate(b"carol", &mut rng);
    let kps = [carol.key_package().unwrap()];
    let by_value = Proposals {
        adds: &kps,
        psks: &psks[1..],
        group_context_extensions: Some(&[]),
        ..Proposals::default()
    };
    let welcome = commit_to_all(&mut members, 1, &by_value, &store, &CommitOptions::default(), &[], &mut rng);
    members.push(join(&carol, &welcome, &external).unwrap());
    agree(&members);

    // The resumption PSK of an epoch gone by is not known (and nothing
    // changed); the current epoch's is.
    let before = members[0].state();
    let by_value = Proposals { psks: &psks[..1], ..Proposals::default() };
    let refused = members[0].commit(&by_value, &store, &CommitOptions::default(), &mut rng);
    assert_eq!(refused.err(), Some(Error::Unsupported));
    assert_eq!(members[0].state(), before);
    let current = [Psk::Resumption {
        usage: ResumptionPskUsage::Application,
        psk_group_id: b"fleet",
        psk_epoch: epoch + 1,
    }];
    let by_value = Proposals { psks: &current, ..Proposals::default() };
    commit_to_all(&mut members, 2, &by_value, &store, &CommitOptions::default(), &[], &mut rng);
    agree(&members);

    // A member without the external PSK cannot follow a commit that
    // injects it, and is unchanged.
    let by_value = Proposals { psks: &psks[1..], ..Proposals::default() };
    let (commit, _, mut pending) =
        members[0].commit(&by_value, &store, &CommitOptions::default(), &mut rng).unwrap();
    let before = members[1].state();
    assert_eq!(members[1].process(&commit, &PskStore::default()).err(), Some(Error::Unsupported));
    assert_eq!(members[1].state(), before);
    assert_eq!(members[1].process(&commit, &store).unwrap(), CommitEvent::NewEpoch { epoch: epoch + 3 });
    assert_eq!(members[2].process(&commit, &store).unwrap(), CommitEvent::NewEpoch { epoch: epoch + 3 });
    members[0].group.merge_pending_commit(&mut pending).unwrap();
    agree(&members);
}

#[test]
fn invalid_cached_proposals_are_left_out_of_a_commit() {
    let mut rng = TestRng::new(33);
    let mut members = group_of(&[b"alice", b"bob", b"carol"], &mut rng);
    let store = PskStore::default();
    // Bob proposes to remove Alice and new extensions, Carol proposes to
    // remove Bob twice (the second names a leaf already touched) and other
    // extensions: Alice commits, leaving out the remove of herself, the
    // second remove of Bob and the second extensions.
    let ext = [0xff, 0x01, 0x00]; // type 0xff01, no data
    let cases: [(usize, OutgoingProposal<'_>, WireFormat); 5] = [
        (1, OutgoingProposal::Remove(0), WireFormat::PrivateMessage),
        (2, OutgoingProposal::Remove(1), WireFormat::PrivateMessage),
        (2, OutgoingProposal::Remove(1), WireFormat::PublicMessage),
        (1, OutgoingProposal::GroupContextExtensions(&ext), WireFormat::PublicMessage),
        (2, OutgoingProposal::GroupContextExtensions(&[]), WireFormat::PrivateMessage),
    ];
    for (by, proposal, wire_format) in &cases {
        propose_to_all(&mut members, *by, proposal, *wire_format, &mut rng);
    }
    assert_eq!(members[0].cache.len(), 5);
    commit_to_all(&mut members, 0, &Proposals::default(), &store, &CommitOptions::default(), &[1], &mut rng);
    agree(&members);
    assert_eq!(members.len(), 2);
    assert_eq!(members[0].group.extensions(), &ext, "the first extensions proposal won");
}

#[test]
fn a_proposal_that_cannot_be_sent_or_received_changes_nothing() {
    let mut rng = TestRng::new(34);
    let mut members = group_of(&[b"alice", b"bob"], &mut rng);
    let store = PskStore::default();
    let before = members[0].state();
    // One extension of 62 bytes: a 65-byte body, over the group's 64.
    let mut long = vec![0xff, 0x02, 62];
    long.resize(65, 0);
    let cases: [(OutgoingProposal<'_>, Error); 3] = [
        (OutgoingProposal::Remove(7), Error::Malformed),
        (OutgoingProposal::PreSharedKey(Psk::External { psk_id: b"unknown" }), Error::Unsupported),
        (OutgoingProposal::GroupContextExtensions(&long), Error::Capacity),
    ];
    for (proposal, error) in &cases {
        assert_eq!(
            members[0].propose(proposal, WireFormat::PrivateMessage, &store, &mut rng).err(),
            Some(*error)
        );
        assert!(members[0].cache.is_empty());
        assert_eq!(members[0].state(), before, "{proposal:?}");
    }

    // Any flipped byte of a proposal is refused by the receiver, which
    // keeps its state and cache.
    for wire_format in [WireFormat::PublicMessage, WireFormat::PrivateMessage] {
        let message =
            members[0].propose(&OutgoingProposal::Remove(1), wire_format, &store, &mut rng).unwrap();
        let before = members[1].state();
        for i in (0..message.len()).step_by(5) {
            let mut forged = message.clone();
            forged[i] ^= 0x40;
            assert!(members[1].receive_proposal(&forged).is_err(), "{wire_format:?} byte {i}");
            assert!(members[1].cache.is_empty());
            assert_eq!(members[1].state(), before);
        }
        members[1].receive_proposal(&message).unwrap();
        members[1].cache.clear();
    }
}

#[test]
fn an_update_proposal_gives_our_leaf_a_new_key_once_another_member_commits_it() {
    let mut rng = TestRng::new(35);
    let mut members = group_of(&[b"alice", b"bob", b"carol"], &mut rng);
    let store = PskStore::default();

    for (round, wire_format) in
        [WireFormat::PrivateMessage, WireFormat::PublicMessage].into_iter().enumerate()
    {
        // Bob proposes an Update; a second one in the same epoch is refused.
        let old_key = members[1].group.tree().leaf(1).unwrap().encryption_key.to_vec();
        propose_to_all(&mut members, 1, &OutgoingProposal::Update, wire_format, &mut rng);
        let before = members[1].state();
        assert_eq!(
            members[1].propose(&OutgoingProposal::Update, wire_format, &store, &mut rng).err(),
            Some(Error::Capacity)
        );
        assert_eq!(members[1].state(), before);

        // Bob restarts from his saved state (the pending key is in it) and
        // then follows the commit that covers his Update (Carol's in the
        // first round, Alice's in the second).
        let mut restored: Box<G> = Box::default();
        restored.decode_state_into(&before).unwrap();
        members[1].group = restored;
        let by = if round == 0 { 2 } else { 0 };
        commit_to_all(
            &mut members,
            by,
            &Proposals::default(),
            &store,
            &CommitOptions::default(),
            &[],
            &mut rng,
        );
        agree(&members);
        let new_key = members[1].group.tree().leaf(1).unwrap().encryption_key.to_vec();
        assert_ne!(new_key, old_key, "round {round}: the Update's leaf is in the tree");

        // The new key works: Alice's path commit encrypts to it.
        let refresh = CommitOptions { update_path: true, ..CommitOptions::default() };
        commit_to_all(&mut members, 0, &Proposals::default(), &store, &refresh, &[], &mut rng);
        agree(&members);
    }

    // An Update that no commit covers is dropped with its epoch: Bob
    // proposes, Carol's commit does not know it (her cache is empty).
    propose_to_all(&mut members, 1, &OutgoingProposal::Update, WireFormat::PrivateMessage, &mut rng);
    members[2].cache.clear();
    let (commit, _, mut pending) =
        members[2].commit(&Proposals::default(), &store, &CommitOptions::default(), &mut rng).unwrap();
    for i in [0, 1] {
        assert!(matches!(members[i].process(&commit, &store).unwrap(), CommitEvent::NewEpoch { .. }));
    }
    members[2].group.merge_pending_commit(&mut pending).unwrap();
    agree(&members);
    // A new epoch, a new Update may be proposed.
    propose_to_all(&mut members, 1, &OutgoingProposal::Update, WireFormat::PrivateMessage, &mut rng);
}

#[test]
fn an_add_whose_keys_are_in_use_is_refused_or_left_out() {
    let mut rng = TestRng::new(36);
    let store = PskStore::default();
    let alice = candidate(b"alice", &mut rng);
    let mut g: Box<G> = Box::default();
    g.create_into(b"fleet", &alice.keys().unwrap(), &[], &mut rng).unwrap();
    let mut alice_m = Member::new(g);
    let bob = candidate(b"bob", &mut rng);
    let kps = [bob.key_package().unwrap()];
    let (_, welcome, mut pending) = alice_m
        .commit(
            &Proposals { adds: &kps, ..Proposals::default() },
            &store,
            &CommitOptions::default(),
            &mut rng,
        )
        .unwrap();
    alice_m.group.merge_pending_commit(&mut pending).unwrap();
    let mut members = vec![alice_m, join(&bob, &welcome, &[]).unwrap()];

    // A member's own KeyPackage again: its keys are in use.
    let before = members[1].state();
    let again = OutgoingProposal::Add(bob.key_package().unwrap());
    assert_eq!(
        members[1].propose(&again, WireFormat::PublicMessage, &store, &mut rng).err(),
        Some(Error::Malformed)
    );
    assert_eq!(members[1].state(), before);
    assert!(members[1].cache.is_empty());

    // Carol's KeyPackage proposed twice (two references, one per framing):
    // the commit covers the first and leaves the second out.
    let carol = candidate(b"carol", &mut rng);
    let add = OutgoingProposal::Add(carol.key_package().unwrap());
    propose_to_all(&mut members, 1, &add, WireFormat::PublicMessage, &mut rng);
    propose_to_all(&mut members, 1, &add, WireFormat::PrivateMessage, &mut rng);
    assert_eq!(members[0].cache.len(), 2);
    let welcome = commit_to_all(
        &mut members,
        0,
        &Proposals::default(),
        &store,
        &CommitOptions::default(),
        &[],
        &mut rng,
    );
    members.push(join(&carol, &welcome, &[]).unwrap());
    agree(&members);
}

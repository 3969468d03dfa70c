//! securemesh-mls-lite and OpenMLS 0.9 in one group, both directions.
//! Every step (create, commit, join) ends with `Mesh::check`: epoch,
//! epoch authenticator, exporter value and roster equal at every member,
//! then an application message from every member opened by every other.

use securemesh_interop_mls::{Member, Mesh, Opts, assert_agree};
use securemesh_mls_lite::proposal::OutgoingProposal;

fn no_tree() -> Opts {
    Opts { tree_in_welcome: false, ..Opts::default() }
}

// 1. OpenMLS creates the group and adds our member.

#[test]
fn openmls_adds_ours_tree_in_welcome() {
    let mut mesh = Mesh::create(Member::openmls("openmls-a"));
    mesh.commit("openmls-a", vec![Member::ours("ours-b")], &[], Opts::default());
    assert_eq!(mesh.members.len(), 2);
}

#[test]
fn openmls_adds_ours_tree_out_of_band() {
    let mut mesh = Mesh::create(Member::openmls("openmls-a"));
    let sent = mesh.commit("openmls-a", vec![Member::ours("ours-b")], &[], no_tree());
    let with_tree = {
        let mut other = Mesh::create(Member::openmls("openmls-x"));
        other.commit("openmls-x", vec![Member::ours("ours-y")], &[], Opts::default()).welcome.unwrap()
    };
    assert!(sent.welcome.unwrap().len() < with_tree.len(), "a Welcome without the tree is smaller");
}

/// Our member follows OpenMLS's commits in both framings.
#[test]
fn ours_processes_openmls_commits_private_and_public() {
    let mut mesh = Mesh::create(Member::openmls("openmls-a"));
    mesh.commit("openmls-a", vec![Member::ours("ours-b")], &[], Opts::default());
    mesh.commit("openmls-a", vec![Member::ours("ours-c")], &[], Opts::default());
    mesh.commit("openmls-a", vec![Member::ours("ours-d")], &[], Opts::public());
    mesh.commit("openmls-a", vec![], &[], Opts { path: true, ..Opts::public() });
    assert_eq!(mesh.members[0].epoch(), 4);
}

// 2. Our member creates the group and adds OpenMLS members; the second
// add is processed by the first OpenMLS member.

fn ours_adds_two_openmls(opts: Opts) {
    let mut mesh = Mesh::create(Member::ours("ours-a"));
    mesh.commit("ours-a", vec![Member::openmls("openmls-b")], &[], opts);
    mesh.commit("ours-a", vec![Member::openmls("openmls-c")], &[], opts);
    assert_eq!(mesh.members.len(), 3);
}

#[test]
fn ours_adds_openmls_private_commit_tree_in_welcome() {
    ours_adds_two_openmls(Opts::default());
}

#[test]
fn ours_adds_openmls_private_commit_tree_out_of_band() {
    ours_adds_two_openmls(no_tree());
}

#[test]
fn ours_adds_openmls_public_commit_tree_in_welcome() {
    ours_adds_two_openmls(Opts::public());
}

#[test]
fn ours_adds_openmls_public_commit_tree_out_of_band() {
    ours_adds_two_openmls(Opts { tree_in_welcome: false, ..Opts::public() });
}

#[test]
fn ours_adds_openmls_with_update_path() {
    ours_adds_two_openmls(Opts { path: true, ..Opts::default() });
}

// 3. Mixed groups: adds committed by either side.

#[test]
fn four_members_alternating_committers() {
    let mut mesh = Mesh::create(Member::ours("ours-a"));
    mesh.commit("ours-a", vec![Member::openmls("openmls-b")], &[], Opts::default());
    mesh.commit("openmls-b", vec![Member::ours("ours-c")], &[], Opts::default());
    mesh.commit("ours-c", vec![Member::openmls("openmls-d")], &[], Opts::public());
    mesh.commit("openmls-d", vec![Member::ours("ours-e")], &[], Opts::public());
    assert_eq!(mesh.members.len(), 5);
    assert_eq!(mesh.members[0].epoch(), 4);
}

#[test]
fn several_joiners_of_both_sides_in_one_commit() {
    let mut mesh = Mesh::create(Member::ours("ours-a"));
    mesh.commit("ours-a", vec![Member::openmls("openmls-b"), Member::ours("ours-c")], &[], Opts::default());
    mesh.commit(
        "openmls-b",
        vec![Member::ours("ours-d"), Member::openmls("openmls-e"), Member::ours("ours-f")],
        &[],
        no_tree(),
    );
    assert_eq!(mesh.members.len(), 6);
}

/// A mixed group of four both sides built, used by the update and remove
/// tests: ours-a, openmls-b, ours-c, openmls-d.
fn four() -> Mesh {
    let mut mesh = Mesh::create(Member::ours("ours-a"));
    mesh.commit("ours-a", vec![Member::openmls("openmls-b")], &[], Opts::default());
    mesh.commit("openmls-b", vec![Member::ours("ours-c")], &[], Opts::default());
    mesh.commit("ours-c", vec![Member::openmls("openmls-d")], &[], Opts::default());
    mesh
}

// 4. Updates and removes from each side.

#[test]
fn updates_from_both_sides() {
    let mut mesh = four();
    let before = mesh.members[0].epoch_authenticator();
    // Ours: an empty commit with a path; OpenMLS: self_update.
    mesh.commit("ours-a", vec![], &[], Opts { path: true, ..Opts::default() });
    mesh.commit("openmls-b", vec![], &[], Opts { path: true, ..Opts::default() });
    mesh.commit("ours-c", vec![], &[], Opts { path: true, ..Opts::public() });
    mesh.commit("openmls-d", vec![], &[], Opts { path: true, ..Opts::public() });
    assert_ne!(mesh.members[0].epoch_authenticator(), before);
    assert_eq!(mesh.members[0].epoch(), 7);
}

/// The new leaf keys of an update reach the other side: ours (an empty
/// commit with a path) seen by OpenMLS, OpenMLS's (`self_update`) seen by
/// ours.
#[test]
fn updates_refresh_leaf_keys_on_the_other_side() {
    let mut mesh = four();
    let (c, d) = (mesh.leaf("ours-c"), mesh.leaf("openmls-d"));
    let before = mesh.member("openmls-b").leaf_encryption_key(c);
    mesh.commit("ours-c", vec![], &[], Opts { path: true, ..Opts::default() });
    assert_ne!(mesh.member("openmls-b").leaf_encryption_key(c), before, "our new leaf key at OpenMLS");
    let before = mesh.member("ours-a").leaf_encryption_key(d);
    mesh.commit("openmls-d", vec![], &[], Opts { path: true, ..Opts::default() });
    assert_ne!(mesh.member("ours-a").leaf_encryption_key(d), before, "OpenMLS's new leaf key at ours");
}

#[test]
fn ours_removes_openmls_member() {
    let mut mesh = four();
    mesh.commit("ours-a", vec![], &["openmls-d"], Opts::default());
    mesh.commit("ours-c", vec![], &["openmls-b"], Opts::public());
    assert_eq!(mesh.members.len(), 2);
}

#[test]
fn openmls_removes_our_member() {
    let mut mesh = four();
    mesh.commit("openmls-b", vec![], &["ours-c"], Opts::default());
    mesh.commit("openmls-d", vec![], &["ours-a"], Opts::public());
    assert_eq!(mesh.members.len(), 2);
}

#[test]
fn removes_and_adds_in_one_commit_by_both_sides() {
    let mut mesh = four();
    mesh.commit("ours-a", vec![Member::openmls("openmls-e")], &["ours-c"], Opts::default());
    mesh.commit("openmls-b", vec![Member::ours("ours-f")], &["ours-a"], no_tree());
    assert_eq!(mesh.members.len(), 4);
}

// Proposals by reference, sent by either side and committed by either:
// every member processes the proposal into its store (OpenMLS) or cache
// (ours) before the commit that covers it.

#[test]
fn openmls_remove_proposal_committed_by_openmls() {
    let mut mesh = four();
    let a = mesh.leaf("ours-a");
    let proposal = mesh.member("openmls-d").propose_remove(a, &Opts::default()).unwrap();
    mesh.deliver_proposal("openmls-d", &proposal);
    assert_eq!(mesh.member("ours-a").as_ours().cached_proposals(), 1);
    assert_eq!(mesh.member("ours-c").as_ours().cached_proposals(), 1);
    mesh.commit_proposals("openmls-b", vec![], &["ours-a"], Opts::default());
    assert_eq!(mesh.member("ours-c").as_ours().cached_proposals(), 0, "the commit used up the cache");
    assert_eq!(mesh.members.len(), 3);
}

#[test]
fn openmls_update_proposal_committed_by_openmls() {
    let mut mesh = four();
    let d = mesh.leaf("openmls-d");
    let before = mesh.member("ours-c").leaf_encryption_key(d);
    let proposal = mesh.member("openmls-d").as_openmls().propose_update(&Opts::default()).unwrap();
    mesh.deliver_proposal("openmls-d", &proposal);
    assert_eq!(mesh.member("ours-c").as_ours().cached_proposals(), 1);
    mesh.commit_proposals("openmls-b", vec![], &[], Opts::default());
    assert_ne!(mesh.member("ours-c").leaf_encryption_key(d), before, "the Update's leaf key is in our tree");
}

#[test]
fn openmls_public_remove_proposal_of_ours_committed_by_openmls() {
    let mut mesh = four();
    let c = mesh.leaf("ours-c");
    let proposal = mesh.member("openmls-b").propose_remove(c, &Opts::public()).unwrap();
    mesh.deliver_proposal("openmls-b", &proposal);
    assert_eq!(mesh.member("ours-c").as_ours().cached_proposals(), 1, "the removed member cached it too");
    mesh.commit_proposals("openmls-d", vec![], &["ours-c"], Opts::public());
    assert_eq!(mesh.members.len(), 3);
}

/// Our member commits OpenMLS's Update and Remove proposals by reference.
#[test]
fn openmls_update_and_remove_proposals_committed_by_ours() {
    let mut mesh = four();
    let (b, c) = (mesh.leaf("openmls-b"), mesh.leaf("ours-c"));
    let before = mesh.member("openmls-d").leaf_encryption_key(b);
    let update = mesh.member("openmls-b").as_openmls().propose_update(&Opts::default()).unwrap();
    mesh.deliver_proposal("openmls-b", &update);
    let remove = mesh.member("openmls-d").propose_remove(c, &Opts::public()).unwrap();
    mesh.deliver_proposal("openmls-d", &remove);
    assert_eq!(mesh.member("ours-a").as_ours().cached_proposals(), 2);
    mesh.commit_proposals("ours-a", vec![], &["ours-c"], Opts::default());
    assert_ne!(mesh.member("openmls-d").leaf_encryption_key(b), before, "b's Update applied at OpenMLS");
}

#[test]
fn openmls_add_proposal_committed_by_ours() {
    let mut mesh = four();
    let joiner = Member::ours("ours-e");
    let proposal = mesh.member("openmls-b").propose_add(&joiner.key_package(), &Opts::default()).unwrap();
    mesh.deliver_proposal("openmls-b", &proposal);
    mesh.commit_proposals("ours-c", vec![joiner], &[], no_tree());
    assert_eq!(mesh.members.len(), 5);
}

#[test]
fn ours_remove_proposal_committed_by_openmls() {
    let mut mesh = four();
    let d = mesh.leaf("openmls-d");
    let proposal = mesh.member("ours-a").propose_remove(d, &Opts::default()).unwrap();
    mesh.deliver_proposal("ours-a", &proposal);
    mesh.commit_proposals("openmls-b", vec![], &["openmls-d"], Opts::default());
    assert_eq!(mesh.members.len(), 3);
}

#[test]
fn ours_public_add_proposal_committed_by_openmls() {
    let mut mesh = four();
    let joiner = Member::openmls("openmls-e");
    let proposal = mesh.member("ours-c").propose_add(&joiner.key_package(), &Opts::public()).unwrap();
    mesh.deliver_proposal("ours-c", &proposal);
    mesh.commit_proposals("openmls-d", vec![joiner], &[], Opts::public());
    assert_eq!(mesh.members.len(), 5);
}

/// Our member asks to leave (a Remove of its own leaf); OpenMLS commits
/// it and our member sees that it was removed.
#[test]
fn ours_leaves_by_proposing_its_own_removal() {
    let mut mesh = four();
    let c = mesh.leaf("ours-c");
    let proposal = mesh.member("ours-c").propose_remove(c, &Opts::default()).unwrap();
    mesh.deliver_proposal("ours-c", &proposal);
    mesh.commit_proposals("openmls-d", vec![], &["ours-c"], Opts::default());
    assert_eq!(mesh.members.len(), 3);
}

/// Our proposal committed by our other member, OpenMLS following both.
#[test]
fn ours_proposal_committed_by_ours_followed_by_openmls() {
    let mut mesh = four();
    let b = mesh.leaf("openmls-b");
    let proposal = mesh.member("ours-a").propose_remove(b, &Opts::default()).unwrap();
    mesh.deliver_proposal("ours-a", &proposal);
    mesh.commit_proposals("ours-c", vec![], &["openmls-b"], Opts::public());
    assert_eq!(mesh.members.len(), 3);
}

/// Proposals of both sides (an Add of ours, a Remove and an Update of
/// OpenMLS's) in one commit, by each side in turn.
#[test]
fn proposals_of_both_sides_in_one_commit() {
    for committer in ["ours-a", "openmls-b"] {
        let mut mesh = four();
        let c = mesh.leaf("ours-c");
        let joiner = Member::openmls("openmls-e");
        let add = mesh.member("ours-a").propose_add(&joiner.key_package(), &Opts::default()).unwrap();
        mesh.deliver_proposal("ours-a", &add);
        let remove = mesh.member("openmls-b").propose_remove(c, &Opts::default()).unwrap();
        mesh.deliver_proposal("openmls-b", &remove);
        let update = mesh.member("openmls-d").as_openmls().propose_update(&Opts::default()).unwrap();
        mesh.deliver_proposal("openmls-d", &update);
        mesh.commit_proposals(committer, vec![joiner], &["ours-c"], Opts::default());
        assert_eq!(mesh.members.len(), 4, "committed by {committer}");
    }
}

/// GroupContextExtensions proposals (replacing none with none: the
/// GroupContext is unchanged but the commit needs a path), ours committed
/// by OpenMLS, OpenMLS's committed by ours.
#[test]
fn group_context_extensions_proposals_both_ways() {
    let mut mesh = four();
    let ours = OutgoingProposal::GroupContextExtensions(&[]);
    let proposal = mesh.member("ours-a").as_ours().propose(&ours, &Opts::default()).unwrap();
    mesh.deliver_proposal("ours-a", &proposal);
    mesh.commit_proposals("openmls-b", vec![], &[], Opts::default());
    let proposal =
        mesh.member("openmls-d").as_openmls().propose_no_group_context_extensions(&Opts::public()).unwrap();
    mesh.deliver_proposal("openmls-d", &proposal);
    assert_eq!(mesh.member("ours-c").as_ours().cached_proposals(), 1);
    mesh.commit_proposals("ours-c", vec![], &[], Opts::default());
    assert_eq!(mesh.members[0].epoch(), 5);
}

// The harness itself.

/// `assert_agree` is not vacuous: two groups of the same shape (same
/// names, same group id, our member's keys from the same seed) differ.
#[test]
#[should_panic(expected = "epoch authenticator")]
fn assert_agree_catches_a_different_group() {
    let build = || {
        let mut mesh = Mesh::create(Member::ours("ours-a"));
        mesh.commit("ours-a", vec![Member::openmls("openmls-b")], &[], Opts::default());
        mesh
    };
    let (mut one, two) = (build(), build());
    one.members.extend(two.members);
    assert_agree(&one.members);
}

/// Sizes on the wire of each side's Welcome (with and without the tree)
/// and commits, in a four-member mixed group; shown with `--nocapture`.
#[test]
fn message_sizes() {
    let mut mesh = Mesh::create(Member::ours("ours-a"));
    let ours_with = mesh.commit("ours-a", vec![Member::openmls("openmls-b")], &[], Opts::default());
    let openmls_with = mesh.commit("openmls-b", vec![Member::ours("ours-c")], &[], Opts::default());
    let ours_without = mesh.commit("ours-c", vec![Member::openmls("openmls-d")], &[], no_tree());
    let openmls_without = mesh.commit("openmls-d", vec![Member::ours("ours-e")], &[], no_tree());
    for (who, with, without) in
        [("ours", &ours_with, &ours_without), ("OpenMLS", &openmls_with, &openmls_without)]
    {
        let (with, without) = (with.welcome.as_ref().unwrap().len(), without.welcome.as_ref().unwrap().len());
        assert!(without < with, "{who}: Welcome without the tree {without} < with {with} (one member fewer)");
    }
    mesh.commit("ours-a", vec![], &[], Opts { path: true, ..Opts::default() });
    mesh.commit("openmls-b", vec![], &[], Opts { path: true, ..Opts::default() });
    mesh.commit("ours-a", vec![], &[], Opts { path: true, ..Opts::public() });
    mesh.commit("openmls-b", vec![], &[], Opts { path: true, ..Opts::public() });
    mesh.commit("ours-c", vec![], &["openmls-d"], Opts::default());
    mesh.commit("openmls-b", vec![], &["ours-e"], Opts::default());
    mesh.print_sizes();
    assert_eq!(mesh.members.len(), 3);
}

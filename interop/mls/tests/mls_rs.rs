//! securemesh-mls-lite, mls-rs 0.57 and OpenMLS 0.9 in one group. Every
//! step (create, commit, join) ends with `Mesh::check`: epoch, epoch
//! authenticator, exporter value and roster equal at every member, then an
//! application message from every member opened by every other.

use securemesh_interop_mls::{Member, Mesh, Opts};

fn no_tree() -> Opts {
    Opts { tree_in_welcome: false, ..Opts::default() }
}

fn update() -> Opts {
    Opts { path: true, ..Opts::default() }
}

fn public_update() -> Opts {
    Opts { path: true, ..Opts::public() }
}

// 1. mls-rs creates the group and adds our member.

#[test]
fn mls_rs_adds_ours_tree_in_welcome() {
    let mut mesh = Mesh::create(Member::mls_rs("rs-a"));
    mesh.commit("rs-a", vec![Member::ours("ours-b")], &[], Opts::default());
    assert_eq!(mesh.members.len(), 2);
}

#[test]
fn mls_rs_adds_ours_tree_out_of_band() {
    let mut mesh = Mesh::create(Member::mls_rs("rs-a"));
    let sent = mesh.commit("rs-a", vec![Member::ours("ours-b")], &[], no_tree());
    let with_tree = {
        let mut other = Mesh::create(Member::mls_rs("rs-x"));
        other.commit("rs-x", vec![Member::ours("ours-y")], &[], Opts::default()).welcome.unwrap()
    };
    assert!(sent.welcome.unwrap().len() < with_tree.len(), "a Welcome without the tree is smaller");
}

/// Our members follow mls-rs's commits in both framings: adds, an update
/// (empty commit, path) and a remove.
#[test]
fn ours_processes_mls_rs_commits_private_and_public() {
    let mut mesh = Mesh::create(Member::mls_rs("rs-a"));
    mesh.commit("rs-a", vec![Member::ours("ours-b")], &[], Opts::default());
    mesh.commit("rs-a", vec![Member::ours("ours-c")], &[], Opts::public());
    mesh.commit("rs-a", vec![Member::ours("ours-d"), Member::ours("ours-e")], &[], no_tree());
    mesh.commit("rs-a", vec![], &[], update());
    mesh.commit("rs-a", vec![], &[], public_update());
    mesh.commit("rs-a", vec![], &["ours-c"], Opts::default());
    mesh.commit("rs-a", vec![], &["ours-b"], Opts::public());
    assert_eq!(mesh.members.len(), 3);
    assert_eq!(mesh.members[0].epoch(), 7);
}

// 2. Our member creates the group and adds mls-rs members; the second add
// is processed by the first mls-rs member.

fn ours_adds_two_mls_rs(opts: Opts) {
    let mut mesh = Mesh::create(Member::ours("ours-a"));
    mesh.commit("ours-a", vec![Member::mls_rs("rs-b")], &[], opts);
    mesh.commit("ours-a", vec![Member::mls_rs("rs-c")], &[], opts);
    assert_eq!(mesh.members.len(), 3);
}

#[test]
fn ours_adds_mls_rs_private_commit_tree_in_welcome() {
    ours_adds_two_mls_rs(Opts::default());
}

#[test]
fn ours_adds_mls_rs_private_commit_tree_out_of_band() {
    ours_adds_two_mls_rs(no_tree());
}

#[test]
fn ours_adds_mls_rs_public_commit_tree_in_welcome() {
    ours_adds_two_mls_rs(Opts::public());
}

#[test]
fn ours_adds_mls_rs_public_commit_tree_out_of_band() {
    ours_adds_two_mls_rs(Opts { tree_in_welcome: false, ..Opts::public() });
}

#[test]
fn ours_adds_mls_rs_with_update_path() {
    ours_adds_two_mls_rs(update());
}

// 3. Ours and mls-rs, updates and removes both ways.

/// ours-a, rs-b, ours-c, rs-d, built by both sides.
fn four() -> Mesh {
    let mut mesh = Mesh::create(Member::ours("ours-a"));
    mesh.commit("ours-a", vec![Member::mls_rs("rs-b")], &[], Opts::default());
    mesh.commit("rs-b", vec![Member::ours("ours-c")], &[], Opts::default());
    mesh.commit("ours-c", vec![Member::mls_rs("rs-d")], &[], Opts::public());
    mesh
}

#[test]
fn updates_from_both_sides_refresh_leaf_keys() {
    let mut mesh = four();
    let (c, d) = (mesh.leaf("ours-c"), mesh.leaf("rs-d"));
    let before = mesh.member("rs-b").leaf_encryption_key(c);
    mesh.commit("ours-c", vec![], &[], update());
    assert_ne!(mesh.member("rs-b").leaf_encryption_key(c), before, "our new leaf key at mls-rs");
    let before = mesh.member("ours-a").leaf_encryption_key(d);
    mesh.commit("rs-d", vec![], &[], update());
    assert_ne!(mesh.member("ours-a").leaf_encryption_key(d), before, "mls-rs's new leaf key at ours");
    mesh.commit("ours-a", vec![], &[], public_update());
    mesh.commit("rs-b", vec![], &[], public_update());
    assert_eq!(mesh.members[0].epoch(), 7);
}

#[test]
fn removes_both_ways() {
    let mut mesh = four();
    mesh.commit("ours-a", vec![], &["rs-d"], Opts::default());
    mesh.commit("rs-b", vec![], &["ours-c"], Opts::public());
    mesh.commit("ours-a", vec![Member::mls_rs("rs-e")], &["rs-b"], no_tree());
    mesh.commit("rs-e", vec![Member::ours("ours-f")], &["ours-a"], Opts::default());
    assert_eq!(mesh.members.len(), 2);
}

// 4. Proposals by reference between ours and mls-rs.

/// mls-rs's Update and Remove proposals committed by ours.
#[test]
fn mls_rs_update_and_remove_proposals_committed_by_ours() {
    let mut mesh = four();
    let (b, c) = (mesh.leaf("rs-b"), mesh.leaf("ours-c"));
    let before = mesh.member("rs-d").leaf_encryption_key(b);
    let update = mesh.member("rs-b").propose_update(&Opts::default()).unwrap();
    mesh.deliver_proposal("rs-b", &update);
    let remove = mesh.member("rs-d").propose_remove(c, &Opts::public()).unwrap();
    mesh.deliver_proposal("rs-d", &remove);
    assert_eq!(mesh.member("ours-a").as_ours().cached_proposals(), 2);
    mesh.commit_proposals("ours-a", vec![], &["ours-c"], Opts::default());
    assert_ne!(mesh.member("rs-d").leaf_encryption_key(b), before, "b's Update applied at mls-rs");
}

/// Our Update proposal (PrivateMessage, then PublicMessage) committed by
/// mls-rs: the new leaf key is ours from then on.
#[test]
fn ours_update_proposal_committed_by_mls_rs() {
    let mut mesh = four();
    let a = mesh.leaf("ours-a");
    for opts in [Opts::default(), Opts::public()] {
        let before = mesh.member("rs-d").leaf_encryption_key(a);
        let proposal = mesh.member("ours-a").propose_update(&opts).unwrap();
        mesh.deliver_proposal("ours-a", &proposal);
        mesh.commit_proposals("rs-b", vec![], &[], opts);
        assert_ne!(mesh.member("rs-d").leaf_encryption_key(a), before, "our Update applied at mls-rs");
    }
}

#[test]
fn mls_rs_add_proposal_committed_by_ours() {
    let mut mesh = four();
    let joiner = Member::ours("ours-e");
    let proposal = mesh.member("rs-b").propose_add(&joiner.key_package(), &Opts::default()).unwrap();
    mesh.deliver_proposal("rs-b", &proposal);
    mesh.commit_proposals("ours-c", vec![joiner], &[], no_tree());
    assert_eq!(mesh.members.len(), 5);
}

#[test]
fn ours_add_and_remove_proposals_committed_by_mls_rs() {
    let mut mesh = four();
    let c = mesh.leaf("ours-c");
    let joiner = Member::mls_rs("rs-e");
    let add = mesh.member("ours-a").propose_add(&joiner.key_package(), &Opts::public()).unwrap();
    mesh.deliver_proposal("ours-a", &add);
    let remove = mesh.member("ours-c").propose_remove(c, &Opts::default()).unwrap();
    mesh.deliver_proposal("ours-c", &remove);
    mesh.commit_proposals("rs-d", vec![joiner], &["ours-c"], Opts::default());
    assert_eq!(mesh.members.len(), 4);
}

// 5. All three implementations in one group.

/// ours-a creates; each implementation adds one of each of the others;
/// each commits an update (PrivateMessage and PublicMessage) and removes
/// a member of each of the others; a mixed add of all three in one commit
/// without the tree in the Welcome.
#[test]
fn three_implementations_in_one_group() {
    let mut mesh = Mesh::create(Member::ours("ours-a"));
    mesh.commit("ours-a", vec![Member::openmls("openmls-b"), Member::mls_rs("rs-c")], &[], Opts::default());
    mesh.commit("openmls-b", vec![Member::ours("ours-d"), Member::mls_rs("rs-e")], &[], Opts::public());
    mesh.commit("rs-c", vec![Member::ours("ours-f"), Member::openmls("openmls-g")], &[], Opts::default());
    assert_eq!(mesh.members.len(), 7);
    for committer in ["ours-a", "openmls-b", "rs-c"] {
        mesh.commit(committer, vec![], &[], update());
        mesh.commit(committer, vec![], &[], public_update());
    }
    mesh.commit("ours-d", vec![], &["openmls-g", "rs-e"], Opts::default());
    mesh.commit("openmls-b", vec![], &["ours-f"], Opts::public());
    mesh.commit("rs-c", vec![], &["ours-d"], Opts::default());
    assert_eq!(mesh.members.len(), 3);
    mesh.commit(
        "rs-c",
        vec![Member::ours("ours-h"), Member::openmls("openmls-i"), Member::mls_rs("rs-j")],
        &[],
        no_tree(),
    );
    mesh.commit("ours-h", vec![], &["openmls-b"], update());
    mesh.commit("openmls-i", vec![], &["rs-j"], Opts::default());
    assert_eq!(mesh.members.len(), 4);
    mesh.print_sizes();
}

/// The new leaf key of each implementation's update (an empty commit with
/// a path) reaches both others.
#[test]
fn three_implementations_see_each_others_updates() {
    let mut mesh = Mesh::create(Member::mls_rs("rs-a"));
    mesh.commit("rs-a", vec![Member::ours("ours-b"), Member::openmls("openmls-c")], &[], Opts::default());
    for (committer, others) in [
        ("ours-b", ["rs-a", "openmls-c"]),
        ("openmls-c", ["rs-a", "ours-b"]),
        ("rs-a", ["ours-b", "openmls-c"]),
    ] {
        let leaf = mesh.leaf(committer);
        let before: Vec<Vec<u8>> = others.iter().map(|o| mesh.member(o).leaf_encryption_key(leaf)).collect();
        mesh.commit(committer, vec![], &[], update());
        for (other, before) in others.iter().zip(before) {
            assert_ne!(mesh.member(other).leaf_encryption_key(leaf), before, "{committer}'s leaf at {other}");
        }
    }
}

/// Proposals of all three sides in one commit (an Add by ours, a Remove
/// by OpenMLS, an Update by mls-rs, an Update by ours), committed by each
/// implementation in turn.
#[test]
fn proposals_of_three_sides_in_one_commit() {
    for committer in ["ours-a", "openmls-b", "rs-c"] {
        let mut mesh = Mesh::create(Member::ours("ours-a"));
        mesh.commit(
            "ours-a",
            vec![Member::openmls("openmls-b"), Member::mls_rs("rs-c"), Member::ours("ours-d")],
            &[],
            Opts::default(),
        );
        let d = mesh.leaf("ours-d");
        let joiner = Member::mls_rs("rs-e");
        let add = mesh.member("ours-a").propose_add(&joiner.key_package(), &Opts::default()).unwrap();
        mesh.deliver_proposal("ours-a", &add);
        let remove = mesh.member("openmls-b").propose_remove(d, &Opts::default()).unwrap();
        mesh.deliver_proposal("openmls-b", &remove);
        let update = mesh.member("rs-c").propose_update(&Opts::default()).unwrap();
        mesh.deliver_proposal("rs-c", &update);
        if committer != "ours-a" {
            let ours = mesh.member("ours-a").propose_update(&Opts::default()).unwrap();
            mesh.deliver_proposal("ours-a", &ours);
        }
        mesh.commit_proposals(committer, vec![joiner], &["ours-d"], Opts::default());
        assert_eq!(mesh.members.len(), 4, "committed by {committer}");
    }
}

/// Each implementation sends its commits (adds, updates, removes) in the
/// framing asked for: the `MLSMessage`'s wire format is 1 (PublicMessage)
/// or 2 (PrivateMessage).
#[test]
fn each_implementation_frames_commits_as_asked() {
    let wire_format = |commit: &[u8]| u16::from_be_bytes([commit[2], commit[3]]);
    let mut mesh = Mesh::create(Member::ours("ours-a"));
    mesh.commit("ours-a", vec![Member::openmls("openmls-b"), Member::mls_rs("rs-c")], &[], Opts::default());
    for committer in ["ours-a", "openmls-b", "rs-c"] {
        for (opts, expected) in [(Opts::default(), 2), (Opts::public(), 1)] {
            let joiner = Member::ours(&format!("ours-{committer}-{expected}"));
            let name = joiner.name().to_string();
            let add = mesh.commit(committer, vec![joiner], &[], opts);
            assert_eq!(wire_format(&add.commit), expected, "{committer} add {opts:?}");
            let path = mesh.commit(committer, vec![], &[], Opts { path: true, ..opts });
            assert_eq!(wire_format(&path.commit), expected, "{committer} update {opts:?}");
            let remove = mesh.commit(committer, vec![], &[&name], opts);
            assert_eq!(wire_format(&remove.commit), expected, "{committer} remove {opts:?}");
        }
    }
}

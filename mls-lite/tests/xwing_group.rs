//! The group life cycle in ciphersuite 0x004D
//! (MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519, feature `x-wing`):
//! create, add three members by KeyPackages (Welcome joins), application
//! messages both ways, an UpdatePath commit, a remove after which the
//! removed member reads nothing more, and a restore of the persisted state.
#![cfg(feature = "x-wing")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use securemesh_core::envelope::Persist;
use securemesh_core::testing::TestRng;
use securemesh_mls_lite::crypto::suite::Suite;
use securemesh_mls_lite::key_package::KeyPackageParams;
use securemesh_mls_lite::messages::KeyPackage;
use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
use securemesh_mls_lite::pending_commit::{CommitOptions, CommitOutput};
use securemesh_mls_lite::testing::Candidate;
use securemesh_mls_lite::{CommitEvent, Error, Group};

/// 8 members of leaves up to 1536 bytes (an X-Wing leaf is about 1.4 KB).
type G = Group<8, 1536, 32, 64>;

const SUITE: Suite = Suite::Mls256XWing;

fn agent(name: &[u8], rng: &mut TestRng) -> Candidate {
    let params = KeyPackageParams { identity: name, not_before: 0, not_after: u64::MAX, last_resort: false };
    Candidate::new_in(SUITE, &params, rng).unwrap()
}

fn join(agent: &Candidate, welcome: &[u8]) -> Result<Box<G>, Error> {
    let MlsMessageBody::Welcome(w) = MlsMessage::from_bytes(welcome)?.body else {
        return Err(Error::Malformed);
    };
    assert_eq!(w.cipher_suite, 0x004D);
    let mut g: Box<G> = Box::default();
    let mut scratch = vec![0u8; G::scratch_len(welcome.len())];
    g.join_into(&w, &agent.keys()?, None, &[], &mut scratch)?;
    Ok(g)
}

struct Sent {
    commit: Vec<u8>,
    welcome: Vec<u8>,
    pending: Box<G>,
}

fn commit(g: &mut G, agents: &[&Candidate], removes: &[u32], update_path: bool, rng: &mut TestRng) -> Sent {
    let kps: Vec<KeyPackage<'_>> = agents.iter().map(|a| a.key_package().unwrap()).collect();
    let total: usize = agents.iter().map(|a| a.key_package_bytes().len()).sum();
    let options = CommitOptions { update_path, ..CommitOptions::default() };
    let mut pending: Box<G> = Box::default();
    let mut commit = vec![0u8; total + 8192];
    let mut welcome = vec![0u8; G::welcome_len(agents.len(), true)];
    let mut scratch = vec![0u8; G::send_commit_scratch_len(total)];
    let CommitOutput { commit_len, welcome_len, epoch } = g
        .commit(&kps, removes, &options, rng, &mut pending, &mut commit, &mut welcome, &mut scratch)
        .unwrap();
    assert_eq!(epoch, g.epoch() + 1);
    commit.truncate(commit_len);
    welcome.truncate(welcome_len);
    Sent { commit, welcome, pending }
}

fn process(g: &mut G, commit: &[u8]) -> Result<CommitEvent, Error> {
    common::process_commit(g, commit)
}

fn agree(members: &[&G]) {
    common::assert_agree(members);
    assert!(members.iter().all(|m| m.suite() == SUITE));
}

fn seal(from: &mut G, data: &[u8], rng: &mut TestRng) -> Vec<u8> {
    let mut out = vec![0u8; data.len() + 256];
    let mut scratch = vec![0u8; G::seal_scratch_len(data.len(), 0)];
    let n = from.seal_application(data, &[], 0, rng, &mut out, &mut scratch).unwrap();
    out.truncate(n);
    out
}

fn talk(from: &mut G, to: &mut [&mut G], data: &[u8], rng: &mut TestRng) {
    let sealed = seal(from, data, rng);
    for g in to.iter_mut() {
        let mut scratch = vec![0u8; G::application_scratch_len(sealed.len())];
        let m = g.open_application(&sealed, &mut scratch).unwrap();
        assert_eq!(m.data, data);
        assert_eq!(m.sender, from.own_leaf());
    }
}

#[test]
fn an_x_wing_group_lives_create_add_talk_update_remove_restore() {
    let mut rng = TestRng::new(0x4d4d_0001);
    let alice_agent = agent(b"alice", &mut rng);
    assert_eq!(alice_agent.key_package().unwrap().cipher_suite, 0x004D);
    assert_eq!(alice_agent.key_package().unwrap().init_key.len(), 1216);
    let mut alice: Box<G> = Box::default();
    alice.create_into(b"pq fleet", &alice_agent.keys().unwrap(), &[], &mut rng).unwrap();
    assert_eq!(alice.suite(), SUITE);

    // Alice adds Bob, Carol and Dave in one commit; they join from the Welcome.
    let (bob_agent, carol_agent, dave_agent) =
        (agent(b"bob", &mut rng), agent(b"carol", &mut rng), agent(b"dave", &mut rng));
    let mut sent = commit(&mut alice, &[&bob_agent, &carol_agent, &dave_agent], &[], false, &mut rng);
    alice.merge_pending_commit(&mut sent.pending).unwrap();
    let mut bob = join(&bob_agent, &sent.welcome).unwrap();
    let mut carol = join(&carol_agent, &sent.welcome).unwrap();
    let mut dave = join(&dave_agent, &sent.welcome).unwrap();
    agree(&[&alice, &bob, &carol, &dave]);
    assert_eq!(alice.tree().leaf(3).unwrap().encryption_key.len(), 1216);

    // Application messages both ways.
    talk(&mut alice, &mut [&mut bob, &mut carol, &mut dave], b"hello pq world", &mut rng);
    talk(&mut dave, &mut [&mut alice, &mut bob, &mut carol], b"hello alice", &mut rng);

    // Bob commits with an UpdatePath (X-Wing ciphertexts to the copath).
    let old_key = bob.tree().leaf(1).unwrap().encryption_key.to_vec();
    let mut sent = commit(&mut bob, &[], &[], true, &mut rng);
    for g in [&mut alice, &mut carol, &mut dave] {
        assert_eq!(process(g, &sent.commit).unwrap(), CommitEvent::NewEpoch { epoch: 2 });
    }
    bob.merge_pending_commit(&mut sent.pending).unwrap();
    agree(&[&alice, &bob, &carol, &dave]);
    assert_ne!(bob.tree().leaf(1).unwrap().encryption_key, &old_key[..]);
    talk(&mut carol, &mut [&mut alice, &mut bob, &mut dave], b"after the update", &mut rng);

    // Carol removes Dave; Dave learns it and reads nothing more.
    let mut sent = commit(&mut carol, &[], &[3], false, &mut rng);
    for g in [&mut alice, &mut bob] {
        assert_eq!(process(g, &sent.commit).unwrap(), CommitEvent::NewEpoch { epoch: 3 });
    }
    assert_eq!(process(&mut dave, &sent.commit).unwrap(), CommitEvent::Removed);
    carol.merge_pending_commit(&mut sent.pending).unwrap();
    agree(&[&alice, &bob, &carol]);
    let secret = seal(&mut alice, b"not for dave", &mut rng);
    let mut scratch = vec![0u8; G::application_scratch_len(secret.len())];
    assert!(dave.open_application(&secret, &mut scratch).is_err());
    for g in [&mut bob, &mut carol] {
        let mut scratch = vec![0u8; G::application_scratch_len(secret.len())];
        assert_eq!(g.open_application(&secret, &mut scratch).unwrap().data, b"not for dave");
    }

    // The state persists and restores as a 0x004D group.
    let mut blob = vec![0u8; G::MAX_ENCODED_LEN];
    let n = bob.encode_state(&mut blob).unwrap();
    let mut restored: Box<G> = Box::default();
    restored.decode_state_into(&blob[..n]).unwrap();
    assert_eq!(restored.suite(), SUITE);
    agree(&[&alice, &restored, &carol]);
}

#[test]
fn an_x_wing_slot_has_a_size_ceiling() {
    // Eight members of X-Wing leaves: room for 1536-byte leaves and a
    // 1216-byte key in each of the 8 parent slots.
    let size = core::mem::size_of::<G>();
    println!("Group<8, 1536, 32, 64> with x-wing: {size} bytes");
    assert!(size <= 32 * 1024, "{size}");
}

#[test]
fn a_new_member_joins_an_x_wing_group_by_an_external_commit() {
    use securemesh_core::crypto::{Ed25519, Signature};
    use securemesh_mls_lite::external_commit::ExternalJoin;
    use securemesh_mls_lite::pending_commit::Proposals;
    let mut rng = TestRng::new(0x4d4d_0e0e);
    let alice_agent = agent(b"alice", &mut rng);
    let mut alice: Box<G> = Box::default();
    alice.create_into(b"pq fleet", &alice_agent.keys().unwrap(), &[], &mut rng).unwrap();
    let bob_agent = agent(b"bob", &mut rng);
    let mut sent = commit(&mut alice, &[&bob_agent], &[], false, &mut rng);
    alice.merge_pending_commit(&mut sent.pending).unwrap();
    let mut bob = join(&bob_agent, &sent.welcome).unwrap();

    // Alice publishes the GroupInfo (tree and 1216-byte external_pub).
    let mut info = vec![0u8; G::MAX_GROUP_INFO_LEN];
    let mut scratch = vec![0u8; G::MAX_GROUP_INFO_LEN];
    let n = alice.export_group_info(true, &mut info, &mut scratch).unwrap();
    info.truncate(n);
    let MlsMessageBody::GroupInfo(group_info) = MlsMessage::from_bytes(&info).unwrap().body else {
        panic!("not a GroupInfo")
    };
    let seed = Ed25519::generate(&mut rng);
    let join = ExternalJoin { group_info, ratchet_tree: None, identity: b"erin", signature_priv: &seed };
    let (mut erin, mut spare): (Box<G>, Box<G>) = (Box::default(), Box::default());
    let mut out = vec![0u8; 32 * 1024];
    let mut scratch = vec![0u8; G::external_commit_scratch_len(info.len())];
    // An external commit is a PublicMessage.
    let options = CommitOptions {
        wire_format: securemesh_mls_lite::messages::WireFormat::PublicMessage,
        ..CommitOptions::default()
    };
    let done = erin
        .join_by_external_commit(
            &join,
            &Proposals::default(),
            &Default::default(),
            &options,
            &mut rng,
            &mut spare,
            &mut out,
            &mut scratch,
        )
        .unwrap();
    out.truncate(done.commit_len);
    for g in [&mut alice, &mut bob] {
        assert_eq!(process(g, &out).unwrap(), CommitEvent::NewEpoch { epoch: 2 });
    }
    agree(&[&alice, &bob, &erin]);
    talk(&mut erin, &mut [&mut alice, &mut bob], b"joined from outside", &mut rng);
}

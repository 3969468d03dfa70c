//! One MLS operation, repeated, for instruction counts under callgrind
//! (`bash mls-lite/benches/instructions.sh`): `group_cost <op> <members> <reps>`.
//!
//! The group of `members` is built first (by add commits of the creator,
//! checked by every member); `reps` = 0 measures that setup alone, so
//! the script takes the difference. Operations, each with PublicMessage
//! framing for commits: `update` (member 0 makes an empty commit with an
//! UpdatePath, then drops it), `process-update` (member 1 restores its
//! saved state and processes such a commit), `add` (member 0 commits one
//! Add without a path, then drops it), `process-add` (restore and process
//! such a commit), `restore` (the restore alone, to subtract), `message`
//! (member 0 seals 1 KiB of application data, member 1 opens it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_core::envelope::Persist;
use securemesh_core::testing::TestRng;
use securemesh_mls_lite::key_package::KeyPackageParams;
use securemesh_mls_lite::messages::{KeyPackage, WireFormat};
use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
use securemesh_mls_lite::pending_commit::CommitOptions;
use securemesh_mls_lite::testing::Candidate;
use securemesh_mls_lite::{Group, ProposalCache, PskStore};
use std::hint::black_box;

// Room for 128 members and the one `add` adds.
type G = Group<256, 384, 32, 64>;

fn agent(i: usize, rng: &mut TestRng) -> Candidate {
    let name = format!("member-{i}");
    let params = KeyPackageParams {
        identity: name.as_bytes(),
        not_before: 0,
        not_after: u64::MAX,
        last_resort: false,
    };
    Candidate::new(&params, rng).unwrap()
}

/// `by` commits (PublicMessage) adding `adds` and removing nobody; returns
/// the commit and the Welcome, with the pending epoch in `pending`.
fn commit(by: &mut G, adds: &[&Candidate], pending: &mut G, rng: &mut TestRng) -> (Vec<u8>, Vec<u8>) {
    let kps: Vec<KeyPackage<'_>> = adds.iter().map(|a| a.key_package().unwrap()).collect();
    let total: usize = adds.iter().map(|a| a.key_package_bytes().len()).sum();
    let options = CommitOptions { wire_format: WireFormat::PublicMessage, ..CommitOptions::default() };
    let mut out = vec![0u8; total + 64 * 1024];
    let mut welcome = vec![0u8; G::welcome_len(adds.len(), true)];
    let mut scratch = vec![0u8; G::send_commit_scratch_len(total)];
    let o = by.commit(&kps, &[], &options, rng, pending, &mut out, &mut welcome, &mut scratch).unwrap();
    out.truncate(o.commit_len);
    welcome.truncate(o.welcome_len);
    (out, welcome)
}

fn process(g: &mut G, commit: &[u8], spare: &mut G) {
    let mut cache: Box<ProposalCache> = Box::default();
    let mut scratch = vec![0u8; G::commit_scratch_len(commit.len())];
    g.process_commit(commit, &mut cache, &PskStore::default(), spare, &mut scratch).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (op, members, reps): (&str, usize, usize) =
        (&args[1], args[2].parse().unwrap(), args[3].parse().unwrap());
    let mut rng = TestRng::new(7);
    let creator = agent(0, &mut rng);
    let mut a: Box<G> = Box::default();
    a.create_into(b"fleet", &creator.keys().unwrap(), &[], &mut rng).unwrap();
    let mut spare: Box<G> = Box::default();
    // Member 1 joins first; the rest are added in batches of 16.
    let second = agent(1, &mut rng);
    let (_, welcome) = commit(&mut a, &[&second], &mut spare, &mut rng);
    a.merge_pending_commit(&mut spare).unwrap();
    let MlsMessageBody::Welcome(w) = MlsMessage::from_bytes(&welcome).unwrap().body else { panic!() };
    let mut b: Box<G> = Box::default();
    b.join_into(&w, &second.keys().unwrap(), None, &[], &mut vec![0u8; G::scratch_len(welcome.len())])
        .unwrap();
    let mut n = 2;
    while n < members {
        let batch: Vec<Candidate> = (n..members.min(n + 16)).map(|i| agent(i, &mut rng)).collect();
        let refs: Vec<&Candidate> = batch.iter().collect();
        let (c, _) = commit(&mut a, &refs, &mut spare, &mut rng);
        a.merge_pending_commit(&mut spare).unwrap();
        process(&mut b, &c, &mut spare);
        n += batch.len();
    }
    assert_eq!(a.epoch_authenticator().expose(), b.epoch_authenticator().expose());
    let mut saved = vec![0u8; G::MAX_ENCODED_LEN];
    let len = b.encode_state(&mut saved).unwrap();
    saved.truncate(len);
    let newcomer = agent(members, &mut rng);
    let prepared = match op {
        "process-update" => commit(&mut a, &[], &mut spare, &mut rng).0,
        "process-add" => commit(&mut a, &[&newcomer], &mut spare, &mut rng).0,
        _ => Vec::new(),
    };
    spare.clear();

    for _ in 0..reps {
        match op {
            "update" => {
                black_box(commit(&mut a, &[], &mut spare, &mut rng));
                spare.clear();
            }
            "add" => {
                black_box(commit(&mut a, &[&newcomer], &mut spare, &mut rng));
                spare.clear();
            }
            "restore" => b.decode_state_into(&saved).unwrap(),
            "process-update" | "process-add" => {
                b.decode_state_into(&saved).unwrap();
                process(&mut b, &prepared, &mut spare);
            }
            "message" => {
                let data = [0x5au8; 1024];
                let mut out = vec![0u8; 2048];
                let mut scratch = vec![0u8; G::seal_scratch_len(data.len(), 0)];
                let m = a.seal_application(&data, &[], 0, &mut rng, &mut out, &mut scratch).unwrap();
                let mut scratch = vec![0u8; G::application_scratch_len(m)];
                let opened = b.open_application(&out[..m], &mut scratch).unwrap();
                assert_eq!(opened.data.len(), 1024);
            }
            other => panic!("unknown op {other}"),
        }
    }
}

//! One step of the agent task stores and sends until the agent has
//! nothing left of either.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_core::envelope::StorageKey;
use securemesh_core::testing::TestRng;
use securemesh_host::HostAgent;
use securemesh_host::delivery::{DeliveryService, InProcess};
use securemesh_host::runtime::{AddressBook, AgentOptions, Clock, spawn};
use securemesh_ratchet::Identity;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

fn temp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("securemesh-host-step-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// A joiner's KeyPackage (the joiner itself need not run).
fn key_package(seed: u64) -> (securemesh_ratchet::PublicIdentity, Vec<u8>) {
    let mut rng = TestRng::new(seed);
    let mut a = securemesh_host::state::on_agent_stack(|| {
        Box::new(HostAgent::new(
            Identity::generate(&mut rng),
            securemesh::Config::default(),
            &mut rng,
            Clock::wall(),
        ))
    })
    .unwrap();
    let mut buf = vec![0u8; securemesh::group::MAX_KEY_PACKAGE_LEN];
    let n = a.publish_key_package(Clock::wall(), &mut buf, &mut rng).unwrap();
    buf.truncate(n);
    (*a.public_identity(), buf)
}

/// Handing out one Welcome marks the group record; the second Welcome
/// of the same commit must still leave in the same step, not at the
/// next wake-up (here the next mailbox poll, an hour later).
#[test]
fn two_welcomes_of_one_commit_leave_in_one_step() {
    let dir = temp("welcomes");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let delivery = Arc::new(InProcess::new(64));
        let (tx, _rx) = mpsc::unbounded_channel();
        let opts = AgentOptions {
            mailbox_poll: Duration::from_secs(3600),
            ..AgentOptions::loopback("india", &dir, securemesh::Config::default())
        };
        let india = spawn(opts, StorageKey::new([7; 32]), Arc::clone(&delivery), AddressBook::default(), tx)
            .await
            .unwrap();
        let ((id1, kp1), (id2, kp2)) = (key_package(0x0a11_ce00_0001), key_package(0x0b0b_0000_0002));
        // Let the task take its first mailbox poll (due at once): the next
        // one is an hour away.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let joiners = india
            .with(move |a, rng, _| {
                a.add_peer_identity(&id1).unwrap();
                a.add_peer_identity(&id2).unwrap();
                let j1 = a.set_peer_key_package(&kp1, Clock::wall()).unwrap();
                let j2 = a.set_peer_key_package(&kp2, Clock::wall()).unwrap();
                let g = a.create_group(rng).unwrap();
                let mut scratch = vec![0u8; securemesh::group::COMMIT_SCRATCH_LEN];
                a.add_members(g, &[j1, j2], rng, &mut scratch).unwrap();
                [j1, j2]
            })
            .await
            .unwrap();
        // The commit waits in india's mailbox for the delivery order;
        // india takes it back (as its mailbox poll would): merged, both
        // Welcomes released by the step after that job. Then wait without
        // waking the task (no command; the mailbox poll is an hour away).
        let mail = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let m = delivery.fetch(india.peer_id, 8).await.unwrap();
                if !m.is_empty() {
                    return m;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(mail.len(), 1, "the commit");
        let commit = mail[0].envelope.clone();
        india
            .with(move |a, rng, now| {
                let mut out = vec![0u8; HostAgent::input_buffer_len(commit.len())];
                a.handle_input(&commit, &mut out, now, rng).unwrap();
            })
            .await
            .unwrap();
        let mut waited = 0;
        while joiners.iter().any(|j| delivery.pending(j) == 0) && waited < 300 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            waited += 5;
        }
        let welcomes = joiners.map(|j| delivery.pending(&j));
        assert_eq!(welcomes, [1, 1], "{:?}", india.status());
        india.shutdown().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&dir);
}

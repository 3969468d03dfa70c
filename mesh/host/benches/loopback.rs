//! Messages per second and latency per channel on loopback, through the
//! whole host: send on one agent's task, delivered by the other's.
//!
//! - `noise_tcp`: an established Noise stream over a loopback TCP
//!   connection (no state to store per message).
//! - `ratchet_mailbox`: a Double Ratchet session through the embedded
//!   mailbox; both sides store their session record (write, fsync,
//!   rename, fsync the directory) for every message, before sending and
//!   before acknowledging, as the persistence rule requires.
//!
//! One iteration is one message from send to delivery, so the time per
//! iteration is the latency and its inverse the rate of one channel.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use securemesh::Permissions;
use securemesh_core::envelope::StorageKey;
use securemesh_host::delivery::{DeliveryService, InProcess};
use securemesh_host::demo::{TASK, introduce};
use securemesh_host::runtime::{AddressBook, AgentHandle, AgentOptions, Delivered, spawn};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

struct Pair {
    alpha: AgentHandle,
    bravo: AgentHandle,
    rx: mpsc::UnboundedReceiver<Delivered>,
}

async fn pair(dir: &std::path::Path, reachable: bool) -> Pair {
    let delivery = Arc::new(InProcess::new(1 << 16));
    let book = AddressBook::default();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let start = |name: &str, key: u8| {
        let opts = AgentOptions {
            mailbox_poll: Duration::from_millis(1),
            ..AgentOptions::loopback(name, dir, securemesh::Config::default())
        };
        spawn(opts, StorageKey::new([key; 32]), Arc::clone(&delivery), Arc::clone(&book), tx.clone())
    };
    let alpha = start("alpha", 1).await.unwrap();
    let bravo = start("bravo", 2).await.unwrap();
    for (a, b) in [(&alpha, &bravo), (&bravo, &alpha)] {
        introduce(a, b.identity, reachable, Permissions::of(&[TASK]), true).await.unwrap();
    }
    if !reachable {
        let bundle = delivery.take_bundle(bravo.peer_id).await.unwrap().unwrap();
        alpha.with(move |a, _, _| a.set_peer_bundle(&bundle).map(|_| ())).await.unwrap().unwrap();
    }
    // The first message opens the channel (handshake or X3DH).
    alpha.send(bravo.peer_id, TASK, b"open".to_vec()).await.unwrap();
    rx.recv().await.unwrap();
    Pair { alpha, bravo, rx }
}

fn channels(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut group = c.benchmark_group("loopback");
    group.throughput(Throughput::Elements(1));
    for (name, reachable) in [("noise_tcp", true), ("ratchet_mailbox", false)] {
        let dir = std::env::temp_dir().join(format!("securemesh-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut p = rt.block_on(pair(&dir, reachable));
        let payload = vec![0x5au8; 256];
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    p.alpha.send(p.bravo.peer_id, TASK, payload.clone()).await.unwrap();
                    p.rx.recv().await.unwrap()
                })
            })
        });
        let Pair { alpha, bravo, .. } = p;
        rt.block_on(async {
            alpha.shutdown().await.unwrap();
            bravo.shutdown().await.unwrap();
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

criterion_group!(benches, channels);
criterion_main!(benches);

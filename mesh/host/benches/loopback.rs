//! Messages per second and latency per channel on loopback, through the
//! whole host: send on one agent's task, delivered by the other's.
//!
//! - `noise_tcp`: an established Noise stream over a loopback TCP
//!   connection (no state to store per message).
//! - `noise_udp_telemetry`: [`send_telemetry`](securemesh::Agent::send_telemetry)
//!   over an established Noise datagram session on loopback UDP
//!   (datagram sessions are never persisted).
//! - `ratchet_mailbox`: a Double Ratchet session through the embedded
//!   mailbox; both sides store their session record (write, fsync,
//!   rename, fsync the directory) for every message, before sending and
//!   before acknowledging, as the persistence rule requires.
//! - `mls_group3`: a group of 3 agents; one application message fanned
//!   out through the embedded delivery service, timed until both other
//!   members delivered it (each stores its group record first).
//!
//! The two channels that store state per message run twice: with the
//! state directories on the disk (`std::env::temp_dir()`), and with them
//! on a tmpfs (`/dev/shm`, when present, suffix `_tmpfs`), where fsync
//! returns at once. The store is the same [`FileStore`](securemesh_host::store::FileStore)
//! with the same writes and syncs; the difference between the two figures
//! is what the disk's fsync costs.
//!
//! One iteration is one message from send to delivery, so the time per
//! iteration is the latency and its inverse the rate of one channel.
//! Short runs (10 samples): `cargo bench -p securemesh-host --bench loopback`
//! takes a few minutes.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use securemesh::{GroupId, Permissions};
use securemesh_core::envelope::StorageKey;
use securemesh_host::delivery::{DeliveryService, InProcess};
use securemesh_host::demo::{TASK, TELEMETRY, introduce, share_key_package};
use securemesh_host::runtime::{AddressBook, AgentHandle, AgentOptions, Delivered, spawn};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The longest a message may take before the bench gives up on it.
const LOST: Duration = Duration::from_secs(10);

struct Mesh {
    delivery: Arc<InProcess>,
    agents: Vec<AgentHandle>,
    rx: mpsc::UnboundedReceiver<Delivered>,
    dir: PathBuf,
}

impl Mesh {
    async fn start(dir: PathBuf, names: &[&str], reachable: bool) -> Mesh {
        let _ = std::fs::remove_dir_all(&dir);
        let delivery = Arc::new(InProcess::new(1 << 16));
        let book = AddressBook::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut agents = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let opts = AgentOptions {
                mailbox_poll: Duration::from_millis(1),
                ..AgentOptions::loopback(name, &dir, securemesh::Config::default())
            };
            let key = StorageKey::new([u8::try_from(i).unwrap() + 1; 32]);
            agents
                .push(spawn(opts, key, Arc::clone(&delivery), Arc::clone(&book), tx.clone()).await.unwrap());
        }
        for a in &agents {
            for b in agents.iter().filter(|b| b.peer_id != a.peer_id) {
                introduce(a, b.identity, reachable, Permissions::of(&[TASK, TELEMETRY]), true).await.unwrap();
            }
        }
        Mesh { delivery, agents, rx, dir }
    }

    /// The next delivery (a lost one stops the bench with a message).
    async fn next(&mut self) -> Delivered {
        tokio::time::timeout(LOST, self.rx.recv()).await.expect("a message was lost").unwrap()
    }

    async fn stop(self) {
        for a in self.agents {
            a.shutdown().await.unwrap();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Alpha to bravo over a Noise stream (`reachable`) or through the
/// mailbox, the channel opened by a first message.
async fn pair(dir: PathBuf, reachable: bool) -> Mesh {
    let mut m = Mesh::start(dir, &["alpha", "bravo"], reachable).await;
    let bravo = m.agents[1].peer_id;
    if !reachable {
        let bundle = m.delivery.take_bundle(bravo).await.unwrap().unwrap();
        m.agents[0].with(move |a, _, _| a.set_peer_bundle(&bundle).map(|_| ())).await.unwrap().unwrap();
    }
    m.agents[0].send(bravo, TASK, b"open".to_vec()).await.unwrap();
    m.next().await;
    m
}

/// Alpha to bravo over a Noise datagram session, opened by a first
/// telemetry datagram.
async fn telemetry(dir: PathBuf) -> Mesh {
    let mut m = Mesh::start(dir, &["alpha", "bravo"], true).await;
    send_telemetry(&m.agents[0], m.agents[1].peer_id, b"open".to_vec()).await;
    m.next().await;
    m
}

async fn send_telemetry(from: &AgentHandle, to: securemesh::PeerId, payload: Vec<u8>) {
    from.with(move |a, rng, now| a.send_telemetry(&to, TELEMETRY, &payload, now, rng).map(|_| ()))
        .await
        .unwrap()
        .unwrap();
}

/// Alpha makes a group with bravo and charlie (from their KeyPackages)
/// and waits until both joined.
async fn group(dir: PathBuf) -> (Mesh, GroupId) {
    let mut m = Mesh::start(dir, &["alpha", "bravo", "charlie"], false).await;
    let mut joiners = Vec::new();
    for j in &m.agents[1..] {
        joiners.push(share_key_package(j, &m.agents[0]).await.unwrap());
    }
    let g = m.agents[0]
        .with(move |a, rng, _| {
            let g = a.create_group(rng)?;
            let mut scratch = vec![0u8; securemesh::group::COMMIT_SCRATCH_LEN];
            a.add_members(g, &joiners, rng, &mut scratch)?;
            Ok::<_, securemesh::Error>(g)
        })
        .await
        .unwrap()
        .unwrap();
    let deadline = tokio::time::Instant::now() + LOST;
    while !m.agents.iter().all(|a| a.status().groups == 1) {
        assert!(tokio::time::Instant::now() < deadline, "the group did not form");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // One message through, so every member's first read is behind us.
    send_group(&mut m, g, b"open".to_vec()).await;
    (m, g)
}

/// Alpha sends `payload` to group `g`; returns once bravo and charlie
/// delivered it.
async fn send_group(m: &mut Mesh, g: GroupId, payload: Vec<u8>) {
    let p = payload.clone();
    m.agents[0].with(move |a, rng, now| a.send(&g, TASK, &p, now, rng).map(|_| ())).await.unwrap().unwrap();
    let (mut bravo, mut charlie) = (false, false);
    while !(bravo && charlie) {
        let d = m.next().await;
        if d.payload == payload {
            bravo |= d.to == "bravo";
            charlie |= d.to == "charlie";
        }
    }
}

/// Where state directories go: the disk, and a tmpfs when there is one.
fn places(name: &str) -> Vec<(String, PathBuf)> {
    let leaf = format!("securemesh-bench-{}-{name}", std::process::id());
    let mut out = vec![(name.to_string(), std::env::temp_dir().join(&leaf))];
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        out.push((format!("{name}_tmpfs"), shm.join(&leaf)));
    }
    out
}

fn channels(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut fast = c.benchmark_group("loopback");
    fast.throughput(Throughput::Elements(1));
    fast.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    let payload = vec![0x5au8; 256];

    let dir = std::env::temp_dir().join(format!("securemesh-bench-{}-tcp", std::process::id()));
    let mut m = rt.block_on(pair(dir, true));
    let bravo = m.agents[1].peer_id;
    fast.bench_function("noise_tcp", |b| {
        b.iter(|| {
            rt.block_on(async {
                m.agents[0].send(bravo, TASK, payload.clone()).await.unwrap();
                m.next().await
            })
        })
    });
    rt.block_on(m.stop());

    let dir = std::env::temp_dir().join(format!("securemesh-bench-{}-udp", std::process::id()));
    let mut m = rt.block_on(telemetry(dir));
    let bravo = m.agents[1].peer_id;
    fast.bench_function("noise_udp_telemetry", |b| {
        b.iter(|| {
            rt.block_on(async {
                send_telemetry(&m.agents[0], bravo, payload.clone()).await;
                m.next().await
            })
        })
    });
    rt.block_on(m.stop());
    fast.finish();

    // A message costs milliseconds here: few iterations, one per sample.
    let mut slow = c.benchmark_group("loopback");
    slow.throughput(Throughput::Elements(1));
    slow.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    for (name, dir) in places("ratchet_mailbox") {
        let mut m = rt.block_on(pair(dir, false));
        let bravo = m.agents[1].peer_id;
        slow.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    m.agents[0].send(bravo, TASK, payload.clone()).await.unwrap();
                    m.next().await
                })
            })
        });
        rt.block_on(m.stop());
    }
    for (name, dir) in places("mls_group3") {
        let (mut m, g) = rt.block_on(group(dir));
        let mut n = 0u64;
        slow.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                // Distinct payloads: a late copy is never taken for the next.
                let mut p = payload.clone();
                p[..8].copy_from_slice(&n.to_be_bytes());
                rt.block_on(send_group(&mut m, g, p))
            })
        });
        rt.block_on(m.stop());
    }
    slow.finish();
}

criterion_group!(benches, channels);
criterion_main!(benches);

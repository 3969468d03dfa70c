//! Hybrid post-quantum channels between host agents on loopback sockets
//! (feature `pq`, on by default): two `prefer` agents open an IKhfs
//! Noise channel over TCP and a PQXDH ratchet session through the
//! mailbox (the receiver restored from its state files in between, so
//! its mode comes back from the options); a `require` agent and an `off`
//! one refuse each other, counted in `securemesh_pq_refused_total`.
#![cfg(feature = "pq")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh::{Channel, ChannelKind, Permissions, PqMode, PqStatus, SessionKind};
use securemesh_host::demo::{REPLY, TASK, introduce, offline};
use securemesh_host::runtime::{AgentHandle, AgentOptions};
use std::time::Duration;

mod common;
use common::{Mesh, WAIT};

impl Mesh {
    /// Agent `name` running `pq`.
    async fn agent(&self, name: &str, key: u8, pq: PqMode) -> AgentHandle {
        self.spawn(name, key, |o| AgentOptions { pq, ..o }).await
    }
}

fn kinds() -> Permissions {
    Permissions::of(&[TASK, REPLY])
}

fn run(test: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(test);
}

/// The post-quantum status of `a`'s sessions of `kind`.
async fn statuses(a: &AgentHandle, kind: SessionKind) -> Vec<PqStatus> {
    a.with(move |agent, _, _| agent.sessions().filter(|i| i.kind == kind).map(|i| i.pq).collect())
        .await
        .unwrap()
}

/// Wait (up to [`WAIT`]) until `cond` holds of `a`'s status.
async fn until(a: &AgentHandle, what: &str, cond: impl Fn(&securemesh_host::runtime::Status) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond(&a.status()) {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not reached: {:?}", a.status().metrics);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two `prefer` agents: alpha holds bravo's (PQXDH) bundle and sees it
/// online, so it opens IKhfs over TCP, and both report the transport
/// hybrid. Then charlie is offline, delta writes to it from its bundle:
/// PQXDH through the mailbox; charlie, restored from its files with
/// `prefer`, reads it on a hybrid session and answers on it.
#[test]
fn prefer_agents_run_hybrid_noise_and_pqxdh_through_the_mailbox() {
    let mut m = Mesh::new("pq", "prefer");
    run(async {
        // Noise: IKhfs.
        let alpha = m.agent("alpha", 1, PqMode::Prefer).await;
        let bravo = m.agent("bravo", 2, PqMode::Prefer).await;
        introduce(&bravo, alpha.identity, true, kinds(), true).await.unwrap();
        let id = introduce(&alpha, bravo.identity, true, kinds(), true).await.unwrap();
        offline(&alpha, m.delivery.as_ref(), bravo.peer_id).await.unwrap();
        alpha.with(move |a, _, _| a.set_reachable(&id, true)).await.unwrap().unwrap();
        let route = alpha.send(bravo.peer_id, TASK, b"status?".to_vec()).await.unwrap();
        assert_eq!(route.channel, Channel::NoiseIk);
        let d = m.next().await;
        assert_eq!((d.to.as_str(), d.payload.as_slice()), ("bravo", &b"status?"[..]));
        bravo.send(alpha.peer_id, REPLY, b"green".to_vec()).await.unwrap();
        let d = m.next().await;
        assert_eq!(
            (d.to.as_str(), d.payload.as_slice(), d.channel),
            ("alpha", &b"green"[..], ChannelKind::NoiseTransport)
        );
        for a in [&alpha, &bravo] {
            assert_eq!(statuses(a, SessionKind::Noise).await, [PqStatus::Hybrid], "{}", a.name);
            until(a, "hybrid noise channel counted", |s| {
                s.metrics.noise_channels.hybrid == 1 && s.metrics.hybrid_handshakes == 1
            })
            .await;
            assert_eq!(a.status().metrics.noise_pq, PqStatus::Hybrid);
        }
        let text = securemesh_host::metrics::render(&[bravo.status()]);
        assert!(
            text.contains("securemesh_channels{agent=\"bravo\",kind=\"noise\",pq=\"hybrid\"} 1\n"),
            "{text}"
        );

        // Mailbox: PQXDH, the receiver restored in between.
        let charlie = m.agent("charlie", 3, PqMode::Prefer).await;
        let delta = m.agent("delta", 4, PqMode::Prefer).await;
        introduce(&charlie, delta.identity, false, kinds(), true).await.unwrap();
        let (charlie_id, charlie_identity) = (charlie.peer_id, charlie.identity);
        charlie.shutdown().await.unwrap();
        offline(&delta, m.delivery.as_ref(), charlie_id).await.unwrap();
        introduce(&delta, charlie_identity, false, kinds(), true).await.unwrap();
        let route = delta.send(charlie_id, TASK, b"rotate logs".to_vec()).await.unwrap();
        assert_eq!(route.channel, Channel::RatchetX3dh);
        let charlie = m.agent("charlie", 3, PqMode::Prefer).await;
        assert!(charlie.status().restored);
        assert_eq!(charlie.with(|a, _, _| a.pq_mode()).await.unwrap(), PqMode::Prefer);
        let d = m.next().await;
        assert_eq!(
            (d.to.as_str(), d.payload.as_slice(), d.channel),
            ("charlie", &b"rotate logs"[..], ChannelKind::RatchetInitial)
        );
        charlie.send(delta.peer_id, REPLY, b"rotated".to_vec()).await.unwrap();
        let d = m.next().await;
        assert_eq!((d.to.as_str(), d.payload.as_slice()), ("delta", &b"rotated"[..]));
        for a in [&charlie, &delta] {
            assert_eq!(statuses(a, SessionKind::Ratchet).await, [PqStatus::Hybrid], "{}", a.name);
            until(a, "PQXDH session counted", |s| {
                s.metrics.pqxdh_sessions == 1 && s.metrics.ratchet_channels.hybrid == 1
            })
            .await;
        }
        for a in [alpha, bravo, charlie, delta] {
            a.shutdown().await.unwrap();
        }
        let _ = std::fs::remove_dir_all(&m.dir);
    });
}

/// A `require` agent and an `off` one, both online: alpha (require)
/// opens IKhfs, which bravo (off) refuses; bravo opens classical IK,
/// which alpha refuses. Nothing is delivered either way, and each
/// refusal is counted (`securemesh_pq_refused_total`, the refused
/// inputs) and logged as a post-quantum refusal.
#[test]
fn require_and_off_refuse_each_other_and_count_it() {
    let mut m = Mesh::new("pq", "require");
    run(async {
        let alpha = m.agent("alpha", 5, PqMode::Require).await;
        let bravo = m.agent("bravo", 6, PqMode::Off).await;
        introduce(&alpha, bravo.identity, true, kinds(), true).await.unwrap();
        introduce(&bravo, alpha.identity, true, kinds(), true).await.unwrap();

        alpha.send(bravo.peer_id, TASK, b"hybrid hello".to_vec()).await.unwrap();
        until(&bravo, "IKhfs refused by the off agent", |s| s.metrics.pq_refused == 1).await;
        assert!(bravo.status().refused_inputs >= 1);
        bravo.send(alpha.peer_id, TASK, b"classical hello".to_vec()).await.unwrap();
        until(&alpha, "IK refused by the require agent", |s| s.metrics.pq_refused == 1).await;
        assert!(alpha.status().refused_inputs >= 1);

        // Nothing was delivered, no channel was opened.
        let late = tokio::time::timeout(Duration::from_millis(300), m.rx.recv()).await;
        assert!(late.is_err(), "delivered across a post-quantum refusal: {late:?}");
        for a in [&alpha, &bravo] {
            let s = a.status();
            assert_eq!((s.metrics.noise_channels.hybrid, s.metrics.noise_channels.classical), (0, 0));
            let text = securemesh_host::metrics::render(&[s]);
            let series = format!("securemesh_pq_refused_total{{agent=\"{}\"}} 1\n", a.name);
            assert!(text.contains(&series), "{text}");
        }
        for a in [alpha, bravo] {
            a.shutdown().await.unwrap();
        }
        let _ = std::fs::remove_dir_all(&m.dir);
    });
}

/// The figures the report quotes (printed with `--nocapture`): the
/// host's agent and its wire buffers.
#[test]
fn size_figures() {
    println!(
        "pq={} HOST_BYTES={} size_of::<HostAgent>()={} MAX_RECORD_LEN={}",
        cfg!(feature = "pq"),
        securemesh_host::HOST_BYTES,
        core::mem::size_of::<securemesh_host::HostAgent>(),
        securemesh_host::HostAgent::MAX_RECORD_LEN,
    );
    // The wire buffers hold an `hfs` handshake message, and the agent
    // stays under a ceiling (it is boxed, and built on a thread of
    // `state::AGENT_STACK`).
    const { assert!(securemesh_host::HOST_BYTES >= securemesh::pq::MIN_PQ_BYTES) };
    // (Beside its group slot, which the build's MLS key room sizes: 56 KB,
    // or 122 KB where mls-lite's X-Wing suite is on, as in the workspace.)
    const {
        assert!(
            core::mem::size_of::<securemesh_host::HostAgent>()
                <= 216 * 1024 + securemesh::group::GROUP_SLOT_BYTES
        )
    };
}

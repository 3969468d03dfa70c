//! Which connection carries a direct transmit: an envelope's sender
//! field is a claim, so a connection is bound to a peer only once that
//! peer is authenticated on it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh::envelope::{Envelope, MAX_ENVELOPE_LEN};
use securemesh::{Permissions, Roles};
use securemesh_core::envelope::StorageKey;
use securemesh_core::testing::TestRng;
use securemesh_host::HostAgent;
use securemesh_host::delivery::InProcess;
use securemesh_host::demo::{REPLY, TASK, WORKER};
use securemesh_host::runtime::{
    AddressBook, AgentHandle, AgentOptions, Clock, Delivered, read_frame, spawn, write_frame,
};
use securemesh_ratchet::Identity;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

fn temp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("securemesh-host-conn-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn start(
    dir: &Path,
    name: &str,
    key: u8,
    delivery: &Arc<InProcess>,
    book: &AddressBook,
    app: &mpsc::UnboundedSender<Delivered>,
) -> AgentHandle {
    // Handshakes time out after 300 ms (the stranger's never completes).
    let config = securemesh::Config { handshake_timeout_ms: 300, ..securemesh::Config::default() };
    let opts = AgentOptions::loopback(name, dir, config);
    spawn(opts, StorageKey::new([key; 32]), Arc::clone(delivery), Arc::clone(book), app.clone())
        .await
        .unwrap()
}

async fn know(a: &AgentHandle, b: &AgentHandle) {
    let identity = b.identity;
    a.with(move |agent, _, _| {
        let id = agent.add_peer_identity(&identity).unwrap();
        agent.set_reachable(&id, true).unwrap();
        agent.policy_mut().define_role(WORKER, Permissions::of(&[TASK, REPLY])).unwrap();
        agent.policy_mut().grant(id, Roles::of(&[WORKER])).unwrap();
    })
    .await
    .unwrap();
}

async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5 s");
}

/// An XX message 0 (only an ephemeral key: nothing authenticates its
/// sender field) to `to`, its sender field set to `claimed`.
fn xx_message_0(to: securemesh::PeerId, claimed: securemesh::PeerId) -> Vec<u8> {
    let mut rng = TestRng::new(0x00c0_ffee_5eed);
    let mut m = Box::new(HostAgent::new(
        Identity::generate(&mut rng),
        securemesh::Config::default(),
        &mut rng,
        Clock::wall(),
    ));
    m.add_peer(to).unwrap();
    m.set_reachable(&to, true).unwrap();
    let now = securemesh_core::Instant::from_millis(1);
    m.send(&to, TASK, b"hello", now, &mut rng).unwrap();
    let mut buf = vec![0u8; MAX_ENVELOPE_LEN];
    let t = m.poll_transmit(&mut buf).unwrap().unwrap();
    let env = Envelope::parse(&buf[..t.len]).unwrap();
    assert_eq!(env.channel, securemesh::ChannelKind::NoiseXx);
    let forged = Envelope { sender: claimed, ..env };
    let mut out = vec![0u8; forged.encoded_len()];
    let n = forged.encode(&mut out).unwrap();
    out.truncate(n);
    out
}

/// A stranger claims bravo's id with an XX message 0 on its own
/// connection to alpha: alpha answers the handshake on that connection,
/// but its next message to bravo still reaches the real bravo.
#[test]
fn a_claimed_sender_does_not_capture_the_peers_transmits() {
    let dir = temp("claim");
    rt().block_on(async {
        let delivery = Arc::new(InProcess::new(64));
        let book = AddressBook::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let alpha = start(&dir, "alpha", 1, &delivery, &book, &tx).await;
        let bravo = start(&dir, "bravo", 2, &delivery, &book, &tx).await;
        know(&alpha, &bravo).await;
        know(&bravo, &alpha).await;

        let mut stranger = tokio::net::TcpStream::connect(alpha.addr).await.unwrap();
        write_frame(&mut stranger, &xx_message_0(alpha.peer_id, bravo.peer_id)).await.unwrap();
        // The handshake is answered where it came from.
        let answer = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut stranger))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let env = Envelope::parse(&answer).unwrap();
        assert_eq!((env.channel, env.sender), (securemesh::ChannelKind::NoiseXx, alpha.peer_id));

        // The stranger's handshake holds what alpha sends bravo until it
        // times out (the mesh's rule); after that, a new one.
        until(|| alpha.status().counters.handshakes_failed >= 1).await;
        alpha.send(bravo.peer_id, TASK, b"for bravo only".to_vec()).await.unwrap();
        let d = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert_eq!(
            (d.to.as_str(), d.from, d.payload.as_slice()),
            ("bravo", alpha.peer_id, &b"for bravo only"[..])
        );
        // Nothing more went to the stranger.
        let more = tokio::time::timeout(Duration::from_millis(100), read_frame(&mut stranger)).await;
        assert!(more.is_err(), "the stranger got {more:?}");
        // And the genuine pair still talks both ways.
        bravo.send(alpha.peer_id, REPLY, b"got it".to_vec()).await.unwrap();
        let d = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert_eq!((d.to.as_str(), d.payload.as_slice()), ("alpha", &b"got it"[..]));
        alpha.shutdown().await.unwrap();
        bravo.shutdown().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&dir);
}

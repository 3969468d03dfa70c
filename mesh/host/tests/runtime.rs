//! The runtime on loopback sockets: a peer sending garbage and a killed
//! peer give clear errors (counted and logged) and lose nothing; the
//! `agent` command's loop runs from a configuration file and stores its
//! state on stop; an envelope's sender field is a claim, so a connection
//! is bound to a peer only once that peer is authenticated on it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh::Permissions;
use securemesh::envelope::{Envelope, MAX_ENVELOPE_LEN};
use securemesh_core::envelope::StorageKey;
use securemesh_core::testing::TestRng;
use securemesh_host::HostAgent;
use securemesh_host::config::AgentFile;
use securemesh_host::delivery::InProcess;
use securemesh_host::demo::{REPLY, TASK, introduce, offline};
use securemesh_host::runtime::{
    AddressBook, AgentHandle, AgentOptions, Clock, Delivered, read_frame, spawn, write_frame,
};
use securemesh_ratchet::Identity;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

fn temp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("securemesh-host-rt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn start(
    dir: &std::path::Path,
    name: &str,
    key: u8,
    delivery: &Arc<InProcess>,
    book: &AddressBook,
    app: &mpsc::UnboundedSender<Delivered>,
) -> AgentHandle {
    // Handshakes time out after 300 ms (a stranger's never completes).
    let config = securemesh::Config { handshake_timeout_ms: 300, ..securemesh::Config::default() };
    let opts = AgentOptions::loopback(name, dir, config);
    spawn(opts, StorageKey::new([key; 32]), Arc::clone(delivery), Arc::clone(book), app.clone())
        .await
        .unwrap()
}

async fn know(a: &AgentHandle, b: &AgentHandle) {
    introduce(a, b.identity, true, Permissions::of(&[TASK, REPLY]), true).await.unwrap();
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Delivered>) -> Delivered {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap()
}

async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 10 s");
}

/// Alpha and bravo online, knowing and granting each other.
struct Pair {
    delivery: Arc<InProcess>,
    book: AddressBook,
    tx: mpsc::UnboundedSender<Delivered>,
    rx: mpsc::UnboundedReceiver<Delivered>,
    alpha: AgentHandle,
    bravo: AgentHandle,
}

async fn pair(dir: &std::path::Path) -> Pair {
    let delivery = Arc::new(InProcess::new(64));
    let book = AddressBook::default();
    let (tx, rx) = mpsc::unbounded_channel();
    let alpha = start(dir, "alpha", 1, &delivery, &book, &tx).await;
    let bravo = start(dir, "bravo", 2, &delivery, &book, &tx).await;
    know(&alpha, &bravo).await;
    know(&bravo, &alpha).await;
    Pair { delivery, book, tx, rx, alpha, bravo }
}

#[test]
fn garbage_from_a_peer_is_refused_and_changes_nothing() {
    let dir = temp("garbage");
    rt().block_on(async {
        let Pair { mut rx, alpha, bravo, .. } = pair(&dir).await;

        // A stranger sends junk frames, a forged envelope header, then a
        // length beyond any envelope.
        let mut s = tokio::net::TcpStream::connect(bravo.addr).await.unwrap();
        write_frame(&mut s, b"not an envelope").await.unwrap();
        let mut forged = vec![1u8, 3];
        forged.extend_from_slice(&alpha.peer_id.0);
        forged.extend_from_slice(&[0u8; 8 + 3 + 40]);
        write_frame(&mut s, &forged).await.unwrap();
        until(|| bravo.status().refused_inputs >= 2).await;
        s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        s.flush().await.unwrap();

        // Bravo still works: a genuine exchange goes through.
        alpha.send(bravo.peer_id, TASK, b"still there?".to_vec()).await.unwrap();
        let d = next(&mut rx).await;
        assert_eq!(
            (d.to.as_str(), d.from, d.payload.as_slice()),
            ("bravo", alpha.peer_id, &b"still there?"[..])
        );
        bravo.send(alpha.peer_id, REPLY, b"yes".to_vec()).await.unwrap();
        assert_eq!(next(&mut rx).await.payload, b"yes");
        let st = bravo.status();
        assert_eq!(st.refused_inputs, 2, "{st:?}");
        assert_eq!(st.delivered, 1);
        alpha.shutdown().await.unwrap();
        bravo.shutdown().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_peer_is_a_counted_failure_and_its_mail_waits() {
    let dir = temp("killed");
    rt().block_on(async {
        let Pair { delivery, book, tx, mut rx, alpha, bravo } = pair(&dir).await;
        alpha.send(bravo.peer_id, TASK, b"one".to_vec()).await.unwrap();
        assert_eq!(next(&mut rx).await.payload, b"one");
        let bravo_id = bravo.peer_id;
        bravo.kill().await;
        // The dead peer's listener is gone: direct sends fail and are counted.
        // (The first write may still land in the closed socket's buffer.)
        for i in 0..50 {
            if alpha.status().send_failures >= 1 {
                break;
            }
            alpha.send(bravo_id, TASK, format!("lost in transit {i}").into_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(alpha.status().send_failures >= 1, "{:?}", alpha.status());
        // Offline now: the next message goes through bravo's mailbox and
        // waits there for it.
        offline(&alpha, delivery.as_ref(), bravo_id).await.unwrap();
        let route = alpha.send(bravo_id, TASK, b"kept for you".to_vec()).await.unwrap();
        assert_eq!(route.channel, securemesh::Channel::RatchetX3dh);
        until(|| delivery.pending(&bravo_id) == 1).await;
        let bravo = start(&dir, "bravo", 2, &delivery, &book, &tx).await;
        assert!(bravo.status().restored);
        let d = next(&mut rx).await;
        assert_eq!((d.to.as_str(), d.payload.as_slice()), ("bravo", &b"kept for you"[..]));
        until(|| delivery.pending(&bravo_id) == 0).await;
        alpha.shutdown().await.unwrap();
        bravo.shutdown().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_agent_command_runs_from_its_file_and_stores_on_stop() {
    let dir = temp("command");
    let key_file = dir.join("agent.key");
    std::fs::create_dir_all(&dir).unwrap();
    securemesh_host::keys::write_new_key(&key_file).unwrap();
    let yaml = format!(
        "agent:\n  name: solo\n  listen: 127.0.0.1:0\n  state_dir: {}\nkey_lifecycle:\n  state_persistence:\n    key_file: {}\nobservability:\n  metrics_listen: 127.0.0.1:0\nroles:\n  - role: 0\n    kinds: [1, 3]\n",
        dir.join("state").display(),
        key_file.display()
    );
    let file = AgentFile::parse(&yaml).unwrap();
    let first = securemesh_host::app::bundle_text(&file).unwrap();
    assert!(first.contains("restored: false"), "{first}");
    rt().block_on(securemesh_host::app::run_agent(
        &file,
        async { tokio::time::sleep(Duration::from_millis(50)).await },
        None,
    ))
    .unwrap();
    let again = securemesh_host::app::bundle_text(&file).unwrap();
    assert!(again.contains("restored: true"), "{again}");
    let id = |t: &str| t.lines().find(|l| l.starts_with("identity: ")).unwrap().to_string();
    assert_eq!(id(&first), id(&again), "the same agent after the run");
    // The storage key file refuses to be overwritten.
    assert!(securemesh_host::keys::write_new_key(&key_file).is_err());
    // Another key opens nothing and says why.
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    let err = securemesh_host::app::bundle_text(&file).unwrap_err().to_string();
    assert!(err.contains("another key"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
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
        let Pair { mut rx, alpha, bravo, .. } = pair(&dir).await;

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
        let d = next(&mut rx).await;
        assert_eq!(
            (d.to.as_str(), d.from, d.payload.as_slice()),
            ("bravo", alpha.peer_id, &b"for bravo only"[..])
        );
        // Nothing more went to the stranger.
        let more = tokio::time::timeout(Duration::from_millis(100), read_frame(&mut stranger)).await;
        assert!(more.is_err(), "the stranger got {more:?}");
        // And the genuine pair still talks both ways.
        bravo.send(alpha.peer_id, REPLY, b"got it".to_vec()).await.unwrap();
        let d = next(&mut rx).await;
        assert_eq!((d.to.as_str(), d.payload.as_slice()), ("alpha", &b"got it"[..]));
        alpha.shutdown().await.unwrap();
        bravo.shutdown().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A deposit the delivery service refuses (bravo's mailbox is full) does
/// not stop alpha or lose the message: it waits in alpha's outbox file,
/// survives alpha's crash, and is deposited once the mailbox has room.
#[test]
fn a_refused_deposit_waits_in_the_outbox_across_a_crash() {
    let dir = temp("outbox");
    rt().block_on(async {
        let delivery = Arc::new(InProcess::new(1));
        let book = AddressBook::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let alpha = start(&dir, "alpha", 1, &delivery, &book, &tx).await;
        let bravo = start(&dir, "bravo", 2, &delivery, &book, &tx).await;
        know(&alpha, &bravo).await;
        know(&bravo, &alpha).await;
        let bravo_id = bravo.peer_id;
        bravo.kill().await;
        offline(&alpha, delivery.as_ref(), bravo_id).await.unwrap();
        alpha.send(bravo_id, TASK, b"one".to_vec()).await.unwrap();
        alpha.send(bravo_id, TASK, b"two".to_vec()).await.unwrap();
        until(|| alpha.status().send_failures >= 1).await;
        let outbox = dir.join("alpha").join("outbox");
        let waiting = securemesh_host::outbox::Outbox::open(&outbox).unwrap();
        assert_eq!(waiting.entries().len(), 1, "two waits");
        assert_eq!(delivery.pending(&bravo_id), 1, "one deposited");
        // Alpha still runs, then crashes.
        alpha.with(|_, _, _| ()).await.unwrap();
        alpha.kill().await;

        let alpha = start(&dir, "alpha", 1, &delivery, &book, &tx).await;
        let bravo = start(&dir, "bravo", 2, &delivery, &book, &tx).await;
        assert_eq!(next(&mut rx).await.payload, b"one");
        assert_eq!(next(&mut rx).await.payload, b"two");
        until(|| securemesh_host::outbox::Outbox::open(&outbox).unwrap().entries().is_empty()).await;
        alpha.shutdown().await.unwrap();
        bravo.shutdown().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A full mailbox holds back only its own envelopes: alpha writes three
/// to the offline bravo, whose mailbox takes two; the third waits in
/// alpha's outbox, and what alpha then writes to the offline charlie
/// goes through at once. When bravo starts and reads its mailbox, the
/// third follows, and bravo has all three, in order.
#[test]
fn a_full_mailbox_holds_back_only_its_own_envelopes() {
    let dir = temp("full");
    rt().block_on(async {
        let delivery = Arc::new(InProcess::new(2));
        let book = AddressBook::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let alpha = start(&dir, "alpha", 1, &delivery, &book, &tx).await;
        let bravo = start(&dir, "bravo", 2, &delivery, &book, &tx).await;
        let charlie = start(&dir, "charlie", 3, &delivery, &book, &tx).await;
        for peer in [&bravo, &charlie] {
            know(peer, &alpha).await;
        }
        let (bravo_id, bravo_identity) = (bravo.peer_id, bravo.identity);
        let (charlie_id, charlie_identity) = (charlie.peer_id, charlie.identity);
        bravo.shutdown().await.unwrap();
        charlie.shutdown().await.unwrap();
        for (id, identity) in [(bravo_id, bravo_identity), (charlie_id, charlie_identity)] {
            offline(&alpha, delivery.as_ref(), id).await.unwrap();
            introduce(&alpha, identity, false, Permissions::of(&[TASK, REPLY]), true).await.unwrap();
        }
        for text in ["b1", "b2", "b3"] {
            alpha.send(bravo_id, TASK, text.as_bytes().to_vec()).await.unwrap();
        }
        until(|| delivery.pending(&bravo_id) == 2).await;
        alpha.send(charlie_id, TASK, b"c1".to_vec()).await.unwrap();
        until(|| delivery.pending(&charlie_id) == 1).await;
        assert_eq!(delivery.pending(&bravo_id), 2, "the third waits in the outbox");
        assert!(alpha.status().send_failures >= 1, "the full mailbox is counted");

        let bravo = start(&dir, "bravo", 2, &delivery, &book, &tx).await;
        let mut got = Vec::new();
        while got.len() < 3 {
            let d = next(&mut rx).await;
            if d.to == "bravo" {
                got.push(String::from_utf8(d.payload).unwrap());
            }
        }
        assert_eq!(got, ["b1", "b2", "b3"]);
        alpha.shutdown().await.unwrap();
        bravo.shutdown().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&dir);
}

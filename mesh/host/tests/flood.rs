//! A flooding peer on loopback: too many connections, garbage frames and
//! impossible lengths, a storm of random datagrams. Each is refused and
//! counted ([`NetStats`]), what the agent holds stays within its bounds
//! ([`NetLimits`]), and a genuine peer is still served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use rand_core::Rng;
use securemesh::envelope::MAX_ENVELOPE_LEN;
use securemesh::{ChannelKind, Permissions};
use securemesh_core::testing::TestRng;
use securemesh_host::demo::{REPLY, TASK, TELEMETRY, introduce};
use securemesh_host::net::{MAX_REFUSED_PER_CONNECTION, NetLimits, NetStats};
use securemesh_host::runtime::{AgentHandle, AgentOptions, write_frame};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The flooded agent's bounds: small, so the tests cross them (and an
/// unbound connection is left alone for a minute).
const LIMITS: NetLimits = NetLimits {
    max_connections: 4,
    max_connections_per_address: 64,
    queue_capacity: 8,
    unbound_timeout: Duration::from_secs(60),
};

mod common;
use common::{Mesh, WAIT};

impl Mesh {
    async fn agent(&self, name: &str, key: u8, limits: NetLimits) -> AgentHandle {
        self.spawn(name, key, |o| AgentOptions { limits, ..o }).await
    }

    /// Alpha (default bounds) and bravo (under `limits`), each granting
    /// the other tasks, replies and telemetry, and one message from alpha
    /// delivered (alpha's connection to bravo is open).
    async fn pair(&mut self, limits: NetLimits) -> (AgentHandle, AgentHandle) {
        let alpha = self.agent("alpha", 1, NetLimits::default()).await;
        let bravo = self.agent("bravo", 2, limits).await;
        meet(&alpha, &bravo).await;
        self.exchange(&alpha, &bravo, "hello").await;
        (alpha, bravo)
    }

    /// `a` sends `text` to `b` and `b` answers: both delivered.
    async fn exchange(&mut self, a: &AgentHandle, b: &AgentHandle, text: &str) {
        a.send(b.peer_id, TASK, text.as_bytes().to_vec()).await.unwrap();
        let d = self.next().await;
        assert_eq!(
            (d.to.as_str(), d.from, d.payload.as_slice()),
            (b.name.as_str(), a.peer_id, text.as_bytes())
        );
        b.send(a.peer_id, REPLY, b"ok".to_vec()).await.unwrap();
        let d = self.next().await;
        assert_eq!((d.to.as_str(), d.from, d.payload.as_slice()), (a.name.as_str(), b.peer_id, &b"ok"[..]));
    }

    async fn stop(self, agents: Vec<AgentHandle>) {
        for a in agents {
            a.shutdown().await.unwrap();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn meet(a: &AgentHandle, b: &AgentHandle) {
    let kinds = Permissions::of(&[TASK, REPLY, TELEMETRY]);
    introduce(a, b.identity, true, kinds, true).await.unwrap();
    introduce(b, a.identity, true, kinds, true).await.unwrap();
}

fn run(test: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(test);
}

/// Wait (up to [`WAIT`]) until `cond` holds of `a`'s socket counts;
/// returns them.
async fn until(a: &AgentHandle, what: &str, cond: impl Fn(&NetStats) -> bool) -> NetStats {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = a.net();
        if cond(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not reached in {WAIT:?}: {s:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Scrape `a`'s Prometheus endpoint (served from its status cell, as
/// the agent command does) once its status caught up with its sockets'
/// counts and stayed the same across the scrape, and check that every
/// net series carries the value of those counts; returns them.
async fn exported(a: &AgentHandle) -> NetStats {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cells = Arc::new(std::sync::Mutex::new(vec![a.status_cell()]));
    let server = tokio::spawn(securemesh_host::metrics::serve(listener, cells));
    // The status is refreshed after each of the agent's steps (a mailbox
    // poll at least every 10 ms); datagrams may still be read meanwhile.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (s, text) = loop {
        let (before, live) = (a.status().net, a.net());
        let text = securemesh_host::metrics::scrape(addr).await.unwrap();
        if before == live && a.status().net == before {
            break (before, text);
        }
        assert!(tokio::time::Instant::now() < deadline, "status never settled: {before:?} vs {live:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    server.abort();
    let n = format!("agent=\"{}\"", a.name);
    let series = [
        (format!("securemesh_connections_refused_total{{{n}}}"), s.connections_refused.to_string()),
        (
            format!("securemesh_connections_refused_per_address_total{{{n}}}"),
            s.connections_refused_address.to_string(),
        ),
        (
            format!("securemesh_connections_closed_total{{{n},reason=\"garbage\"}}"),
            s.connections_closed_garbage.to_string(),
        ),
        (
            format!("securemesh_connections_closed_total{{{n},reason=\"unbound\"}}"),
            s.connections_closed_unbound.to_string(),
        ),
        (
            format!("securemesh_connections_closed_total{{{n},reason=\"oversized_frame\"}}"),
            s.frames_oversized.to_string(),
        ),
        (
            format!("securemesh_datagrams_dropped_total{{{n},reason=\"queue_full\"}}"),
            s.datagrams_dropped_full.to_string(),
        ),
        (format!("securemesh_inbound_connections{{{n}}}"), s.inbound_connections.to_string()),
        (format!("securemesh_net_queue_entries{{{n}}}"), s.queued.to_string()),
        (format!("securemesh_net_queue_peak{{{n}}}"), s.queue_peak.to_string()),
        (format!("securemesh_net_queue_capacity{{{n}}}"), s.queue_capacity.to_string()),
    ];
    for (name, value) in series {
        let line = format!("\n{name} {value}\n");
        assert!(text.contains(&line), "`{name} {value}` not served:\n{text}");
    }
    s
}

/// Whether the agent closed `s`: end of stream or a reset within
/// `wait` (an open connection just stays silent).
async fn closed(s: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 1];
    matches!(tokio::time::timeout(wait, s.read(&mut b)).await, Ok(Ok(0) | Err(_)))
}

/// The cap holds: beyond it connections are closed when accepted and
/// counted; the peer whose connection is open is still served both ways;
/// once the flooder lets go, a new peer connects and is served.
#[test]
fn connections_beyond_the_cap_are_closed_and_a_peer_is_still_served() {
    let mut m = Mesh::new("flood", "cap");
    run(async {
        let (alpha, bravo) = m.pair(LIMITS).await;
        until(&bravo, "alpha's connection counted", |s| s.inbound_connections == 1).await;

        const FLOOD: usize = 10;
        let mut flood = Vec::new();
        for _ in 0..FLOOD {
            flood.push(TcpStream::connect(bravo.addr).await.unwrap());
        }
        let excess = (FLOOD + 1 - LIMITS.max_connections) as u64;
        let s = until(&bravo, "excess refused", |s| s.connections_refused == excess).await;
        assert_eq!(s.inbound_connections, LIMITS.max_connections, "{s:?}");
        // The refused ones see their end at once; the others stay open.
        let mut shut = 0;
        for c in &mut flood {
            if closed(c, Duration::from_millis(200)).await {
                shut += 1;
            }
        }
        assert_eq!(shut as u64, excess);

        // Alpha's open connection still carries messages both ways.
        m.exchange(&alpha, &bravo, "still served").await;

        // The flooder lets go: the slots come back, a new peer gets one.
        drop(flood);
        until(&bravo, "slots released", |s| s.inbound_connections == 1).await;
        let charlie = m.agent("charlie", 3, NetLimits::default()).await;
        meet(&charlie, &bravo).await;
        m.exchange(&charlie, &bravo, "a newcomer").await;
        assert_eq!(bravo.net().connections_refused, excess, "nothing more refused");
        assert_eq!(exported(&bravo).await.connections_refused, excess);
        m.stop(vec![alpha, bravo, charlie]).await;
    });
}

/// One host (127.0.0.2) opens more connections than its address may
/// hold: beyond `max_connections_per_address` they are closed when
/// accepted and counted apart; the slots left serve other hosts, alpha
/// (127.0.0.1) among them.
#[test]
fn one_address_cannot_take_every_slot() {
    let mut m = Mesh::new("flood", "per-address");
    run(async {
        let limits = NetLimits { max_connections: 6, max_connections_per_address: 3, ..LIMITS };
        let bravo = m.agent("bravo", 2, limits).await;
        let flooder = std::net::IpAddr::from([127, 0, 0, 2]);
        let mut flood = Vec::new();
        for _ in 0..8 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((flooder, 0).into()).unwrap();
            flood.push(socket.connect(bravo.addr).await.unwrap());
        }
        let s = until(&bravo, "the address's excess refused", |s| s.connections_refused_address == 5).await;
        assert_eq!((s.inbound_connections, s.connections_refused), (3, 0), "{s:?}");
        let mut shut = 0;
        for c in &mut flood {
            if closed(c, Duration::from_millis(200)).await {
                shut += 1;
            }
        }
        assert_eq!(shut, 5, "the refused ones see their end");
        // Another host is still served while the flooder holds its three.
        let alpha = m.agent("alpha", 1, NetLimits::default()).await;
        meet(&alpha, &bravo).await;
        m.exchange(&alpha, &bravo, "from another address").await;
        let s = exported(&bravo).await;
        assert_eq!((s.connections_refused_address, s.connections_refused), (5, 0), "{s:?}");
        // The flooder lets go: its address's slots come back.
        drop(flood);
        until(&bravo, "the address's slots released", |s| s.inbound_connections == 1).await;
        let mut again = Vec::new();
        for _ in 0..3 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((flooder, 0).into()).unwrap();
            again.push(socket.connect(bravo.addr).await.unwrap());
        }
        until(&bravo, "three from it again", |s| s.inbound_connections == 4).await;
        for c in &mut again {
            assert!(!closed(c, Duration::from_millis(100)).await, "accepted again");
        }
        assert_eq!(bravo.net().connections_refused_address, 5, "nothing more refused");
        m.stop(vec![alpha, bravo]).await;
    });
}

/// One connection writes a thousand garbage frames as fast as it can:
/// bravo refuses [`MAX_REFUSED_PER_CONNECTION`] of them, closes it, and
/// handles no more than what its queue held then. Lengths beyond an
/// envelope close their connections before any allocation. Alpha is
/// served all along.
#[test]
fn garbage_and_impossible_lengths_close_their_connection() {
    let mut m = Mesh::new("flood", "garbage");
    run(async {
        let (alpha, bravo) = m.pair(LIMITS).await;
        let refused_before = bravo.status().refused_inputs;

        let mut rng = TestRng::new(0x6a7b_a6e0_f100_d001);
        let mut burst = Vec::new();
        const FRAMES: usize = 1000;
        for _ in 0..FRAMES {
            let mut junk = [0u8; 60];
            rng.fill_bytes(&mut junk);
            burst.extend_from_slice(&(junk.len() as u32).to_be_bytes());
            burst.extend_from_slice(&junk);
        }
        let mut junk = TcpStream::connect(bravo.addr).await.unwrap();
        // Bravo may close the connection while this is still written.
        let _ = junk.write_all(&burst).await;
        until(&bravo, "garbage connection closed", |s| s.connections_closed_garbage == 1).await;
        assert!(closed(&mut junk, WAIT).await, "the garbage connection is closed");
        let s = until(&bravo, "queue drained", |s| s.queued == 0).await;
        let refused = bravo.status().refused_inputs - refused_before;
        // The frames in the queue when the connection was closed are still
        // handled (and refused); nothing more of the thousand.
        let most = u64::from(MAX_REFUSED_PER_CONNECTION) + LIMITS.queue_capacity as u64;
        assert!(
            (u64::from(MAX_REFUSED_PER_CONNECTION)..=most).contains(&refused),
            "{refused} refused of {FRAMES}"
        );
        assert!(s.queue_peak >= 1 && s.queue_peak <= LIMITS.queue_capacity, "{s:?}");

        // A length beyond any envelope, then the largest u32: each closes
        // its connection (nothing is allocated for it).
        for len in [MAX_ENVELOPE_LEN as u32 + 1, u32::MAX] {
            let before = bravo.net().frames_oversized;
            let mut c = TcpStream::connect(bravo.addr).await.unwrap();
            c.write_all(&len.to_be_bytes()).await.unwrap();
            c.write_all(&[0u8; 64]).await.unwrap();
            until(&bravo, "oversized frame refused", |s| s.frames_oversized == before + 1).await;
            assert!(closed(&mut c, WAIT).await, "a {len}-byte frame closes its connection");
        }

        // One refused frame is a strike, not a closing.
        let before = bravo.status().refused_inputs;
        let mut odd = TcpStream::connect(bravo.addr).await.unwrap();
        write_frame(&mut odd, b"not an envelope").await.unwrap();
        until(&bravo, "the odd frame refused", |_| bravo.status().refused_inputs == before + 1).await;
        assert!(!closed(&mut odd, Duration::from_millis(100)).await, "one refused frame closes nothing");
        // Alpha is served all along.
        m.exchange(&alpha, &bravo, "after the garbage").await;
        let s = bravo.net();
        assert_eq!((s.connections_closed_garbage, s.frames_oversized), (1, 2), "{s:?}");
        assert!(s.queue_peak <= LIMITS.queue_capacity);
        let s = exported(&bravo).await;
        assert_eq!((s.connections_closed_garbage, s.frames_oversized), (1, 2), "{s:?}");
        m.stop(vec![alpha, bravo]).await;
    });
}

/// Thousands of random datagrams at bravo's UDP port: what finds the
/// queue full is dropped and counted, the rest refused as envelopes;
/// alpha's telemetry is still delivered.
#[test]
fn a_datagram_flood_is_dropped_and_counted_and_telemetry_still_arrives() {
    let mut m = Mesh::new("flood", "udp");
    run(async {
        let (alpha, bravo) = m.pair(LIMITS).await;
        telemetry(&mut m, &alpha, &bravo, "before").await;
        let refused_before = bravo.status().refused_inputs;

        let flooder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut rng = TestRng::new(0x0d06_f100_d5ee_d123);
        const DATAGRAMS: u64 = 4000;
        let mut sent = 0u64;
        for i in 0..DATAGRAMS {
            let mut junk = vec![0u8; 1 + (i as usize * 37) % 1200];
            rng.fill_bytes(&mut junk);
            if flooder.send_to(&junk, bravo.addr).await.is_ok() {
                sent += 1;
            }
        }
        until(&bravo, "datagrams dropped", |s| s.datagrams_dropped_full > 0).await;
        // (The peak only grows.)
        let s = until(&bravo, "queue drained", |s| s.queued == 0).await;
        let refused = bravo.status().refused_inputs - refused_before;
        // Each datagram the socket read was either dropped or refused (the
        // kernel may have dropped more before that).
        assert!(refused > 0 && refused + s.datagrams_dropped_full <= sent, "{refused} refused, {s:?}");
        assert!(s.queue_peak <= LIMITS.queue_capacity, "{s:?}");
        let e = exported(&bravo).await;
        assert!(e.datagrams_dropped_full >= s.datagrams_dropped_full && e.queue_peak >= 1, "{e:?}");

        telemetry(&mut m, &alpha, &bravo, "after").await;
        m.stop(vec![alpha, bravo]).await;
    });
}

/// Alpha sends telemetry `text` to bravo until one datagram of it is
/// delivered (a datagram may be lost; at most 20 tries).
async fn telemetry(m: &mut Mesh, alpha: &AgentHandle, bravo: &AgentHandle, text: &str) {
    let to = bravo.peer_id;
    for i in 0..20 {
        let payload = format!("{text} {i}").into_bytes();
        let p = payload.clone();
        alpha.with(move |a, rng, now| a.send_telemetry(&to, TELEMETRY, &p, now, rng)).await.unwrap().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Some(d)) = tokio::time::timeout_at(deadline, m.rx.recv()).await {
            if d.to == "bravo"
                && d.channel == ChannelKind::NoiseDatagram
                && d.payload.starts_with(text.as_bytes())
            {
                return;
            }
        }
    }
    panic!("no telemetry `{text}` delivered in 20 tries");
}

/// Connections that stay silent hold their slots only until the
/// unbound timeout: then they are closed and counted, a newcomer gets a
/// slot, and the peer bound to its connection keeps it.
#[test]
fn idle_connections_lose_their_slots() {
    let mut m = Mesh::new("flood", "idle");
    run(async {
        let limits = NetLimits { unbound_timeout: Duration::from_secs(2), ..LIMITS };
        let (alpha, bravo) = m.pair(limits).await;
        let mut idle = Vec::new();
        for _ in 1..LIMITS.max_connections {
            idle.push(TcpStream::connect(bravo.addr).await.unwrap());
        }
        until(&bravo, "every slot taken", |s| s.inbound_connections == LIMITS.max_connections).await;
        let gone = (LIMITS.max_connections - 1) as u64;
        until(&bravo, "idle connections closed", |s| s.connections_closed_unbound == gone).await;
        for c in &mut idle {
            assert!(closed(c, WAIT).await, "an idle connection is closed");
        }
        let charlie = m.agent("charlie", 3, NetLimits::default()).await;
        meet(&charlie, &bravo).await;
        m.exchange(&charlie, &bravo, "a slot at last").await;
        // Alpha's connection, bound to it, was kept.
        m.exchange(&alpha, &bravo, "still here").await;
        let s = bravo.net();
        assert_eq!((s.connections_closed_unbound, s.connections_refused), (gone, 0), "{s:?}");
        assert_eq!(exported(&bravo).await.connections_closed_unbound, gone);
        m.stop(vec![alpha, bravo, charlie]).await;
    });
}

/// The bounds come from the file's `agent:` section (the template's
/// values are the defaults); a bound of 0 is refused, naming the key and
/// its line.
#[test]
fn the_bounds_come_from_the_file() {
    use securemesh_host::config::{AgentFile, ConfigError};
    let template = include_str!("../examples/agent.yaml");
    let file = AgentFile::parse(template).unwrap();
    assert_eq!(securemesh_host::app::options(&file).limits, NetLimits::default());

    let yaml = "agent:\n  name: a\n  state_dir: /tmp/a\n  max_connections: 3\n  queue_capacity: 5\n  unbound_timeout: 2s\n  max_connections_per_address: 2\n";
    let limits = securemesh_host::app::options(&AgentFile::parse(yaml).unwrap()).limits;
    let want = NetLimits {
        max_connections: 3,
        max_connections_per_address: 2,
        queue_capacity: 5,
        unbound_timeout: Duration::from_secs(2),
    };
    assert_eq!(limits, want);
    // Without the per-address key: half of max_connections.
    let no_key = yaml.replace("  max_connections_per_address: 2\n", "");
    let limits = securemesh_host::app::options(&AgentFile::parse(&no_key).unwrap()).limits;
    assert_eq!(limits.max_connections_per_address, 1);

    for (line, from, to) in [
        (4, "max_connections: 3", "max_connections: 0"),
        (5, "queue_capacity: 5", "queue_capacity: 0"),
        (6, "unbound_timeout: 2s", "unbound_timeout: 0s"),
        (7, "max_connections_per_address: 2", "max_connections_per_address: 0"),
    ] {
        let key = from.split(':').next().unwrap();
        match AgentFile::parse(&yaml.replace(from, to)) {
            Err(ConfigError::Invalid(m)) => {
                assert!(m.contains(key) && m.contains(&format!("line {line}")), "{m}");
            }
            other => panic!("`{to}` accepted: {other:?}"),
        }
    }
}

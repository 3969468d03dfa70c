//! The live mesh demo (`securemesh demo`): agents on loopback TCP and
//! the embedded delivery service, every scenario the mesh supports
//! today checked as it runs, a progress table per agent, a summary, and
//! success only if every check held.
//!
//! Scenarios ([`run`]): a Noise pair over TCP; an offline agent that
//! receives through its mailbox (PQXDH, a hybrid post-quantum session,
//! with the feature `pq`: the agents run `prefer`), comes online and
//! replies; an agent
//! killed mid-run and restarted from its state files without losing a
//! message or re-running X3DH; a peer without the role refused by
//! policy; a prekey pool drained below its threshold and refilled; the
//! Prometheus endpoint; an MLS group that adds three members through the
//! delivery order and removes one; telemetry over UDP (Noise datagrams)
//! with 20 % of the datagrams dropped on purpose. A scenario the mesh
//! cannot run yet is listed in the summary as not yet done, never faked.

use crate::HostError;
use crate::delivery::nats::{JetStream, NatsOptions};
use crate::delivery::{DeliveryService, InProcess};
use crate::rng::OsRng;
use crate::runtime::{AddressBook, AgentHandle, AgentOptions, Delivered, Status, spawn};
use securemesh::{ChannelKind, MessageKind, PeerId, Permissions, Role, Roles};
use securemesh_core::envelope::StorageKey;
use securemesh_ratchet::PublicIdentity;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// A task for a worker.
pub const TASK: MessageKind = MessageKind(1);
/// Telemetry.
pub const TELEMETRY: MessageKind = MessageKind(2);
/// A reply.
pub const REPLY: MessageKind = MessageKind(3);
/// The role the demo grants.
pub const WORKER: Role = Role(0);
/// How long a check waits for a delivery.
const WAIT: Duration = Duration::from_secs(10);

/// `a` learns the peer of `identity`, sees it reachable or not, defines
/// [`WORKER`] as `worker` and grants it to the peer if `grant`; returns
/// the peer's id. How the demo, the tests and the benchmarks introduce
/// their agents to each other.
///
/// ```no_run
/// use securemesh::Permissions;
/// use securemesh_host::demo::{TASK, introduce};
/// use securemesh_host::runtime::AgentHandle;
/// async fn meet(alpha: &AgentHandle, bravo: &AgentHandle) -> Result<(), securemesh_host::HostError> {
///     introduce(alpha, bravo.identity, true, Permissions::of(&[TASK]), true).await?;
///     introduce(bravo, alpha.identity, true, Permissions::of(&[TASK]), true).await?;
///     Ok(())
/// }
/// ```
pub async fn introduce(
    a: &AgentHandle,
    identity: PublicIdentity,
    reachable: bool,
    worker: Permissions,
    grant: bool,
) -> Result<PeerId, HostError> {
    let id = a
        .with(move |agent, _, _| -> Result<PeerId, securemesh::Error> {
            let id = agent.add_peer_identity(&identity)?;
            agent.set_reachable(&id, reachable)?;
            agent.policy_mut().define_role(WORKER, worker)?;
            if grant {
                agent.policy_mut().grant(id, Roles::of(&[WORKER]))?;
            }
            Ok(id)
        })
        .await??;
    Ok(id)
}

/// `a` takes a bundle of `peer` from the delivery service (a one-time
/// bundle while any is left) and sees `peer` offline: it reaches it
/// through its mailbox (X3DH from that bundle). How the demo and the
/// tests set up an offline peer. Returns the id of the bundle's one-time
/// prekey (`None`: the last-resort bundle, signed prekey only).
///
/// ```no_run
/// use securemesh_host::delivery::InProcess;
/// use securemesh_host::demo::offline;
/// use securemesh_host::runtime::AgentHandle;
/// async fn write_later(a: &AgentHandle, b: &AgentHandle, d: &InProcess) -> Result<(), securemesh_host::HostError> {
///     offline(a, d, b.peer_id).await.map(|_one_time| ())
/// }
/// ```
pub async fn offline<D: DeliveryService>(
    a: &AgentHandle,
    delivery: &D,
    peer: PeerId,
) -> Result<Option<u32>, HostError> {
    let bundle = delivery
        .take_bundle(peer)
        .await?
        .ok_or_else(|| HostError::NotFound(format!("bundle of {}", crate::runtime::short(&peer))))?;
    let one_time = match securemesh_ratchet::Bundle::decode(&bundle) {
        // The directory answered with another peer's bundle: nothing set.
        Ok(b) if PeerId::of(b.identity()) != peer => {
            return Err(HostError::NotFound(format!(
                "bundle of {} (the delivery service gave another peer's)",
                crate::runtime::short(&peer)
            )));
        }
        Ok(b) => b.one_time().map(|o| o.id),
        // The agent refuses it below, with its reason.
        Err(_) => None,
    };
    a.with(move |agent, _, _| -> Result<(), securemesh::Error> {
        let id = agent.set_peer_bundle(&bundle)?;
        agent.set_reachable(&id, false)
    })
    .await??;
    Ok(one_time)
}

/// `joiner` publishes a KeyPackage and `creator` learns it, so it can
/// add `joiner` to a group; returns `joiner`'s peer id. How the demo, the
/// tests and the benchmarks make groups.
///
/// ```no_run
/// use securemesh_host::demo::share_key_package;
/// use securemesh_host::runtime::AgentHandle;
/// async fn make_group(alpha: &AgentHandle, bravo: &AgentHandle) -> Result<(), securemesh_host::HostError> {
///     let b = share_key_package(bravo, alpha).await?;
///     alpha
///         .with(move |a, rng, _| -> Result<(), securemesh::Error> {
///             let g = a.create_group(rng)?;
///             let mut scratch = vec![0u8; securemesh::group::COMMIT_SCRATCH_LEN];
///             a.add_members(g, &[b], rng, &mut scratch).map(|_| ())
///         })
///         .await??;
///     Ok(())
/// }
/// ```
pub async fn share_key_package(joiner: &AgentHandle, creator: &AgentHandle) -> Result<PeerId, HostError> {
    let wall = crate::runtime::Clock::wall();
    let kp = joiner
        .with(move |a, rng, _| -> Result<Vec<u8>, securemesh::Error> {
            let mut buf = vec![0u8; securemesh::group::MAX_KEY_PACKAGE_LEN];
            let len = a.publish_key_package(wall, &mut buf, rng)?;
            buf.truncate(len);
            Ok(buf)
        })
        .await??;
    Ok(creator.with(move |a, _, _| a.set_peer_key_package(&kp, wall)).await??)
}

/// How to run the demo.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Where the agents' state directories go (emptied first).
    pub dir: PathBuf,
    /// Print the progress table to stderr after each scenario.
    pub progress: bool,
    /// Run on this NATS JetStream server (`nats://host:port`) instead of
    /// the embedded delivery service.
    pub nats: Option<String>,
}

/// One check of the demo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// The scenario.
    pub scenario: &'static str,
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub held: bool,
    /// What was seen.
    pub detail: String,
}

/// The demo's result.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Scenarios of the issue the mesh does not support yet, with why.
    pub not_yet: Vec<(&'static str, &'static str)>,
    /// The agents' final status.
    pub agents: Vec<Status>,
    /// Wall time of the run in ms.
    pub elapsed_ms: u64,
}

impl Summary {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.held)
    }

    /// The summary as text.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\nsecuremesh demo: {} agents, {} ms", self.agents.len(), self.elapsed_ms);
        for c in &self.checks {
            let mark = if c.held { "ok  " } else { "FAIL" };
            let _ = writeln!(s, "  {mark} {:<22} {}: {}", c.scenario, c.name, c.detail);
        }
        for (n, why) in &self.not_yet {
            let _ = writeln!(s, "  --   {n:<22} not yet: {why}");
        }
        let held = self.checks.iter().filter(|c| c.held).count();
        let _ = writeln!(s, "{held}/{} checks held", self.checks.len());
        s
    }

    /// The summary as JSON.
    pub fn to_json(&self) -> String {
        let q = |t: &str| {
            let mut o = String::from("\"");
            for ch in t.chars() {
                match ch {
                    '"' => o.push_str("\\\""),
                    '\\' => o.push_str("\\\\"),
                    c if u32::from(c) < 0x20 => {
                        let _ = write!(o, "\\u{:04x}", u32::from(c));
                    }
                    c => o.push(c),
                }
            }
            o.push('"');
            o
        };
        let checks: Vec<String> = self
            .checks
            .iter()
            .map(|c| {
                format!(
                    "{{\"scenario\":{},\"check\":{},\"held\":{},\"detail\":{}}}",
                    q(c.scenario),
                    q(&c.name),
                    c.held,
                    q(&c.detail)
                )
            })
            .collect();
        let not_yet: Vec<String> =
            self.not_yet.iter().map(|(n, w)| format!("{{\"scenario\":{},\"why\":{}}}", q(n), q(w))).collect();
        let agents: Vec<String> = self
            .agents
            .iter()
            .map(|a| {
                format!(
                    "{{\"name\":{},\"sent\":{},\"delivered\":{},\"denied\":{},\"handshakes\":{},\"handshake_latency_max_ms\":{},\"ratchet_state_age_max_ms\":{},\"prekeys_available\":{},\"prekeys_capacity\":{},\"prekey_refills\":{},\"records_stored\":{},\"restored\":{}}}",
                    q(&a.name),
                    a.counters.sent,
                    a.delivered,
                    a.counters.denied,
                    a.handshakes,
                    a.metrics.handshake_latency_max_ms,
                    a.metrics.ratchet_state_age_max_ms.map_or("null".to_string(), |v| v.to_string()),
                    a.metrics.prekeys_available,
                    a.metrics.prekeys_capacity,
                    a.metrics.prekey_refills,
                    a.records_stored,
                    a.restored
                )
            })
            .collect();
        format!(
            "{{\"passed\":{},\"elapsed_ms\":{},\"checks\":[{}],\"not_yet\":[{}],\"agents\":[{}]}}",
            self.passed(),
            self.elapsed_ms,
            checks.join(","),
            not_yet.join(","),
            agents.join(",")
        )
    }
}

/// The progress table of `agents`.
pub fn table(agents: &[Status]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<9} {:>4} {:>4} {:>5} {:>5} {:>6} {:>3} {:>6} {:>9} {:>8} {:>7} {:>7}",
        "agent",
        "up",
        "sess",
        "sent",
        "recv",
        "denied",
        "hs",
        "hs ms",
        "age ms",
        "prekeys",
        "refills",
        "records"
    );
    for a in agents {
        let up = match (a.running, a.restored) {
            (true, true) => "re",
            (true, false) => "yes",
            (false, _) => "no",
        };
        let _ = writeln!(
            s,
            "{:<9} {:>4} {:>4} {:>5} {:>5} {:>6} {:>3} {:>6} {:>9} {:>8} {:>7} {:>7}",
            a.name,
            up,
            a.sessions,
            a.counters.sent,
            a.delivered,
            a.counters.denied,
            a.handshakes,
            a.metrics.handshake_latency_max_ms,
            a.metrics.ratchet_state_age_max_ms.map_or("-".to_string(), |v| v.to_string()),
            format!("{}/{}", a.metrics.prekeys_available, a.metrics.prekeys_capacity),
            a.metrics.prekey_refills,
            a.records_stored
        );
    }
    s
}

/// The agents of a demo run.
struct Mesh<D> {
    dir: PathBuf,
    delivery: Arc<D>,
    book: AddressBook,
    app_tx: mpsc::UnboundedSender<Delivered>,
    app_rx: mpsc::UnboundedReceiver<Delivered>,
    /// Deliveries seen and not yet claimed by a check.
    seen: Vec<Delivered>,
    agents: BTreeMap<String, AgentHandle>,
    keys: BTreeMap<String, StorageKey>,
    ids: BTreeMap<String, PeerId>,
    identities: BTreeMap<String, PublicIdentity>,
    /// The last status of agents that stopped.
    last: BTreeMap<String, Status>,
    cells: Arc<Mutex<Vec<Arc<Mutex<Status>>>>>,
    rng: OsRng,
    summary: Summary,
    progress: bool,
}

/// What [`Mesh::until`] counts at the delivery service.
#[derive(Clone, Copy)]
enum Count {
    /// Messages waiting in a mailbox.
    Mail,
    /// One-time bundles left.
    OneTime,
}

impl<D: DeliveryService> Mesh<D> {
    async fn count(&self, owner: PeerId, what: Count) -> Result<usize, HostError> {
        Ok(match what {
            Count::Mail => self.delivery.pending_count(owner).await?,
            Count::OneTime => self.delivery.one_time_count(owner).await?,
        })
    }

    /// Poll the count every 10 ms for up to [`WAIT`] until `holds`;
    /// returns whether it did and the last count.
    async fn until(
        &self,
        owner: PeerId,
        what: Count,
        holds: impl Fn(usize) -> bool,
    ) -> Result<(bool, usize), HostError> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let n = self.count(owner, what).await?;
            if holds(n) || tokio::time::Instant::now() >= deadline {
                return Ok((holds(n), n));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn start(&mut self, name: &str, config: securemesh::Config) -> Result<PeerId, HostError> {
        let key = match self.keys.get(name) {
            Some(k) => k.duplicate(),
            None => {
                let k = StorageKey::random(&mut self.rng);
                self.keys.insert(name.into(), k.duplicate());
                k
            }
        };
        let opts = AgentOptions { udp_loss_percent: 20, ..AgentOptions::loopback(name, &self.dir, config) };
        let h =
            spawn(opts, key, Arc::clone(&self.delivery), Arc::clone(&self.book), self.app_tx.clone()).await?;
        let id = h.peer_id;
        if let Ok(mut c) = self.cells.lock() {
            c.push(h.status_cell());
        }
        self.ids.insert(name.into(), id);
        self.identities.insert(name.into(), h.identity);
        self.last.remove(name);
        self.agents.insert(name.into(), h);
        Ok(id)
    }

    fn agent(&self, name: &str) -> Result<&AgentHandle, HostError> {
        self.agents.get(name).ok_or_else(|| HostError::NotFound(format!("running agent {name}")))
    }

    fn id(&self, name: &str) -> Result<PeerId, HostError> {
        self.ids.get(name).copied().ok_or_else(|| HostError::NotFound(format!("agent {name}")))
    }

    /// `a` learns `b`'s identity, sees it reachable or not, and grants it
    /// the worker role if `grant`.
    async fn introduce(&self, a: &str, b: &str, reachable: bool, grant: bool) -> Result<(), HostError> {
        let identity = *self.identities.get(b).ok_or_else(|| HostError::NotFound(format!("agent {b}")))?;
        introduce(self.agent(a)?, identity, reachable, Permissions::of(&[TASK, TELEMETRY, REPLY]), grant)
            .await?;
        Ok(())
    }

    /// `a` takes `b`'s bundle from the directory and marks `b` offline.
    async fn take_bundle(&self, a: &str, b: &str) -> Result<(), HostError> {
        offline(self.agent(a)?, self.delivery.as_ref(), self.id(b)?).await.map(|_| ())
    }

    async fn send(
        &self,
        from: &str,
        to: &str,
        kind: MessageKind,
        text: &str,
    ) -> Result<securemesh::Route, HostError> {
        let to = self.id(to)?;
        self.agent(from)?.send(to, kind, text.as_bytes().to_vec()).await
    }

    /// Wait for a delivery to `to` of `text` (claims it).
    async fn wait(&mut self, to: &str, text: &str, within: Duration) -> Option<Delivered> {
        let matches = |d: &Delivered| d.to == to && d.payload == text.as_bytes();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(i) = self.seen.iter().position(matches) {
                return Some(self.seen.remove(i));
            }
            match tokio::time::timeout_at(deadline, self.app_rx.recv()).await {
                Ok(Some(d)) => self.seen.push(d),
                _ => return None,
            }
        }
    }

    /// Collect what is delivered for `within`.
    async fn drain(&mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(d)) = tokio::time::timeout_at(deadline, self.app_rx.recv()).await {
            self.seen.push(d);
        }
    }

    fn check(
        &mut self,
        scenario: &'static str,
        name: impl Into<String>,
        held: bool,
        detail: impl Into<String>,
    ) {
        let c = Check { scenario, name: name.into(), held, detail: detail.into() };
        if self.progress {
            eprintln!("  {} {}: {} ({})", if c.held { "ok  " } else { "FAIL" }, c.scenario, c.name, c.detail);
        }
        self.summary.checks.push(c);
    }

    fn statuses(&self) -> Vec<Status> {
        let mut all: BTreeMap<String, Status> = self.last.clone();
        for (n, h) in &self.agents {
            all.insert(n.clone(), h.status());
        }
        all.into_values().collect()
    }

    fn status(&self, name: &str) -> Status {
        self.agents
            .get(name)
            .map_or_else(|| self.last.get(name).cloned().unwrap_or_default(), AgentHandle::status)
    }

    fn show(&self, title: &str) {
        if self.progress {
            eprintln!("\n== {title}\n{}", table(&self.statuses()));
        }
    }

    async fn stop(&mut self, name: &str, kill: bool) -> Result<(), HostError> {
        let h =
            self.agents.remove(name).ok_or_else(|| HostError::NotFound(format!("running agent {name}")))?;
        let mut last = h.status();
        last.running = false;
        self.last.insert(name.into(), last);
        if kill {
            h.kill().await;
            Ok(())
        } else {
            h.shutdown().await
        }
    }
}

/// Run the demo, on the embedded delivery service or on the NATS
/// JetStream server of `opts.nats`.
pub async fn run(opts: DemoOptions) -> Result<Summary, HostError> {
    match opts.nats.clone() {
        None => run_on(opts, Arc::new(InProcess::new(1024))).await,
        Some(url) => {
            let js =
                JetStream::connect(NatsOptions { url, max_mailbox: 1024, ..NatsOptions::default() }).await?;
            run_on(opts, Arc::new(js)).await
        }
    }
}

async fn run_on<D: DeliveryService>(opts: DemoOptions, delivery: Arc<D>) -> Result<Summary, HostError> {
    let started = std::time::Instant::now();
    let _ = std::fs::remove_dir_all(&opts.dir);
    std::fs::create_dir_all(&opts.dir)?;
    let (app_tx, app_rx) = mpsc::unbounded_channel();
    let mut m = Mesh {
        dir: opts.dir.clone(),
        delivery,
        book: AddressBook::default(),
        app_tx,
        app_rx,
        seen: Vec::new(),
        agents: BTreeMap::new(),
        keys: BTreeMap::new(),
        ids: BTreeMap::new(),
        identities: BTreeMap::new(),
        last: BTreeMap::new(),
        cells: Arc::default(),
        rng: OsRng::new()?,
        summary: Summary::default(),
        progress: opts.progress,
    };
    let metrics = tokio::net::TcpListener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let metrics_addr = metrics.local_addr()?;
    let server = tokio::spawn(crate::metrics::serve(metrics, Arc::clone(&m.cells)));

    let result = scenarios(&mut m, metrics_addr).await;
    server.abort();
    let names: Vec<String> = m.agents.keys().cloned().collect();
    for n in names {
        m.stop(&n, false).await?;
    }
    result?;
    m.summary.not_yet = Vec::new();
    m.summary.agents = m.statuses();
    m.summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(m.summary)
}

async fn scenarios<D: DeliveryService>(
    m: &mut Mesh<D>,
    metrics_addr: std::net::SocketAddr,
) -> Result<(), HostError> {
    let config = securemesh::Config::default();
    noise_pair(m, config).await?;
    offline_mailbox(m, config).await?;
    kill_restart(m, config).await?;
    policy_refusal(m, config).await?;
    prekey_refill(m, config).await?;
    mls_group(m, config).await?;
    udp_telemetry(m).await?;
    prometheus(m, metrics_addr).await?;
    Ok(())
}

/// alpha and bravo, both online: Noise IK over TCP, a task and a reply.
async fn noise_pair<D: DeliveryService>(
    m: &mut Mesh<D>,
    config: securemesh::Config,
) -> Result<(), HostError> {
    const S: &str = "noise pair (tcp)";
    m.start("alpha", config).await?;
    m.start("bravo", config).await?;
    m.introduce("alpha", "bravo", true, true).await?;
    m.introduce("bravo", "alpha", true, true).await?;
    let route = m.send("alpha", "bravo", TASK, "measure tank 3").await?;
    m.check(
        S,
        "route",
        route.channel == securemesh::Channel::NoiseIk,
        format!("{:?} ({:?})", route.channel, route.reason),
    );
    let got = m.wait("bravo", "measure tank 3", WAIT).await;
    let alpha = m.id("alpha")?;
    m.check(
        S,
        "task delivered over noise",
        got.as_ref().is_some_and(|d| d.from == alpha),
        format!("{:?}", got.map(|d| d.channel)),
    );
    m.send("bravo", "alpha", REPLY, "tank 3: 4.2 bar").await?;
    let got = m.wait("alpha", "tank 3: 4.2 bar", WAIT).await;
    m.check(
        S,
        "reply delivered",
        got.as_ref().is_some_and(|d| d.channel == ChannelKind::NoiseTransport),
        format!("{:?}", got.map(|d| d.channel)),
    );
    let a = m.status("alpha");
    m.check(
        S,
        "handshake latency measured",
        a.handshakes >= 1 && a.metrics.handshake_latency_last_ms.is_some(),
        format!("{} handshakes, last {:?} ms", a.handshakes, a.metrics.handshake_latency_last_ms),
    );
    m.show(S);
    Ok(())
}

/// charlie goes offline; delta writes to it through its mailbox; charlie
/// comes back online and replies.
async fn offline_mailbox<D: DeliveryService>(
    m: &mut Mesh<D>,
    config: securemesh::Config,
) -> Result<(), HostError> {
    const S: &str = "offline via mailbox";
    m.start("charlie", config).await?;
    m.start("delta", config).await?;
    m.introduce("charlie", "delta", false, true).await?;
    m.stop("charlie", false).await?;
    m.take_bundle("delta", "charlie").await?;
    m.introduce("delta", "charlie", false, true).await?;
    let route = m.send("delta", "charlie", TASK, "rotate logs when back").await?;
    m.check(
        S,
        "route",
        route.channel == securemesh::Channel::RatchetX3dh,
        format!("{:?} ({:?})", route.channel, route.reason),
    );
    let charlie = m.id("charlie")?;
    let (waiting, n) = m.until(charlie, Count::Mail, |n| n == 1).await?;
    m.check(S, "kept in the mailbox while offline", waiting, format!("{n} waiting"));
    m.start("charlie", config).await?;
    let got = m.wait("charlie", "rotate logs when back", WAIT).await;
    m.check(
        S,
        "delivered when online",
        got.as_ref().is_some_and(|d| d.channel == ChannelKind::RatchetInitial),
        format!("{:?}", got.map(|d| d.channel)),
    );
    // (The status is refreshed after the step that delivered.)
    let pq = cfg!(feature = "pq");
    let channels = |m: &Mesh<D>| m.status("charlie").metrics.ratchet_channels;
    let hybrid = wait_until(|| {
        let c = channels(&*m);
        if pq { c.hybrid >= 1 } else { c.classical >= 1 }
    })
    .await;
    let c = channels(&*m);
    m.check(
        S,
        if pq { "session is post-quantum hybrid (PQXDH)" } else { "session is classical (built without pq)" },
        hybrid,
        format!("charlie's ratchet channels: {} hybrid, {} classical", c.hybrid, c.classical),
    );
    let route = m.send("charlie", "delta", REPLY, "logs rotated").await?;
    let got = m.wait("delta", "logs rotated", WAIT).await;
    m.check(S, "reply", got.is_some(), format!("{:?} -> {:?}", route.channel, got.map(|d| d.channel)));
    let (drained, n) = m.until(charlie, Count::Mail, |n| n == 0).await?;
    m.check(S, "mailbox acknowledged", drained, format!("{n} left"));
    m.show(S);
    Ok(())
}

/// echo and foxtrot hold a ratchet session; foxtrot is killed while
/// messages arrive and restarted from its state files.
async fn kill_restart<D: DeliveryService>(
    m: &mut Mesh<D>,
    config: securemesh::Config,
) -> Result<(), HostError> {
    const S: &str = "kill and restart";
    m.start("echo", config).await?;
    m.start("foxtrot", config).await?;
    m.introduce("foxtrot", "echo", false, true).await?;
    m.take_bundle("echo", "foxtrot").await?;
    m.introduce("echo", "foxtrot", false, true).await?;
    m.send("echo", "foxtrot", TASK, "m0").await?;
    let first = m.wait("foxtrot", "m0", WAIT).await.is_some();
    m.send("foxtrot", "echo", REPLY, "r0").await?;
    let session = first && m.wait("echo", "r0", WAIT).await.is_some();
    m.check(S, "ratchet session both ways", session, "m0 and r0 delivered");
    let consumed_before = m.status("foxtrot").metrics.prekeys_consumed_total;

    const N: usize = 6;
    for i in 1..=3 {
        m.send("echo", "foxtrot", TASK, &format!("m{i}")).await?;
    }
    // Killed as soon as the first of them is delivered: the others are in
    // flight, maybe handled but not yet acknowledged.
    let _ = m.wait("foxtrot", "m1", WAIT).await;
    m.stop("foxtrot", true).await?;
    // More while it is down: they wait in its mailbox.
    for i in 4..=N {
        m.send("echo", "foxtrot", TASK, &format!("m{i}")).await?;
    }
    let foxtrot = m.id("foxtrot")?;
    let (queued, n) = m.until(foxtrot, Count::Mail, |n| n >= N - 3).await?;
    m.check(S, "mail waits while it is down", queued, format!("{n} in its mailbox"));
    m.start("foxtrot", config).await?;
    let restored = m.status("foxtrot").restored;
    m.check(S, "restored from state files", restored, "agent and session records".to_string());
    let mut missing = Vec::new();
    for i in 2..=N {
        if m.wait("foxtrot", &format!("m{i}"), WAIT).await.is_none() {
            missing.push(i);
        }
    }
    let after = m.status("foxtrot").delivered;
    m.check(S, "delivered after the restart", after >= 3, format!("{after} by the restored agent"));
    m.drain(Duration::from_millis(100)).await;
    let dupes = m.seen.iter().filter(|d| d.to == "foxtrot" && d.payload.starts_with(b"m")).count();
    m.check(S, "no message lost", missing.is_empty(), format!("m1..m{N}: missing {missing:?}"));
    m.check(S, "none delivered twice", dupes == 0, format!("{dupes} duplicates"));
    let f = m.status("foxtrot");
    m.check(
        S,
        "no new X3DH",
        f.metrics.prekeys_consumed_total == consumed_before && f.sessions >= 1,
        format!("one-time prekeys consumed {} -> {}", consumed_before, f.metrics.prekeys_consumed_total),
    );
    let route = m.send("foxtrot", "echo", REPLY, "r1").await?;
    let got = m.wait("echo", "r1", WAIT).await;
    m.check(
        S,
        "replies on the same session",
        route.channel == securemesh::Channel::RatchetSession && got.is_some(),
        format!("{:?}", route.channel),
    );
    m.show(S);
    Ok(())
}

/// golf has no role at bravo: its task is refused and never delivered.
async fn policy_refusal<D: DeliveryService>(
    m: &mut Mesh<D>,
    config: securemesh::Config,
) -> Result<(), HostError> {
    const S: &str = "policy refusal";
    m.start("golf", config).await?;
    m.introduce("golf", "bravo", true, true).await?;
    m.introduce("bravo", "golf", true, false).await?;
    let denied_before = m.status("bravo").counters.denied;
    m.send("golf", "bravo", TASK, "open valve 7").await?;
    let denied = wait_until(|| m.status("bravo").counters.denied > denied_before).await;
    m.drain(Duration::from_millis(100)).await;
    let golf = m.id("golf")?;
    let leaked = m.seen.iter().any(|d| d.from == golf);
    m.check(S, "denied", denied, format!("bravo denied {}", m.status("bravo").counters.denied));
    m.check(S, "never delivered", !leaked, "no delivery from golf".to_string());
    m.show(S);
    Ok(())
}

/// hotel's pool refills at 25 % use: five agents start sessions from its
/// one-time bundles.
async fn prekey_refill<D: DeliveryService>(
    m: &mut Mesh<D>,
    config: securemesh::Config,
) -> Result<(), HostError> {
    const S: &str = "prekey refill";
    let mut hotel_config = config;
    hotel_config.prekeys.refill_threshold_percent = 25;
    m.start("hotel", hotel_config).await?;
    let senders = ["alpha", "bravo", "delta", "echo", "golf"];
    let hotel = m.id("hotel")?;
    let published = m.count(hotel, Count::OneTime).await?;
    for s in senders {
        m.introduce("hotel", s, false, true).await?;
        m.take_bundle(s, "hotel").await?;
        m.introduce(s, "hotel", false, true).await?;
    }
    let left = m.count(hotel, Count::OneTime).await?;
    m.check(
        S,
        "one bundle each",
        published.saturating_sub(left) == senders.len(),
        format!("{published} published, {left} left"),
    );
    for s in senders {
        m.send(s, "hotel", TASK, &format!("hello hotel from {s}")).await?;
    }
    let mut got = 0;
    for s in senders {
        if m.wait("hotel", &format!("hello hotel from {s}"), WAIT).await.is_some() {
            got += 1;
        }
    }
    m.check(S, "all delivered", got == senders.len(), format!("{got}/{}", senders.len()));
    let refilled = wait_until(|| m.status("hotel").metrics.prekey_refills >= 1).await;
    let h = m.status("hotel");
    m.check(
        S,
        "drained below threshold and refilled",
        // Without the refill, five sessions would leave capacity - 5.
        refilled && h.metrics.prekeys_available > h.metrics.prekeys_capacity.saturating_sub(5),
        format!(
            "{} refills, {}/{} available",
            h.metrics.prekey_refills, h.metrics.prekeys_available, h.metrics.prekeys_capacity
        ),
    );
    let (republished, n) = m.until(hotel, Count::OneTime, |n| n > left).await?;
    m.check(S, "new bundles published", republished, format!("{n} one-time bundles in the directory"));
    m.show(S);
    Ok(())
}

/// india creates an MLS group, adds juliet, kilo and lima from their
/// KeyPackages, sends to it, removes lima, sends again.
async fn mls_group<D: DeliveryService>(m: &mut Mesh<D>, config: securemesh::Config) -> Result<(), HostError> {
    const S: &str = "mls group";
    let names = ["india", "juliet", "kilo", "lima"];
    for n in names {
        m.start(n, config).await?;
    }
    for a in names {
        for b in names.iter().filter(|b| **b != a) {
            m.introduce(a, b, false, true).await?;
        }
    }
    let mut joiners = Vec::new();
    for n in names.iter().skip(1) {
        joiners.push(share_key_package(m.agent(n)?, m.agent("india")?).await?);
    }
    let group = m
        .agent("india")?
        .with(move |a, rng, _| -> Result<securemesh::GroupId, securemesh::Error> {
            let g = a.create_group(rng)?;
            let mut scratch = vec![0u8; securemesh::group::COMMIT_SCRATCH_LEN];
            a.add_members(g, &joiners, rng, &mut scratch)?;
            Ok(g)
        })
        .await??;
    let joined = wait_until(|| names.iter().all(|n| m.status(n).groups == 1)).await;
    let mut auths = Vec::new();
    for n in names {
        auths.push(m.agent(n)?.with(move |a, _, _| a.group_epoch_authenticator(group).ok()).await?);
    }
    let agree = auths.first().is_some_and(|f| f.is_some() && auths.iter().all(|x| x == f));
    m.check(
        S,
        "three added through the commit order",
        joined,
        "india, juliet, kilo, lima are members".to_string(),
    );
    m.check(S, "one group state", agree, "epoch authenticators equal".to_string());

    let to_group = |text: &'static str| {
        move |a: &mut crate::HostAgent, rng: &mut OsRng, now| a.send(&group, TASK, text.as_bytes(), now, rng)
    };
    m.agent("india")?.with(to_group("pumps: report")).await??;
    let mut got = Vec::new();
    for n in ["juliet", "kilo", "lima"] {
        if m.wait(n, "pumps: report", WAIT).await.is_some() {
            got.push(n);
        }
    }
    m.check(S, "group message to every member", got.len() == 3, format!("{got:?}"));

    let lima = m.id("lima")?;
    m.agent("india")?
        .with(move |a, rng, _| {
            let mut scratch = vec![0u8; securemesh::group::COMMIT_SCRATCH_LEN];
            a.remove_members(group, &[lima], rng, &mut scratch)
        })
        .await??;
    let left = wait_until(|| m.status("lima").groups == 0).await;
    // India confirms its commit when it reads it back from its mailbox,
    // which may come after lima read it.
    let deadline = tokio::time::Instant::now() + WAIT;
    let committed = loop {
        let done = m
            .agent("india")?
            .with(move |a, _, _| a.groups().any(|g| g.id == group && g.members == 3 && !g.commit_pending))
            .await?;
        if done || tokio::time::Instant::now() >= deadline {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    m.check(S, "member removed", left && committed, "lima left; india's group has 3 members".to_string());
    m.agent("india")?.with(to_group("pumps: report again")).await??;
    let mut got = Vec::new();
    for n in ["juliet", "kilo"] {
        if m.wait(n, "pumps: report again", WAIT).await.is_some() {
            got.push(n);
        }
    }
    m.drain(Duration::from_millis(100)).await;
    let leaked = m.seen.iter().any(|d| d.to == "lima" && d.payload == b"pumps: report again");
    m.check(S, "removed member reads nothing", got.len() == 2 && !leaked, format!("{got:?}, lima: {leaked}"));
    m.show(S);
    Ok(())
}

/// kilo sends telemetry to juliet over UDP (Noise datagrams) with 20 %
/// of the datagrams dropped on purpose.
async fn udp_telemetry<D: DeliveryService>(m: &mut Mesh<D>) -> Result<(), HostError> {
    const S: &str = "udp telemetry";
    const N: usize = 100;
    let juliet = m.id("juliet")?;
    let before = m.status("kilo").handshakes;
    let route = m
        .agent("kilo")?
        .with(move |a, rng, now| -> Result<securemesh::Route, securemesh::Error> {
            a.set_reachable(&juliet, true)?;
            a.send_telemetry(&juliet, TELEMETRY, b"t0", now, rng)
        })
        .await??;
    m.check(
        S,
        "route",
        route.channel == securemesh::Channel::NoiseDatagram,
        format!("{:?} ({:?})", route.channel, route.reason),
    );
    let open = wait_until(|| m.status("kilo").handshakes > before).await;
    m.check(S, "datagram handshake over udp", open, format!("{} handshakes", m.status("kilo").handshakes));
    for i in 1..N {
        let text = format!("t{i}");
        m.agent("kilo")?
            .with(move |a, rng, now| a.send_telemetry(&juliet, TELEMETRY, text.as_bytes(), now, rng))
            .await??;
    }
    // Until nothing more arrives for 200 ms (bounded by WAIT).
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = usize::MAX;
    while m.seen.len() != last && tokio::time::Instant::now() < deadline {
        last = m.seen.len();
        m.drain(Duration::from_millis(200)).await;
    }
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut i = 0;
    while i < m.seen.len() {
        let hit = m.seen.get(i).is_some_and(|d| d.to == "juliet" && d.channel == ChannelKind::NoiseDatagram);
        if hit {
            got.push(m.seen.remove(i).payload);
        } else {
            i += 1;
        }
    }
    let dropped = usize::try_from(m.status("kilo").datagrams_dropped).unwrap_or(usize::MAX);
    let mut distinct = got.clone();
    distinct.sort();
    distinct.dedup();
    let sent = N.saturating_sub(dropped);
    m.check(
        S,
        "loss tolerated, nothing twice",
        // Loopback UDP may lose a few more under load: at least 80 % of
        // what was not dropped on purpose must arrive.
        distinct.len() == got.len() && got.len() <= sent && got.len() * 10 >= sent * 8 && dropped > 0,
        format!("{N} sent, {dropped} dropped on purpose, {} delivered", got.len()),
    );
    m.show(S);
    Ok(())
}

/// The metrics endpoint serves the four metrics.
async fn prometheus<D: DeliveryService>(
    m: &mut Mesh<D>,
    addr: std::net::SocketAddr,
) -> Result<(), HostError> {
    const S: &str = "prometheus";
    let text = timeout(WAIT, crate::metrics::scrape(addr))
        .await
        .map_err(|_| HostError::Timeout("metrics scrape"))??;
    let names = [
        "securemesh_handshake_latency_seconds",
        "securemesh_ratchet_state_age_seconds",
        "securemesh_prekey_utilization_ratio",
        "securemesh_post_quantum",
        "securemesh_messages_received_total",
        "securemesh_connections_closed_total",
        "securemesh_net_queue_peak",
    ];
    let missing: Vec<&str> = names.iter().copied().filter(|n| !text.contains(&format!("\n{n}{{"))).collect();
    m.check(
        S,
        "four metrics and counters served",
        text.starts_with("HTTP/1.0 200") && missing.is_empty(),
        format!("{} bytes, missing {missing:?}", text.len()),
    );
    Ok(())
}

/// Poll `cond` every 10 ms for up to [`WAIT`].
async fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

//! The Tokio runtime of one agent: a task that owns the
//! [`HostAgent`], its [`FileStore`] and its sockets, and drives it.
//!
//! - **Noise stream over TCP**: every envelope is one frame, a 4-byte
//!   big-endian length and the bytes (at most
//!   [`MAX_ENVELOPE_LEN`]; a
//!   longer frame closes the connection). An envelope's sender field is
//!   only a claim: an accepted connection is bound to a peer (and then
//!   carries every direct transmit to it) only once that peer is
//!   authenticated on it, by a message delivered from it, or by a Noise
//!   handshake run on it that completed (XX) or is confirmed. Until then
//!   the agent's handshake answers for a session go back on the
//!   connection the session's messages came from, and nothing else does.
//! - **Bounds** ([`net`]): at most [`NetLimits::max_connections`]
//!   inbound connections ([`NetLimits::max_connections_per_address`] from
//!   one IP address), one queue of [`NetLimits::queue_capacity`]
//!   entries from the sockets to the task (a TCP reader waits for room,
//!   a UDP datagram is dropped and counted), a connection without an
//!   authenticated peer closed after repeated refused envelopes or
//!   [`NetLimits::unbound_timeout`]; [`AgentHandle::net`] reads the
//!   counts.
//! - **Noise datagrams over UDP**: envelopes of datagram sessions
//!   (session ids with [`DATAGRAM_SESSION`](securemesh::DATAGRAM_SESSION))
//!   go over a UDP socket bound to the listener's port number, one
//!   envelope per datagram; loss can be injected for the demo.
//! - **Groups**: a [`Delivery::Group`] transmit goes to every member
//!   (the sender too) through [`DeliveryService::deposit_group`].
//! - **Mailbox**: transmits for [`Delivery::Mailbox`] go to the
//!   [`DeliveryService`] (through the [`Outbox`] file: retried, and
//!   re-sent after a restart, until the service takes them); the task fetches its own mailbox, hands each
//!   envelope to the agent, stores the state it left and only then
//!   acknowledges it.
//! - **Persistence rule**: after every call into the agent, every
//!   pending record is stored ([`flush`]) before anything is sent or a
//!   delivered message is given to the application.
//! - **Timers** from [`poll_timeout`](securemesh::Agent::poll_timeout);
//!   **randomness** from the OS ([`OsRng`]).
//! - **Shutdown**: [`AgentHandle::shutdown`] stores what is pending and
//!   stops; [`AgentHandle::kill`] aborts the task as a crash would.

use crate::HostAgent;
use crate::delivery::DeliveryService;
use crate::error::HostError;
use crate::net::{self, Net, NetHandle, NetLimits, NetStats, Queue, Unbound};
use crate::outbox::{Outbox, Pending};
use crate::rng::OsRng;
use crate::state::{flush, restore};
use crate::store::FileStore;
use securemesh::envelope::{Envelope, MAX_ENVELOPE_LEN};
use securemesh::{
    ChannelKind, Counters, Delivery, Event, MessageKind, Metrics, PeerId, PqMode, Route, SessionId,
    SessionKind,
};
use securemesh_core::envelope::StorageKey;
use securemesh_core::{Instant, UnixTime};
use securemesh_ratchet::{Identity, PublicIdentity};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};

/// The host's clock: the mesh's [`Instant`] counts milliseconds from the
/// process's start; wall time is the system clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Clock { origin: tokio::time::Instant::now() }
    }

    /// Milliseconds since the start.
    pub fn now(&self) -> Instant {
        Instant::from_millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The Tokio instant of a mesh instant.
    pub fn to_tokio(&self, t: Instant) -> tokio::time::Instant {
        self.origin + Duration::from_millis(t.as_millis())
    }

    /// Seconds since the Unix epoch.
    pub fn wall() -> UnixTime {
        UnixTime(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        )
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Where each agent's Noise listener is: the host's name service.
pub type AddressBook = Arc<Mutex<HashMap<PeerId, SocketAddr>>>;

/// A message the agent delivered to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The receiving agent's name.
    pub to: String,
    /// The sender, as the channel authenticated it.
    pub from: PeerId,
    /// Its kind (the policy allowed it).
    pub kind: MessageKind,
    /// The payload.
    pub payload: Vec<u8>,
    /// The channel it came over.
    pub channel: ChannelKind,
}

/// What the host saw of an agent, refreshed after every step.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// The agent's name.
    pub name: String,
    /// Its metrics.
    pub metrics: Metrics,
    /// Its counters.
    pub counters: Counters,
    /// Sessions in its table.
    pub sessions: usize,
    /// Noise handshakes completed in this run.
    pub handshakes: u64,
    /// Messages given to the application.
    pub delivered: u64,
    /// Envelopes refused as malformed or unauthenticated.
    pub refused_inputs: u64,
    /// Records stored.
    pub records_stored: u64,
    /// MLS groups the agent is a member of.
    pub groups: usize,
    /// Mailbox messages acknowledged.
    pub mail_acked: u64,
    /// Transmits that could not be sent (no address, connection lost).
    pub send_failures: u64,
    /// Telemetry datagrams dropped on purpose (`udp_loss_percent`).
    pub datagrams_dropped: u64,
    /// What its sockets refused and queued ([`net`]), as of the last step.
    pub net: NetStats,
    /// Whether the agent was rebuilt from its state files.
    pub restored: bool,
    /// Whether the task runs.
    pub running: bool,
}

/// How to run one agent.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Its name (logs, metrics labels).
    pub name: String,
    /// The mesh agent's configuration.
    pub config: securemesh::Config,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The generation ledger (default in the state directory).
    pub ledger: Option<PathBuf>,
    /// The Noise listener's address.
    pub listen: SocketAddr,
    /// How often the mailbox is fetched.
    pub mailbox_poll: Duration,
    /// Percentage of outgoing telemetry datagrams dropped on purpose (to
    /// show loss tolerance; 0 in production).
    pub udp_loss_percent: u8,
    /// The bounds of its sockets ([`net`]).
    pub limits: NetLimits,
    /// How it runs the hybrid post-quantum channels: given to a new
    /// agent, and set again on a restored one (a restore runs
    /// [`PqMode::Off`] until told). A PQXDH pool is made only by a new
    /// agent in a hybrid mode: an agent first stored under `off` keeps
    /// its X3DH bundles (its Noise channels still go hybrid).
    pub pq: PqMode,
}

impl AgentOptions {
    /// An agent named `name` with its state in `dir/name`, its listener on
    /// an ephemeral loopback port, the ledger in its state directory, the
    /// mailbox fetched every 10 ms, no datagram dropped and the
    /// post-quantum mode [`DEFAULT_PQ`](crate::config::DEFAULT_PQ) (the local
    /// meshes of the demo, the tests and the benchmarks; override fields
    /// with struct update syntax).
    ///
    /// ```
    /// use securemesh_host::runtime::AgentOptions;
    /// use std::path::Path;
    /// let opts = AgentOptions::loopback("alpha", Path::new("mesh"), securemesh::Config::default());
    /// assert_eq!(opts.state_dir, Path::new("mesh").join("alpha"));
    /// assert!(opts.listen.ip().is_loopback() && opts.listen.port() == 0);
    /// ```
    pub fn loopback(name: &str, dir: &Path, config: securemesh::Config) -> Self {
        Self {
            name: name.into(),
            config,
            state_dir: dir.join(name),
            ledger: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            mailbox_poll: Duration::from_millis(10),
            udp_loss_percent: 0,
            limits: NetLimits::default(),
            pq: crate::config::DEFAULT_PQ,
        }
    }
}

/// Attempts at one deposit before it waits in the outbox for the next
/// mailbox poll (and the delivery service is paused), and the pause after
/// the first failed one (doubled after each).
pub const DEPOSIT_ATTEMPTS: u32 = 3;
const DEPOSIT_BACKOFF: Duration = Duration::from_millis(20);
/// The longest pause between mailbox polls while the delivery service
/// fails (the pause starts at [`DEPOSIT_BACKOFF`] and doubles).
const FETCH_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// At most this many unauthenticated (sender, session) claims are
/// remembered; beyond it an answer goes to the claimed peer's address.
const MAX_CLAIMS: usize = 1024;

type Job = Box<dyn FnOnce(&mut HostAgent, &mut OsRng, Instant) + Send>;

enum Command {
    With(Job),
    Shutdown(oneshot::Sender<Result<(), HostError>>),
}

/// A running agent.
#[derive(Debug)]
pub struct AgentHandle {
    /// Its name.
    pub name: String,
    /// Its peer id.
    pub peer_id: PeerId,
    /// Its public identity.
    pub identity: PublicIdentity,
    /// Its Noise listener.
    pub addr: SocketAddr,
    cmd: mpsc::UnboundedSender<Command>,
    status: Arc<Mutex<Status>>,
    net: NetHandle,
    join: JoinHandle<Result<(), HostError>>,
}

impl AgentHandle {
    /// Run `f` on the agent inside its task (then the task stores the
    /// state, sends and reports as after any step); returns `f`'s result.
    pub async fn with<T, F>(&self, f: F) -> Result<T, HostError>
    where
        T: Send + 'static,
        F: FnOnce(&mut HostAgent, &mut OsRng, Instant) -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |a, rng, now| {
            let _ = tx.send(f(a, rng, now));
        });
        self.cmd.send(Command::With(job)).map_err(|_| HostError::Stopped)?;
        rx.await.map_err(|_| HostError::Stopped)
    }

    /// Send `payload` of `kind` to `to`; returns the route the agent chose.
    pub async fn send(&self, to: PeerId, kind: MessageKind, payload: Vec<u8>) -> Result<Route, HostError> {
        self.with(move |a, rng, now| a.send(&to, kind, &payload, now, rng)).await?.map_err(HostError::Mesh)
    }

    /// A copy of the agent's status.
    pub fn status(&self) -> Status {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// What its sockets refused and queued ([`net`]).
    pub fn net(&self) -> NetStats {
        self.net.stats()
    }

    /// The status cell, for a metrics endpoint that outlives the handle.
    pub fn status_cell(&self) -> Arc<Mutex<Status>> {
        Arc::clone(&self.status)
    }

    /// Store what is pending and stop.
    pub async fn shutdown(self) -> Result<(), HostError> {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Shutdown(tx)).is_err() {
            return self.join.await.map_err(|_| HostError::Stopped)?;
        }
        let flushed = rx.await.map_err(|_| HostError::Stopped)?;
        let _ = self.join.await;
        flushed
    }

    /// Stop the task at once, as a crash would: nothing more is stored.
    pub async fn kill(self) {
        self.join.abort();
        let _ = self.join.await;
        if let Ok(mut s) = self.status.lock() {
            s.running = false;
        }
    }
}

/// What an agent publishes to the bundle directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundles {
    /// The bundle without a one-time prekey.
    pub last_resort: Vec<u8>,
    /// One bundle per one-time prekey, by its id.
    pub one_time: Vec<(u32, Vec<u8>)>,
}

/// Publish the bundles of agent `owner` to `delivery`. (The bundles are
/// made first, with [`bundles`], so no borrow of the agent is held
/// across the await.)
pub async fn publish<D: DeliveryService>(owner: PeerId, b: Bundles, delivery: &D) -> Result<(), HostError> {
    Ok(delivery.publish_bundles(owner, b.last_resort, b.one_time).await?)
}

/// The bundles of `agent` to publish: the last-resort one and one per
/// one-time prekey.
pub fn bundles(agent: &HostAgent) -> Result<Bundles, HostError> {
    let mut buf = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
    let one = |id: Option<u32>, buf: &mut [u8]| -> Result<Vec<u8>, HostError> {
        let n = agent.bundle_with(id, buf)?;
        Ok(buf.get(..n).ok_or(securemesh::Error::BufferTooSmall { needed: n })?.to_vec())
    };
    let last = one(None, &mut buf)?;
    let ids: Vec<u32> = agent.one_time_prekey_ids().collect();
    let mut once = Vec::with_capacity(ids.len());
    for id in ids {
        once.push((id, one(Some(id), &mut buf)?));
    }
    Ok(Bundles { last_resort: last, one_time: once })
}

/// The agent of `opts.state_dir`: restored from its records, or made
/// (new identity, persistence on) and stored when there are none.
/// Returns it, its store and whether it was restored.
///
/// The agent is built on a thread of its own
/// ([`on_agent_stack`](crate::state::on_agent_stack)).
pub fn open(
    opts: &AgentOptions,
    key: StorageKey,
    rng: &mut OsRng,
) -> Result<(Box<HostAgent>, FileStore, bool), HostError> {
    crate::state::on_agent_stack(|| open_here(opts, key, rng))?
}

fn open_here(
    opts: &AgentOptions,
    key: StorageKey,
    rng: &mut OsRng,
) -> Result<(Box<HostAgent>, FileStore, bool), HostError> {
    let mut store = FileStore::open(&opts.state_dir, opts.ledger.as_deref())?;
    let (mut agent, restored) = match restore(&store, key.duplicate(), opts.config)? {
        Some(mut a) => {
            a.set_pq_mode(opts.pq);
            (a, true)
        }
        None => {
            let identity = Identity::generate(rng);
            let mut a = Box::new(HostAgent::new_pq(identity, opts.config, opts.pq, rng, Clock::wall()));
            a.enable_persistence(key);
            (a, false)
        }
    };
    flush(&mut agent, &mut store, rng)?;
    Ok((agent, store, restored))
}

/// Start an agent: restore it from `opts.state_dir` (or create it),
/// listen, publish its bundles, and run it in a task.
pub async fn spawn<D: DeliveryService>(
    opts: AgentOptions,
    key: StorageKey,
    delivery: Arc<D>,
    book: AddressBook,
    app: mpsc::UnboundedSender<Delivered>,
) -> Result<AgentHandle, HostError> {
    let mut rng = OsRng::new()?;
    let (agent, store, restored) = open(&opts, key, &mut rng)?;
    let outbox = Outbox::open(&store.dir().join("outbox"))?;
    let listener = TcpListener::bind(opts.listen).await?;
    let addr = listener.local_addr()?;
    // Datagrams on the same port number over UDP: one address per agent.
    let udp = Arc::new(tokio::net::UdpSocket::bind(addr).await?);
    let peer_id = agent.peer_id();
    let identity = *agent.public_identity();
    if let Ok(mut b) = book.lock() {
        b.insert(peer_id, addr);
    }
    publish(peer_id, bundles(&agent)?, delivery.as_ref()).await?;
    tracing::info!(agent = %opts.name, peer = %short(&peer_id), %addr, restored, "agent started");

    let status = Arc::new(Mutex::new(Status {
        name: opts.name.clone(),
        restored,
        running: true,
        ..Status::default()
    }));
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (net_tx, net_rx, net) = net::channel(opts.limits);
    let accept = tokio::spawn(net::accept_loop(listener, net_tx.clone(), net.slots())).abort_handle();
    let udp_reader = tokio::spawn(net::udp_loop(Arc::clone(&udp), net_tx.clone())).abort_handle();
    let task = Task {
        name: opts.name.clone(),
        agent,
        store,
        rng,
        clock: Clock::new(),
        delivery,
        book,
        app,
        status: Arc::clone(&status),
        conns: HashMap::new(),
        by_peer: HashMap::new(),
        claimed: HashMap::new(),
        next_conn: 1 << 32,
        net_tx,
        net: net.clone(),
        unbound: Unbound::default(),
        unbound_timeout: opts.limits.unbound_timeout,
        counts: Status::default(),
        outbox,
        accept,
        udp,
        udp_reader,
        udp_loss_percent: opts.udp_loss_percent,
        retry: None,
    };
    let mailbox_poll = opts.mailbox_poll;
    let join = tokio::spawn(task.run(cmd_rx, net_rx, mailbox_poll));
    Ok(AgentHandle { name: opts.name, peer_id, identity, addr, cmd: cmd_tx, status, net, join })
}

/// The first 8 hex digits of a peer id, for logs.
pub fn short(p: &PeerId) -> String {
    crate::keys::to_hex(p.0.get(..4).unwrap_or(&[]))
}

/// Whether an envelope belongs to a datagram session (carried over UDP).
fn is_datagram(bytes: &[u8]) -> bool {
    Envelope::parse(bytes).is_ok_and(|e| e.session.0 & securemesh::DATAGRAM_SESSION != 0)
}

/// One length-framed envelope, `None` at a clean end of stream.
pub async fn read_frame<R: AsyncReadExt + Unpin>(rd: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match rd.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    if n > MAX_ENVELOPE_LEN {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "frame longer than an envelope"));
    }
    let mut bytes = vec![0u8; n];
    rd.read_exact(&mut bytes).await?;
    Ok(Some(bytes))
}

/// Write one length-framed envelope.
pub async fn write_frame<W: AsyncWriteExt + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too long"))?;
    let mut frame = Vec::with_capacity(bytes.len().saturating_add(4));
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(bytes);
    w.write_all(&frame).await
}

struct Task<D> {
    name: String,
    agent: Box<HostAgent>,
    store: FileStore,
    rng: OsRng,
    clock: Clock,
    delivery: Arc<D>,
    book: AddressBook,
    app: mpsc::UnboundedSender<Delivered>,
    status: Arc<Mutex<Status>>,
    conns: HashMap<u64, (OwnedWriteHalf, AbortHandle)>,
    /// Connections bound to an authenticated peer.
    by_peer: HashMap<PeerId, u64>,
    /// The connection each (claimed sender, session) last arrived on,
    /// not yet authenticated: only that session's answers go there.
    claimed: HashMap<(PeerId, SessionId), u64>,
    next_conn: u64,
    net_tx: Queue,
    /// The sockets' counts.
    net: NetHandle,
    /// Refused envelopes and age of connections not yet bound.
    unbound: Unbound,
    unbound_timeout: Duration,
    counts: Status,
    /// Envelopes for the delivery service not yet accepted by it.
    outbox: Outbox,
    /// The listener's accept loop.
    accept: AbortHandle,
    /// The datagram socket and its reader.
    udp: Arc<tokio::net::UdpSocket>,
    udp_reader: AbortHandle,
    udp_loss_percent: u8,
    /// While the delivery service fails: when to poll it again, and the
    /// pause (doubled at each failure).
    retry: Option<(tokio::time::Instant, Duration)>,
}

/// However the task ends (returned, or aborted as by a crash), its
/// listener and every connection close with it.
impl<D> Drop for Task<D> {
    fn drop(&mut self) {
        self.accept.abort();
        self.udp_reader.abort();
        for (_, reader) in self.conns.values() {
            reader.abort();
        }
    }
}

impl<D: DeliveryService> Task<D> {
    async fn run(
        mut self,
        mut cmd: mpsc::UnboundedReceiver<Command>,
        mut net: mpsc::Receiver<Net>,
        mailbox_poll: Duration,
    ) -> Result<(), HostError> {
        let mut mail = tokio::time::interval(mailbox_poll);
        mail.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.step().await?;
        loop {
            let deadline = self.agent.poll_timeout().map(|t| self.clock.to_tokio(t));
            let timer = async move {
                match deadline {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                c = cmd.recv() => match c {
                    Some(Command::With(job)) => {
                        let now = self.clock.now();
                        job(&mut self.agent, &mut self.rng, now);
                    }
                    Some(Command::Shutdown(done)) => {
                        let r = self.flush().map(|_| ());
                        tracing::info!(agent = %self.name, "agent stopped, state stored");
                        self.set_running(false);
                        let _ = done.send(r);
                        return Ok(());
                    }
                    None => {
                        self.flush()?;
                        self.set_running(false);
                        return Ok(());
                    }
                },
                Some(n) = net.recv() => match n {
                    Net::Conn { id, writer, reader } => {
                        self.unbound.opened(id, tokio::time::Instant::now());
                        self.conns.insert(id, (writer, reader));
                    }
                    Net::Closed { id } => {
                        self.unbound.forget(id);
                        self.conns.remove(&id);
                        self.by_peer.retain(|_, c| *c != id);
                        self.claimed.retain(|_, c| *c != id);
                    }
                    Net::Frame { id, bytes } => self.input(&bytes, Some(id)).await?,
                    Net::Datagram { bytes } => self.input(&bytes, None).await?,
                },
                _ = mail.tick() => {
                    let now = tokio::time::Instant::now();
                    let conns = &self.conns;
                    let old = self.unbound.expired(now, self.unbound_timeout, &self.net_tx, |c| conns.contains_key(&c));
                    for c in old {
                        self.close(c, "no authenticated peer in time");
                    }
                    // While the delivery service fails, only after the pause.
                    // (A drain that failed paused it again: no fetch now.)
                    if self.retry.is_none_or(|(at, _)| tokio::time::Instant::now() >= at)
                        && self.drain_outbox().await?
                    {
                        self.fetch_mail().await?;
                    }
                }
                () = timer => {
                    let now = self.clock.now();
                    self.agent.handle_timeout(now, &mut self.rng);
                }
            }
            self.step().await?;
        }
    }

    /// Hand `p` to the delivery service: first into the outbox file (the
    /// stored state already counts it as sent), then deposited with what
    /// waits before it, in order; while the delivery service fails, it
    /// waits for the next mailbox poll instead (no stall per send).
    async fn deposit(&mut self, p: Pending) -> Result<(), HostError> {
        if let Err(e) = self.outbox.push(p) {
            self.counts.send_failures = self.counts.send_failures.saturating_add(1);
            tracing::error!(agent = %self.name, error = %e, "envelope for the delivery service dropped");
            return Ok(());
        }
        if self.retry.is_some() {
            return Ok(());
        }
        self.drain_outbox().await.map(|_| ())
    }

    /// Deposit what waits in the outbox, oldest first, each tried
    /// [`DEPOSIT_ATTEMPTS`] times with a doubling pause; at the first that
    /// still fails, stop and pause the delivery service (it is tried again
    /// at the next mailbox poll; sends meanwhile only add to the outbox).
    /// An envelope for a full mailbox stays, and so does every later one
    /// for that mailbox (their order kept), while those for others go on.
    /// Whether the service answered every deposit but those (`false`: it
    /// failed and is paused).
    async fn drain_outbox(&mut self) -> Result<bool, HostError> {
        let mut full: Vec<PeerId> = Vec::new();
        let mut i = 0;
        while let Some(p) = self.outbox.entries().get(i).cloned() {
            let to = if p.group { None } else { p.to.first().copied() };
            if to.is_some_and(|t| full.contains(&t)) {
                i += 1;
                continue;
            }
            let mut pause = DEPOSIT_BACKOFF;
            let mut attempt = 1;
            loop {
                let r = match to {
                    None if p.group => self.delivery.deposit_group(p.to.clone(), p.envelope.clone()).await,
                    None => Ok(()),
                    Some(t) => self.delivery.deposit(t, p.envelope.clone()).await.map(|_| ()),
                };
                match r {
                    Ok(()) => break,
                    Err(e @ crate::delivery::DeliveryError::MailboxFull { .. }) => {
                        self.counts.send_failures = self.counts.send_failures.saturating_add(1);
                        tracing::warn!(agent = %self.name, error = %e, "mailbox full; kept in the outbox with what follows for it");
                        full.extend(to);
                        break;
                    }
                    Err(e) if attempt >= DEPOSIT_ATTEMPTS => {
                        self.counts.send_failures = self.counts.send_failures.saturating_add(1);
                        tracing::warn!(agent = %self.name, error = %e, waiting = self.outbox.entries().len(), "deposit failed; kept in the outbox");
                        self.delivery_failed(&e);
                        return Ok(false);
                    }
                    Err(e) => {
                        tracing::debug!(agent = %self.name, error = %e, attempt, "deposit failed; retrying");
                        tokio::time::sleep(pause).await;
                        pause = pause.saturating_mul(2);
                        attempt += 1;
                    }
                }
            }
            if to.is_some_and(|t| full.contains(&t)) {
                i += 1;
            } else {
                self.outbox.remove(i)?;
            }
        }
        Ok(true)
    }

    fn set_running(&self, running: bool) {
        if let Ok(mut s) = self.status.lock() {
            s.running = running;
        }
    }

    fn flush(&mut self) -> Result<usize, HostError> {
        let n = flush(&mut self.agent, &mut self.store, &mut self.rng)?;
        self.counts.records_stored = self.counts.records_stored.saturating_add(u64::try_from(n).unwrap_or(0));
        Ok(n)
    }

    /// Hand one envelope to the agent; store the state; deliver.
    /// Returns whether the agent accepted it (delivered or not).
    async fn input(&mut self, bytes: &[u8], conn: Option<u64>) -> Result<(), HostError> {
        self.accept(bytes, conn).await.map(|_| ())
    }

    async fn accept(&mut self, bytes: &[u8], conn: Option<u64>) -> Result<bool, HostError> {
        let mut out = vec![0u8; HostAgent::input_buffer_len(bytes.len())];
        let now = self.clock.now();
        let result = self.agent.handle_input(bytes, &mut out, now, &mut self.rng);
        // The state the input left is stored before anything else.
        self.flush()?;
        match result {
            Ok(r) => {
                if let (Some(c), Ok(env)) = (conn, Envelope::parse(bytes)) {
                    match &r {
                        // The channel authenticated the sender.
                        Some(r) => self.bind(r.from, c),
                        None => self.claim(env.sender, env.session, c),
                    }
                }
                if let Some(r) = r {
                    let payload = out.get(..r.len).unwrap_or(&[]).to_vec();
                    self.counts.delivered = self.counts.delivered.saturating_add(1);
                    let _ = self.app.send(Delivered {
                        to: self.name.clone(),
                        from: r.from,
                        kind: r.kind,
                        payload,
                        channel: r.channel,
                    });
                }
                Ok(true)
            }
            Err(e) => {
                self.counts.refused_inputs = self.counts.refused_inputs.saturating_add(1);
                if matches!(e, securemesh::Error::PqRequired | securemesh::Error::PqUnavailable) {
                    let sender = Envelope::parse(bytes).map(|env| short(&env.sender)).unwrap_or_default();
                    tracing::warn!(agent = %self.name, peer = %sender, error = %e, pq = ?self.agent.pq_mode(), "channel refused for its post-quantum status");
                } else {
                    tracing::warn!(agent = %self.name, error = %e, "envelope refused");
                }
                if let Some(c) = conn {
                    self.strike(c);
                }
                Ok(false)
            }
        }
    }

    /// Connection `c` carried a refused envelope: one not bound to an
    /// authenticated peer is closed after
    /// [`MAX_REFUSED_PER_CONNECTION`](net::MAX_REFUSED_PER_CONNECTION).
    fn strike(&mut self, c: u64) {
        let open = self.conns.contains_key(&c) && !self.by_peer.values().any(|b| *b == c);
        if open && self.unbound.refused(c, &self.net_tx) {
            self.close(c, "too many refused envelopes");
        }
    }

    /// Close connection `c`, not bound to a peer (its reader stops, which
    /// frees its slot).
    fn close(&mut self, c: u64, why: &str) {
        if let Some((_, reader)) = self.conns.remove(&c) {
            reader.abort();
        }
        self.claimed.retain(|_, k| *k != c);
        self.unbound.forget(c);
        tracing::warn!(agent = %self.name, conn = c, why, "connection closed");
    }

    /// Connection `c` carries authenticated peer `peer`: direct transmits
    /// to it go there.
    fn bind(&mut self, peer: PeerId, c: u64) {
        // (A connection closed meanwhile, whose frames were still
        // queued, carries nothing more.)
        if !self.conns.contains_key(&c) {
            return;
        }
        self.unbound.forget(c);
        self.by_peer.insert(peer, c);
        self.claimed.retain(|(p, _), _| *p != peer);
    }

    /// Session `session`, claimed by `sender`, arrived on `c`: its
    /// handshake answers go back there; bound when the session is
    /// confirmed (a replayed IK message 0 never is).
    fn claim(&mut self, sender: PeerId, session: SessionId, c: u64) {
        if self.confirmed(sender, session) {
            self.bind(sender, c);
        } else if self.claimed.len() < MAX_CLAIMS || self.claimed.contains_key(&(sender, session)) {
            self.claimed.insert((sender, session), c);
        }
    }

    fn confirmed(&self, peer: PeerId, session: SessionId) -> bool {
        // (A handshake under way reports `confirmed` too: only a
        // transport's counts.)
        self.agent.sessions().any(|i| {
            i.peer == peer
                && i.id == session
                && i.confirmed
                && matches!(i.kind, SessionKind::Noise | SessionKind::NoiseDatagram)
        })
    }

    async fn fetch_mail(&mut self) -> Result<(), HostError> {
        let me = self.agent.peer_id();
        let mails = match self.delivery.fetch(me, 64).await {
            Ok(m) => m,
            Err(e) => {
                self.delivery_failed(&e);
                return Ok(());
            }
        };
        if self.retry.take().is_some() {
            tracing::info!(agent = %self.name, "delivery service answers again");
        }
        for m in mails {
            let accepted = self.accept(&m.envelope, None).await?;
            if !accepted {
                tracing::warn!(agent = %self.name, id = m.id.0, "mailbox message refused; removed");
            }
            // Stored (in accept) before the acknowledgement. Not
            // acknowledged, it comes again and is refused as a replay.
            if let Err(e) = self.delivery.ack(me, m.id).await {
                self.delivery_failed(&e);
                return Ok(());
            }
            self.counts.mail_acked = self.counts.mail_acked.saturating_add(1);
            self.step().await?;
        }
        Ok(())
    }

    /// The delivery service failed: poll it again after a pause that
    /// doubles up to [`FETCH_BACKOFF_MAX`] (what waits stays in the
    /// outbox and the mailbox meanwhile).
    fn delivery_failed(&mut self, e: &crate::delivery::DeliveryError) {
        let pause = self.retry.map_or(DEPOSIT_BACKOFF, |(_, p)| p.saturating_mul(2).min(FETCH_BACKOFF_MAX));
        if self.retry.is_none() {
            tracing::warn!(agent = %self.name, error = %e, "delivery service failed; polling again with backoff");
        }
        self.retry = Some((tokio::time::Instant::now() + pause, pause));
    }

    /// Store, send, report.
    async fn step(&mut self) -> Result<(), HostError> {
        let mut buf = vec![0u8; MAX_ENVELOPE_LEN];
        // poll_transmit holds back while a record is unstored, and
        // handing out a transmit may mark one (a Welcome marks its
        // group): store and send until neither has anything.
        loop {
            let stored = self.flush()?;
            let t = match self.agent.poll_transmit(&mut buf) {
                Ok(Some(t)) => t,
                Ok(None) if stored == 0 => break,
                Ok(None) => continue,
                Err(e) => return Err(e.into()),
            };
            let bytes = buf.get(..t.len).unwrap_or(&[]).to_vec();
            // The wildcard covers deliveries of newer mesh versions.
            #[allow(unreachable_patterns)]
            match t.delivery {
                Delivery::Mailbox => {
                    self.deposit(Pending { group: false, to: vec![t.to], envelope: bytes }).await?
                }
                Delivery::Direct if is_datagram(&bytes) => self.send_datagram(t.to, &bytes).await,
                Delivery::Direct => self.send_direct(t.to, &bytes).await,
                Delivery::Group(g) => {
                    let to: Vec<PeerId> = self.agent.group_members(g).collect();
                    self.deposit(Pending { group: true, to, envelope: bytes }).await?;
                }
                other => {
                    self.counts.send_failures = self.counts.send_failures.saturating_add(1);
                    tracing::warn!(agent = %self.name, delivery = ?other, "delivery not carried by this host yet; dropped");
                }
            }
        }
        let mut republish = false;
        while let Some(e) = self.agent.poll_event() {
            match e {
                Event::HandshakeComplete { peer, pattern, session } => {
                    // An XX handshake completes on the initiator's last
                    // message, which proves its static key to our fresh
                    // ephemeral; an IK one must also be confirmed.
                    if let Some(c) = self.claimed.get(&(peer, session)).copied()
                        && (pattern.is_xx() || self.confirmed(peer, session))
                    {
                        self.bind(peer, c);
                    }
                    self.counts.handshakes = self.counts.handshakes.saturating_add(1);
                    tracing::info!(agent = %self.name, peer = %short(&peer), ?pattern, "handshake complete");
                }
                Event::Denied { from, reason } => {
                    tracing::warn!(agent = %self.name, peer = %short(&from), ?reason, "denied by policy");
                }
                Event::AuthFailed { peer, reason } => {
                    tracing::warn!(agent = %self.name, peer = %short(&peer), ?reason, "identity refused");
                }
                Event::RouteChosen { peer, route } => {
                    tracing::debug!(agent = %self.name, peer = %short(&peer), ?route, "route");
                }
                Event::PrekeysRefilled { added, available } => {
                    tracing::info!(agent = %self.name, added, available, "prekey pool refilled");
                    republish = true;
                }
                Event::SignedPrekeyRotated { .. } => republish = true,
                _ => {}
            }
        }
        if republish {
            let b = bundles(&self.agent)?;
            if let Err(e) = publish(self.agent.peer_id(), b, self.delivery.as_ref()).await {
                // The last-resort bundle stays published meanwhile.
                tracing::warn!(agent = %self.name, error = %e, "bundles not republished");
            }
        }
        self.report();
        Ok(())
    }

    /// A datagram-session envelope over UDP; transport datagrams are
    /// dropped at `udp_loss_percent` (handshake messages never).
    async fn send_datagram(&mut self, to: PeerId, bytes: &[u8]) {
        let transport = Envelope::parse(bytes).is_ok_and(|e| e.channel == ChannelKind::NoiseDatagram);
        if transport && self.udp_loss_percent > 0 {
            let roll = rand_core::Rng::next_u32(&mut self.rng) % 100;
            if roll < u32::from(self.udp_loss_percent) {
                self.counts.datagrams_dropped = self.counts.datagrams_dropped.saturating_add(1);
                return;
            }
        }
        let addr = self.book.lock().ok().and_then(|b| b.get(&to).copied());
        let sent = match addr {
            Some(addr) => self.udp.send_to(bytes, addr).await.is_ok(),
            None => false,
        };
        if !sent {
            self.counts.send_failures = self.counts.send_failures.saturating_add(1);
            tracing::warn!(agent = %self.name, peer = %short(&to), "datagram not sent");
        }
    }

    async fn send_direct(&mut self, to: PeerId, bytes: &[u8]) {
        // An answer in a session that came in on a connection not yet
        // bound goes back on it (and nothing else does).
        let session = Envelope::parse(bytes).ok().map(|e| e.session);
        if let Some(id) = session.and_then(|s| self.claimed.get(&(to, s)).copied())
            && let Some((w, _)) = self.conns.get_mut(&id)
        {
            if write_frame(w, bytes).await.is_err() {
                self.counts.send_failures = self.counts.send_failures.saturating_add(1);
                tracing::warn!(agent = %self.name, peer = %short(&to), "connection lost; handshake answer dropped");
            }
            return;
        }
        if !self.by_peer.contains_key(&to) {
            let addr = self.book.lock().ok().and_then(|b| b.get(&to).copied());
            let Some(addr) = addr else {
                self.counts.send_failures = self.counts.send_failures.saturating_add(1);
                tracing::warn!(agent = %self.name, peer = %short(&to), "no address for a direct transmit; dropped");
                return;
            };
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    self.next_conn = self.next_conn.wrapping_add(1);
                    let id = self.next_conn;
                    let _ = s.set_nodelay(true);
                    let (rd, writer) = s.into_split();
                    let reader = net::spawn_reader(rd, id, self.net_tx.clone(), None);
                    self.conns.insert(id, (writer, reader));
                    self.by_peer.insert(to, id);
                }
                Err(e) => {
                    self.counts.send_failures = self.counts.send_failures.saturating_add(1);
                    tracing::warn!(agent = %self.name, peer = %short(&to), error = %e, "connect failed; dropped");
                    return;
                }
            }
        }
        let Some(id) = self.by_peer.get(&to).copied() else { return };
        let ok = match self.conns.get_mut(&id) {
            Some((w, _)) => write_frame(w, bytes).await.is_ok(),
            None => false,
        };
        if !ok {
            if let Some((_, reader)) = self.conns.remove(&id) {
                reader.abort();
            }
            self.by_peer.remove(&to);
            self.counts.send_failures = self.counts.send_failures.saturating_add(1);
            tracing::warn!(agent = %self.name, peer = %short(&to), "connection lost; transmit dropped");
        }
    }

    fn report(&self) {
        if let Ok(mut s) = self.status.lock() {
            let running = s.running;
            let restored = s.restored;
            *s = Status {
                name: self.name.clone(),
                metrics: self.agent.metrics(),
                counters: self.agent.counters(),
                sessions: self.agent.sessions().count(),
                groups: self.agent.groups().count(),
                net: self.net.stats(),
                running,
                restored,
                ..self.counts.clone()
            };
        }
    }
}

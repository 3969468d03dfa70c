//! The agent's sockets, bounded: what a flooding peer can make the host
//! hold is capped, and what it refuses is counted.
//!
//! Socket tasks hand what they read to the agent's task through one
//! queue of [`NetLimits::queue_capacity`] entries, each at most an
//! envelope ([`MAX_ENVELOPE_LEN`]). When the queue is full:
//!
//! - a **TCP** connection's reader waits for room before it reads on:
//!   backpressure, the peer's writes stall in its socket buffers;
//! - a **UDP** datagram is dropped and counted
//!   ([`NetStats::datagrams_dropped_full`]): telemetry is loss-tolerant
//!   and a datagram flood must not stall anything.
//!
//! At most [`NetLimits::max_connections`] inbound TCP connections are
//! open at once, and at most [`NetLimits::max_connections_per_address`]
//! from one IP address (so one flooding host cannot take every slot); a
//! connection beyond either cap is closed as soon as it is accepted and
//! counted ([`NetStats::connections_refused`],
//! [`NetStats::connections_refused_address`]). A frame
//! whose 4-byte length prefix exceeds [`MAX_ENVELOPE_LEN`] closes its
//! connection before anything is allocated for it
//! ([`NetStats::frames_oversized`]). A connection not bound to an
//! authenticated peer is closed after [`MAX_REFUSED_PER_CONNECTION`]
//! refused envelopes ([`NetStats::connections_closed_garbage`]), and an
//! inbound one also once it has stayed unbound for
//! [`NetLimits::unbound_timeout`]
//! ([`NetStats::connections_closed_unbound`]): a flooder that opens the
//! cap's worth of connections and sends nothing holds the slots for that
//! long, no longer.
//!
//! So whatever peers send, the bytes held for input are at most
//! `(queue_capacity + max_connections + 1) * MAX_ENVELOPE_LEN`
//! ([`NetLimits::held_bytes`]: the queue, one frame per inbound reader,
//! the datagram buffer), plus one frame per outbound connection: those
//! the agent opens to the peers it sends to are not counted against the
//! inbound cap.

use crate::runtime::read_frame;
use securemesh::envelope::MAX_ENVELOPE_LEN;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::AbortHandle;

/// Inbound TCP connections open at once, by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// Inbound TCP connections open at once from one IP address (an IPv6
/// /64), by default:
/// half of [`DEFAULT_MAX_CONNECTIONS`].
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = NetLimits::half(DEFAULT_MAX_CONNECTIONS);

/// Entries of the queue from the socket tasks to the agent's task, by
/// default.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;

/// How long an inbound connection may stay unbound, by default: three
/// default handshake deadlines.
pub const DEFAULT_UNBOUND_TIMEOUT: Duration = Duration::from_secs(30);

/// Refused envelopes after which a connection not bound to an
/// authenticated peer is closed.
pub const MAX_REFUSED_PER_CONNECTION: u32 = 16;

/// The pause after a failed `accept` (out of file descriptors, ...)
/// before the listener tries again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The bounds of an agent's sockets.
///
/// ```
/// use securemesh_host::net::{NetLimits, DEFAULT_MAX_CONNECTIONS};
/// let l = NetLimits::default();
/// assert_eq!(l.max_connections, DEFAULT_MAX_CONNECTIONS);
/// assert!(l.held_bytes() >= l.queue_capacity * securemesh::envelope::MAX_ENVELOPE_LEN);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetLimits {
    /// Inbound TCP connections open at once (0 refuses every one).
    pub max_connections: usize,
    /// Inbound TCP connections open at once from one IP address (0
    /// refuses every one).
    pub max_connections_per_address: usize,
    /// Entries of the queue to the agent's task (0 is taken as 1).
    pub queue_capacity: usize,
    /// How long an inbound connection may stay without an authenticated
    /// peer bound to it (checked at each mailbox poll) before it is
    /// closed, so that idle connections cannot hold every slot.
    pub unbound_timeout: Duration,
}

impl Default for NetLimits {
    fn default() -> Self {
        NetLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            unbound_timeout: DEFAULT_UNBOUND_TIMEOUT,
        }
    }
}

impl NetLimits {
    /// The per-address cap that goes with a cap of `max_connections`
    /// when none is given: half of it, at least 1.
    ///
    /// ```
    /// use securemesh_host::net::NetLimits;
    /// assert_eq!((NetLimits::half(64), NetLimits::half(1)), (32, 1));
    /// ```
    pub const fn half(max_connections: usize) -> usize {
        if max_connections < 2 { 1 } else { max_connections / 2 }
    }

    /// The most bytes of input the host holds under these limits: the
    /// queue full of envelopes, one frame in each reader and the
    /// datagram buffer.
    pub fn held_bytes(&self) -> usize {
        self.queue_capacity
            .saturating_add(self.max_connections)
            .saturating_add(1)
            .saturating_mul(MAX_ENVELOPE_LEN)
    }

    fn queue(&self) -> usize {
        self.queue_capacity.max(1)
    }
}

/// What the socket tasks counted, as read by [`NetHandle::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Inbound TCP connections open now.
    pub inbound_connections: usize,
    /// Inbound TCP connections closed at once: the cap was reached.
    pub connections_refused: u64,
    /// Inbound TCP connections closed at once: their address had
    /// [`NetLimits::max_connections_per_address`] open.
    pub connections_refused_address: u64,
    /// Connections closed for a length prefix beyond an envelope.
    pub frames_oversized: u64,
    /// Connections closed after [`MAX_REFUSED_PER_CONNECTION`] refused
    /// envelopes.
    pub connections_closed_garbage: u64,
    /// Inbound connections closed because no authenticated peer was
    /// bound to them within [`NetLimits::unbound_timeout`].
    pub connections_closed_unbound: u64,
    /// Datagrams dropped because the queue was full.
    pub datagrams_dropped_full: u64,
    /// Entries in the queue now.
    pub queued: usize,
    /// The most entries the queue held at once.
    pub queue_peak: usize,
    /// The queue's capacity.
    pub queue_capacity: usize,
}

#[derive(Debug, Default)]
struct Counters {
    connections_refused: AtomicU64,
    connections_refused_address: AtomicU64,
    frames_oversized: AtomicU64,
    connections_closed_garbage: AtomicU64,
    connections_closed_unbound: AtomicU64,
    datagrams_dropped_full: AtomicU64,
    queue_peak: AtomicUsize,
}

fn bump(c: &AtomicU64) {
    // Counters only: no ordering with other memory is needed.
    let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_add(1)));
}

/// What a socket task hands the agent's task.
pub(crate) enum Net {
    /// A datagram read from the UDP socket.
    Datagram { bytes: Vec<u8> },
    /// A connection accepted: its writer, and its reader to stop it.
    Conn { id: u64, writer: OwnedWriteHalf, reader: AbortHandle },
    /// A frame read from connection `id`.
    Frame { id: u64, bytes: Vec<u8> },
    /// Connection `id` ended (closed, failed, or an oversized frame).
    Closed { id: u64 },
}

/// The sending side of the queue, shared by the socket tasks: it
/// records the queue's peak.
#[derive(Clone)]
pub(crate) struct Queue {
    tx: mpsc::Sender<Net>,
    counters: Arc<Counters>,
}

impl Queue {
    fn peak(&self) {
        let held = self.tx.max_capacity().saturating_sub(self.tx.capacity());
        self.counters.queue_peak.fetch_max(held, Ordering::Relaxed);
    }

    /// Wait for room, then queue: `false` once the agent's task is gone.
    async fn send(&self, n: Net) -> bool {
        let ok = self.tx.send(n).await.is_ok();
        self.peak();
        ok
    }
}

/// Reads the counts of an agent's sockets
/// ([`AgentHandle::net`](crate::runtime::AgentHandle::net)).
#[derive(Clone)]
pub struct NetHandle {
    queue: mpsc::WeakSender<Net>,
    counters: Arc<Counters>,
    connections: Arc<Semaphore>,
    limits: NetLimits,
}

impl std::fmt::Debug for NetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetHandle").field("limits", &self.limits).field("stats", &self.stats()).finish()
    }
}

impl NetHandle {
    /// The inbound connection slots, for the accept loop.
    pub(crate) fn slots(&self) -> Slots {
        Slots {
            all: Arc::clone(&self.connections),
            per_address: self.limits.max_connections_per_address,
            open: Arc::default(),
        }
    }

    /// The counts now.
    pub fn stats(&self) -> NetStats {
        let c = &self.counters;
        let queued = self.queue.upgrade().map_or(0, |tx| tx.max_capacity().saturating_sub(tx.capacity()));
        NetStats {
            inbound_connections: self
                .limits
                .max_connections
                .saturating_sub(self.connections.available_permits()),
            connections_refused: c.connections_refused.load(Ordering::Relaxed),
            connections_refused_address: c.connections_refused_address.load(Ordering::Relaxed),
            frames_oversized: c.frames_oversized.load(Ordering::Relaxed),
            connections_closed_garbage: c.connections_closed_garbage.load(Ordering::Relaxed),
            connections_closed_unbound: c.connections_closed_unbound.load(Ordering::Relaxed),
            datagrams_dropped_full: c.datagrams_dropped_full.load(Ordering::Relaxed),
            queued,
            queue_peak: c.queue_peak.load(Ordering::Relaxed),
            queue_capacity: self.limits.queue(),
        }
    }
}

/// The queue of an agent under `limits`: the senders' side, the
/// receiver for the agent's task, and the handle that reads the counts.
pub(crate) fn channel(limits: NetLimits) -> (Queue, mpsc::Receiver<Net>, NetHandle) {
    let (tx, rx) = mpsc::channel(limits.queue());
    let counters = Arc::new(Counters::default());
    let handle = NetHandle {
        queue: tx.downgrade(),
        counters: Arc::clone(&counters),
        connections: Arc::new(Semaphore::new(limits.max_connections)),
        limits,
    };
    (Queue { tx, counters }, rx, handle)
}

/// The inbound connection slots: all of them, and per address.
pub(crate) struct Slots {
    all: Arc<Semaphore>,
    per_address: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// An inbound connection's place under both caps, given back when its
/// reader ends or is stopped.
pub(crate) struct Slot {
    _all: OwnedSemaphorePermit,
    address: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock()
            && let Some(n) = open.get_mut(&self.address)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.address);
            }
        }
    }
}

impl Slots {
    /// A slot for a connection from `address`, or which cap refuses it.
    /// IPv6 addresses count by their /64 (a host has a whole one), an
    /// IPv4-mapped one as its IPv4 address.
    fn take(&self, address: IpAddr) -> Result<Slot, Refused> {
        let address = match address.to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
            v4 => v4,
        };
        let mut open = self.open.lock().map_err(|_| Refused::All)?;
        let n = open.get(&address).copied().unwrap_or(0);
        if n >= self.per_address {
            return Err(Refused::Address);
        }
        let all = Arc::clone(&self.all).try_acquire_owned().map_err(|_| Refused::All)?;
        open.insert(address, n.saturating_add(1));
        Ok(Slot { _all: all, address, open: Arc::clone(&self.open) })
    }
}

enum Refused {
    All,
    Address,
}

/// Accept connections while fewer than the caps are open; close the
/// others at once and count them.
pub(crate) async fn accept_loop(listener: TcpListener, net: Queue, slots: Slots) {
    let mut id = 0u64;
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let slot = match slots.take(from.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                bump(match refused {
                    Refused::All => &net.counters.connections_refused,
                    Refused::Address => &net.counters.connections_refused_address,
                });
                drop(stream);
                continue;
            }
        };
        id = id.wrapping_add(1);
        if !register(stream, id, &net, slot).await {
            return;
        }
    }
}

/// Hand an accepted connection to the agent's task, then start its
/// reader (the connection is queued before any of its frames).
async fn register(stream: TcpStream, id: u64, net: &Queue, permit: Slot) -> bool {
    let _ = stream.set_nodelay(true);
    let (rd, writer) = stream.into_split();
    let Ok(slot) = net.tx.reserve().await else { return false };
    let reader = spawn_reader(rd, id, net.clone(), Some(permit));
    slot.send(Net::Conn { id, writer, reader });
    net.peak();
    true
}

/// Forward connection `id`'s frames to the agent's task until it closes
/// or sends a length beyond an envelope; waits while the queue is full.
/// An inbound connection's `permit` is given back when the reader ends
/// or is stopped.
pub(crate) fn spawn_reader(mut rd: OwnedReadHalf, id: u64, net: Queue, permit: Option<Slot>) -> AbortHandle {
    tokio::spawn(async move {
        let _slot = permit;
        loop {
            match read_frame(&mut rd).await {
                Ok(Some(bytes)) => {
                    if !net.send(Net::Frame { id, bytes }).await {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        bump(&net.counters.frames_oversized);
                        tracing::warn!(conn = id, "frame longer than an envelope; connection closed");
                    }
                    break;
                }
            }
        }
        let _ = net.send(Net::Closed { id }).await;
    })
    .abort_handle()
}

/// Forward every datagram to the agent's task; drop (and count) one that
/// finds the queue full.
pub(crate) async fn udp_loop(udp: Arc<UdpSocket>, net: Queue) {
    // The largest UDP payload fits; an envelope is never longer.
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = match udp.recv_from(&mut buf).await {
            Ok((n, _)) => n,
            // An ICMP error for an earlier send (a peer gone) or an
            // interrupted call: the socket still works.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "datagram socket failed; no more datagrams");
                return;
            }
        };
        let Some(bytes) = buf.get(..n).filter(|b| b.len() <= MAX_ENVELOPE_LEN) else { continue };
        match net.tx.try_send(Net::Datagram { bytes: bytes.to_vec() }) {
            Ok(()) => net.peak(),
            Err(mpsc::error::TrySendError::Full(_)) => bump(&net.counters.datagrams_dropped_full),
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// The agent's task's watch over connections not bound to an
/// authenticated peer: refused envelopes per connection, and when each
/// inbound one was accepted.
#[derive(Debug, Default)]
pub(crate) struct Unbound {
    strikes: HashMap<u64, u32>,
    opened: HashMap<u64, tokio::time::Instant>,
}

impl Unbound {
    /// Inbound connection `id` was accepted `now`.
    pub(crate) fn opened(&mut self, id: u64, now: tokio::time::Instant) {
        self.opened.insert(id, now);
    }

    /// Connection `id` (open, not bound) carried a refused envelope:
    /// whether it must now be closed (then it is counted).
    pub(crate) fn refused(&mut self, id: u64, net: &Queue) -> bool {
        let n = self.strikes.entry(id).or_insert(0);
        *n = n.saturating_add(1);
        if *n < MAX_REFUSED_PER_CONNECTION {
            return false;
        }
        bump(&net.counters.connections_closed_garbage);
        true
    }

    /// The inbound connections still unbound `timeout` after they were
    /// accepted: to be closed (they are counted). Connections no longer
    /// `open` (closed by a failed write) are forgotten first.
    pub(crate) fn expired(
        &mut self,
        now: tokio::time::Instant,
        timeout: Duration,
        net: &Queue,
        open: impl Fn(u64) -> bool,
    ) -> Vec<u64> {
        self.opened.retain(|id, _| open(*id));
        self.strikes.retain(|id, _| open(*id));
        let old: Vec<u64> = self
            .opened
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        for _ in &old {
            bump(&net.counters.connections_closed_unbound);
        }
        old
    }

    /// Connection `id` closed or was bound: forget it.
    pub(crate) fn forget(&mut self, id: u64) {
        self.strikes.remove(&id);
        self.opened.remove(&id);
    }
}

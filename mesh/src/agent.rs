//! The agent: one sans-IO state machine that routes each peer to its
//! channel, checks every received message against the policy, and queues
//! what it sends.
//!
//! # Driving it
//!
//! - [`Agent::send`] routes by the [decision matrix](crate::route), encrypts
//!   and queues; [`Agent::poll_transmit`] hands out what to send, oldest
//!   first, each with its destination and whether it goes to the peer
//!   directly or to its mailbox.
//! - [`Agent::handle_input`] takes one envelope as it arrived (directly or
//!   from the mailbox), runs the handshake or decrypts, checks the policy
//!   and writes a delivered payload into the caller's buffer.
//! - [`Agent::poll_event`] reports what happened; [`Agent::poll_timeout`]
//!   says when to call [`Agent::handle_timeout`] (handshake deadlines).
//! - Randomness is lent per call; time is the caller's [`Instant`].
//!
//! # Identity binding
//!
//! An agent's Noise static key is the X25519 key of its ratchet
//! [`Identity`], which the identity's Ed25519 key signs; the peer id is the
//! hash of both public keys. Every Noise handshake message that carries a
//! static key also carries the sender's public identity (128 bytes) as its
//! payload, and the receiver accepts the static key only if
//!
//! 1. the identity's binding signature verifies,
//! 2. the identity hashes to the peer id the envelope claims (and the
//!    handshake's prologue binds), which is the directory's entry, and
//! 3. the identity's X25519 key is the static key the handshake proved.
//!
//! Otherwise the handshake is dropped and [`Event::AuthFailed`] raised. In
//! IK the initiator takes the responder's static key from the directory's
//! identity, so only that identity's owner can complete it. A ratchet
//! initial message is checked the same way before its prekeys are used:
//! the identity in its X3DH prefix must hash to the claimed sender.
//!
//! The same X25519 key serves X3DH (as the identity key does in Signal).
//! Noise and X3DH hash their DH outputs under different protocol names,
//! so an output of one is never a key of the other.

use crate::envelope::{ChannelKind, Envelope, HEADER_LEN, SessionId, handshake_prologue, write_header};
use crate::error::Error;
use crate::peer::{Directory, PeerId};
use crate::policy::{DenyReason, MessageKind, Policy};
use crate::route::{self, Channel, NoiseStatus, PeerView, Purpose, Route, Target};
use securemesh_core::events::EventQueue;
use securemesh_core::{CryptoRng, Instant, UnixTime};
use securemesh_noise::{Builder, HandshakeState, Keypair, Protocol, TAG_LEN, Transport, protocol};
use securemesh_ratchet::{
    Identity, MSG_INITIAL, PrekeyConfig, PrekeyPool, PublicIdentity, Session, SessionConfig,
};

/// The Noise protocol of handshakes with a peer whose static key is known.
pub const NOISE_IK: Protocol = protocol!("Noise_IK_25519_ChaChaPoly_SHA256");
/// The Noise protocol of handshakes with a peer whose static key is not known.
pub const NOISE_XX: Protocol = protocol!("Noise_XX_25519_ChaChaPoly_SHA256");

/// Out-of-order messages a ratchet chain may skip (the mailbox may
/// reorder).
pub const RATCHET_MAX_SKIP: usize = 32;
/// Skipped message keys a ratchet session stores.
pub const RATCHET_SKIPPED_KEYS: usize = 32;
/// The ratchet session the agent keeps per peer (3.7 KB with these bounds).
pub type RatchetSession = Session<RATCHET_MAX_SKIP, RATCHET_SKIPPED_KEYS>;

/// Pending events kept; when full, the oldest is dropped.
pub const EVENT_SLOTS: usize = 16;

/// Smallest `BYTES` an [`Agent`] accepts (checked at compile time): the
/// largest handshake message (XX message 2, IK message 1: ephemeral 32,
/// encrypted static 48, encrypted 128-byte identity 144) in its envelope.
pub const MIN_BYTES: usize = HEADER_LEN + 32 + (32 + TAG_LEN) + (PublicIdentity::LEN + TAG_LEN);

/// Bytes a Noise transport message adds to the plaintext (kind byte and tag).
const NOISE_MESSAGE_OVERHEAD: usize = 1 + TAG_LEN;

/// How the agent runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// A Noise handshake not complete this long after it started is
    /// dropped with the messages waiting for it (default 10 s).
    pub handshake_timeout_ms: u64,
    /// Ratchet sessions (header encryption, heartbeat interval).
    pub ratchet: SessionConfig,
    /// The agent's prekey pool.
    pub prekeys: PrekeyConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            handshake_timeout_ms: 10_000,
            ratchet: SessionConfig::default(),
            prekeys: PrekeyConfig::default(),
        }
    }
}

/// How a transmit reaches its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Straight to the peer, over the link the host has with it (Noise).
    Direct,
    /// Into the peer's mailbox, which it reads when it comes online
    /// (ratchet). The host gives the envelope to the peer's
    /// [`handle_input`](Agent::handle_input) as it is.
    Mailbox,
}

/// One envelope to send, from [`Agent::poll_transmit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The destination.
    pub to: PeerId,
    /// Direct or through the mailbox.
    pub delivery: Delivery,
    /// Bytes written into the caller's buffer.
    pub len: usize,
}

/// A delivered message: its payload is in the buffer the caller lent to
/// [`Agent::handle_input`], `out[..len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// The sender, as authenticated by the channel.
    pub from: PeerId,
    /// The message kind, permitted by the policy.
    pub kind: MessageKind,
    /// Payload bytes.
    pub len: usize,
    /// The channel it came over.
    pub channel: ChannelKind,
}

/// Why a peer's identity was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// The payload that must carry the public identity does not hold one
    /// whose binding signature verifies.
    BadIdentity,
    /// The identity does not hash to the peer id the envelope claims, or
    /// differs from the directory's identity for that peer.
    IdentityMismatch,
    /// The static key the handshake proved is not the identity's X25519 key.
    StaticKeyMismatch,
}

/// Why a Noise handshake was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// A message failed to authenticate (the handshake is poisoned).
    Decrypt,
    /// It did not complete before its deadline.
    TimedOut,
}

/// What the agent reports through [`Agent::poll_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// [`Agent::send`] chose this route for a message to `peer`.
    RouteChosen {
        /// The destination.
        peer: PeerId,
        /// The channel and the row of the matrix that chose it.
        route: Route,
    },
    /// A Noise handshake completed; the peer's identity was verified.
    HandshakeComplete {
        /// The peer.
        peer: PeerId,
        /// The session.
        session: SessionId,
        /// [`ChannelKind::NoiseIk`] or [`ChannelKind::NoiseXx`].
        pattern: ChannelKind,
    },
    /// A message was delivered (also returned by
    /// [`handle_input`](Agent::handle_input), whose buffer holds it).
    Received {
        /// The sender.
        from: PeerId,
        /// The kind.
        kind: MessageKind,
        /// Payload bytes.
        len: usize,
    },
    /// An authenticated message or session was refused by the policy;
    /// nothing was delivered.
    Denied {
        /// The sender.
        from: PeerId,
        /// Why.
        reason: DenyReason,
    },
    /// A peer's identity did not match its keys; its session was refused.
    AuthFailed {
        /// The peer the envelope claimed.
        peer: PeerId,
        /// What did not match.
        reason: AuthFailure,
    },
    /// A Noise handshake was dropped, with the messages waiting for it.
    HandshakeFailed {
        /// The peer.
        peer: PeerId,
        /// The session.
        session: SessionId,
        /// Why.
        reason: HandshakeFailure,
        /// Queued messages dropped with it (never sent).
        dropped: usize,
    },
}

/// Counters (the metrics of later slices grow from these).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Application messages queued by [`Agent::send`].
    pub sent: u64,
    /// Messages delivered.
    pub received: u64,
    /// Messages and sessions refused by the policy.
    pub denied: u64,
    /// Sessions refused because an identity did not match its keys.
    pub auth_failed: u64,
    /// Handshakes dropped (failed or timed out).
    pub handshakes_failed: u64,
}

/// The kind of a session table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionKind {
    /// A Noise handshake under way.
    NoiseHandshake,
    /// A Noise stream transport.
    Noise,
    /// A Double Ratchet session.
    Ratchet,
}

/// One entry of the session table, as [`Agent::sessions`] shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The peer.
    pub peer: PeerId,
    /// The session id.
    pub id: SessionId,
    /// What it is.
    pub kind: SessionKind,
}

/// A session's state. The MLS slice adds a group variant here (keyed by
/// the group id in [`SessionId`]).
///
/// Every slot of the table is as large as the largest variant (a ratchet
/// session): there is no heap to box into, and a fixed table is what lets
/// firmware reserve it statically.
#[allow(clippy::large_enum_variant)]
enum State {
    Handshake { hs: HandshakeState, pattern: ChannelKind, deadline: Instant },
    Noise(Transport),
    Ratchet(RatchetSession),
}

struct Entry {
    peer: PeerId,
    id: SessionId,
    /// When it was created or (Noise) established: larger is newer.
    order: u64,
    state: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotStatus {
    Free,
    Ready,
    /// Plaintext (`kind | payload`, `len` bytes after the header space)
    /// waiting for the Noise handshake of this session.
    Awaiting(SessionId),
}

struct Slot<const B: usize> {
    status: SlotStatus,
    to: PeerId,
    delivery: Delivery,
    /// Order of transmission (Ready) or of sending (Awaiting).
    seq: u64,
    len: usize,
    buf: [u8; B],
}

impl<const B: usize> Slot<B> {
    const FREE: Self = Slot {
        status: SlotStatus::Free,
        to: PeerId([0; 32]),
        delivery: Delivery::Direct,
        seq: 0,
        len: 0,
        buf: [0; B],
    };

    fn clear(&mut self) {
        self.buf.fill(0);
        self.status = SlotStatus::Free;
        self.len = 0;
    }
}

/// [`Agent`] with its default capacities, named so that
/// `DefaultAgent::new(..)` needs no annotation.
pub type DefaultAgent = Agent;

/// An agent of the mesh with fixed capacities: `PEERS` directory and
/// policy entries, `SESSIONS` sessions (Noise handshakes, Noise
/// transports and ratchet sessions share them), `QUEUE` queued envelopes
/// of at most `BYTES` bytes each, and a prekey pool of `PREKEYS` one-time
/// prekeys. No heap; see the [crate docs](crate) for a two-agent exchange.
///
/// This slice drives the pairwise channels (Noise stream, ratchet). MLS
/// groups, the Noise datagram transport, persistence of the state and the
/// prekey refill come in the next slices.
pub struct Agent<
    const PEERS: usize = 8,
    const SESSIONS: usize = 4,
    const QUEUE: usize = 8,
    const BYTES: usize = 1024,
    const PREKEYS: usize = 16,
> {
    identity: Identity,
    id: PeerId,
    config: Config,
    pool: PrekeyPool<PREKEYS>,
    directory: Directory<PEERS>,
    policy: Policy<PEERS>,
    sessions: [Option<Entry>; SESSIONS],
    queue: [Slot<BYTES>; QUEUE],
    next_seq: u64,
    next_order: u64,
    /// Plaintext staging for ratchet encryption (wiped after each use).
    scratch: [u8; BYTES],
    events: EventQueue<Event, EVENT_SLOTS>,
    counters: Counters,
}

impl<const PEERS: usize, const SESSIONS: usize, const QUEUE: usize, const BYTES: usize, const PREKEYS: usize>
    core::fmt::Debug for Agent<PEERS, SESSIONS, QUEUE, BYTES, PREKEYS>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Agent")
            .field("id", &self.id)
            .field("peers", &self.directory.len())
            .field("sessions", &self.sessions.iter().flatten().count())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// `a + b` for lengths bounded by a buffer (an overflow means "too long").
fn add(a: usize, b: usize) -> Result<usize, Error> {
    a.checked_add(b).ok_or(Error::PayloadTooLong { max: 0 })
}

/// The public identity in a handshake payload, checked against the peer
/// id it must hash to and the static key the handshake proved.
fn check_identity(
    expected: &PeerId,
    known: Option<&PublicIdentity>,
    payload: &[u8],
    remote_static: Option<&[u8; 32]>,
) -> Result<PublicIdentity, AuthFailure> {
    let bytes: &[u8; PublicIdentity::LEN] = payload.try_into().map_err(|_| AuthFailure::BadIdentity)?;
    let identity = PublicIdentity::from_bytes(bytes).map_err(|_| AuthFailure::BadIdentity)?;
    if PeerId::of(&identity) != *expected || known.is_some_and(|k| *k != identity) {
        return Err(AuthFailure::IdentityMismatch);
    }
    if remote_static != Some(identity.dh_public()) {
        return Err(AuthFailure::StaticKeyMismatch);
    }
    Ok(identity)
}

impl<const PEERS: usize, const SESSIONS: usize, const QUEUE: usize, const BYTES: usize, const PREKEYS: usize>
    Agent<PEERS, SESSIONS, QUEUE, BYTES, PREKEYS>
{
    /// Refuses (at compile time) a `BYTES` below [`MIN_BYTES`].
    const BYTES_CHECK: () = assert!(BYTES >= MIN_BYTES, "BYTES must hold the largest handshake message");

    /// An agent for `identity`, with a fresh prekey pool (`now` is wall
    /// time, for prekey ages), an empty directory and a policy that denies
    /// everything.
    pub fn new<R: CryptoRng + ?Sized>(
        identity: Identity,
        config: Config,
        rng: &mut R,
        now: UnixTime,
    ) -> Self {
        let () = Self::BYTES_CHECK;
        let pool = PrekeyPool::new(&identity, rng, now, config.prekeys);
        let id = PeerId::of(identity.public());
        Agent {
            identity,
            id,
            config,
            pool,
            directory: Directory::new(),
            policy: Policy::new(),
            sessions: [const { None }; SESSIONS],
            queue: [const { Slot::FREE }; QUEUE],
            next_seq: 0,
            next_order: 0,
            scratch: [0; BYTES],
            events: EventQueue::new(),
            counters: Counters::default(),
        }
    }

    /// This agent's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.id
    }

    /// This agent's public identity (publish it, or its bundle).
    pub fn public_identity(&self) -> &PublicIdentity {
        self.identity.public()
    }

    /// Encode this agent's prekey bundle (with a one-time prekey while the
    /// pool has one) into `out`, for the host to publish; returns its length.
    pub fn bundle(&self, out: &mut [u8]) -> Result<usize, Error> {
        Ok(self.pool.bundle(self.pool.one_time_ids().next()).encode(out)?)
    }

    /// The peer directory.
    pub fn directory(&self) -> &Directory<PEERS> {
        &self.directory
    }

    /// Know a peer by its id alone (its identity is learned in an XX
    /// handshake or from its bundle).
    pub fn add_peer(&mut self, id: PeerId) -> Result<(), Error> {
        Ok(self.directory.add(id)?)
    }

    /// Know a peer by its identity (its Noise static key is then known);
    /// returns its id.
    pub fn add_peer_identity(&mut self, identity: &PublicIdentity) -> Result<PeerId, Error> {
        Ok(self.directory.add_identity(identity)?)
    }

    /// Store a peer's prekey bundle (verified; the peer is added if
    /// unknown); returns its id. It is used by the next X3DH with that
    /// peer, then forgotten.
    pub fn set_peer_bundle(&mut self, bundle: &[u8]) -> Result<PeerId, Error> {
        Ok(self.directory.set_bundle(bundle)?)
    }

    /// Record whether a peer is reachable now; the next [`send`](Self::send)
    /// routes by it.
    pub fn set_reachable(&mut self, peer: &PeerId, reachable: bool) -> Result<(), Error> {
        Ok(self.directory.set_reachable(peer, reachable)?)
    }

    /// The authorization table.
    pub fn policy(&self) -> &Policy<PEERS> {
        &self.policy
    }

    /// The authorization table, to define roles and grant them.
    pub fn policy_mut(&mut self) -> &mut Policy<PEERS> {
        &mut self.policy
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The session table.
    pub fn sessions(&self) -> impl Iterator<Item = SessionInfo> + '_ {
        self.sessions.iter().flatten().map(|e| SessionInfo {
            peer: e.peer,
            id: e.id,
            kind: match e.state {
                State::Handshake { .. } => SessionKind::NoiseHandshake,
                State::Noise(_) => SessionKind::Noise,
                State::Ratchet(_) => SessionKind::Ratchet,
            },
        })
    }

    /// Envelopes waiting for [`poll_transmit`](Self::poll_transmit) (ready
    /// or waiting for a handshake).
    pub fn queued(&self) -> usize {
        self.queue.iter().filter(|s| s.status != SlotStatus::Free).count()
    }

    /// What the agent knows about `peer` for routing.
    fn view(&self, peer: &PeerId) -> Option<PeerView> {
        let info = self.directory.get(peer)?;
        let mut noise = NoiseStatus::None;
        let mut ratchet_session = false;
        for e in self.sessions.iter().flatten().filter(|e| e.peer == *peer) {
            match e.state {
                State::Noise(_) => noise = NoiseStatus::Established,
                State::Handshake { .. } if noise == NoiseStatus::None => noise = NoiseStatus::Handshaking,
                State::Handshake { .. } => {}
                State::Ratchet(_) => ratchet_session = true,
            }
        }
        Some(PeerView {
            reachable: info.is_reachable(),
            noise,
            static_known: info.identity().is_some(),
            ratchet_session,
            bundle_known: info.bundle().is_some(),
        })
    }

    /// The route a message for `peer` with `purpose` would take now.
    pub fn route_for(&self, peer: &PeerId, purpose: Purpose) -> Result<Route, Error> {
        let view = self.view(peer).ok_or(Error::UnknownPeer)?;
        Ok(route::route(Target::Peer(view), purpose)?)
    }

    fn find(&self, peer: &PeerId, id: SessionId) -> Option<usize> {
        self.sessions.iter().position(|s| s.as_ref().is_some_and(|e| e.peer == *peer && e.id == id))
    }

    /// A slot for a new session: a free one, else the oldest Noise
    /// transport that a newer one with the same peer supersedes (the peer
    /// restarted, or both opened at once). Its entry is replaced only when
    /// the caller commits.
    fn free_session(&self) -> Result<usize, Error> {
        if let Some(i) = self.sessions.iter().position(Option::is_none) {
            return Ok(i);
        }
        let noise = |e: &Entry| matches!(e.state, State::Noise(_));
        let superseded = |e: &Entry| {
            noise(e)
                && self.sessions.iter().flatten().any(|o| o.peer == e.peer && noise(o) && o.order > e.order)
        };
        self.sessions
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().filter(|e| superseded(e)).map(|e| (i, e.order)))
            .min_by_key(|(_, order)| *order)
            .map(|(i, _)| i)
            .ok_or(Error::SessionTableFull)
    }

    fn next_order(&mut self) -> u64 {
        let o = self.next_order;
        self.next_order = self.next_order.wrapping_add(1);
        o
    }

    /// The first `N` free transmit slots.
    fn free_slots<const N: usize>(&self) -> Result<[usize; N], Error> {
        let mut out = [0usize; N];
        let mut free =
            self.queue.iter().enumerate().filter(|(_, s)| s.status == SlotStatus::Free).map(|(i, _)| i);
        for o in out.iter_mut() {
            *o = free.next().ok_or(Error::QueueFull)?;
        }
        Ok(out)
    }

    /// A session id not in use with `peer`.
    fn new_session_id<R: CryptoRng + ?Sized>(&self, peer: &PeerId, rng: &mut R) -> SessionId {
        loop {
            let id = SessionId(rng.next_u64());
            if self.find(peer, id).is_none() {
                return id;
            }
        }
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        s
    }

    /// Mark slot `i` ready to transmit `len` bytes to `to`.
    fn commit_slot(&mut self, i: usize, to: PeerId, delivery: Delivery, len: usize) {
        let seq = self.take_seq();
        if let Some(s) = self.queue.get_mut(i) {
            s.status = SlotStatus::Ready;
            s.to = to;
            s.delivery = delivery;
            s.seq = seq;
            s.len = len;
        }
    }

    /// Largest payload one queued Noise transport message carries.
    pub const MAX_NOISE_PAYLOAD: usize = BYTES.saturating_sub(HEADER_LEN + NOISE_MESSAGE_OVERHEAD);

    /// Send `payload` of `kind` to `peer`: route it by the matrix
    /// ([`Event::RouteChosen`]), start a handshake or a ratchet session if
    /// the route needs one, encrypt and queue. A message routed to a Noise
    /// handshake waits in the queue until the handshake completes.
    ///
    /// On error nothing changed (nothing queued, no session started, no
    /// event).
    pub fn send<R: CryptoRng + ?Sized>(
        &mut self,
        peer: &PeerId,
        kind: MessageKind,
        payload: &[u8],
        now: Instant,
        rng: &mut R,
    ) -> Result<Route, Error> {
        if !kind.is_valid() {
            return Err(Error::ReservedKind(kind));
        }
        let route = self.route_for(peer, Purpose::Message)?;
        match route.channel {
            Channel::NoiseSession => self.send_noise_session(peer, kind, payload)?,
            Channel::NoiseIk | Channel::NoiseXx => {
                self.send_noise_new(peer, route.channel, kind, payload, now, rng)?
            }
            Channel::RatchetSession | Channel::RatchetX3dh => {
                self.send_ratchet(peer, route.channel, kind, payload, now, rng)?
            }
            c @ (Channel::NoiseDatagram | Channel::Mls | Channel::UseTls) => {
                return Err(Error::Unsupported(c));
            }
        }
        self.counters.sent = self.counters.sent.saturating_add(1);
        self.events.push(Event::RouteChosen { peer: *peer, route });
        Ok(route)
    }

    /// Check that `kind | payload` plus a Noise tag fits a slot.
    fn check_noise_len(payload: &[u8]) -> Result<usize, Error> {
        if payload.len() > Self::MAX_NOISE_PAYLOAD {
            return Err(Error::PayloadTooLong { max: Self::MAX_NOISE_PAYLOAD });
        }
        add(payload.len(), 1)
    }

    /// Stage `kind | payload` in slot `i` after the header space; returns
    /// the plaintext length.
    fn stage_plaintext(&mut self, i: usize, kind: MessageKind, payload: &[u8]) -> Result<usize, Error> {
        let plain = Self::check_noise_len(payload)?;
        let slot = self.queue.get_mut(i).ok_or(Error::QueueFull)?;
        let dst = slot
            .buf
            .get_mut(HEADER_LEN..add(HEADER_LEN, plain)?)
            .ok_or(Error::PayloadTooLong { max: Self::MAX_NOISE_PAYLOAD })?;
        let (k, rest) =
            dst.split_first_mut().ok_or(Error::PayloadTooLong { max: Self::MAX_NOISE_PAYLOAD })?;
        *k = kind.0;
        rest.copy_from_slice(payload);
        Ok(plain)
    }

    /// Encrypt the plaintext staged in slot `i` with `transport` and write
    /// the envelope header; returns the envelope length.
    fn seal_slot(
        slot: &mut Slot<BYTES>,
        transport: &mut Transport,
        sender: &PeerId,
        session: SessionId,
        plain: usize,
    ) -> Result<usize, Error> {
        let body_len = add(plain, TAG_LEN)?;
        let total = add(HEADER_LEN, body_len)?;
        let body = slot
            .buf
            .get_mut(HEADER_LEN..total)
            .ok_or(Error::PayloadTooLong { max: Self::MAX_NOISE_PAYLOAD })?;
        let n = transport.encrypt_in_place(body, plain)?;
        write_header(&mut slot.buf, ChannelKind::NoiseTransport, sender, session, n)?;
        add(HEADER_LEN, n)
    }

    fn send_noise_session(&mut self, peer: &PeerId, kind: MessageKind, payload: &[u8]) -> Result<(), Error> {
        let [i] = self.free_slots::<1>()?;
        // The newest transport: after a peer's restart, the one it knows.
        let established = self
            .sessions
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|e| (i, e)))
            .filter(|(_, e)| e.peer == *peer && matches!(e.state, State::Noise(_)))
            .max_by_key(|(_, e)| e.order)
            .map(|(i, _)| i);
        let handshaking = self.sessions.iter().position(|s| {
            s.as_ref().is_some_and(|e| e.peer == *peer && matches!(e.state, State::Handshake { .. }))
        });
        let plain = self.stage_plaintext(i, kind, payload)?;
        if let Some(si) = established {
            let sender = self.id;
            let Some(Some(Entry { id, state: State::Noise(t), .. })) = self.sessions.get_mut(si) else {
                return Err(Error::UnknownSession);
            };
            let slot = self.queue.get_mut(i).ok_or(Error::QueueFull)?;
            match Self::seal_slot(slot, t, &sender, *id, plain) {
                Ok(len) => self.commit_slot(i, *peer, Delivery::Direct, len),
                Err(e) => {
                    slot.clear();
                    return Err(e);
                }
            }
        } else {
            let Some(Some(entry)) = handshaking.and_then(|si| self.sessions.get(si)) else {
                if let Some(s) = self.queue.get_mut(i) {
                    s.clear();
                }
                return Err(Error::UnknownSession);
            };
            let session = entry.id;
            let seq = self.take_seq();
            if let Some(s) = self.queue.get_mut(i) {
                s.status = SlotStatus::Awaiting(session);
                s.to = *peer;
                s.delivery = Delivery::Direct;
                s.seq = seq;
                s.len = plain;
            }
        }
        Ok(())
    }

    /// Our Noise static key: the identity's X25519 key.
    fn noise_static(&self) -> Keypair {
        Keypair::from_secret(self.identity.dh_secret().duplicate())
    }

    fn send_noise_new<R: CryptoRng + ?Sized>(
        &mut self,
        peer: &PeerId,
        channel: Channel,
        kind: MessageKind,
        payload: &[u8],
        now: Instant,
        rng: &mut R,
    ) -> Result<(), Error> {
        let si = self.free_session()?;
        let [hi, pi] = self.free_slots::<2>()?;
        Self::check_noise_len(payload)?;
        let session = self.new_session_id(peer, rng);
        let (pattern, protocol, remote) = match channel {
            Channel::NoiseIk => {
                let rs = self
                    .directory
                    .get(peer)
                    .and_then(|p| p.static_key().copied())
                    .ok_or(Error::UnknownPeer)?;
                (ChannelKind::NoiseIk, &NOISE_IK, Some(rs))
            }
            _ => (ChannelKind::NoiseXx, &NOISE_XX, None),
        };
        let prologue = handshake_prologue(pattern, &self.id, peer, session);
        let mut b = Builder::new(protocol).prologue(&prologue).local_static(self.noise_static());
        if let Some(rs) = remote {
            b = b.remote_static(rs);
        }
        let mut hs = b.build_initiator()?;
        // IK sends our identity in the first message (with our static key);
        // XX in the third.
        let identity = self.identity.public().to_bytes();
        let hs_payload: &[u8] = if pattern == ChannelKind::NoiseIk { &identity } else { &[] };
        let sender = self.id;
        let slot = self.queue.get_mut(hi).ok_or(Error::QueueFull)?;
        let body = slot.buf.get_mut(HEADER_LEN..).ok_or(Error::PayloadTooLong { max: 0 })?;
        let n = match hs.write_message(hs_payload, body, rng) {
            Ok(n) => n,
            Err(e) => {
                slot.clear();
                return Err(e.into());
            }
        };
        write_header(&mut slot.buf, pattern, &sender, session, n)?;
        let plain = match self.stage_plaintext(pi, kind, payload) {
            Ok(p) => p,
            Err(e) => {
                if let Some(s) = self.queue.get_mut(hi) {
                    s.clear();
                }
                return Err(e);
            }
        };
        // Commit.
        self.commit_slot(hi, *peer, Delivery::Direct, add(HEADER_LEN, n)?);
        let seq = self.take_seq();
        if let Some(s) = self.queue.get_mut(pi) {
            s.status = SlotStatus::Awaiting(session);
            s.to = *peer;
            s.delivery = Delivery::Direct;
            s.seq = seq;
            s.len = plain;
        }
        let deadline =
            now.saturating_add(core::time::Duration::from_millis(self.config.handshake_timeout_ms));
        let order = self.next_order();
        if let Some(s) = self.sessions.get_mut(si) {
            *s = Some(Entry {
                peer: *peer,
                id: session,
                order,
                state: State::Handshake { hs, pattern, deadline },
            });
        }
        Ok(())
    }

    fn send_ratchet<R: CryptoRng + ?Sized>(
        &mut self,
        peer: &PeerId,
        channel: Channel,
        kind: MessageKind,
        payload: &[u8],
        now: Instant,
        rng: &mut R,
    ) -> Result<(), Error> {
        let [i] = self.free_slots::<1>()?;
        let plain = add(payload.len(), 1)?;
        let staged =
            self.scratch.get_mut(..plain).ok_or(Error::PayloadTooLong { max: BYTES.saturating_sub(1) })?;
        let (k, rest) = staged.split_first_mut().ok_or(Error::PayloadTooLong { max: 0 })?;
        *k = kind.0;
        rest.copy_from_slice(payload);
        let result = self.ratchet_encrypt(i, peer, channel, plain, now, rng);
        self.scratch.fill(0);
        result
    }

    /// Encrypt `scratch[..plain]` for `peer` into slot `i` (a new session
    /// from the peer's bundle for [`Channel::RatchetX3dh`]) and commit.
    fn ratchet_encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        i: usize,
        peer: &PeerId,
        channel: Channel,
        plain: usize,
        now: Instant,
        rng: &mut R,
    ) -> Result<(), Error> {
        let sender = self.id;
        let mut fresh: Option<(usize, SessionId, RatchetSession)> = None;
        let existing = if channel == Channel::RatchetX3dh {
            let si = self.free_session()?;
            let stored =
                self.directory.get(peer).and_then(|p| p.bundle().copied()).ok_or(Error::UnknownPeer)?;
            let bundle = stored.bundle()?;
            let s = RatchetSession::initiate(&self.identity, &bundle, self.config.ratchet, rng, now)?;
            fresh = Some((si, self.new_session_id(peer, rng), s));
            None
        } else {
            self.sessions.iter().position(|s| {
                s.as_ref().is_some_and(|e| e.peer == *peer && matches!(e.state, State::Ratchet(_)))
            })
        };
        let plaintext = self.scratch.get(..plain).ok_or(Error::PayloadTooLong { max: 0 })?;
        let (session, id) = match (&mut fresh, existing) {
            (Some((_, id, s)), _) => (s, *id),
            (None, Some(si)) => match self.sessions.get_mut(si) {
                Some(Some(Entry { id, state: State::Ratchet(s), .. })) => (s, *id),
                _ => return Err(Error::UnknownSession),
            },
            (None, None) => return Err(Error::UnknownSession),
        };
        let max = BYTES.saturating_sub(HEADER_LEN).saturating_sub(session.encrypted_len(0)).saturating_sub(1);
        let slot = self.queue.get_mut(i).ok_or(Error::QueueFull)?;
        if add(HEADER_LEN, session.encrypted_len(plain))? > BYTES {
            return Err(Error::PayloadTooLong { max });
        }
        let pchannel =
            if session.awaiting_reply() { ChannelKind::RatchetInitial } else { ChannelKind::RatchetMessage };
        let body = slot.buf.get_mut(HEADER_LEN..).ok_or(Error::PayloadTooLong { max })?;
        let n = match session.encrypt(plaintext, body, rng, now) {
            Ok(n) => n,
            Err(e) => {
                slot.clear();
                return Err(e.into());
            }
        };
        write_header(&mut slot.buf, pchannel, &sender, id, n)?;
        // Commit.
        let order = self.next_order();
        if let Some((si, id, s)) = fresh
            && let Some(e) = self.sessions.get_mut(si)
        {
            *e = Some(Entry { peer: *peer, id, order, state: State::Ratchet(s) });
            // The bundle's one-time prekey is spent.
            let _ = self.directory.take_bundle(peer);
        }
        self.commit_slot(i, *peer, Delivery::Mailbox, add(HEADER_LEN, n)?);
        Ok(())
    }

    /// The oldest envelope ready to send, copied into `buf`. With a `buf`
    /// too small, [`Error::BufferTooSmall`] and nothing changed.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Result<Option<Transmit>, Error> {
        let Some(slot) =
            self.queue.iter_mut().filter(|s| s.status == SlotStatus::Ready).min_by_key(|s| s.seq)
        else {
            return Ok(None);
        };
        let len = slot.len;
        let src = slot.buf.get(..len).ok_or(Error::BufferTooSmall { needed: len })?;
        buf.get_mut(..len).ok_or(Error::BufferTooSmall { needed: len })?.copy_from_slice(src);
        let t = Transmit { to: slot.to, delivery: slot.delivery, len };
        slot.clear();
        Ok(Some(t))
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due: the
    /// earliest handshake deadline, or `None`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions
            .iter()
            .flatten()
            .filter_map(|e| match e.state {
                State::Handshake { deadline, .. } => Some(deadline),
                _ => None,
            })
            .min()
    }

    /// Drop the handshakes whose deadline has passed (with the messages
    /// waiting for them), each reported as [`Event::HandshakeFailed`].
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..SESSIONS {
            let expired = match self.sessions.get(i) {
                Some(Some(Entry { state: State::Handshake { deadline, .. }, .. })) => *deadline <= now,
                _ => false,
            };
            if expired {
                self.drop_handshake(i, HandshakeFailure::TimedOut);
            }
        }
    }

    /// Remove session `i` (a handshake) and the messages waiting for it.
    fn drop_handshake(&mut self, i: usize, reason: HandshakeFailure) {
        if let Some(Some(entry)) = self.sessions.get_mut(i).map(Option::take) {
            self.handshake_failed(entry.peer, entry.id, reason);
        }
    }

    /// Refuse `peer`'s session for a mismatched identity.
    fn auth_failed(&mut self, peer: PeerId, reason: AuthFailure) {
        self.counters.auth_failed = self.counters.auth_failed.saturating_add(1);
        self.events.push(Event::AuthFailed { peer, reason });
    }

    fn deny(&mut self, from: PeerId, reason: DenyReason) {
        self.counters.denied = self.counters.denied.saturating_add(1);
        self.events.push(Event::Denied { from, reason });
    }

    /// Handle one envelope received from a peer or its mailbox. A
    /// delivered payload is written to `out[..len]` and returned (and
    /// reported as [`Event::Received`]); `Ok(None)` means the envelope was
    /// handshake traffic, or was refused by the policy or the identity
    /// check (then reported as [`Event::Denied`] or [`Event::AuthFailed`],
    /// counted, and `out` holds no plaintext).
    ///
    /// `out` needs the ciphertext's length (less the tag). An error
    /// changes nothing, except a Noise handshake message that fails to
    /// authenticate: the handshake is then dropped.
    pub fn handle_input<R: CryptoRng + ?Sized>(
        &mut self,
        bytes: &[u8],
        out: &mut [u8],
        now: Instant,
        rng: &mut R,
    ) -> Result<Option<Received>, Error> {
        let env = Envelope::parse(bytes)?;
        match env.channel {
            ChannelKind::NoiseIk | ChannelKind::NoiseXx => {
                self.handle_handshake(&env, now, rng)?;
                Ok(None)
            }
            ChannelKind::NoiseTransport => {
                let si = self.find(&env.sender, env.session).ok_or(Error::UnknownSession)?;
                let Some(Some(Entry { state: State::Noise(t), .. })) = self.sessions.get_mut(si) else {
                    return Err(Error::ChannelMismatch);
                };
                let n = t.read_message(env.body, out)?;
                Ok(self.deliver(env.sender, ChannelKind::NoiseTransport, out, n))
            }
            ChannelKind::RatchetInitial | ChannelKind::RatchetMessage => self.handle_ratchet(&env, out, now),
            c @ (ChannelKind::NoiseDatagram | ChannelKind::MlsMessage | ChannelKind::MlsWelcome) => {
                Err(Error::UnsupportedChannel(c))
            }
        }
    }

    /// The policy check of an authenticated plaintext `out[..n]`
    /// (`kind | payload`): deliver it (the payload moved to the front) or
    /// refuse it (wiped).
    fn deliver(&mut self, from: PeerId, channel: ChannelKind, out: &mut [u8], n: usize) -> Option<Received> {
        let plain = out.get_mut(..n).unwrap_or_default();
        let Some(&k) = plain.first() else {
            self.deny(from, DenyReason::Malformed);
            return None;
        };
        let kind = MessageKind(k);
        if let Err(d) = self.policy.check(&from, kind) {
            plain.fill(0);
            self.deny(from, d.reason);
            return None;
        }
        plain.copy_within(1.., 0);
        let len = n.saturating_sub(1);
        if let Some(last) = plain.last_mut() {
            *last = 0;
        }
        self.counters.received = self.counters.received.saturating_add(1);
        self.events.push(Event::Received { from, kind, len });
        Some(Received { from, kind, len, channel })
    }

    /// Whether `peer` may open a session: known to the directory and to
    /// the policy (default deny).
    fn may_open(&self, peer: &PeerId) -> bool {
        self.directory.get(peer).is_some() && self.policy.is_known(peer)
    }

    fn handle_handshake<R: CryptoRng + ?Sized>(
        &mut self,
        env: &Envelope<'_>,
        now: Instant,
        rng: &mut R,
    ) -> Result<(), Error> {
        let peer = env.sender;
        // Every handshake step may have to write the next message.
        let [slot] = self.free_slots::<1>()?;
        let Some(si) = self.find(&peer, env.session) else {
            return self.respond_handshake(env, slot, now, rng);
        };
        match self.sessions.get(si) {
            Some(Some(Entry { state: State::Handshake { pattern, .. }, .. })) if *pattern == env.channel => {}
            _ => return Err(Error::ChannelMismatch),
        }
        let Some(Some(Entry { state: State::Handshake { mut hs, pattern, deadline }, order, .. })) =
            self.sessions.get_mut(si).map(Option::take)
        else {
            return Err(Error::UnknownSession);
        };
        let mut payload = [0u8; PublicIdentity::LEN];
        let n = match hs.read_message(env.body, &mut payload) {
            Ok(n) => n,
            Err(e) => {
                if hs.is_poisoned() {
                    self.handshake_failed(peer, env.session, HandshakeFailure::Decrypt);
                } else if let Some(s) = self.sessions.get_mut(si) {
                    *s = Some(Entry {
                        peer,
                        id: env.session,
                        order,
                        state: State::Handshake { hs, pattern, deadline },
                    });
                }
                return Err(e.into());
            }
        };
        let learned = if hs.remote_static_pending() {
            let known = self.directory.get(&peer).and_then(|p| p.identity());
            match check_identity(&peer, known, payload.get(..n).unwrap_or_default(), hs.remote_static()) {
                Ok(identity) => {
                    hs.accept_remote_static();
                    Some(identity)
                }
                Err(reason) => {
                    self.drop_awaiting(&peer, env.session);
                    self.auth_failed(peer, reason);
                    return Ok(());
                }
            }
        } else {
            None
        };
        self.step(Step { peer, session: env.session, pattern, deadline, si, slot, learned, order }, hs, rng)
    }

    /// The first message of a handshake opened by `env.sender`.
    fn respond_handshake<R: CryptoRng + ?Sized>(
        &mut self,
        env: &Envelope<'_>,
        slot: usize,
        now: Instant,
        rng: &mut R,
    ) -> Result<(), Error> {
        let peer = env.sender;
        if !self.may_open(&peer) {
            self.deny(peer, DenyReason::UnknownPeer);
            return Ok(());
        }
        let si = self.free_session()?;
        let protocol = if env.channel == ChannelKind::NoiseIk { &NOISE_IK } else { &NOISE_XX };
        let prologue = handshake_prologue(env.channel, &peer, &self.id, env.session);
        let mut hs =
            Builder::new(protocol).prologue(&prologue).local_static(self.noise_static()).build_responder()?;
        let mut payload = [0u8; PublicIdentity::LEN];
        let n = hs.read_message(env.body, &mut payload)?;
        let learned = if hs.remote_static_pending() {
            let known = self.directory.get(&peer).and_then(|p| p.identity());
            match check_identity(&peer, known, payload.get(..n).unwrap_or_default(), hs.remote_static()) {
                Ok(identity) => {
                    hs.accept_remote_static();
                    Some(identity)
                }
                Err(reason) => {
                    self.auth_failed(peer, reason);
                    return Ok(());
                }
            }
        } else {
            None
        };
        let deadline =
            now.saturating_add(core::time::Duration::from_millis(self.config.handshake_timeout_ms));
        let order = self.next_order();
        self.step(
            Step { peer, session: env.session, pattern: env.channel, deadline, si, slot, learned, order },
            hs,
            rng,
        )
    }

    /// After a successful read: write our next message if it is our turn,
    /// then either keep the handshake or finish it into a transport and
    /// send what waited for it.
    fn step<R: CryptoRng + ?Sized>(
        &mut self,
        st: Step,
        mut hs: HandshakeState,
        rng: &mut R,
    ) -> Result<(), Error> {
        if hs.is_my_turn() {
            // Our identity goes with our static key: XX messages 2 and 3
            // (IK sends it in message 1, see `send_noise_new`).
            let identity = self.identity.public().to_bytes();
            let hs_payload: &[u8] = if st.pattern == ChannelKind::NoiseXx { &identity } else { &[] };
            let sender = self.id;
            let written = match self.queue.get_mut(st.slot) {
                Some(slot) => match slot.buf.get_mut(HEADER_LEN..) {
                    Some(body) => {
                        hs.write_message(hs_payload, body, rng).map_err(Error::from).and_then(|n| {
                            write_header(&mut slot.buf, st.pattern, &sender, st.session, n)?;
                            add(HEADER_LEN, n)
                        })
                    }
                    None => Err(Error::QueueFull),
                },
                None => Err(Error::QueueFull),
            };
            match written {
                Ok(len) => self.commit_slot(st.slot, st.peer, Delivery::Direct, len),
                Err(e) => {
                    if let Some(s) = self.queue.get_mut(st.slot) {
                        s.clear();
                    }
                    self.handshake_failed(st.peer, st.session, HandshakeFailure::Decrypt);
                    return Err(e);
                }
            }
        }
        if !hs.is_complete() {
            let state = State::Handshake { hs, pattern: st.pattern, deadline: st.deadline };
            if let Some(s) = self.sessions.get_mut(st.si) {
                *s = Some(Entry { peer: st.peer, id: st.session, order: st.order, state });
            }
            return Ok(());
        }
        let mut transport = match hs.finish() {
            Ok(t) => t,
            Err(e) => {
                self.handshake_failed(st.peer, st.session, HandshakeFailure::Decrypt);
                return Err(e.into());
            }
        };
        if let Some(identity) = st.learned {
            // Checked against the peer id already: this only fills it in.
            if self.directory.learn_identity(&st.peer, &identity).is_err() {
                self.drop_awaiting(&st.peer, st.session);
                self.auth_failed(st.peer, AuthFailure::IdentityMismatch);
                return Ok(());
            }
        }
        // Send what waited for the handshake, in the order it was sent.
        let sender = self.id;
        loop {
            let next = self
                .queue
                .iter()
                .enumerate()
                .filter(|(_, s)| s.status == SlotStatus::Awaiting(st.session) && s.to == st.peer)
                .min_by_key(|(_, s)| s.seq)
                .map(|(i, _)| i);
            let Some(i) = next else { break };
            let Some(slot) = self.queue.get_mut(i) else { break };
            let plain = slot.len;
            match Self::seal_slot(slot, &mut transport, &sender, st.session, plain) {
                Ok(len) => self.commit_slot(i, st.peer, Delivery::Direct, len),
                // Only a nonce exhaustion could refuse this; drop the message.
                Err(_) => slot.clear(),
            }
        }
        // Established now: newer than every session before it.
        let order = self.next_order();
        if let Some(s) = self.sessions.get_mut(st.si) {
            *s = Some(Entry { peer: st.peer, id: st.session, order, state: State::Noise(transport) });
        }
        self.events.push(Event::HandshakeComplete {
            peer: st.peer,
            session: st.session,
            pattern: st.pattern,
        });
        Ok(())
    }

    /// Drop the messages waiting for handshake `session` with `peer`;
    /// returns how many.
    fn drop_awaiting(&mut self, peer: &PeerId, session: SessionId) -> usize {
        let mut dropped = 0usize;
        for s in self.queue.iter_mut() {
            if s.status == SlotStatus::Awaiting(session) && s.to == *peer {
                s.clear();
                dropped = dropped.saturating_add(1);
            }
        }
        dropped
    }

    /// Report a handshake (already out of the table) as failed, dropping
    /// the messages that waited for it.
    fn handshake_failed(&mut self, peer: PeerId, session: SessionId, reason: HandshakeFailure) {
        let dropped = self.drop_awaiting(&peer, session);
        self.counters.handshakes_failed = self.counters.handshakes_failed.saturating_add(1);
        self.events.push(Event::HandshakeFailed { peer, session, reason, dropped });
    }

    fn handle_ratchet(
        &mut self,
        env: &Envelope<'_>,
        out: &mut [u8],
        now: Instant,
    ) -> Result<Option<Received>, Error> {
        let peer = env.sender;
        let initial = env.body.first() == Some(&MSG_INITIAL);
        if initial != (env.channel == ChannelKind::RatchetInitial) {
            return Err(Error::ChannelMismatch);
        }
        if let Some(si) = self.find(&peer, env.session) {
            let Some(Some(Entry { state: State::Ratchet(s), .. })) = self.sessions.get_mut(si) else {
                return Err(Error::ChannelMismatch);
            };
            let n = s.decrypt(env.body, out, now)?;
            return Ok(self.deliver(peer, env.channel, out, n));
        }
        if !initial {
            return Err(Error::UnknownSession);
        }
        if !self.may_open(&peer) {
            self.deny(peer, DenyReason::UnknownPeer);
            return Ok(None);
        }
        // The sender's identity (binding signature verified), read from
        // the initial message before any prekey is used.
        let identity = RatchetSession::initial_sender(env.body)?;
        let known = self.directory.get(&peer).and_then(|p| p.identity());
        if PeerId::of(&identity) != peer || known.is_some_and(|k| *k != identity) {
            self.auth_failed(peer, AuthFailure::IdentityMismatch);
            return Ok(None);
        }
        let si = self.free_session()?;
        let (session, n) =
            RatchetSession::respond(&self.identity, &mut self.pool, env.body, out, self.config.ratchet, now)?;
        if *session.remote_identity() != identity || self.directory.learn_identity(&peer, &identity).is_err()
        {
            // Unreachable: `respond` verified the same prefix.
            out.get_mut(..n).unwrap_or_default().fill(0);
            self.auth_failed(peer, AuthFailure::IdentityMismatch);
            return Ok(None);
        }
        let order = self.next_order();
        if let Some(s) = self.sessions.get_mut(si) {
            *s = Some(Entry { peer, id: env.session, order, state: State::Ratchet(session) });
        }
        Ok(self.deliver(peer, ChannelKind::RatchetInitial, out, n))
    }
}

/// What a handshake step needs to know besides the handshake.
struct Step {
    peer: PeerId,
    session: SessionId,
    pattern: ChannelKind,
    deadline: Instant,
    /// Its slot in the session table (free, or the one it came from).
    si: usize,
    /// A free transmit slot for the next message.
    slot: usize,
    /// The peer's identity, checked against its static key in this step.
    learned: Option<PublicIdentity>,
    /// The handshake's place in the session order.
    order: u64,
}

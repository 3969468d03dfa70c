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
//!   says when to call [`Agent::handle_timeout`] (handshake deadlines,
//!   ratchet heartbeats), [`Agent::poll_prekey_timeout`] when to call
//!   [`Agent::handle_prekey_timeout`] (signed prekey rotation, wall time).
//! - With persistence on, [`Agent::poll_persist`] hands out the sealed
//!   records of what changed, and [`Agent::poll_transmit`] releases
//!   nothing until it has (see [`crate::persist`]).
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

mod groups;

use crate::envelope::{ChannelKind, Envelope, HEADER_LEN, SessionId, handshake_prologue, write_header};
use crate::error::Error;
use crate::group::{
    Destination, GroupId, GroupSlot, KEY_PACKAGE_SLOTS, OwnKeyPackage, PEER_KEY_PACKAGES, PeerKeyPackage,
    Recipient,
};
use crate::metrics::{Metrics, PqStatus};
use crate::peer::{Directory, PeerId};
use crate::persist::{self, AgentParts, Generations, Opened, PersistRecord, RecordId, SlotState};
use crate::policy::{DenyReason, MessageKind, Policy};
use crate::pq::{DEFAULT_BYTES, KEM_PREKEYS, MIN_PQ_BYTES, PqMode, RATCHET_KEM_CT};
use crate::route::{self, Channel, NoiseStatus, PeerView, Purpose, Route, Target};
use securemesh_core::envelope::StorageKey;
use securemesh_core::events::EventQueue;
use securemesh_core::{CryptoRng, Instant, UnixTime};
use securemesh_noise::{
    Builder, DATAGRAM_OVERHEAD, DatagramTransport, HandshakeState, Keypair, Protocol, TAG_LEN, Transport,
    protocol,
};
use securemesh_ratchet::{
    Identity, MSG_INITIAL, PrekeyConfig, PrekeyEvent, PrekeyPool, PublicIdentity, Session, SessionConfig,
    SessionEvent,
};

/// The Noise protocol of handshakes with a peer whose static key is known.
pub const NOISE_IK: Protocol = protocol!("Noise_IK_25519_ChaChaPoly_SHA256");
/// The Noise protocol of handshakes with a peer whose static key is not known.
pub const NOISE_XX: Protocol = protocol!("Noise_XX_25519_ChaChaPoly_SHA256");

/// Out-of-order messages a ratchet chain may skip (the mailbox may
/// reorder).
///
/// This bounds the reordering a host's mailbox may do: a message more
/// than this far ahead of the next expected one is refused, and once more
/// than [`RATCHET_SKIPPED_KEYS`] messages were skipped the oldest skipped
/// keys are evicted, so a message that old fails like a replay
/// (`Ratchet(Duplicate)`) and is lost. A mailbox close to FIFO per
/// session never comes near either bound.
pub const RATCHET_MAX_SKIP: usize = 32;
/// Skipped message keys a ratchet session stores (see [`RATCHET_MAX_SKIP`]).
pub const RATCHET_SKIPPED_KEYS: usize = 32;
/// The ratchet session the agent keeps per peer (3.7 KB with these
/// bounds; with the feature `pq` 1.1 KB more, the room for the ML-KEM-768
/// ciphertext a PQXDH initiator repeats, [`RATCHET_KEM_CT`]).
pub type RatchetSession = Session<RATCHET_MAX_SKIP, RATCHET_SKIPPED_KEYS, RATCHET_KEM_CT>;

/// Pending events kept; when full, the oldest is dropped.
pub const EVENT_SLOTS: usize = 16;

/// Smallest `BYTES` an [`Agent`] accepts (checked at compile time): the
/// largest handshake message (XX message 2, IK message 1: ephemeral 32,
/// encrypted static 48, encrypted 128-byte identity 144) in its envelope.
pub const MIN_BYTES: usize = HEADER_LEN + 32 + (32 + TAG_LEN) + (PublicIdentity::LEN + TAG_LEN);

/// The plaintext of the control message that opens a re-established
/// ratchet session (see [`Event::ReestablishRequested`]): one byte of a
/// reserved kind, so it is never an application message; it is never
/// delivered nor checked against the policy.
const REESTABLISH: [u8; 1] = [0xFF];

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
    /// To every member of the group, the sender included, in one order
    /// for all members (the delivery service's job; see
    /// [`crate::group`]). [`Transmit::to`] is the sending agent itself;
    /// [`Agent::group_members`] lists the members.
    Group(GroupId),
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
    /// The group it was sent to (MLS), `None` for the pairwise channels.
    pub group: Option<GroupId>,
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
        /// [`ChannelKind::NoiseIk`] or [`ChannelKind::NoiseXx`], or their
        /// `hfs` variants ([`ChannelKind::NoiseIkHfs`], [`ChannelKind::NoiseXxHfs`]).
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
    /// Durable state changed: record `record` must be stored at
    /// `generation` before anything is transmitted. Hand it out with
    /// [`Agent::poll_persist`] ([`Agent::poll_transmit`] returns nothing
    /// until every pending record was handed out). See [`crate::persist`].
    Persist {
        /// The record.
        record: RecordId,
        /// The generation it will carry.
        generation: u64,
    },
    /// The prekey pool fell below its refill threshold and was refilled:
    /// publish the new one-time prekeys ([`Agent::bundle`],
    /// [`Agent::bundle_with`]).
    PrekeysRefilled {
        /// One-time prekeys added.
        added: u32,
        /// One-time prekeys available now.
        available: u32,
    },
    /// The one-time ML-KEM-768 prekeys of a PQXDH pool fell below the
    /// pool's refill threshold and were refilled: publish new bundles
    /// ([`Agent::bundle`], [`Agent::bundle_pq_with`]).
    KemPrekeysRefilled {
        /// One-time KEM prekeys added.
        added: u32,
        /// One-time KEM prekeys available now.
        available: u32,
    },
    /// The signed prekey was rotated ([`Agent::handle_prekey_timeout`]):
    /// publish a new bundle. The previous one is still accepted for the
    /// pool's grace period.
    SignedPrekeyRotated {
        /// Identifier of the new signed prekey.
        id: u32,
    },
    /// The previous signed prekey passed its grace period and was erased:
    /// initial messages made from bundles that carry it are refused.
    SignedPrekeyErased {
        /// Its identifier.
        id: u32,
    },
    /// A ratchet session had not stepped for its heartbeat interval, so
    /// the agent queued an empty message to `peer` (through its mailbox):
    /// the peer's answer steps the DH ratchet, healing a compromised state.
    HeartbeatSent {
        /// The peer.
        peer: PeerId,
        /// The session.
        session: SessionId,
    },
    /// A ratchet message from `peer` named a session this agent does not
    /// hold, and it holds no ratchet session with `peer` at all (its
    /// state was lost: a restart from older records, or a fresh agent of
    /// the same identity): so the agent opened a new session to `peer`
    /// from its bundle and queued an empty control message on it (through
    /// the mailbox), which makes the peer send on the new session. The
    /// undecryptable message is lost. See [`Agent::handle_input`].
    ReestablishRequested {
        /// The peer.
        peer: PeerId,
        /// The session the agent opened.
        session: SessionId,
        /// The session id the peer's message named.
        unknown: SessionId,
    },
    /// `peer` lost its state of our ratchet session and opened `session`
    /// to replace it ([`Event::ReestablishRequested`] at its end): the
    /// agent sends to `peer` on `session` from now on. Messages sent
    /// earlier on the old session and not yet read are lost at the peer.
    SessionReestablished {
        /// The peer.
        peer: PeerId,
        /// The new session.
        session: SessionId,
    },
    /// The agent is a member of `group` now: it created it (epoch 0) or
    /// joined it from a Welcome.
    GroupJoined {
        /// The group.
        group: GroupId,
        /// Its epoch.
        epoch: u64,
        /// Members, the agent included.
        members: u32,
    },
    /// A commit moved `group` to `epoch` (ours, confirmed by the delivery
    /// order, or another member's).
    EpochChanged {
        /// The group.
        group: GroupId,
        /// The new epoch.
        epoch: u64,
    },
    /// `peer` became a member of `group` (after [`Event::EpochChanged`]).
    MemberAdded {
        /// The group.
        group: GroupId,
        /// The member's claimed peer id (its credential).
        peer: PeerId,
    },
    /// `peer` is no longer a member of `group`: nothing it sends there is
    /// delivered any more.
    MemberRemoved {
        /// The group.
        group: GroupId,
        /// The former member.
        peer: PeerId,
    },
    /// A commit removed this agent from `group`: its state is erased.
    GroupLeft {
        /// The group.
        group: GroupId,
    },
    /// Another member's commit of the same epoch was ordered before ours:
    /// ours is discarded with its Welcome (the KeyPackages it used are
    /// spent: learn new ones to retry).
    CommitDiscarded {
        /// The group.
        group: GroupId,
        /// The epoch both commits were made in.
        epoch: u64,
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
    /// A Noise datagram transport (telemetry; a handshake for it is a
    /// [`NoiseHandshake`](Self::NoiseHandshake) whose id carries
    /// [`DATAGRAM_SESSION`]).
    NoiseDatagram,
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
    /// For a Noise transport: whether it is confirmed (see
    /// [`Agent::send`]: messages for an unconfirmed one are held); `true`
    /// for the other kinds.
    pub confirmed: bool,
    /// Its post-quantum status: `Hybrid` for a ratchet session opened with
    /// PQXDH and for a Noise `hfs` transport (or handshake), else
    /// `Classical` (see [`crate::pq`]).
    pub pq: PqStatus,
}

/// A session's state. The MLS slice adds a group variant here (keyed by
/// the group id in [`SessionId`]).
///
/// Every slot of the table is as large as the largest variant (a ratchet
/// session): there is no heap to box into, and a fixed table is what lets
/// firmware reserve it statically.
#[allow(clippy::large_enum_variant)]
enum State {
    Handshake {
        hs: HandshakeState,
        pattern: ChannelKind,
        deadline: Instant,
        started: Instant,
    },
    Noise(Transport),
    /// A Noise datagram transport (telemetry): its session id carries
    /// [`DATAGRAM_SESSION`].
    Datagram(DatagramTransport),
    Ratchet(RatchetSession),
}

/// The bit of a [`SessionId`] that marks a Noise session opened for the
/// datagram transport (telemetry): the initiator sets it, and the
/// handshake's prologue binds the session id, so both sides agree on what
/// the completed handshake becomes. Stream sessions have it clear.
pub const DATAGRAM_SESSION: u64 = 1 << 63;

/// Whether session `id` is a datagram session.
const fn is_datagram(id: SessionId) -> bool {
    id.0 & DATAGRAM_SESSION != 0
}

struct Entry {
    peer: PeerId,
    id: SessionId,
    /// When it was created or (Noise) established: larger is newer.
    order: u64,
    /// `None` once a Noise transport is confirmed: the peer is known to
    /// hold it. An IK responder's transport is unconfirmed (`Some(deadline)`)
    /// until it reads a transport message on it (its initiator may have
    /// dropped the handshake after our message 2 was lost or late). `send`
    /// uses the newest transport (a peer opens one only when it holds none
    /// with us: after its restart the older ones are dead at its end) and
    /// holds messages for it while it is unconfirmed (released on
    /// confirmation, which the initiator's first message, sent right after
    /// the handshake, brings); an unconfirmed one supersedes nothing; one
    /// still unconfirmed at its deadline is dropped with the messages held
    /// for it and the older transports with that peer
    /// ([`Event::HandshakeFailed`]), so the next `send` opens a handshake.
    confirm_by: Option<Instant>,
    /// The post-quantum status of its key agreement.
    pq: PqStatus,
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
/// It drives the pairwise channels (Noise stream, ratchet), persists its
/// durable state through sealed records when given a storage key
/// ([`enable_persistence`](Self::enable_persistence),
/// [`restore`](Self::restore); see [`crate::persist`]), refills and
/// rotates its prekeys, sends ratchet heartbeats, and measures itself
/// ([`metrics`](Self::metrics)). It is a member of at most `GROUPS` MLS
/// groups ([`crate::group`]; each slot costs
/// [`GROUP_SLOT_BYTES`](crate::group::GROUP_SLOT_BYTES), `GROUPS = 0`
/// nothing), and
/// sends telemetry over the Noise datagram transport
/// ([`send_telemetry`](Self::send_telemetry)).
pub struct Agent<
    const PEERS: usize = 8,
    const SESSIONS: usize = 4,
    const QUEUE: usize = 8,
    const BYTES: usize = { DEFAULT_BYTES },
    const PREKEYS: usize = 16,
    const GROUPS: usize = 1,
> {
    identity: Identity,
    id: PeerId,
    config: Config,
    /// Hybrid post-quantum channels ([`crate::pq`]).
    pq: PqMode,
    /// The seed of our ML-DSA-65 key (hybrid identity, [`crate::pq`]);
    /// `None` for an agent restored from a record written without one.
    #[cfg(feature = "ml-dsa")]
    ml_dsa: Option<securemesh_core::Secret<[u8; 32]>>,
    pool: PrekeyPool<PREKEYS, KEM_PREKEYS>,
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
    /// The host's storage key: persistence is on when it is set.
    storage: Option<StorageKey>,
    /// Generations of the agent record and of each session slot's record.
    agent_record: Generations,
    slot_records: [Generations; SESSIONS],
    metrics: Metrics,
    /// MLS groups ([`crate::group`]).
    groups: [GroupSlot; GROUPS],
    /// Our KeyPackages' private keys, each used once.
    own_key_packages: [Option<OwnKeyPackage>; KEY_PACKAGE_SLOTS],
    /// Peers' KeyPackages, checked against their identities.
    peer_key_packages: [Option<PeerKeyPackage>; PEER_KEY_PACKAGES],
    group_records: [Generations; GROUPS],
    key_package_record: Generations,
}

impl<
    const PEERS: usize,
    const SESSIONS: usize,
    const QUEUE: usize,
    const BYTES: usize,
    const PREKEYS: usize,
    const GROUPS: usize,
> core::fmt::Debug for Agent<PEERS, SESSIONS, QUEUE, BYTES, PREKEYS, GROUPS>
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

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// Whole milliseconds of `d` (saturating).
fn ms(d: core::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `a + b` for lengths bounded by a buffer (an overflow means "too long").
fn add(a: usize, b: usize) -> Result<usize, Error> {
    a.checked_add(b).ok_or(Error::PayloadTooLong { max: 0 })
}

/// The Noise protocol of handshake channel `pattern`: IK, XX, or (feature
/// `pq`) their `hfs` variants; [`Error::PqUnavailable`] for an `hfs` one
/// without the feature.
fn protocol_of(pattern: ChannelKind) -> Result<&'static Protocol, Error> {
    match pattern {
        ChannelKind::NoiseIk => Ok(&NOISE_IK),
        ChannelKind::NoiseXx => Ok(&NOISE_XX),
        #[cfg(feature = "pq")]
        ChannelKind::NoiseIkHfs => Ok(&crate::pq::NOISE_IK_HFS),
        #[cfg(feature = "pq")]
        ChannelKind::NoiseXxHfs => Ok(&crate::pq::NOISE_XX_HFS),
        c if c.is_hfs() => Err(Error::PqUnavailable),
        c => Err(Error::UnsupportedChannel(c)),
    }
}

/// The post-quantum status of a handshake of `pattern`.
const fn status_of(pattern: ChannelKind) -> PqStatus {
    if pattern.is_hfs() { PqStatus::Hybrid } else { PqStatus::Classical }
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

impl<
    const PEERS: usize,
    const SESSIONS: usize,
    const QUEUE: usize,
    const BYTES: usize,
    const PREKEYS: usize,
    const GROUPS: usize,
> Agent<PEERS, SESSIONS, QUEUE, BYTES, PREKEYS, GROUPS>
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
        Self::new_pq(identity, config, PqMode::Off, rng, now)
    }

    /// [`new`](Self::new), running the hybrid post-quantum channels as
    /// `pq` says ([`crate::pq`]): a hybrid mode (with the feature `pq`)
    /// makes a PQXDH pool, whose KEM prekeys then stay with the agent
    /// across restores, whatever mode restores it.
    ///
    /// ```
    /// use securemesh::{Config, DefaultAgent, PqMode};
    /// use securemesh_ratchet::{Bundle, Identity, MAX_BUNDLE_LEN};
    /// # let mut rng = securemesh_core::testing::TestRng::new(7);
    /// let agent = DefaultAgent::new_pq(Identity::generate(&mut rng), Config::default(), PqMode::Prefer, &mut rng, securemesh_core::UnixTime(1));
    /// let mut buf = [0u8; MAX_BUNDLE_LEN];
    /// let n = agent.bundle(&mut buf)?;
    /// // A PQXDH bundle (ML-KEM-768 prekey) with the feature `pq`.
    /// assert_eq!(Bundle::decode(&buf[..n])?.kem().is_some(), cfg!(feature = "pq"));
    /// assert_eq!(agent.pq_mode(), PqMode::Prefer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new_pq<R: CryptoRng + ?Sized>(
        identity: Identity,
        config: Config,
        pq: PqMode,
        rng: &mut R,
        now: UnixTime,
    ) -> Self {
        let () = Self::BYTES_CHECK;
        let pool = Self::new_pool(&identity, config, pq, rng, now);
        #[cfg(feature = "ml-dsa")]
        let ml_dsa = Some(securemesh_core::crypto::MlDsa65::generate(rng));
        let id = PeerId::of(identity.public());
        Agent {
            identity,
            id,
            config,
            pq,
            #[cfg(feature = "ml-dsa")]
            ml_dsa,
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
            storage: None,
            agent_record: Generations::default(),
            slot_records: [Generations::default(); SESSIONS],
            metrics: Metrics::default(),
            groups: [const { GroupSlot::empty() }; GROUPS],
            own_key_packages: [const { None }; KEY_PACKAGE_SLOTS],
            peer_key_packages: [const { None }; PEER_KEY_PACKAGES],
            group_records: [Generations::default(); GROUPS],
            key_package_record: Generations::default(),
        }
    }

    /// A fresh pool: PQXDH (a last-resort and [`KEM_PREKEYS`] one-time
    /// ML-KEM-768 prekeys) when mode `pq` runs hybrid channels, else
    /// X3DH. Making the KEM prekeys of a fresh pool cannot fail (its
    /// identifier counter is at 2, and `KemPrekey` signs what it made);
    /// were it to, the agent would run an X3DH pool, which a
    /// [`PqMode::Require`] peer refuses rather than accepting silently.
    fn new_pool<R: CryptoRng + ?Sized>(
        identity: &Identity,
        config: Config,
        pq: PqMode,
        rng: &mut R,
        now: UnixTime,
    ) -> PrekeyPool<PREKEYS, KEM_PREKEYS> {
        #[cfg(not(feature = "pq"))]
        let _ = pq;
        #[cfg(feature = "pq")]
        if Self::runs_hybrid(pq)
            && let Ok(pool) = PrekeyPool::new_pq(
                identity,
                rng,
                now,
                config.prekeys,
                securemesh_ratchet::KemAlgorithm::MlKem768,
            )
        {
            return pool;
        }
        PrekeyPool::new(identity, rng, now, config.prekeys)
    }

    /// Whether this agent runs the hybrid channels: its mode is hybrid and
    /// `BYTES` holds an `hfs` handshake message and a PQXDH initial message
    /// ([`MIN_PQ_BYTES`]); else it runs as [`PqMode::Off`].
    const fn runs_hybrid(mode: PqMode) -> bool {
        mode.hybrid() && BYTES >= MIN_PQ_BYTES
    }

    /// Whether the pool publishes KEM prekeys (PQXDH).
    fn pool_hybrid(&self) -> bool {
        self.pool.last_resort_kem_id().is_some()
    }

    /// This agent's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.id
    }

    /// How this agent runs the hybrid post-quantum channels.
    pub fn pq_mode(&self) -> PqMode {
        self.pq
    }

    /// Change how this agent runs the hybrid post-quantum channels;
    /// applies to the next channel opened or accepted. The mode is in the
    /// agent record, so a change raises [`Event::Persist`] for it and
    /// [`restore`](Self::restore) brings it back.
    /// The pool keeps its kind: a PQXDH pool (made by
    /// [`new_pq`](Self::new_pq) in a hybrid mode) keeps publishing KEM
    /// prekeys, an X3DH pool stays X3DH (a PQXDH peer's X3DH would be
    /// refused as a downgrade, so an X3DH pool does not become PQXDH
    /// behind its peers' backs; [`crate::pq`]).
    pub fn set_pq_mode(&mut self, mode: PqMode) {
        if self.pq != mode {
            self.pq = mode;
            self.mark_agent();
        }
    }

    /// This agent's public identity (publish it, or its bundle).
    pub fn public_identity(&self) -> &PublicIdentity {
        self.identity.public()
    }

    /// Encode this agent's prekey bundle (with a one-time prekey while the
    /// pool has one) into `out`, for the host to publish; returns its length.
    /// A PQXDH pool ([`crate::pq`]) adds a one-time KEM prekey while it has
    /// one, else its last-resort KEM prekey (`out` needs
    /// [`MAX_BUNDLE_LEN`](securemesh_ratchet::MAX_BUNDLE_LEN)).
    pub fn bundle(&self, out: &mut [u8]) -> Result<usize, Error> {
        self.bundle_pq_with(self.pool.one_time_ids().next(), self.pool.kem_one_time_ids().next(), out)
    }

    /// Encode a bundle with the one-time prekey `one_time_id` (if it is
    /// still in the pool; none for `None`), to publish one bundle per
    /// one-time prekey; returns its length. A PQXDH pool adds its
    /// last-resort KEM prekey (never consumed, so any number of bundles
    /// may carry it).
    pub fn bundle_with(&self, one_time_id: Option<u32>, out: &mut [u8]) -> Result<usize, Error> {
        self.bundle_pq_with(one_time_id, None, out)
    }

    /// Encode a bundle with the one-time prekey `one_time_id` and, from a
    /// PQXDH pool, the one-time KEM prekey `kem_one_time_id` (its
    /// last-resort KEM prekey for `None` or a spent one); an X3DH pool
    /// ignores `kem_one_time_id`. Returns its length.
    pub fn bundle_pq_with(
        &self,
        one_time_id: Option<u32>,
        kem_one_time_id: Option<u32>,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        #[cfg(feature = "pq")]
        if self.pool_hybrid() {
            let mut kem = [0u8; securemesh_ratchet::MAX_KEM_PUBLIC_LEN];
            return Ok(self.pool.bundle_pq(one_time_id, kem_one_time_id, &mut kem)?.encode(out)?);
        }
        let _ = kem_one_time_id;
        Ok(self.pool.bundle(one_time_id).encode(out)?)
    }

    /// Encode this agent's hybrid prekey bundle (feature `ml-dsa`): the
    /// bundle of [`bundle`](Self::bundle), version 3, its signed prekey and
    /// KEM prekey signed by the identity's Ed25519 key and the agent's
    /// ML-DSA-65 key (hedged signatures: `rng` is drawn from). Peers that
    /// pinned our ML-DSA key accept only such bundles of us. `out` needs
    /// [`MAX_HYBRID_BUNDLE_LEN`](securemesh_ratchet::MAX_HYBRID_BUNDLE_LEN)
    /// (5.6 KB, 10.2 KB with the ML-KEM-768 prekey).
    /// [`Error::PqUnavailable`] if the agent does not run the hybrid
    /// channels ([`PqMode::Off`], `BYTES` below
    /// [`MIN_PQ_BYTES`](crate::pq::MIN_PQ_BYTES)) or has no ML-DSA key (it
    /// was restored from a record written without one).
    ///
    /// Signing expands the ML-DSA-65 key on the stack (the ratchet's
    /// feature `ml-dsa`: about 64 KiB while it signs, more in a debug
    /// build): call it on a thread with room for that.
    ///
    /// ```
    /// use securemesh::{Config, DefaultAgent, PqMode};
    /// use securemesh::peer::MlDsaPin;
    /// use securemesh_ratchet::{Bundle, Identity, MAX_HYBRID_BUNDLE_LEN};
    /// # std::thread::Builder::new().stack_size(16 << 20).spawn(|| {
    /// # let mut rng = securemesh_core::testing::TestRng::new(0x5eed_7002);
    /// let agent = Box::new(DefaultAgent::new_pq(Identity::generate(&mut rng), Config::default(), PqMode::Prefer, &mut rng, securemesh_core::UnixTime(1)));
    /// let mut buf = vec![0u8; MAX_HYBRID_BUNDLE_LEN];
    /// let n = agent.bundle_hybrid(&mut buf, &mut rng)?;
    /// let bundle = Bundle::decode(&buf[..n])?; // both halves of each signature verified
    /// let pq = bundle.pq().expect("a hybrid bundle");
    /// assert_eq!(Some(MlDsaPin::of(pq.public())), agent.ml_dsa_pin());
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// # }).unwrap().join().unwrap().unwrap();
    /// ```
    #[cfg(feature = "ml-dsa")]
    pub fn bundle_hybrid<R: CryptoRng + ?Sized>(&self, out: &mut [u8], rng: &mut R) -> Result<usize, Error> {
        self.bundle_hybrid_with(
            self.pool.one_time_ids().next(),
            self.pool.kem_one_time_ids().next(),
            out,
            rng,
        )
    }

    /// [`bundle_hybrid`](Self::bundle_hybrid) with the one-time prekey
    /// `one_time_id` and the one-time KEM prekey `kem_one_time_id`, as
    /// [`bundle_pq_with`](Self::bundle_pq_with) picks them.
    #[cfg(feature = "ml-dsa")]
    pub fn bundle_hybrid_with<R: CryptoRng + ?Sized>(
        &self,
        one_time_id: Option<u32>,
        kem_one_time_id: Option<u32>,
        out: &mut [u8],
        rng: &mut R,
    ) -> Result<usize, Error> {
        use securemesh_ratchet::{BundlePqStorage, PqIdentity};
        let seed = match &self.ml_dsa {
            Some(seed) if Self::runs_hybrid(self.pq) => seed,
            _ => return Err(Error::PqUnavailable),
        };
        let pq = PqIdentity::from_seed(&self.identity, seed);
        let mut storage = BundlePqStorage::new();
        let mut kem = [0u8; securemesh_ratchet::MAX_KEM_PUBLIC_LEN];
        let bundle = if self.pool_hybrid() {
            self.pool.bundle_pq(one_time_id, kem_one_time_id, &mut kem)?
        } else {
            self.pool.bundle(one_time_id)
        };
        Ok(bundle.sign_pq(&pq, rng, &mut storage)?.encode(out)?)
    }

    /// The pin of this agent's ML-DSA-65 key (feature `ml-dsa`), to give
    /// with its public identity when introducing it to peers
    /// ([`add_peer_identity_pinned`](Self::add_peer_identity_pinned));
    /// `None` if it has none (restored from a record written without
    /// one). Expands the key: not for a hot path.
    ///
    /// ```
    /// use securemesh::{Config, DefaultAgent};
    /// use securemesh_ratchet::Identity;
    /// # std::thread::Builder::new().stack_size(16 << 20).spawn(|| {
    /// # let mut rng = securemesh_core::testing::TestRng::new(0x5eed_7003);
    /// let agent = Box::new(DefaultAgent::new(Identity::generate(&mut rng), Config::default(), &mut rng, securemesh_core::UnixTime(1)));
    /// assert!(agent.ml_dsa_pin().is_some());
    /// # }).unwrap().join().unwrap();
    /// ```
    #[cfg(feature = "ml-dsa")]
    pub fn ml_dsa_pin(&self) -> Option<crate::peer::MlDsaPin> {
        let seed = self.ml_dsa.as_ref()?;
        let pq = securemesh_ratchet::PqIdentity::from_seed(&self.identity, seed);
        Some(crate::peer::MlDsaPin::of(pq.public()))
    }

    /// The identifiers of the one-time KEM prekeys in the pool (none in an
    /// X3DH pool).
    pub fn kem_prekey_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.pool.kem_one_time_ids()
    }

    /// The identifiers of the one-time prekeys in the pool.
    pub fn one_time_prekey_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.pool.one_time_ids()
    }

    /// The peer directory.
    pub fn directory(&self) -> &Directory<PEERS> {
        &self.directory
    }

    /// Know a peer by its id alone (its identity is learned in an XX
    /// handshake or from its bundle).
    pub fn add_peer(&mut self, id: PeerId) -> Result<(), Error> {
        self.directory.add(id)?;
        self.mark_agent();
        Ok(())
    }

    /// Know a peer by its identity (its Noise static key is then known);
    /// returns its id.
    pub fn add_peer_identity(&mut self, identity: &PublicIdentity) -> Result<PeerId, Error> {
        let id = self.directory.add_identity(identity)?;
        self.mark_agent();
        Ok(id)
    }

    /// [`add_peer_identity`](Self::add_peer_identity), with the pin of the
    /// peer's ML-DSA-65 key (its introduction names both; feature
    /// `ml-dsa`): from now on only hybrid bundles of the peer signed by
    /// that key are accepted ([`crate::peer`]). Refused with nothing
    /// changed if another key is pinned for it
    /// ([`DirectoryError::PinMismatch`](crate::peer::DirectoryError::PinMismatch)).
    ///
    /// ```
    /// use securemesh::{Config, DefaultAgent, Error, PqMode};
    /// use securemesh::peer::DirectoryError;
    /// use securemesh_ratchet::{Identity, MAX_BUNDLE_LEN};
    /// # std::thread::Builder::new().stack_size(16 << 20).spawn(|| {
    /// # let mut rng = securemesh_core::testing::TestRng::new(0x5eed_7004);
    /// # let wall = securemesh_core::UnixTime(1);
    /// let mut alice = Box::new(DefaultAgent::new_pq(Identity::generate(&mut rng), Config::default(), PqMode::Prefer, &mut rng, wall));
    /// let bob = Box::new(DefaultAgent::new_pq(Identity::generate(&mut rng), Config::default(), PqMode::Prefer, &mut rng, wall));
    /// let id = alice.add_peer_identity_pinned(bob.public_identity(), &bob.ml_dsa_pin().unwrap())?;
    /// // Bob's classical bundle is refused as a downgrade.
    /// let mut buf = [0u8; MAX_BUNDLE_LEN];
    /// let n = bob.bundle(&mut buf)?;
    /// assert_eq!(
    ///     alice.set_peer_bundle(&buf[..n]),
    ///     Err(Error::Directory(DirectoryError::BadBundle(securemesh_ratchet::Error::Downgrade)))
    /// );
    /// assert!(alice.directory().get(&id).unwrap().bundle().is_none());
    /// # Ok::<(), Error>(())
    /// # }).unwrap().join().unwrap().unwrap();
    /// ```
    #[cfg(feature = "ml-dsa")]
    pub fn add_peer_identity_pinned(
        &mut self,
        identity: &PublicIdentity,
        ml_dsa: &crate::peer::MlDsaPin,
    ) -> Result<PeerId, Error> {
        let id = PeerId::of(identity);
        if self.directory.get(&id).and_then(|p| p.ml_dsa_pin()).is_some_and(|p| p != ml_dsa) {
            return Err(Error::Directory(crate::peer::DirectoryError::PinMismatch));
        }
        let id = self.directory.add_identity(identity)?;
        self.directory.pin_ml_dsa(&id, ml_dsa)?;
        self.mark_agent();
        Ok(id)
    }

    /// Store a peer's prekey bundle (verified; the peer is added if
    /// unknown); returns its id. It is used by the next X3DH (PQXDH for a
    /// bundle with a KEM prekey) with that peer, then forgotten. A bundle
    /// with a KEM prekey marks the peer as running the hybrid channels
    /// ([`PeerInfo::is_hybrid`](crate::peer::PeerInfo::is_hybrid)); an
    /// agent that does not run them refuses it ([`Error::PqUnavailable`],
    /// without the feature `pq` as `Directory(BundleTooLong)`): its X3DH
    /// to the peer would be refused as a downgrade.
    ///
    /// With the feature `ml-dsa` ([`crate::peer`]): a hybrid (version-3)
    /// bundle pins the peer's ML-DSA-65 key on first use (counted in
    /// [`Metrics::hybrid_bundles`]); a pinned peer's classical bundle is
    /// refused as a downgrade and a bundle with another ML-DSA key as
    /// `WrongIdentity` (`Directory(BadBundle(..))`, counted in
    /// [`Metrics::pq_refused`]) in every mode; an agent that does not run
    /// the hybrid channels refuses a hybrid bundle
    /// ([`Error::PqUnavailable`]), and one under [`PqMode::Require`] a
    /// classical one ([`Error::PqRequired`]). Nothing changed on error.
    /// A hybrid bundle (5.6 KB, 10.2 KB with the ML-KEM-768 prekey) is
    /// verified once, here (ML-DSA-65 expands the verifying key on the
    /// stack, about 42 KiB), and stored without its ML-DSA section.
    pub fn set_peer_bundle(&mut self, bundle: &[u8]) -> Result<PeerId, Error> {
        let decoded = securemesh_ratchet::Bundle::decode(bundle)
            .map_err(|e| Error::Directory(crate::peer::DirectoryError::BadBundle(e)))?;
        if let Err(e) = self.check_bundle_pq(&decoded) {
            self.metrics.pq_refused = self.metrics.pq_refused.saturating_add(1);
            return Err(e);
        }
        let id = match self.directory.store_bundle(bundle, &decoded) {
            Ok(id) => id,
            Err(
                e @ crate::peer::DirectoryError::BadBundle(
                    securemesh_ratchet::Error::Downgrade | securemesh_ratchet::Error::WrongIdentity,
                ),
            ) => {
                // A pinned peer's classical bundle, or another ML-DSA key.
                self.metrics.pq_refused = self.metrics.pq_refused.saturating_add(1);
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        #[cfg(feature = "ml-dsa")]
        if decoded.pq().is_some() {
            self.metrics.hybrid_bundles = self.metrics.hybrid_bundles.saturating_add(1);
        }
        self.mark_agent();
        Ok(id)
    }

    /// The post-quantum checks of a peer's bundle by the agent's mode
    /// ([`crate::pq`]): a KEM prekey or (feature `ml-dsa`) an ML-DSA
    /// section the agent does not run is [`Error::PqUnavailable`]; under
    /// [`PqMode::Require`] with the feature `ml-dsa`, a bundle without the
    /// ML-DSA section is [`Error::PqRequired`]. Without the feature `pq`
    /// the directory refuses a KEM bundle by its length.
    fn check_bundle_pq(&self, bundle: &securemesh_ratchet::Bundle<'_>) -> Result<(), Error> {
        let hybrid = Self::runs_hybrid(self.pq);
        if cfg!(feature = "pq") && !hybrid && bundle.kem().is_some() {
            return Err(Error::PqUnavailable);
        }
        #[cfg(feature = "ml-dsa")]
        match bundle.pq() {
            Some(_) if !hybrid => return Err(Error::PqUnavailable),
            None if self.pq.requires() => return Err(Error::PqRequired),
            _ => {}
        }
        Ok(())
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

    /// The authorization table, to define roles and grant them. The
    /// policy is part of the persisted agent record, so with persistence
    /// on this marks the record changed.
    pub fn policy_mut(&mut self) -> &mut Policy<PEERS> {
        self.mark_agent();
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
            confirmed: e.confirm_by.is_none(),
            pq: e.pq,
            kind: match e.state {
                State::Handshake { .. } => SessionKind::NoiseHandshake,
                State::Noise(_) => SessionKind::Noise,
                State::Datagram(_) => SessionKind::NoiseDatagram,
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
        // Datagram sessions (and their handshakes) carry telemetry only:
        // not a route for messages.
        for e in self.sessions.iter().flatten().filter(|e| e.peer == *peer) {
            match e.state {
                State::Noise(_) => noise = NoiseStatus::Established,
                State::Handshake { .. } if is_datagram(e.id) => {}
                State::Handshake { .. } if noise == NoiseStatus::None => noise = NoiseStatus::Handshaking,
                State::Handshake { .. } => {}
                State::Ratchet(_) => ratchet_session = true,
                State::Datagram(_) => {}
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
        // A stream transport is superseded by a newer stream transport, a
        // datagram transport by a newer datagram transport.
        let kind = |e: &Entry| match e.state {
            State::Noise(_) => Some(false),
            State::Datagram(_) => Some(true),
            _ => None,
        };
        let superseded = |e: &Entry| {
            kind(e).is_some()
                && self.sessions.iter().flatten().any(|o| {
                    o.peer == e.peer && kind(o) == kind(e) && o.confirm_by.is_none() && o.order > e.order
                })
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
    fn new_session_id<R: CryptoRng + ?Sized>(&self, peer: &PeerId, rng: &mut R, datagram: bool) -> SessionId {
        loop {
            let r = rng.next_u64();
            let id = SessionId(if datagram { r | DATAGRAM_SESSION } else { r & !DATAGRAM_SESSION });
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

    /// Send `payload` of `kind` to a peer or a group.
    ///
    /// To a peer (`&PeerId`): route it by the matrix
    /// ([`Event::RouteChosen`]), start a handshake or a ratchet session if
    /// the route needs one, encrypt and queue. A message routed to a Noise
    /// handshake waits in the queue until the handshake completes; one for
    /// a transport that is not confirmed yet (an IK session the peer
    /// opened, see [`SessionInfo::confirmed`]) waits for its
    /// confirmation.
    ///
    /// To a group (`&GroupId`): an MLS application message of the current
    /// epoch, queued for the group's fan-out ([`Delivery::Group`]); the
    /// route is `(Channel::Mls, Reason::Group)` (no `RouteChosen` event:
    /// there is no peer). See [`crate::group`].
    ///
    /// On error nothing changed (nothing queued, no session started, no
    /// event).
    pub fn send<R: CryptoRng + ?Sized>(
        &mut self,
        to: &(impl Recipient + ?Sized),
        kind: MessageKind,
        payload: &[u8],
        now: Instant,
        rng: &mut R,
    ) -> Result<Route, Error> {
        if !kind.is_valid() {
            return Err(Error::ReservedKind(kind));
        }
        let peer = match to.destination() {
            Destination::Group(g) => return self.send_group(g, kind, payload, rng),
            Destination::Peer(p) => p,
        };
        let peer = &peer;
        let route = self.route_for(peer, Purpose::Message)?;
        match route.channel {
            Channel::NoiseSession => self.send_noise_session(peer, kind, payload, false)?,
            Channel::NoiseIk | Channel::NoiseXx => {
                self.send_noise_new(peer, route.channel, kind, payload, now, rng, false)?
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

    /// Encrypt the plaintext staged in slot `i` as a datagram (`scratch`
    /// holds it meanwhile, and is wiped) and write the envelope header;
    /// returns the envelope length.
    fn seal_datagram_slot(
        slot: &mut Slot<BYTES>,
        d: &mut DatagramTransport,
        scratch: &mut [u8; BYTES],
        sender: &PeerId,
        session: SessionId,
        plain: usize,
    ) -> Result<usize, Error> {
        let staged =
            scratch.get_mut(..plain).ok_or(Error::PayloadTooLong { max: Self::MAX_DATAGRAM_PAYLOAD })?;
        staged.copy_from_slice(
            slot.buf
                .get(HEADER_LEN..add(HEADER_LEN, plain)?)
                .ok_or(Error::PayloadTooLong { max: Self::MAX_DATAGRAM_PAYLOAD })?,
        );
        let body = slot.buf.get_mut(HEADER_LEN..).ok_or(Error::PayloadTooLong { max: 0 })?;
        let sealed = d.seal(staged, body);
        staged.fill(0);
        let n = sealed?;
        write_header(&mut slot.buf, ChannelKind::NoiseDatagram, sender, session, n)?;
        add(HEADER_LEN, n)
    }

    /// Largest telemetry payload ([`send_telemetry`](Self::send_telemetry)).
    pub const MAX_DATAGRAM_PAYLOAD: usize = BYTES.saturating_sub(HEADER_LEN + 1 + DATAGRAM_OVERHEAD);

    /// Send loss-tolerant `payload` of `kind` (telemetry) to `peer` over
    /// the Noise **datagram** transport ([`Purpose::Telemetry`] in the
    /// [matrix](crate::route)): each datagram carries its counter, may be
    /// lost or reordered, and is accepted at most once (a replay window of
    /// 2048). The peer must be reachable ([`NoRoute::TelemetryNeedsOnline`](crate::route::NoRoute::TelemetryNeedsOnline)
    /// otherwise: telemetry is never stored in a mailbox). The first
    /// datagram to a peer opens a Noise handshake (IK when its static key
    /// is known, XX otherwise) whose session id carries
    /// [`DATAGRAM_SESSION`], and waits for it; datagram sessions are
    /// separate from the stream sessions of [`send`](Self::send), never
    /// persisted, and checked against the policy like any message.
    /// [`Event::RouteChosen`] reports `(Channel::NoiseDatagram,
    /// Reason::LossTolerant)`. On error nothing changed.
    pub fn send_telemetry<R: CryptoRng + ?Sized>(
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
        if payload.len() > Self::MAX_DATAGRAM_PAYLOAD {
            return Err(Error::PayloadTooLong { max: Self::MAX_DATAGRAM_PAYLOAD });
        }
        let route = self.route_for(peer, Purpose::Telemetry)?;
        let open = self.sessions.iter().flatten().any(|e| {
            e.peer == *peer
                && matches!(e.state, State::Datagram(_) | State::Handshake { .. })
                && is_datagram(e.id)
        });
        if open {
            self.send_noise_session(peer, kind, payload, true)?;
        } else {
            let static_known = self.directory.get(peer).is_some_and(|p| p.static_key().is_some());
            let channel = if static_known { Channel::NoiseIk } else { Channel::NoiseXx };
            self.send_noise_new(peer, channel, kind, payload, now, rng, true)?;
        }
        self.counters.sent = self.counters.sent.saturating_add(1);
        self.events.push(Event::RouteChosen { peer: *peer, route });
        Ok(route)
    }

    /// Send on the newest established Noise transport with `peer` (stream
    /// or, for `datagram`, datagram), or queue behind its handshake.
    fn send_noise_session(
        &mut self,
        peer: &PeerId,
        kind: MessageKind,
        payload: &[u8],
        datagram: bool,
    ) -> Result<(), Error> {
        let [i] = self.free_slots::<1>()?;
        // The newest transport: after a peer's restart, the one it knows.
        let established = self
            .sessions
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|e| (i, e)))
            .filter(|(_, e)| {
                e.peer == *peer
                    && match e.state {
                        State::Noise(_) => !datagram,
                        State::Datagram(_) => datagram,
                        _ => false,
                    }
            })
            .max_by_key(|(_, e)| e.order)
            .map(|(i, _)| i);
        let handshaking = self.sessions.iter().flatten().find(|e| {
            e.peer == *peer && is_datagram(e.id) == datagram && matches!(e.state, State::Handshake { .. })
        });
        let handshaking = handshaking.map(|e| e.id);
        let plain = self.stage_plaintext(i, kind, payload)?;
        // Only an unconfirmed transport: hold the message until it is
        // confirmed (or dropped).
        let unconfirmed = established
            .and_then(|si| self.sessions.get(si))
            .and_then(|e| e.as_ref())
            .filter(|e| e.confirm_by.is_some())
            .map(|e| e.id);
        if let Some(session) = unconfirmed {
            self.await_handshake(i, peer, session, plain);
        } else if let Some(si) = established {
            let sender = self.id;
            let slot = self.queue.get_mut(i).ok_or(Error::QueueFull)?;
            let sealed = match self.sessions.get_mut(si) {
                Some(Some(Entry { id, state: State::Noise(t), .. })) => {
                    Self::seal_slot(slot, t, &sender, *id, plain)
                }
                Some(Some(Entry { id, state: State::Datagram(d), .. })) => {
                    Self::seal_datagram_slot(slot, d, &mut self.scratch, &sender, *id, plain)
                }
                _ => Err(Error::UnknownSession),
            };
            match sealed {
                Ok(len) => {
                    self.commit_slot(i, *peer, Delivery::Direct, len);
                    self.metrics.noise.sent = self.metrics.noise.sent.saturating_add(1);
                }
                Err(e) => {
                    slot.clear();
                    return Err(e);
                }
            }
        } else {
            let Some(session) = handshaking else {
                if let Some(s) = self.queue.get_mut(i) {
                    s.clear();
                }
                return Err(Error::UnknownSession);
            };
            self.await_handshake(i, peer, session, plain);
        }
        Ok(())
    }

    /// Seal and release what waited for transport `si` (its handshake, or
    /// its key confirmation), in the order it was sent.
    fn release_awaiting(&mut self, si: usize) {
        let sender = self.id;
        let Some(Some(Entry { peer, id, .. })) = self.sessions.get(si) else { return };
        let (peer, session) = (*peer, *id);
        loop {
            let next = self
                .queue
                .iter()
                .enumerate()
                .filter(|(_, s)| s.status == SlotStatus::Awaiting(session) && s.to == peer)
                .min_by_key(|(_, s)| s.seq)
                .map(|(i, _)| i);
            let Some(i) = next else { break };
            let Some(slot) = self.queue.get_mut(i) else { break };
            let plain = slot.len;
            let sealed = match self.sessions.get_mut(si) {
                Some(Some(Entry { state: State::Datagram(d), .. })) => {
                    Self::seal_datagram_slot(slot, d, &mut self.scratch, &sender, session, plain)
                }
                Some(Some(Entry { state: State::Noise(t), .. })) => {
                    Self::seal_slot(slot, t, &sender, session, plain)
                }
                _ => Err(Error::UnknownSession),
            };
            match sealed {
                Ok(len) => {
                    self.commit_slot(i, peer, Delivery::Direct, len);
                    self.metrics.noise.sent = self.metrics.noise.sent.saturating_add(1);
                }
                // Only a nonce exhaustion could refuse this; drop the message.
                Err(_) => slot.clear(),
            }
        }
    }

    /// Slot `i` (`plain` bytes staged) waits for handshake `session`.
    fn await_handshake(&mut self, i: usize, peer: &PeerId, session: SessionId, plain: usize) {
        let seq = self.take_seq();
        if let Some(s) = self.queue.get_mut(i) {
            s.status = SlotStatus::Awaiting(session);
            s.to = *peer;
            s.delivery = Delivery::Direct;
            s.seq = seq;
            s.len = plain;
        }
    }

    /// Our Noise static key: the identity's X25519 key.
    fn noise_static(&self) -> Keypair {
        Keypair::from_secret(self.identity.dh_secret().duplicate())
    }

    #[allow(clippy::too_many_arguments)]
    fn send_noise_new<R: CryptoRng + ?Sized>(
        &mut self,
        peer: &PeerId,
        channel: Channel,
        kind: MessageKind,
        payload: &[u8],
        now: Instant,
        rng: &mut R,
        datagram: bool,
    ) -> Result<(), Error> {
        let si = self.free_session()?;
        let [hi, pi] = self.free_slots::<2>()?;
        Self::check_noise_len(payload)?;
        // `hfs` with a peer known to run it (always under Require); see
        // `crate::pq`.
        let needs = self.needs_hybrid(peer);
        let hfs = Self::runs_hybrid(self.pq) && needs;
        if needs && !hfs {
            self.metrics.pq_refused = self.metrics.pq_refused.saturating_add(1);
            return Err(Error::PqRequired);
        }
        let (pattern, remote) = match channel {
            Channel::NoiseIk => {
                let rs = self
                    .directory
                    .get(peer)
                    .and_then(|p| p.static_key().copied())
                    .ok_or(Error::UnknownPeer)?;
                (if hfs { ChannelKind::NoiseIkHfs } else { ChannelKind::NoiseIk }, Some(rs))
            }
            _ => (if hfs { ChannelKind::NoiseXxHfs } else { ChannelKind::NoiseXx }, None),
        };
        let protocol = protocol_of(pattern)?;
        let session = self.new_session_id(peer, rng, datagram);
        let prologue = handshake_prologue(pattern, &self.id, peer, session);
        let mut b = Builder::new(protocol).prologue(&prologue).local_static(self.noise_static());
        if let Some(rs) = remote {
            b = b.remote_static(rs);
        }
        let mut hs = b.build_initiator()?;
        // IK sends our identity in the first message (with our static key);
        // XX in the third.
        let identity = self.identity.public().to_bytes();
        let hs_payload: &[u8] = if pattern.is_ik() { &identity } else { &[] };
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
        self.await_handshake(pi, peer, session, plain);
        let deadline =
            now.saturating_add(core::time::Duration::from_millis(self.config.handshake_timeout_ms));
        let order = self.next_order();
        if let Some(s) = self.sessions.get_mut(si) {
            *s = Some(Entry {
                confirm_by: None,
                peer: *peer,
                id: session,
                order,
                pq: status_of(pattern),
                state: State::Handshake { hs, pattern, deadline, started: now },
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
        result?;
        self.metrics.ratchet.sent = self.metrics.ratchet.sent.saturating_add(1);
        Ok(())
    }

    /// `peer` sent on a session we do not hold: if we hold no ratchet
    /// session with it at all (our state was lost), know its bundle and
    /// let it open sessions, open a new session from the bundle with the
    /// [`REESTABLISH`] control message, so the peer moves to it
    /// ([`Event::ReestablishRequested`]); `Ok(None)`. Otherwise
    /// [`Error::UnknownSession`] and nothing changed.
    ///
    /// The envelope's sender is not authenticated (it could not be
    /// decrypted), so a forger can trigger this. What bounds it: only an
    /// agent with no ratchet session with `peer` answers, and the answer
    /// leaves one (persisted before its message is released), so every
    /// later unknown session from `peer` is refused, across restarts too;
    /// and the X3DH spends the stored bundle, so the peer's one-time
    /// prekeys are used at most once per bundle the host supplied.
    fn reestablish<R: CryptoRng + ?Sized>(
        &mut self,
        peer: &PeerId,
        unknown: SessionId,
        now: Instant,
        rng: &mut R,
    ) -> Result<Option<Received>, Error> {
        let has_session =
            self.sessions.iter().flatten().any(|e| e.peer == *peer && matches!(e.state, State::Ratchet(_)));
        let bundle_known = self.directory.get(peer).is_some_and(|p| p.bundle().is_some());
        if has_session || !bundle_known || !self.may_open(peer) {
            return Err(Error::UnknownSession);
        }
        let [i] = self.free_slots::<1>()?;
        let staged = self.scratch.get_mut(..REESTABLISH.len()).ok_or(Error::QueueFull)?;
        staged.copy_from_slice(&REESTABLISH);
        let result = self.ratchet_encrypt(i, peer, Channel::RatchetX3dh, REESTABLISH.len(), now, rng);
        self.scratch.fill(0);
        result?;
        let session = self
            .sessions
            .iter()
            .flatten()
            .filter(|e| e.peer == *peer && matches!(e.state, State::Ratchet(_)))
            .map(|e| e.id)
            .next()
            .ok_or(Error::UnknownSession)?;
        self.metrics.ratchet.failures = self.metrics.ratchet.failures.saturating_add(1);
        self.metrics.reestablish_requested = self.metrics.reestablish_requested.saturating_add(1);
        self.events.push(Event::ReestablishRequested { peer: *peer, session, unknown });
        Ok(None)
    }

    /// Whether a classical channel with `peer` is refused: under
    /// [`PqMode::Require`] always, under [`PqMode::Prefer`] (when this
    /// agent runs the hybrid channels) with a peer known to run them
    /// ([`crate::pq`]).
    fn needs_hybrid(&self, peer: &PeerId) -> bool {
        let mode = self.pq;
        mode.requires()
            || (Self::runs_hybrid(mode) && self.directory.get(peer).is_some_and(|p| p.is_hybrid()))
    }

    /// A new session from `peer`'s bundle: PQXDH if the bundle has a KEM
    /// prekey (the peer refuses X3DH to it as a downgrade), else X3DH,
    /// which [`PqMode::Require`] refuses ([`Error::PqRequired`]), as does
    /// [`PqMode::Prefer`] with a peer known to run the hybrid channels;
    /// see [`crate::pq`].
    fn initiate<R: CryptoRng + ?Sized>(
        &self,
        peer: &PeerId,
        bundle: &securemesh_ratchet::Bundle<'_>,
        rng: &mut R,
        now: Instant,
    ) -> Result<(RatchetSession, PqStatus), Error> {
        let mode = self.pq;
        if bundle.kem().is_none() {
            if self.needs_hybrid(peer) {
                return Err(Error::PqRequired);
            }
            let s = RatchetSession::initiate(&self.identity, bundle, self.config.ratchet, rng, now)?;
            return Ok((s, PqStatus::Classical));
        }
        if !Self::runs_hybrid(mode) {
            return Err(Error::PqUnavailable);
        }
        #[cfg(feature = "pq")]
        {
            let s = RatchetSession::initiate_pq(&self.identity, bundle, self.config.ratchet, rng, now)?;
            Ok((s, PqStatus::Hybrid))
        }
        #[cfg(not(feature = "pq"))]
        Err(Error::PqUnavailable)
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
        let mut fresh: Option<(usize, SessionId, RatchetSession, PqStatus)> = None;
        let existing = if channel == Channel::RatchetX3dh {
            let si = self.free_session()?;
            let stored =
                self.directory.get(peer).and_then(|p| p.bundle().copied()).ok_or(Error::UnknownPeer)?;
            let bundle = stored.bundle()?;
            let (s, pq) = match self.initiate(peer, &bundle, rng, now) {
                Ok(s) => s,
                Err(e) => {
                    if matches!(e, Error::PqRequired | Error::PqUnavailable) {
                        self.metrics.pq_refused = self.metrics.pq_refused.saturating_add(1);
                    }
                    return Err(e);
                }
            };
            fresh = Some((si, self.new_session_id(peer, rng, false), s, pq));
            None
        } else {
            // The newest ratchet session with the peer.
            self.sessions
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().map(|e| (i, e)))
                .filter(|(_, e)| e.peer == *peer && matches!(e.state, State::Ratchet(_)))
                .max_by_key(|(_, e)| e.order)
                .map(|(i, _)| i)
        };
        let target = fresh.as_ref().map(|(si, ..)| *si).or(existing);
        let plaintext = self.scratch.get(..plain).ok_or(Error::PayloadTooLong { max: 0 })?;
        let (session, id) = match (&mut fresh, existing) {
            (Some((_, id, s, _)), _) => (s, *id),
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
        if let Some((si, id, s, pq)) = fresh
            && let Some(e) = self.sessions.get_mut(si)
        {
            *e = Some(Entry { peer: *peer, id, order, confirm_by: None, pq, state: State::Ratchet(s) });
            if pq == PqStatus::Hybrid {
                self.metrics.pqxdh_sessions = self.metrics.pqxdh_sessions.saturating_add(1);
            }
            // The bundle's one-time prekey is spent.
            let _ = self.directory.take_bundle(peer);
            self.mark_agent();
        }
        if let Some(si) = target {
            self.session_changed(si);
        }
        self.commit_slot(i, *peer, Delivery::Mailbox, add(HEADER_LEN, n)?);
        Ok(())
    }

    /// The oldest envelope ready to send, copied into `buf`. With a `buf`
    /// too small, [`Error::BufferTooSmall`] and nothing changed.
    ///
    /// While a record is waiting for [`poll_persist`](Self::poll_persist)
    /// this returns `Ok(None)`: what a call produced is released only
    /// after the state it leaves behind was handed out to be stored (see
    /// [`crate::persist`]). Handing a group's Welcome out marks its record,
    /// so loop `poll_persist` / `poll_transmit` until both give `None`.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Result<Option<Transmit>, Error> {
        if self.persist_pending() {
            return Ok(None);
        }
        let queued = self.queue.iter().filter(|s| s.status == SlotStatus::Ready).map(|s| s.seq).min();
        if let Some(t) = self.poll_group_transmit(queued, buf)? {
            return Ok(Some(t));
        }
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
    /// earliest handshake deadline, key-confirmation deadline of an IK
    /// responder's transport, or ratchet heartbeat, or `None`. A
    /// restored ratchet session is due at once ([`Instant::ZERO`]): its
    /// heartbeat deadline is placed on the caller's clock by the first
    /// `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions
            .iter()
            .flatten()
            .filter_map(|e| match &e.state {
                State::Handshake { deadline, .. } => Some(*deadline),
                State::Ratchet(s) => s.poll_timeout(),
                State::Noise(_) | State::Datagram(_) => e.confirm_by,
            })
            .min()
    }

    /// Drop the handshakes whose deadline has passed, and the IK
    /// responder transports not confirmed by a message of the initiator
    /// within the handshake timeout (the initiator dropped its side), with
    /// the messages waiting for them, each reported as
    /// [`Event::HandshakeFailed`], and
    /// send a heartbeat on every ratchet session whose DH ratchet has not
    /// stepped for [`SessionConfig::heartbeat_ms`]: an empty message
    /// through the peer's mailbox ([`Event::HeartbeatSent`]), whose answer
    /// steps the ratchet, so a stolen session state stops being useful
    /// (post-compromise recovery). The receiving agent counts a heartbeat
    /// and delivers nothing. With the queue full the heartbeat is skipped
    /// until the next step.
    pub fn handle_timeout<R: CryptoRng + ?Sized>(&mut self, now: Instant, rng: &mut R) {
        for i in 0..SESSIONS {
            let expired = match self.sessions.get(i) {
                Some(Some(Entry { state: State::Handshake { deadline, .. }, .. })) => *deadline <= now,
                Some(Some(e)) => e.confirm_by.is_some_and(|d| d <= now),
                _ => false,
            };
            if expired {
                self.drop_unconfirmed_older(i);
                self.drop_handshake(i, HandshakeFailure::TimedOut);
            }
            let due = match self.sessions.get_mut(i) {
                Some(Some(Entry { state: State::Ratchet(s), .. })) => {
                    s.handle_timeout(now);
                    let mut due = false;
                    while let Some(e) = s.poll_event() {
                        due |= e == SessionEvent::HeartbeatDue;
                    }
                    due
                }
                _ => false,
            };
            if due {
                // Heartbeat reported: part of the session's state.
                self.session_changed(i);
                // Only the session the conversation uses (the newest ratchet
                // session with the peer) is kept stepping: a heartbeat on an
                // older one would move the conversation back onto it.
                let newest = self.sessions.get(i).and_then(Option::as_ref).is_some_and(|e| {
                    !self.sessions.iter().flatten().any(|o| {
                        o.peer == e.peer && matches!(o.state, State::Ratchet(_)) && o.order > e.order
                    })
                });
                if newest {
                    let _ = self.send_heartbeat(i, now, rng);
                }
            }
        }
    }

    /// Queue an empty ratchet message on session `si`.
    fn send_heartbeat<R: CryptoRng + ?Sized>(
        &mut self,
        si: usize,
        now: Instant,
        rng: &mut R,
    ) -> Result<(), Error> {
        let [q] = self.free_slots::<1>()?;
        let sender = self.id;
        let Some(Some(Entry { peer, id, state: State::Ratchet(s), .. })) = self.sessions.get_mut(si) else {
            return Err(Error::UnknownSession);
        };
        let (peer, id) = (*peer, *id);
        let slot = self.queue.get_mut(q).ok_or(Error::QueueFull)?;
        let channel =
            if s.awaiting_reply() { ChannelKind::RatchetInitial } else { ChannelKind::RatchetMessage };
        let body = slot.buf.get_mut(HEADER_LEN..).ok_or(Error::QueueFull)?;
        let n = match s.encrypt(&[], body, rng, now) {
            Ok(n) => n,
            Err(e) => {
                slot.clear();
                return Err(e.into());
            }
        };
        write_header(&mut slot.buf, channel, &sender, id, n)?;
        self.commit_slot(q, peer, Delivery::Mailbox, add(HEADER_LEN, n)?);
        self.session_changed(si);
        self.metrics.ratchet.heartbeats_sent = self.metrics.ratchet.heartbeats_sent.saturating_add(1);
        self.events.push(Event::HeartbeatSent { peer, session: id });
        Ok(())
    }

    /// Ratchet session `si` changed: count its DH steps and mark its
    /// record for persistence.
    fn session_changed(&mut self, si: usize) {
        if let Some(Some(Entry { state: State::Ratchet(s), .. })) = self.sessions.get_mut(si) {
            while let Some(e) = s.poll_event() {
                if matches!(e, SessionEvent::RatchetStepped { .. }) {
                    self.metrics.ratchet_steps = self.metrics.ratchet_steps.saturating_add(1);
                }
            }
        }
        self.mark_slot(si);
    }

    /// The agent record changed.
    fn mark_agent(&mut self) {
        if self.storage.is_some()
            && let Some(generation) = self.agent_record.mark()
        {
            self.events.push(Event::Persist { record: RecordId::Agent, generation });
        }
    }

    /// Session slot `si`'s record changed.
    fn mark_slot(&mut self, si: usize) {
        if self.storage.is_none() {
            return;
        }
        let (Some(g), Ok(n)) = (self.slot_records.get_mut(si), u16::try_from(si)) else { return };
        if let Some(generation) = g.mark() {
            self.events.push(Event::Persist { record: RecordId::Session(n), generation });
        }
    }

    /// Drain the pool's events: refill a low pool, report rotations.
    fn pool_events<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) {
        while let Some(e) = self.pool.poll_event() {
            self.mark_agent();
            match e {
                PrekeyEvent::PoolLow { .. } => {
                    let added = u32::try_from(self.pool.refill(rng)).unwrap_or(u32::MAX);
                    self.metrics.prekey_refills = self.metrics.prekey_refills.saturating_add(1);
                    self.events.push(Event::PrekeysRefilled { added, available: self.pool.available() });
                }
                PrekeyEvent::SignedPrekeyRotated { id } => {
                    self.metrics.signed_prekey_rotations =
                        self.metrics.signed_prekey_rotations.saturating_add(1);
                    self.events.push(Event::SignedPrekeyRotated { id });
                }
                PrekeyEvent::PreviousSignedPrekeyErased { id } => {
                    self.events.push(Event::SignedPrekeyErased { id });
                }
            }
        }
        self.refill_kem(rng);
    }

    /// Refill the one-time KEM prekeys of a PQXDH pool once the share used
    /// reaches the pool's refill threshold (the ratchet's pool reports
    /// only its X25519 one-time prekeys low). A failure leaves the pool as
    /// it was (tried again after the next consumption); the last-resort
    /// KEM prekey serves meanwhile.
    fn refill_kem<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) {
        let available = usize::try_from(self.pool.kem_available()).unwrap_or(usize::MAX);
        let used = KEM_PREKEYS.saturating_sub(available);
        let threshold = usize::from(self.config.prekeys.refill_threshold_percent);
        if used == 0 || used.saturating_mul(100) < threshold.saturating_mul(KEM_PREKEYS) {
            return;
        }
        #[cfg(feature = "pq")]
        if let Ok(added) = self.pool.refill_kem(&self.identity, rng)
            && added > 0
        {
            self.mark_agent();
            self.metrics.kem_prekey_refills = self.metrics.kem_prekey_refills.saturating_add(1);
            self.events.push(Event::KemPrekeysRefilled {
                added: u32::try_from(added).unwrap_or(u32::MAX),
                available: self.pool.kem_available(),
            });
        }
        #[cfg(not(feature = "pq"))]
        let _ = rng;
    }

    /// When [`handle_prekey_timeout`](Self::handle_prekey_timeout) is next
    /// due, in wall-clock time: the signed prekey's rotation, or the end
    /// of the previous one's grace period.
    pub fn poll_prekey_timeout(&self) -> Option<UnixTime> {
        self.pool.poll_timeout()
    }

    /// Rotate the signed prekey when due ([`Event::SignedPrekeyRotated`]:
    /// publish a new bundle) and erase the previous one after its grace
    /// period ([`Event::SignedPrekeyErased`]), by the pool's
    /// [`PrekeyConfig`]. `now` is wall-clock time (prekey ages outlive
    /// restarts). An error changes nothing.
    pub fn handle_prekey_timeout<R: CryptoRng + ?Sized>(
        &mut self,
        now: UnixTime,
        rng: &mut R,
    ) -> Result<(), Error> {
        self.pool.handle_timeout(&self.identity, rng, now)?;
        self.pool_events(rng);
        Ok(())
    }

    /// Whether a record waits for [`poll_persist`](Self::poll_persist)
    /// (and so holds [`poll_transmit`](Self::poll_transmit) back).
    pub fn persist_pending(&self) -> bool {
        self.agent_record.pending.is_some()
            || self.key_package_record.pending.is_some()
            || self.slot_records.iter().chain(self.group_records.iter()).any(|g| g.pending.is_some())
    }

    /// Turn persistence on with the host's storage key: from now on every
    /// change of durable state raises [`Event::Persist`] and holds
    /// transmits back until [`poll_persist`](Self::poll_persist) handed
    /// the record out. The agent record and every ratchet session's record
    /// are marked at once (their first save).
    pub fn enable_persistence(&mut self, key: StorageKey) {
        self.storage = Some(key);
        self.mark_agent();
        for i in 0..SESSIONS {
            if matches!(self.sessions.get(i), Some(Some(Entry { state: State::Ratchet(_), .. }))) {
                self.mark_slot(i);
            }
        }
        for i in 0..GROUPS {
            if self.groups.get(i).is_some_and(GroupSlot::is_used) {
                self.mark_group(i);
            }
        }
        if self.own_key_packages.iter().any(Option::is_some)
            || self.peer_key_packages.iter().any(Option::is_some)
        {
            self.mark_key_packages();
        }
    }

    /// Largest sealed agent record.
    pub const MAX_AGENT_RECORD_LEN: usize = persist::Bounds::<PEERS, PREKEYS>::AGENT;
    /// Largest sealed session record.
    pub const MAX_SESSION_RECORD_LEN: usize =
        persist::Bounds::<RATCHET_MAX_SKIP, RATCHET_SKIPPED_KEYS>::SESSION;
    /// Largest sealed record of any kind: a buffer of this size serves
    /// every [`poll_persist`](Self::poll_persist), and as `scratch` every
    /// restore. (With `GROUPS > 0` the group record dominates:
    /// [`MAX_GROUP_RECORD_LEN`](Self::MAX_GROUP_RECORD_LEN).)
    pub const MAX_RECORD_LEN: usize = {
        let a = max(Self::MAX_AGENT_RECORD_LEN, Self::MAX_SESSION_RECORD_LEN);
        let b = max(a, Self::MAX_KEY_PACKAGE_RECORD_LEN);
        if GROUPS > 0 { max(b, Self::MAX_GROUP_RECORD_LEN) } else { b }
    };

    /// The next record to store, sealed into `buf` (session records first,
    /// then the agent record), or `None` when every change was handed
    /// out. The host **MUST** store it under its [`RecordId`] and record
    /// its generation in monotonic storage before it transmits anything
    /// or acts on a delivered message. With a `buf` too small,
    /// [`Error::BufferTooSmall`] (use [`MAX_RECORD_LEN`](Self::MAX_RECORD_LEN))
    /// and nothing changed. `rng` draws the seal's nonce.
    pub fn poll_persist<R: CryptoRng + ?Sized>(
        &mut self,
        buf: &mut [u8],
        rng: &mut R,
    ) -> Result<Option<PersistRecord>, Error> {
        let Some(key) = self.storage.as_ref() else { return Ok(None) };
        let record = if let Some(i) = self.slot_records.iter().position(|g| g.pending.is_some()) {
            let generation = self.slot_records.get(i).and_then(|g| g.pending).ok_or(Error::WrongRecord)?;
            let n = u16::try_from(i).map_err(|_| Error::WrongRecord)?;
            let parts = match self.sessions.get(i) {
                Some(Some(Entry { peer, id, order, pq, state: State::Ratchet(s), .. })) => {
                    Some((peer, *id, *order, *pq, s))
                }
                _ => None,
            };
            let len = persist::seal_slot(key, generation, rng, buf, &self.id, n, parts)?;
            if let Some(g) = self.slot_records.get_mut(i) {
                g.pending = None;
            }
            PersistRecord { id: RecordId::Session(n), generation, len }
        } else if let Some(i) = self.group_records.iter().position(|g| g.pending.is_some()) {
            let generation = self.group_records.get(i).and_then(|g| g.pending).ok_or(Error::WrongRecord)?;
            let n = u16::try_from(i).map_err(|_| Error::WrongRecord)?;
            let slot = self.groups.get(i).ok_or(Error::WrongRecord)?;
            let len = persist::seal_group(key, generation, rng, buf, &self.id, n, slot)?;
            if let Some(g) = self.group_records.get_mut(i) {
                g.pending = None;
            }
            PersistRecord { id: RecordId::Group(n), generation, len }
        } else if let Some(generation) = self.key_package_record.pending {
            let parts = (&self.own_key_packages, &self.peer_key_packages);
            let len = persist::seal_key_packages(key, generation, rng, buf, &self.id, parts)?;
            self.key_package_record.pending = None;
            PersistRecord { id: RecordId::KeyPackages, generation, len }
        } else if let Some(generation) = self.agent_record.pending {
            let parts = AgentParts {
                owner: &self.id,
                identity: &self.identity,
                pool: &self.pool,
                directory: &self.directory,
                policy: &self.policy,
                pq: self.pq,
                #[cfg(feature = "ml-dsa")]
                ml_dsa: self.ml_dsa.as_ref(),
            };
            let len = persist::seal_agent(key, generation, rng, buf, &parts)?;
            self.agent_record.pending = None;
            PersistRecord { id: RecordId::Agent, generation, len }
        } else {
            return Ok(None);
        };
        self.metrics.records_persisted = self.metrics.records_persisted.saturating_add(1);
        Ok(Some(record))
    }

    /// Rebuild an agent from its sealed agent record (see
    /// [`crate::persist`]); then give every other stored record (session,
    /// group, KeyPackage) to
    /// [`restore_record`](Self::restore_record). `newest_seen` is the
    /// generation the host recorded for the agent record: an older blob
    /// is refused ([`Error::Storage`]`(Rollback)`), as is a blob sealed
    /// under another key or changed (`Storage(Decrypt)`) and a session
    /// record ([`Error::WrongRecord`]). `scratch` holds the decrypted body
    /// while it is decoded ([`MAX_RECORD_LEN`](Self::MAX_RECORD_LEN) is
    /// enough) and is wiped.
    ///
    /// The restored agent runs the [`PqMode`] of the record; a record
    /// written before the mode was stored restores as [`PqMode::Off`], or
    /// as [`PqMode::Prefer`] if its pool holds KEM prekeys (the agent
    /// published PQXDH bundles; see [`crate::persist`]). It has
    /// persistence on under `key`, the identity,
    /// prekey pool (with the configuration it was created with), directory
    /// (every peer unreachable) and policy of the record, no Noise session,
    /// an empty queue, no event and zeroed counters.
    pub fn restore(
        key: StorageKey,
        config: Config,
        blob: &[u8],
        newest_seen: u64,
        scratch: &mut [u8],
    ) -> Result<Self, Error> {
        let () = Self::BYTES_CHECK;
        let (opened, generation) = persist::open::<PEERS, PREKEYS, RATCHET_MAX_SKIP, RATCHET_SKIPPED_KEYS>(
            &key,
            blob,
            newest_seen,
            scratch,
            &PeerId([0; 32]),
            &mut [],
        )?;
        let Opened::Agent { owner, state } = opened else { return Err(Error::WrongRecord) };
        if PeerId::of(state.identity.public()) != owner || state.pool.owner() != state.identity.public() {
            return Err(Error::WrongRecord);
        }
        Ok(Agent {
            identity: state.identity,
            id: owner,
            config,
            pq: state.pq,
            #[cfg(feature = "ml-dsa")]
            ml_dsa: state.ml_dsa,
            pool: state.pool,
            directory: state.directory,
            policy: state.policy,
            sessions: [const { None }; SESSIONS],
            queue: [const { Slot::FREE }; QUEUE],
            next_seq: 0,
            next_order: 0,
            scratch: [0; BYTES],
            events: EventQueue::new(),
            counters: Counters::default(),
            storage: Some(key),
            agent_record: Generations { next: generation.saturating_add(1), pending: None },
            slot_records: [Generations::default(); SESSIONS],
            metrics: Metrics::default(),
            groups: [const { GroupSlot::empty() }; GROUPS],
            own_key_packages: [const { None }; KEY_PACKAGE_SLOTS],
            peer_key_packages: [const { None }; PEER_KEY_PACKAGES],
            group_records: [Generations::default(); GROUPS],
            key_package_record: Generations::default(),
        })
    }

    /// Put a sealed session, group or KeyPackage record back, after
    /// [`restore`](Self::restore) (or on an agent with
    /// [`enable_persistence`](Self::enable_persistence)); returns its id.
    /// Refused, with nothing changed: an older generation than
    /// `newest_seen` ([`Error::Storage`]`(Rollback)`), another key or a
    /// changed byte (`Storage(Decrypt)`), and ([`Error::WrongRecord`]) the
    /// agent record, a record of another agent, a slot beyond `SESSIONS`
    /// (`GROUPS`) or one already in use, a session or group already in
    /// the table, or a KeyPackage record when KeyPackages are held already
    /// (or whose KeyPackages do not carry their owners' credentials).
    pub fn restore_record(
        &mut self,
        blob: &[u8],
        newest_seen: u64,
        scratch: &mut [u8],
    ) -> Result<RecordId, Error> {
        let key = self.storage.as_ref().ok_or(Error::WrongRecord)?;
        let (opened, generation) = persist::open::<PEERS, PREKEYS, RATCHET_MAX_SKIP, RATCHET_SKIPPED_KEYS>(
            key,
            blob,
            newest_seen,
            scratch,
            &self.id,
            &mut self.groups,
        )?;
        let (owner, slot, state) = match opened {
            Opened::Slot { owner, slot, state } => (owner, slot, state),
            Opened::Group { slot, restored: true, .. } => {
                if let Some(g) = self.group_records.get_mut(usize::from(slot)) {
                    g.next = g.next.max(generation.saturating_add(1));
                }
                return Ok(RecordId::Group(slot));
            }
            Opened::KeyPackages { owner, state } => {
                self.restore_key_packages(owner, state)?;
                self.key_package_record.next = self.key_package_record.next.max(generation.saturating_add(1));
                return Ok(RecordId::KeyPackages);
            }
            Opened::Agent { .. } | Opened::Group { .. } => return Err(Error::WrongRecord),
        };
        let i = usize::from(slot);
        if owner != self.id || !matches!(self.sessions.get(i), Some(None)) {
            return Err(Error::WrongRecord);
        }
        if let SlotState::Ratchet { peer, id, order, pq, session } = state {
            if self.find(&peer, id).is_some() {
                return Err(Error::WrongRecord);
            }
            if let Some(s) = self.sessions.get_mut(i) {
                *s = Some(Entry { peer, id, order, confirm_by: None, pq, state: State::Ratchet(session) });
            }
            self.next_order = self.next_order.max(order.saturating_add(1));
        }
        if let Some(g) = self.slot_records.get_mut(i) {
            g.next = g.next.max(generation.saturating_add(1));
        }
        Ok(RecordId::Session(slot))
    }

    /// The metrics, as a plain struct.
    pub fn metrics(&self) -> Metrics {
        let mut m = self.metrics;
        for e in self.sessions.iter().flatten() {
            match &e.state {
                State::Ratchet(s) => {
                    m.ratchet_sessions = m.ratchet_sessions.saturating_add(1);
                    let age = s.since_last_step_ms();
                    m.ratchet_state_age_max_ms = Some(m.ratchet_state_age_max_ms.map_or(age, |a| a.max(age)));
                    m.ratchet_channels.add(e.pq);
                }
                State::Noise(_) | State::Datagram(_) => m.noise_channels.add(e.pq),
                State::Handshake { .. } => {}
            }
        }
        m.noise_pq = m.noise_channels.weakest();
        m.ratchet_pq = m.ratchet_channels.weakest();
        m.kem_prekeys_available = self.pool.kem_available();
        m.ml_dsa_pinned = u32::try_from(self.directory.iter().filter(|p| p.ml_dsa_pin().is_some()).count())
            .unwrap_or(u32::MAX);
        m.groups = u32::try_from(self.groups.iter().filter(|g| g.is_used()).count()).unwrap_or(u32::MAX);
        m.key_packages_available = u32::try_from(self.key_packages_available()).unwrap_or(u32::MAX);
        let pool = self.pool.metrics(UnixTime(0));
        m.prekeys_available = pool.available;
        m.prekeys_capacity = pool.capacity;
        m.prekeys_consumed_total = pool.consumed_total;
        m
    }

    /// Before an unconfirmed transport `i` is dropped: drop the older
    /// transports of its kind with its peer too. The peer opened the
    /// handshake of `i`, which it does only when it holds no transport
    /// with us, so they are dead at its end (it restarted); sending on
    /// them would lose messages silently, and without them the next
    /// `send` opens a handshake of our own.
    fn drop_unconfirmed_older(&mut self, i: usize) {
        let Some(Some(e)) = self.sessions.get(i) else { return };
        if e.confirm_by.is_none() {
            return;
        }
        let (peer, order, datagram) = (e.peer, e.order, matches!(e.state, State::Datagram(_)));
        for j in 0..SESSIONS {
            let older = match self.sessions.get(j) {
                Some(Some(o)) => {
                    o.peer == peer
                        && o.order < order
                        && match o.state {
                            State::Noise(_) => !datagram,
                            State::Datagram(_) => datagram,
                            _ => false,
                        }
                }
                _ => false,
            };
            if older {
                self.drop_handshake(j, HandshakeFailure::TimedOut);
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
    fn auth_failed(&mut self, peer: PeerId, reason: AuthFailure, channel: ChannelKind) {
        self.counters.auth_failed = self.counters.auth_failed.saturating_add(1);
        self.metrics.count(channel, |c| &mut c.failures);
        self.events.push(Event::AuthFailed { peer, reason });
    }

    fn deny(&mut self, from: PeerId, reason: DenyReason, channel: ChannelKind) {
        self.counters.denied = self.counters.denied.saturating_add(1);
        self.metrics.count(channel, |c| &mut c.denied);
        self.events.push(Event::Denied { from, reason });
    }

    /// Handle one envelope received from a peer or its mailbox. A
    /// delivered payload is written to `out[..len]` and returned (and
    /// reported as [`Event::Received`]); `Ok(None)` means the envelope was
    /// handshake traffic, a heartbeat, or was refused by the policy or the
    /// identity check (then reported as [`Event::Denied`] or
    /// [`Event::AuthFailed`], counted, and `out` holds no plaintext).
    ///
    /// **Lost ratchet state.** A ratchet message on a session this agent
    /// does not hold fails with [`Error::UnknownSession`], except when
    /// the agent holds no ratchet session with its sender at all, has the
    /// sender's bundle and the policy knows it: then its state was lost,
    /// and it answers by opening a new session to the sender from the
    /// bundle, with a control message (never delivered) that moves the
    /// sender onto it: `Ok(None)` and [`Event::ReestablishRequested`]
    /// (the message itself is lost). The sender's agent reports
    /// [`Event::SessionReestablished`] and sends on the new session.
    /// Since an agent that re-established holds a session with that peer,
    /// forged envelopes cause at most one re-establishment per lost state
    /// (and per bundle).
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
        let result = match env.channel {
            ChannelKind::NoiseIk
            | ChannelKind::NoiseXx
            | ChannelKind::NoiseIkHfs
            | ChannelKind::NoiseXxHfs => self.handle_handshake(&env, now, rng).map(|()| None),
            ChannelKind::NoiseTransport => self.handle_transport(&env, out),
            ChannelKind::RatchetInitial | ChannelKind::RatchetMessage => {
                self.handle_ratchet(&env, out, now, rng)
            }
            ChannelKind::MlsMessage => self.handle_group_message(&env, out, rng),
            ChannelKind::MlsWelcome => self.handle_welcome(&env, out).map(|()| None),
            ChannelKind::NoiseDatagram => self.handle_datagram(&env, out),
        };
        if let Err(e) = &result {
            self.metrics.count(env.channel, |c| &mut c.failures);
            if matches!(
                e,
                Error::PqRequired
                    | Error::PqUnavailable
                    | Error::Ratchet(securemesh_ratchet::Error::Downgrade)
            ) {
                self.metrics.pq_refused = self.metrics.pq_refused.saturating_add(1);
            }
        }
        result
    }

    /// A datagram of a datagram session: out of order and lost ones are
    /// fine, a replayed one is refused ([`securemesh_noise::Error::Replay`]).
    fn handle_datagram(&mut self, env: &Envelope<'_>, out: &mut [u8]) -> Result<Option<Received>, Error> {
        let si = self.find(&env.sender, env.session).ok_or(Error::UnknownSession)?;
        let Some(Some(Entry { state: State::Datagram(d), confirm_by, .. })) = self.sessions.get_mut(si)
        else {
            return Err(Error::ChannelMismatch);
        };
        let n = d.open(env.body, out)?;
        if confirm_by.take().is_some() {
            self.release_awaiting(si);
        }
        Ok(self.deliver(env.sender, ChannelKind::NoiseDatagram, out, n))
    }

    fn handle_transport(&mut self, env: &Envelope<'_>, out: &mut [u8]) -> Result<Option<Received>, Error> {
        let si = self.find(&env.sender, env.session).ok_or(Error::UnknownSession)?;
        let Some(Some(Entry { state: State::Noise(t), confirm_by, .. })) = self.sessions.get_mut(si) else {
            return Err(Error::ChannelMismatch);
        };
        let n = t.read_message(env.body, out)?;
        if confirm_by.take().is_some() {
            self.release_awaiting(si);
        }
        Ok(self.deliver(env.sender, ChannelKind::NoiseTransport, out, n))
    }

    /// The policy check of an authenticated plaintext `out[..n]`
    /// (`kind | payload`): deliver it (the payload moved to the front) or
    /// refuse it (wiped).
    fn deliver(&mut self, from: PeerId, channel: ChannelKind, out: &mut [u8], n: usize) -> Option<Received> {
        let plain = out.get_mut(..n).unwrap_or_default();
        let Some(&k) = plain.first() else {
            if !matches!(channel, ChannelKind::NoiseTransport | ChannelKind::NoiseDatagram) {
                // An empty ratchet message is a heartbeat: it stepped the
                // ratchet and carries nothing to deliver.
                self.metrics.ratchet.heartbeats_received =
                    self.metrics.ratchet.heartbeats_received.saturating_add(1);
                return None;
            }
            self.deny(from, DenyReason::Malformed, channel);
            return None;
        };
        if matches!(channel, ChannelKind::RatchetInitial | ChannelKind::RatchetMessage)
            && *plain == REESTABLISH
        {
            // A re-establishment's control message on a session we hold
            // already: it carries nothing to deliver.
            plain.fill(0);
            return None;
        }
        let kind = MessageKind(k);
        if let Err(d) = self.policy.check(&from, kind) {
            plain.fill(0);
            self.deny(from, d.reason, channel);
            return None;
        }
        plain.copy_within(1.., 0);
        let len = n.saturating_sub(1);
        if let Some(last) = plain.last_mut() {
            *last = 0;
        }
        self.counters.received = self.counters.received.saturating_add(1);
        self.metrics.count(channel, |c| &mut c.received);
        self.events.push(Event::Received { from, kind, len });
        Some(Received { from, kind, len, channel, group: None })
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
        let Some(Some(Entry {
            state: State::Handshake { mut hs, pattern, deadline, started }, order, ..
        })) = self.sessions.get_mut(si).map(Option::take)
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
                        confirm_by: None,
                        peer,
                        id: env.session,
                        order,
                        pq: status_of(pattern),
                        state: State::Handshake { hs, pattern, deadline, started },
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
                    self.auth_failed(peer, reason, env.channel);
                    return Ok(());
                }
            }
        } else {
            None
        };
        self.step(
            Step { peer, session: env.session, pattern, deadline, si, slot, learned, order, started, now },
            hs,
            rng,
        )
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
            self.deny(peer, DenyReason::UnknownPeer, env.channel);
            return Ok(());
        }
        // The tag names the protocol (the prologue binds it): an `hfs` one
        // only if we run them, a classical one unless we require hybrid or
        // the peer is known to run it (`crate::pq`).
        let mode = self.pq;
        if env.channel.is_hfs() && !Self::runs_hybrid(mode) {
            return Err(Error::PqUnavailable);
        }
        if !env.channel.is_hfs() && self.needs_hybrid(&peer) {
            return Err(Error::PqRequired);
        }
        let si = self.free_session()?;
        let protocol = protocol_of(env.channel)?;
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
                    self.auth_failed(peer, reason, env.channel);
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
            Step {
                peer,
                session: env.session,
                pattern: env.channel,
                deadline,
                si,
                slot,
                learned,
                order,
                started: now,
                now,
            },
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
        let wrote = hs.is_my_turn();
        if wrote {
            // Our identity goes with our static key: XX messages 2 and 3
            // (IK sends it in message 1, see `send_noise_new`).
            let identity = self.identity.public().to_bytes();
            let hs_payload: &[u8] = if st.pattern.is_xx() { &identity } else { &[] };
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
            let state =
                State::Handshake { hs, pattern: st.pattern, deadline: st.deadline, started: st.started };
            if let Some(s) = self.sessions.get_mut(st.si) {
                *s = Some(Entry {
                    peer: st.peer,
                    id: st.session,
                    order: st.order,
                    confirm_by: None,
                    pq: status_of(st.pattern),
                    state,
                });
            }
            return Ok(());
        }
        let transport = match hs.finish() {
            Ok(t) => t,
            Err(e) => {
                self.handshake_failed(st.peer, st.session, HandshakeFailure::Decrypt);
                return Err(e.into());
            }
        };
        if let Some(identity) = st.learned {
            let new = self.directory.get(&st.peer).is_some_and(|p| p.identity().is_none());
            // Checked against the peer id already: this only fills it in.
            if self.directory.learn_identity(&st.peer, &identity).is_err() {
                self.drop_awaiting(&st.peer, st.session);
                self.auth_failed(st.peer, AuthFailure::IdentityMismatch, st.pattern);
                return Ok(());
            }
            if new {
                self.mark_agent();
            }
        }
        let pq = status_of(st.pattern);
        if pq == PqStatus::Hybrid {
            // The peer ran `hfs` with us: it runs it (persisted).
            if self.directory.learn_hybrid(&st.peer) {
                self.mark_agent();
            }
            self.metrics.hybrid_handshakes = self.metrics.hybrid_handshakes.saturating_add(1);
        }
        // A session opened for datagrams becomes a datagram transport.
        let state = if is_datagram(st.session) {
            State::Datagram(transport.into_datagram())
        } else {
            State::Noise(transport)
        };
        // Established now: newer than every session before it. An IK
        // responder's transport waits for key confirmation.
        let order = self.next_order();
        let confirm_by = (wrote && st.pattern.is_ik()).then(|| {
            st.now.saturating_add(core::time::Duration::from_millis(self.config.handshake_timeout_ms))
        });
        if let Some(s) = self.sessions.get_mut(st.si) {
            *s = Some(Entry { peer: st.peer, id: st.session, order, confirm_by, pq, state });
        }
        if confirm_by.is_none() {
            self.release_awaiting(st.si);
        }
        let latency = ms(st.now.saturating_duration_since(st.started));
        let m = &mut self.metrics;
        m.handshakes_completed = m.handshakes_completed.saturating_add(1);
        m.handshake_latency_last_ms = Some(latency);
        m.handshake_latency_max_ms = m.handshake_latency_max_ms.max(latency);
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
        self.metrics.noise.failures = self.metrics.noise.failures.saturating_add(1);
        self.events.push(Event::HandshakeFailed { peer, session, reason, dropped });
    }

    fn handle_ratchet<R: CryptoRng + ?Sized>(
        &mut self,
        env: &Envelope<'_>,
        out: &mut [u8],
        now: Instant,
        rng: &mut R,
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
            // The session the peer sends on becomes the one we send on (as
            // Signal promotes a session on receipt): after a simultaneous
            // X3DH ("glare") both sides converge on one session, so that
            // every reply steps the DH ratchet the other side uses. A
            // heartbeat (empty) does not promote: it keeps an idle session
            // alive, not the conversation on it.
            if n > 0 && out.get(..n) != Some(&REESTABLISH[..]) {
                let order = self.next_order();
                if let Some(Some(e)) = self.sessions.get_mut(si) {
                    e.order = order;
                }
            }
            self.session_changed(si);
            return Ok(self.deliver(peer, env.channel, out, n));
        }
        if !initial {
            return self.reestablish(&peer, env.session, now, rng);
        }
        if !self.may_open(&peer) {
            self.deny(peer, DenyReason::UnknownPeer, env.channel);
            return Ok(None);
        }
        // The sender's identity (binding signature verified), read from
        // the initial message before any prekey is used.
        let identity = RatchetSession::initial_sender(env.body)?;
        let known = self.directory.get(&peer).and_then(|p| p.identity());
        if PeerId::of(&identity) != peer || known.is_some_and(|k| *k != identity) {
            self.auth_failed(peer, AuthFailure::IdentityMismatch, env.channel);
            return Ok(None);
        }
        // A PQXDH pool answers only PQXDH initial messages (the ratchet
        // refuses X3DH to its signed prekeys as `Downgrade`): the session's
        // status is the pool's.
        let pq = if self.pool_hybrid() { PqStatus::Hybrid } else { PqStatus::Classical };
        if pq == PqStatus::Classical && self.pq.requires() {
            return Err(Error::PqRequired);
        }
        let si = self.free_session()?;
        let (session, n) =
            RatchetSession::respond(&self.identity, &mut self.pool, env.body, out, self.config.ratchet, now)?;
        // The pool changed (a one-time prekey, if the message named one, is
        // erased), and so may the directory.
        self.mark_agent();
        self.pool_events(rng);
        if *session.remote_identity() != identity || self.directory.learn_identity(&peer, &identity).is_err()
        {
            // Unreachable: `respond` verified the same prefix.
            out.get_mut(..n).unwrap_or_default().fill(0);
            self.auth_failed(peer, AuthFailure::IdentityMismatch, env.channel);
            return Ok(None);
        }
        if pq == PqStatus::Hybrid {
            self.directory.learn_hybrid(&peer);
            self.metrics.pqxdh_sessions = self.metrics.pqxdh_sessions.saturating_add(1);
        }
        let order = self.next_order();
        if let Some(s) = self.sessions.get_mut(si) {
            *s = Some(Entry {
                peer,
                id: env.session,
                order,
                confirm_by: None,
                pq,
                state: State::Ratchet(session),
            });
        }
        self.session_changed(si);
        if out.get(..n) == Some(&REESTABLISH[..]) {
            // The peer lost our old session and opened this one to
            // replace it: it is the newest, so we send on it from now on.
            out.get_mut(..n).unwrap_or_default().fill(0);
            self.metrics.reestablish_accepted = self.metrics.reestablish_accepted.saturating_add(1);
            self.events.push(Event::SessionReestablished { peer, session: env.session });
            return Ok(None);
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
    /// When its first message was sent or received.
    started: Instant,
    /// The current time.
    now: Instant,
}

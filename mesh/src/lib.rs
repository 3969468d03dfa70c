//! # securemesh
//!
//! The mesh: one sans-IO [`Agent`] per autonomous agent that routes each
//! peer to the right channel, binds authorization to the identity the
//! channel authenticated, and queues what it sends, with fixed capacities
//! and no heap.
//!
//! - [`envelope`]: the one wire frame around everything an agent sends
//!   (version, channel tag, sender peer id, session id, body), parsed
//!   with typed errors and never a panic.
//! - [`peer`]: the directory. A peer is named by its [`PeerId`], the hash
//!   of its identity keys (`securemesh-ratchet`'s Ed25519 + X25519
//!   [`Identity`](securemesh_ratchet::Identity)); what is known about it
//!   (identity, hence Noise static key; prekey bundle; reachability) is
//!   accepted only if it hashes to that id.
//! - [`policy`]: peer id -> roles -> permitted message kinds, default
//!   deny. Every received message is checked before delivery; a refused
//!   one is never delivered, is counted and raises [`Event::Denied`].
//! - [`route`]: the decision matrix as a pure function: Noise IK when the
//!   peer is online and its static key known, XX when not, the ratchet
//!   through a mailbox when it is offline, MLS for groups, `UseTls` for
//!   anything outside the mesh. Each decision is reported with its reason
//!   ([`Event::RouteChosen`]).
//! - [`Agent`]: the driving API in the style of quinn-proto:
//!   [`send`](Agent::send), [`handle_input`](Agent::handle_input),
//!   [`poll_transmit`](Agent::poll_transmit),
//!   [`poll_event`](Agent::poll_event),
//!   [`poll_timeout`](Agent::poll_timeout) /
//!   [`handle_timeout`](Agent::handle_timeout); randomness lent per call,
//!   time passed in.
//!
//! - [`persist`]: the agent's durable state as sealed records (the agent
//!   record and one per session slot, each with its own generation),
//!   handed out by [`poll_persist`](Agent::poll_persist) before
//!   [`poll_transmit`](Agent::poll_transmit) releases what a call
//!   produced; [`restore`](Agent::restore) refuses older blobs.
//! - [`group`]: MLS groups (RFC 9420 through `securemesh-mls-lite`):
//!   KeyPackages bound to the identity key, commits with the
//!   pending-commit discipline, Welcomes, application messages checked
//!   against the sender's bound identity and the policy; the delivery
//!   service contract ([`Delivery::Group`]).
//! - [`metrics`]: [`Metrics`], a plain struct of per-channel counters,
//!   handshake latency, ratchet state age, prekey utilization and
//!   post-quantum status.
//!
//! ## Scope of this version
//!
//! **Slice 1**: the two pairwise channels: Noise (IK/XX, stream
//! transport), with the peer's static key checked against its identity,
//! and ratchet sessions (X3DH from the peer's bundle, Double Ratchet).
//!
//! **Slice 2**:
//!
//! - persistence: identity, prekey pool, directory and policy in the
//!   agent record, each ratchet session in its slot's record, sealed with
//!   the `securemesh-core` envelope under the host's key; the persistence
//!   rule enforced by holding transmits back; restore with rollback
//!   detection. Noise transports are deliberately not persisted (a new
//!   handshake replaces them, see [`persist`]);
//! - key lifecycle: the prekey pool refills itself at its threshold
//!   ([`Event::PrekeysRefilled`]), the signed prekey rotates on
//!   [`handle_prekey_timeout`](Agent::handle_prekey_timeout) (wall time),
//!   ratchet sessions send heartbeats from
//!   [`handle_timeout`](Agent::handle_timeout) so an idle session still
//!   steps its DH ratchet;
//! - metrics ([`Agent::metrics`]).
//!
//! **Slice 3** (this one): MLS groups ([`group`]). An agent publishes
//! KeyPackages signed with its identity key (private keys in fixed slots,
//! each consumed once, persisted), accepts a peer's KeyPackage only if its
//! credential names a directory peer whose identity signed it, creates
//! groups, adds and removes members by commits that are merged only when
//! the delivery order confirms them (a competing commit of the same epoch
//! wins; the Welcome is released only after confirmation), joins from a
//! Welcome, and sends and receives application messages (`send(&group,
//! ..)`), each delivered only if the sending leaf is bound to its
//! directory identity and the policy permits its kind. Events
//! [`Event::GroupJoined`], [`Event::EpochChanged`],
//! [`Event::MemberAdded`], [`Event::MemberRemoved`], [`Event::GroupLeft`],
//! [`Event::CommitDiscarded`]; per-channel metrics ([`Metrics::mls`]);
//! one sealed record per group slot and one for the KeyPackages (rollback
//! refused). `GROUPS` (default 1) is the `Agent`'s last const parameter; a
//! group slot costs [`group::GROUP_SLOT_BYTES`] (56 KB for 16 members:
//! three group states and the outgoing commit and Welcome), `GROUPS = 0`
//! nothing. Limits of this slice:
//! messages of a past epoch are refused ([`Error::GroupEpoch`]: no past
//! epoch is kept, so a message ordered after a commit it did not know is
//! lost, and an agent sends nothing while its own commit is pending);
//! proposals by reference, PSKs and external joins of `mls-lite` are not
//! driven by the agent; the policy governs deliveries, not who may commit.
//!
//! **Slice 4**: telemetry over the Noise datagram transport
//! ([`Agent::send_telemetry`], [`Purpose::Telemetry`] in the matrix): a
//! Noise IK/XX handshake of its own (its session id carries
//! [`DATAGRAM_SESSION`], bound by the prologue), then datagrams with
//! explicit counters and a replay window (lost and reordered ones are fine,
//! a replayed one is refused), checked against the policy like every
//! message; never to a mailbox, never persisted.
//!
//! **Re-establishment**: an agent that lost its ratchet state with a
//! peer (restarted from records without the session, or a new agent of
//! the same identity) answers the peer's next message, which it cannot
//! decrypt, by opening a new session from the peer's bundle with a
//! control message; the peer moves to it
//! ([`Event::ReestablishRequested`], [`Event::SessionReestablished`];
//! see [`Agent::handle_input`]). Noise sessions re-establish by
//! themselves.
//!
//! **Post-quantum** (feature `pq`, [`pq`]): PQXDH bundles and sessions
//! (ML-KEM-768 prekeys in the pool, refilled and rotated with the
//! others) and the Noise `hfs` handshakes (IKhfs, XXhfs), as the
//! agent's [`PqMode`] says ([`Agent::new_pq`]); each channel's [`PqStatus`] in
//! [`SessionInfo::pq`] and [`Metrics`]. Off by default, so firmware links
//! no ML-KEM unless it asks for it.
//!
//! **Hybrid identities** (feature `ml-dsa`, which implies `pq`; see
//! [`pq`] and [`peer`]): the agent holds an ML-DSA-65 key beside its
//! Ed25519 identity key (its seed sealed in the agent record) and, in a
//! hybrid mode, publishes version-3 bundles signed by both
//! (`Agent::bundle_hybrid`); the directory pins each peer's ML-DSA key
//! (a 32-byte [`peer::MlDsaPin`]) by introduction
//! (`Agent::add_peer_identity_pinned`) or on first use, and refuses a
//! pinned peer's classical bundle (a stripped ML-DSA section) or another
//! ML-DSA key; under [`PqMode::Require`] a bundle without ML-DSA is
//! refused. Counted in [`Metrics::hybrid_bundles`],
//! [`Metrics::ml_dsa_pinned`] and [`Metrics::pq_refused`]. Off by
//! default: ML-DSA-65 is heavy in code and stack, and firmware does
//! without it.
//!
//! **Not yet**: persisting the transmit queue (a message not yet handed
//! out by `poll_transmit` when the process dies is lost, its ratchet
//! number skipped); MLS groups with the X-Wing suite.
//!
//! ## Two agents
//!
//! Alice knows Bob's identity and sees him online, so her first message
//! opens a Noise IK handshake and waits for it; the host carries the
//! envelopes both ways.
//!
//! ```
//! use securemesh::{Channel, DefaultAgent, Config, Event, MessageKind, Permissions, Reason, Role, Roles};
//! use securemesh_core::{Instant, UnixTime};
//! use securemesh_ratchet::Identity;
//! # fn main() -> Result<(), securemesh::Error> {
//! let mut rng = rand::rng(); // any CryptoRng, lent per call
//! let now = Instant::from_millis(0);
//! const TASK: MessageKind = MessageKind(1);
//! const WORKER: Role = Role(0);
//!
//! let mut alice = DefaultAgent::new(Identity::generate(&mut rng), Config::default(), &mut rng, UnixTime(1_700_000_000));
//! let mut bob = DefaultAgent::new(Identity::generate(&mut rng), Config::default(), &mut rng, UnixTime(1_700_000_000));
//! // Each knows the other's public identity, sees it online and lets it send tasks.
//! let (a_pub, b_pub) = (*alice.public_identity(), *bob.public_identity());
//! for (me, peer) in [(&mut alice, b_pub), (&mut bob, a_pub)] {
//!     let id = me.add_peer_identity(&peer)?;
//!     me.set_reachable(&id, true)?;
//!     me.policy_mut().define_role(WORKER, Permissions::of(&[TASK]))?;
//!     me.policy_mut().grant(id, Roles::of(&[WORKER]))?;
//! }
//!
//! let route = alice.send(&bob.peer_id(), TASK, b"measure tank 3", now, &mut rng)?;
//! assert_eq!((route.channel, route.reason), (Channel::NoiseIk, Reason::OnlineStaticKnown));
//!
//! // The host's loop: move every ready envelope to the other side.
//! let (mut wire, mut out) = ([0u8; 1024], [0u8; 1024]);
//! let mut delivered = None;
//! loop {
//!     let mut moved = false;
//!     while let Some(t) = alice.poll_transmit(&mut wire)? {
//!         moved = true;
//!         if let Some(r) = bob.handle_input(&wire[..t.len], &mut out, now, &mut rng)? {
//!             delivered = Some((r.from, r.kind, out[..r.len].to_vec()));
//!         }
//!     }
//!     while let Some(t) = bob.poll_transmit(&mut wire)? {
//!         moved = true;
//!         alice.handle_input(&wire[..t.len], &mut out, now, &mut rng)?;
//!     }
//!     if !moved { break; }
//! }
//! assert_eq!(delivered, Some((alice.peer_id(), TASK, b"measure tank 3".to_vec())));
//! assert!(core::iter::from_fn(|| bob.poll_event())
//!     .any(|e| matches!(e, Event::HandshakeComplete { .. })));
//! # Ok(())
//! # }
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

#[cfg(test)]
extern crate std;

mod agent;
pub mod envelope;
mod error;
pub mod group;
pub mod metrics;
pub mod peer;
pub mod persist;
pub mod policy;
pub mod pq;
pub mod route;

pub use agent::{
    Agent, AuthFailure, Config, Counters, DATAGRAM_SESSION, DefaultAgent, Delivery, EVENT_SLOTS, Event,
    HandshakeFailure, NOISE_IK, NOISE_XX, RATCHET_MAX_SKIP, RATCHET_SKIPPED_KEYS, RatchetSession, Received,
    SessionInfo, SessionKind, Transmit,
};
pub use envelope::{ChannelKind, SessionId};
pub use error::Error;
pub use group::{Destination, GroupId, GroupInfo, Recipient};
pub use metrics::{ChannelMetrics, Metrics, PqCounts, PqStatus};
pub use peer::PeerId;
pub use persist::{PersistRecord, RecordId};
pub use policy::{MessageKind, Permissions, Role, Roles};
pub use pq::PqMode;
pub use route::{Channel, Purpose, Reason, Route};

/// The README's examples, compiled and run as doc-tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

//! The errors of the agent.

use crate::envelope::{ChannelKind, EnvelopeError};
use crate::peer::DirectoryError;
use crate::policy::{MessageKind, PolicyError};
use crate::route::{Channel, NoRoute};

/// Everything an [`Agent`](crate::Agent) call can refuse.
///
/// A call that returns an error changed nothing, with one exception the
/// house rules allow: a Noise handshake whose message failed to
/// authenticate is poisoned for good, so the agent drops it (and the
/// messages that waited for it) and reports
/// [`Event::HandshakeFailed`](crate::Event::HandshakeFailed).
///
/// Refusals by policy or by the identity check are not errors: the input
/// was well-formed and authenticated, so the agent counts it and raises
/// [`Event::Denied`](crate::Event::Denied) or
/// [`Event::AuthFailed`](crate::Event::AuthFailed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The output buffer is too small; nothing changed.
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
    },
    /// The bytes are not an envelope.
    Envelope(EnvelopeError),
    /// The directory refused a change.
    Directory(DirectoryError),
    /// The policy refused a change.
    Policy(PolicyError),
    /// The destination is not in the directory.
    UnknownPeer,
    /// No channel can carry the message now.
    NoRoute(NoRoute),
    /// The matrix chose a channel `send` does not carry (`UseTls`: the host
    /// talks TLS itself; the datagram channel is
    /// [`send_telemetry`](crate::Agent::send_telemetry)'s).
    Unsupported(Channel),
    /// An envelope of a channel the agent does not handle.
    UnsupportedChannel(ChannelKind),
    /// Message kinds 64 and above are reserved.
    ReservedKind(MessageKind),
    /// The payload does not fit the agent's `BYTES` per queued message.
    PayloadTooLong {
        /// Largest payload the channel takes.
        max: usize,
    },
    /// Every transmit slot is taken: call `poll_transmit` first.
    QueueFull,
    /// Every session slot is taken.
    SessionTableFull,
    /// No session matches the envelope's sender and session id.
    UnknownSession,
    /// The envelope's channel does not fit the session it names (or the
    /// ratchet message type does not fit the channel tag).
    ChannelMismatch,
    /// A Noise handshake or transport refused the message.
    Noise(securemesh_noise::Error),
    /// The ratchet refused the message.
    Ratchet(securemesh_ratchet::Error),
    /// A classical channel under [`PqMode::Require`](crate::PqMode::Require):
    /// a peer's bundle without a KEM prekey at `send`, a peer's IK or XX
    /// handshake, an X3DH initial message, and with the feature `ml-dsa`
    /// a peer's bundle without its ML-DSA-65 section (see [`crate::pq`]);
    /// nothing changed.
    PqRequired,
    /// A hybrid channel this agent does not run (built without the
    /// feature `pq`, [`PqMode::Off`](crate::PqMode::Off), or `BYTES` below
    /// [`MIN_PQ_BYTES`](crate::pq::MIN_PQ_BYTES)): a peer's bundle with a
    /// KEM prekey or (feature `ml-dsa`) a hybrid-signed one, or an `hfs`
    /// handshake; and `Agent::bundle_hybrid`
    /// of an agent that does not run them or has no ML-DSA-65 key; nothing
    /// changed.
    PqUnavailable,
    /// A persisted record was refused: [`Rollback`](securemesh_core::Error::Rollback)
    /// (older than the newest generation seen), `Decrypt` (another
    /// storage key, or a changed byte), a version or encoding error.
    Storage(securemesh_core::Error),
    /// A record that does not belong here: of another agent, the agent
    /// record where a session record was expected (or the reverse), a
    /// slot beyond the table or already in use.
    WrongRecord,
    /// MLS refused a message, a KeyPackage or a commit (a forged or
    /// tampered message is `Decrypt` or `BadSignature`); nothing changed.
    Mls(securemesh_mls_lite::Error),
    /// The agent is not a member of this group.
    UnknownGroup,
    /// Every group slot is taken.
    GroupTableFull,
    /// A Welcome for a group the agent is a member of already.
    GroupExists,
    /// A commit of ours in this group waits for the delivery order (see
    /// [`crate::group`]): wait for it, or discard it.
    CommitPending,
    /// A commit adds and removes more than
    /// [`MAX_GROUP_CHANGES`](crate::group::MAX_GROUP_CHANGES) members.
    TooManyChanges,
    /// Every KeyPackage slot is taken (ours: wait for Welcomes, or
    /// discard; peers': add those peers first).
    KeyPackagesFull,
    /// No KeyPackage of this peer is known (to add it), or no KeyPackage of
    /// ours is the one a Welcome was made for.
    NoKeyPackage,
    /// A KeyPackage's credential is not a peer of the directory whose
    /// identity's Ed25519 key signed it (or is our own).
    KeyPackageIdentity,
    /// The peer is not a member of the group (to remove it).
    NotAMember,
    /// The peer is a member of the group already (to add it).
    AlreadyMember,
    /// The MLS message's authenticated data is not the envelope's sender:
    /// the header was changed.
    SenderMismatch,
    /// A group member's leaf is not bound to its identity: a commit's
    /// committer is not the envelope's sender, or a leaf it adds or changes
    /// (or a leaf of a Welcome's roster) claims a peer id that the
    /// directory does not know, or knows with another Ed25519 key. The
    /// commit or Welcome is refused and the group is unchanged.
    UnboundMember,
    /// An MLS message of another epoch than the group's: an older one can
    /// no longer be read; a newer one can after the commit that precedes
    /// it (deliver that first).
    GroupEpoch {
        /// The message's epoch.
        message: u64,
        /// The group's epoch.
        current: u64,
    },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed; nothing changed")
            }
            Error::Envelope(e) => write!(f, "envelope: {e}"),
            Error::Directory(e) => write!(f, "directory: {e}"),
            Error::Policy(e) => write!(f, "policy: {e}"),
            Error::UnknownPeer => f.write_str("peer not in the directory"),
            Error::NoRoute(r) => write!(f, "no route: {r}"),
            Error::Unsupported(c) => write!(f, "channel {c:?} is not driven by this version"),
            Error::UnsupportedChannel(c) => {
                write!(f, "envelopes of channel {c:?} are not handled by this version")
            }
            Error::ReservedKind(k) => write!(f, "message kind {} is reserved", k.0),
            Error::PayloadTooLong { max } => write!(f, "payload too long: at most {max} bytes"),
            Error::QueueFull => f.write_str("transmit queue full"),
            Error::SessionTableFull => f.write_str("session table full"),
            Error::UnknownSession => f.write_str("no session for this sender and session id"),
            Error::ChannelMismatch => f.write_str("the envelope's channel does not fit the session"),
            Error::Noise(e) => write!(f, "noise: {e}"),
            Error::Ratchet(e) => write!(f, "ratchet: {e}"),
            Error::PqRequired => f.write_str("a classical channel where hybrid post-quantum is required"),
            Error::PqUnavailable => f.write_str("a hybrid post-quantum channel this agent does not run"),
            Error::Storage(e) => write!(f, "persisted record: {e}"),
            Error::WrongRecord => f.write_str("the record belongs to another agent or slot"),
            Error::Mls(e) => write!(f, "mls: {e}"),
            Error::UnknownGroup => f.write_str("not a member of this group"),
            Error::GroupTableFull => f.write_str("group table full"),
            Error::GroupExists => f.write_str("already a member of this group"),
            Error::CommitPending => f.write_str("a commit of ours waits for the delivery order"),
            Error::TooManyChanges => f.write_str("too many members added and removed in one commit"),
            Error::KeyPackagesFull => f.write_str("every KeyPackage slot is taken"),
            Error::NoKeyPackage => f.write_str("no KeyPackage for this peer or Welcome"),
            Error::KeyPackageIdentity => {
                f.write_str("the KeyPackage is not signed by the identity its credential names")
            }
            Error::NotAMember => f.write_str("not a member of the group"),
            Error::AlreadyMember => f.write_str("already a member of the group"),
            Error::SenderMismatch => f.write_str("the MLS authenticated data is not the envelope's sender"),
            Error::UnboundMember => {
                f.write_str("a group member's leaf is not bound to the identity it claims")
            }
            Error::GroupEpoch { message, current } => {
                write!(f, "message of epoch {message}, the group is at epoch {current}")
            }
        }
    }
}

impl core::error::Error for Error {}

impl From<EnvelopeError> for Error {
    fn from(e: EnvelopeError) -> Self {
        match e {
            EnvelopeError::BufferTooSmall { needed } => Error::BufferTooSmall { needed },
            e => Error::Envelope(e),
        }
    }
}

impl From<DirectoryError> for Error {
    fn from(e: DirectoryError) -> Self {
        Error::Directory(e)
    }
}

impl From<PolicyError> for Error {
    fn from(e: PolicyError) -> Self {
        Error::Policy(e)
    }
}

impl From<securemesh_noise::Error> for Error {
    fn from(e: securemesh_noise::Error) -> Self {
        match e {
            securemesh_noise::Error::BufferTooSmall { needed } => Error::BufferTooSmall { needed },
            e => Error::Noise(e),
        }
    }
}

impl From<securemesh_ratchet::Error> for Error {
    fn from(e: securemesh_ratchet::Error) -> Self {
        match e {
            securemesh_ratchet::Error::BufferTooSmall { needed } => Error::BufferTooSmall { needed },
            e => Error::Ratchet(e),
        }
    }
}

impl From<NoRoute> for Error {
    fn from(r: NoRoute) -> Self {
        Error::NoRoute(r)
    }
}

impl From<securemesh_core::Error> for Error {
    fn from(e: securemesh_core::Error) -> Self {
        match e {
            securemesh_core::Error::BufferTooSmall { needed } => Error::BufferTooSmall { needed },
            e => Error::Storage(e),
        }
    }
}

impl From<securemesh_mls_lite::Error> for Error {
    fn from(e: securemesh_mls_lite::Error) -> Self {
        match e {
            securemesh_mls_lite::Error::BufferTooSmall { needed } => Error::BufferTooSmall { needed },
            e => Error::Mls(e),
        }
    }
}

//! Errors of the Noise crate.

use core::fmt;

/// Why a protocol name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// Not of the form `Noise_<pattern><modifiers>_<dh>_<cipher>_<hash>`.
    Syntax,
    /// The pattern is not one of the spec's 38 patterns.
    UnknownPattern,
    /// A modifier is unknown, repeated, out of order or out of range.
    InvalidModifier,
    /// `fallback` applied to a pattern whose first message cannot be a
    /// pre-message, or to a one-way pattern.
    InvalidFallback,
    /// The DH function is not supported.
    UnknownDh,
    /// The cipher is not supported (or its feature is off).
    UnknownCipher,
    /// The hash is not supported (or its feature is off).
    UnknownHash,
    /// The name is longer than [`crate::MAX_NAME_LEN`].
    TooLong,
}

/// Everything that can go wrong in a Noise handshake or transport.
///
/// Authentication failures are the single opaque [`Error::Decrypt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The protocol name is invalid.
    Name(NameError),
    /// The output buffer is too small; nothing changed.
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
    },
    /// A message would exceed the 65535-byte Noise limit.
    MessageTooLong,
    /// Authentication failed, or a handshake message was malformed.
    /// Deliberately opaque. A handshake that returns it is poisoned.
    Decrypt,
    /// The handshake failed before and can no longer be used.
    Poisoned,
    /// It is the other party's turn (write when a read is due, or the
    /// reverse), or the handshake is already complete.
    WrongTurn,
    /// A key the pattern needs was not supplied (local static, remote
    /// static, or a PSK).
    MissingKey,
    /// A key was supplied that the pattern does not use.
    UnexpectedKey,
    /// The remote static key must be accepted (or the handshake dropped)
    /// before the handshake can go on.
    RemoteStaticPending,
    /// The handshake has messages left.
    Incomplete,
    /// The nonce space of this direction is exhausted (2^64 - 1 is reserved).
    NonceExhausted,
    /// A datagram was already received, or is older than the replay window.
    Replay,
    /// This direction is not available (one-way patterns).
    OneWay,
    /// A persisted state failed to decode.
    State(securemesh_core::Error),
}

impl From<NameError> for Error {
    fn from(e: NameError) -> Self {
        Error::Name(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Name(e) => write!(f, "invalid Noise protocol name: {e:?}"),
            Error::BufferTooSmall { needed } => write!(f, "buffer too small: {needed} bytes needed"),
            Error::MessageTooLong => f.write_str("message exceeds 65535 bytes"),
            Error::Decrypt => f.write_str("decryption failed"),
            Error::Poisoned => f.write_str("handshake poisoned by an earlier failure"),
            Error::WrongTurn => f.write_str("not this party's turn"),
            Error::MissingKey => f.write_str("a required key is missing"),
            Error::UnexpectedKey => f.write_str("a key was supplied that the pattern does not use"),
            Error::RemoteStaticPending => f.write_str("remote static key not yet accepted"),
            Error::Incomplete => f.write_str("handshake incomplete"),
            Error::NonceExhausted => f.write_str("nonce space exhausted"),
            Error::Replay => f.write_str("replayed or too old datagram"),
            Error::OneWay => f.write_str("direction not available in a one-way pattern"),
            Error::State(e) => write!(f, "persisted state: {e}"),
        }
    }
}

impl core::error::Error for Error {}

impl From<securemesh_core::Error> for Error {
    fn from(e: securemesh_core::Error) -> Self {
        match e {
            securemesh_core::Error::BufferTooSmall { needed } => Error::BufferTooSmall { needed },
            securemesh_core::Error::Decrypt => Error::Decrypt,
            other => Error::State(other),
        }
    }
}

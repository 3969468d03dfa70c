//! The one error type of `core`, shared by the codec, the crypto suite and the
//! persisted-state envelope.

use core::fmt;

/// Everything that can go wrong in `securemesh-core`.
///
/// Decryption and signature failures are single opaque variants: they carry
/// no detail an attacker could use as an oracle.
///
/// ```
/// use securemesh_core::{Error, codec::Reader};
/// let mut r = Reader::new(&[0x01]);
/// assert_eq!(r.read_u16(), Err(Error::Truncated));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The caller's output buffer is too small; `needed` bytes are required.
    /// Nothing was changed.
    BufferTooSmall {
        /// Total number of bytes the output needs.
        needed: usize,
    },
    /// The input ended before a complete value was read.
    Truncated,
    /// Bytes were left after a complete value where none may follow.
    TrailingBytes,
    /// A variable-length integer used more bytes than its value needs
    /// (RFC 9420 §2.1.2 forbids this).
    NonMinimalVarint,
    /// A variable-length integer had the reserved `0b11` prefix or a value
    /// above `2^30 - 1`.
    VarintOutOfRange,
    /// A length does not fit its length prefix, or exceeds a capacity.
    LengthOverflow,
    /// A field holds a value the format does not allow.
    InvalidValue,
    /// AEAD authentication failed. Deliberately opaque.
    Decrypt,
    /// A signature did not verify (strict Ed25519 rules). Deliberately opaque.
    BadSignature,
    /// A public key is not a valid encoding (or is a weak key where that is refused).
    InvalidKey,
    /// A Diffie-Hellman result was all zero (low-order peer key).
    NonContributory,
    /// A requested output length is not supported by the primitive
    /// (e.g. HKDF-Expand beyond 255 blocks).
    InvalidLength,
    /// The bytes are not a securemesh state envelope (wrong magic).
    BadMagic,
    /// The envelope holds a different kind of state than the one requested.
    WrongKind {
        /// Kind found in the envelope.
        found: u8,
        /// Kind the caller asked for.
        expected: u8,
    },
    /// The envelope version is newer than this code knows, or no longer supported.
    UnknownVersion {
        /// Version found in the envelope.
        found: u16,
    },
    /// The envelope was written for another crypto suite.
    SuiteMismatch {
        /// Suite found in the envelope.
        found: u16,
    },
    /// A sealed state is older than the newest generation already seen:
    /// restoring it would roll a session back and reuse keys.
    Rollback {
        /// Generation of the blob.
        found: u64,
        /// Newest generation the caller has seen.
        newest: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BufferTooSmall { needed } => write!(f, "buffer too small: {needed} bytes needed"),
            Error::Truncated => f.write_str("input truncated"),
            Error::TrailingBytes => f.write_str("trailing bytes after value"),
            Error::NonMinimalVarint => f.write_str("variable-length integer not minimally encoded"),
            Error::VarintOutOfRange => f.write_str("variable-length integer out of range"),
            Error::LengthOverflow => f.write_str("length exceeds its prefix or a capacity"),
            Error::InvalidValue => f.write_str("invalid field value"),
            Error::Decrypt => f.write_str("decryption failed"),
            Error::BadSignature => f.write_str("signature verification failed"),
            Error::InvalidKey => f.write_str("invalid public key"),
            Error::NonContributory => f.write_str("Diffie-Hellman result is all zero"),
            Error::InvalidLength => f.write_str("unsupported output length"),
            Error::BadMagic => f.write_str("not a securemesh state envelope"),
            Error::WrongKind { found, expected } => {
                write!(f, "state kind {found} where {expected} was expected")
            }
            Error::UnknownVersion { found } => write!(f, "unknown state version {found}"),
            Error::SuiteMismatch { found } => write!(f, "state written for suite {found:#06x}"),
            Error::Rollback { found, newest } => {
                write!(f, "state generation {found} is older than newest seen {newest}")
            }
        }
    }
}

impl core::error::Error for Error {}

/// What a core error means to the protocol crates above: one
/// classification, so that every crate maps the errors of the codec and of
/// the primitives the same way (each `From<securemesh_core::Error>` of
/// noise, ratchet and mls-lite matches on this, not on the variants).
///
/// ```
/// use securemesh_core::{Error, ErrorClass};
/// assert_eq!(Error::Truncated.class(), ErrorClass::Malformed);
/// assert_eq!(Error::LengthOverflow.class(), ErrorClass::Capacity);
/// assert_eq!(Error::Rollback { found: 1, newest: 2 }.class(), ErrorClass::State);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The caller's buffer is too small (nothing changed).
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
    },
    /// Bytes that do not parse: truncated, trailing, non-minimal, out of
    /// range, a value the format does not allow.
    Malformed,
    /// A length or count beyond what its prefix or a capacity holds.
    Capacity,
    /// Authentication failed (opaque).
    Decrypt,
    /// A signature or a public key was refused (opaque).
    BadSignature,
    /// A Diffie-Hellman result was all zero.
    NonContributory,
    /// A key derivation was asked for an output length it cannot give.
    InvalidLength,
    /// A persisted-state envelope was refused (magic, kind, version,
    /// suite, rollback): the caller's storage, not the peer.
    State,
}

impl Error {
    /// The class of this error (see [`ErrorClass`]).
    pub const fn class(&self) -> ErrorClass {
        match *self {
            Error::BufferTooSmall { needed } => ErrorClass::BufferTooSmall { needed },
            Error::Truncated
            | Error::TrailingBytes
            | Error::NonMinimalVarint
            | Error::VarintOutOfRange
            | Error::InvalidValue => ErrorClass::Malformed,
            Error::LengthOverflow => ErrorClass::Capacity,
            Error::Decrypt => ErrorClass::Decrypt,
            Error::BadSignature | Error::InvalidKey => ErrorClass::BadSignature,
            Error::NonContributory => ErrorClass::NonContributory,
            Error::InvalidLength => ErrorClass::InvalidLength,
            Error::BadMagic
            | Error::WrongKind { .. }
            | Error::UnknownVersion { .. }
            | Error::SuiteMismatch { .. }
            | Error::Rollback { .. } => ErrorClass::State,
        }
    }
}

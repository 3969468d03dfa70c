//! Errors of the ratchet crate.

use core::fmt;

/// Everything that can go wrong in X3DH, the prekey pool or a session.
///
/// Authentication failures are the single opaque [`Error::Decrypt`]; a
/// failed call leaves every state exactly as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The output buffer is too small; nothing changed.
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
    },
    /// Malformed bytes (bundle, initial message, header, state).
    Malformed,
    /// An unknown format version.
    UnknownVersion,
    /// A signature (identity binding or signed prekey) did not verify.
    BadSignature,
    /// A Diffie-Hellman result was all zero.
    NonContributory,
    /// Authentication failed. Deliberately opaque.
    Decrypt,
    /// The message was already received (its key is spent).
    Duplicate,
    /// Reaching the message would skip more than `MAX_SKIP` keys of a chain.
    TooManySkipped,
    /// The prekey the message names is unknown or already consumed.
    UnknownPrekey,
    /// A counter would overflow (at most 2^32 - 1 messages in a chain).
    CounterExhausted,
    /// The payload is larger than the format allows.
    MessageTooLong,
    /// A capacity of the prekey pool is exceeded.
    PoolFull,
    /// A key derivation was asked for more output than HKDF-SHA256 gives
    /// (255 blocks).
    InvalidLength,
    /// The responder requires header encryption and the initial message
    /// has clear headers.
    HeaderEncryptionRequired,
    /// The identity is not the prekey pool's owner (the identity it was
    /// created with).
    WrongIdentity,
    /// A persisted state failed to decode.
    State(securemesh_core::Error),
    /// A PQXDH downgrade: the initial message has no KEM ciphertext although
    /// every bundle with the signed prekey it names carried a KEM prekey.
    /// Nothing was consumed.
    Downgrade,
    /// The KEM algorithm is not one PQXDH runs with in this build (feature
    /// `pq`), or the bundle has no KEM prekey for PQXDH.
    UnsupportedKem,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BufferTooSmall { needed } => write!(f, "buffer too small: {needed} bytes needed"),
            Error::Malformed => f.write_str("malformed input"),
            Error::UnknownVersion => f.write_str("unknown format version"),
            Error::BadSignature => f.write_str("signature verification failed"),
            Error::NonContributory => f.write_str("Diffie-Hellman result is all zero"),
            Error::Decrypt => f.write_str("decryption failed"),
            Error::Duplicate => f.write_str("duplicate message"),
            Error::TooManySkipped => f.write_str("too many skipped messages"),
            Error::UnknownPrekey => f.write_str("unknown or consumed prekey"),
            Error::CounterExhausted => f.write_str("message counter exhausted"),
            Error::MessageTooLong => f.write_str("message too long"),
            Error::PoolFull => f.write_str("prekey pool full"),
            Error::InvalidLength => f.write_str("key derivation output too long"),
            Error::WrongIdentity => f.write_str("the identity does not own this prekey pool"),
            Error::HeaderEncryptionRequired => {
                f.write_str("header encryption is required and the initial message has clear headers")
            }
            Error::State(e) => write!(f, "persisted state: {e}"),
            Error::Downgrade => {
                f.write_str("initial message without the KEM ciphertext its bundle required (downgrade)")
            }
            Error::UnsupportedKem => f.write_str("KEM algorithm not supported or no KEM prekey"),
        }
    }
}

impl core::error::Error for Error {}

/// Core errors by their [`ErrorClass`](securemesh_core::ErrorClass), as
/// every securemesh crate maps them: wire bytes that do not parse or
/// exceed a bound are [`Error::Malformed`] (the ratchet formats have no
/// separate capacity error on input), persisted-state refusals stay
/// [`Error::State`] with the core error inside.
impl From<securemesh_core::Error> for Error {
    fn from(e: securemesh_core::Error) -> Self {
        use securemesh_core::ErrorClass as C;
        match e.class() {
            C::BufferTooSmall { needed } => Error::BufferTooSmall { needed },
            C::Malformed | C::Capacity => Error::Malformed,
            C::Decrypt => Error::Decrypt,
            C::BadSignature => Error::BadSignature,
            C::NonContributory => Error::NonContributory,
            C::InvalidLength => Error::InvalidLength,
            _ => Error::State(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use securemesh_core::Error as C;

    #[test]
    fn core_errors_map_by_their_class() {
        assert_eq!(Error::from(C::Truncated), Error::Malformed);
        assert_eq!(Error::from(C::NonMinimalVarint), Error::Malformed);
        assert_eq!(Error::from(C::LengthOverflow), Error::Malformed);
        assert_eq!(Error::from(C::InvalidKey), Error::BadSignature);
        assert_eq!(Error::from(C::InvalidLength), Error::InvalidLength);
        assert_eq!(Error::from(C::BufferTooSmall { needed: 7 }), Error::BufferTooSmall { needed: 7 });
        let rollback = C::Rollback { found: 1, newest: 2 };
        assert_eq!(Error::from(rollback), Error::State(rollback));
    }
}

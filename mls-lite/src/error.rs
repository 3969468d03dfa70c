//! Errors of MLS-lite.

use core::fmt;

/// Everything that can go wrong in MLS-lite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The output buffer is too small; nothing changed.
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
    },
    /// Malformed or non-canonical encoding.
    Malformed,
    /// A capacity of this bounded profile is exceeded.
    Capacity,
    /// Decryption failed. Deliberately opaque.
    Decrypt,
    /// A signature did not verify.
    BadSignature,
    /// A derivation was asked for an unsupported length.
    InvalidLength,
    /// A value the profile does not support (ciphersuite, credential type…).
    Unsupported,
    /// A persisted state failed to decode.
    State(securemesh_core::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BufferTooSmall { needed } => write!(f, "buffer too small: {needed} bytes needed"),
            Error::Malformed => f.write_str("malformed encoding"),
            Error::Capacity => f.write_str("capacity exceeded"),
            Error::Decrypt => f.write_str("decryption failed"),
            Error::BadSignature => f.write_str("signature verification failed"),
            Error::InvalidLength => f.write_str("unsupported output length"),
            Error::Unsupported => f.write_str("unsupported value"),
            Error::State(e) => write!(f, "persisted state: {e}"),
        }
    }
}

impl core::error::Error for Error {}

impl From<securemesh_core::Error> for Error {
    fn from(e: securemesh_core::Error) -> Self {
        use securemesh_core::Error as C;
        match e {
            C::BufferTooSmall { needed } => Error::BufferTooSmall { needed },
            C::Decrypt => Error::Decrypt,
            C::BadSignature | C::InvalidKey => Error::BadSignature,
            C::InvalidLength => Error::InvalidLength,
            C::Truncated | C::TrailingBytes | C::NonMinimalVarint | C::VarintOutOfRange | C::InvalidValue => {
                Error::Malformed
            }
            C::LengthOverflow => Error::Capacity,
            other => Error::State(other),
        }
    }
}

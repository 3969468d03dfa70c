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
    /// A KeyPackage's lifetime does not hold the caller's `now`.
    Expired,
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
            Error::Expired => f.write_str("outside its lifetime"),
            Error::State(e) => write!(f, "persisted state: {e}"),
        }
    }
}

impl core::error::Error for Error {}

/// Core errors by their [`ErrorClass`](securemesh_core::ErrorClass), as
/// every securemesh crate maps them; a length beyond a capacity is
/// [`Error::Capacity`] here (MLS vectors are bounded by the group's const
/// capacities), persisted-state refusals stay [`Error::State`].
impl From<securemesh_core::Error> for Error {
    fn from(e: securemesh_core::Error) -> Self {
        use securemesh_core::ErrorClass as C;
        match e.class() {
            C::BufferTooSmall { needed } => Error::BufferTooSmall { needed },
            C::Malformed => Error::Malformed,
            C::Capacity => Error::Capacity,
            C::Decrypt => Error::Decrypt,
            C::BadSignature => Error::BadSignature,
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
        assert_eq!(Error::from(C::VarintOutOfRange), Error::Malformed);
        assert_eq!(Error::from(C::LengthOverflow), Error::Capacity);
        assert_eq!(Error::from(C::InvalidKey), Error::BadSignature);
        assert_eq!(Error::from(C::NonContributory), Error::State(C::NonContributory));
        let rollback = C::Rollback { found: 1, newest: 2 };
        assert_eq!(Error::from(rollback), Error::State(rollback));
    }
}

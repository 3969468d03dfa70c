//! Errors of the Noise crate.

use core::fmt;

/// Why a protocol name was refused.
///
/// Its `Display` text says it in words; a name that needs a primitive whose
/// cargo feature is off names that feature:
///
/// ```
/// use securemesh_noise::{NameError, Protocol};
/// let e = Protocol::parse("Noise_XY_25519_ChaChaPoly_SHA256").unwrap_err();
/// assert_eq!(e, NameError::UnknownPattern);
/// assert_eq!(e.to_string(), "unknown handshake pattern");
/// let off = NameError::FeatureDisabled { name: "AESGCM", feature: "aes-gcm" };
/// assert_eq!(off.to_string(), "AESGCM needs the securemesh-noise feature `aes-gcm`");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The cipher is not one this crate knows.
    UnknownCipher,
    /// The hash is not one this crate knows.
    UnknownHash,
    /// The name is longer than [`crate::MAX_NAME_LEN`].
    TooLong,
    /// The KEM after `+` in the DH section is not one this crate knows
    /// (`MLKEM768`, `MLKEM1024`; `XWING` with the feature `hfs-x-wing`).
    UnknownKem,
    /// `hfs` without a KEM (`25519+MLKEM768`), a KEM without `hfs`, `hfs`
    /// twice, or `hfs` on a one-way or `fallback` pattern.
    InvalidHfs,
    /// The cipher or hash is known but not compiled in: enable the cargo
    /// feature `feature` of securemesh-noise (`aes-gcm` for `AESGCM`,
    /// `blake2` for `BLAKE2s` and `BLAKE2b`).
    FeatureDisabled {
        /// The primitive as spelled in the name, e.g. `"AESGCM"`.
        name: &'static str,
        /// The securemesh-noise feature that compiles it in, e.g. `"aes-gcm"`.
        feature: &'static str,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Syntax => {
                f.write_str("not of the form Noise_<pattern><modifiers>_<dh>_<cipher>_<hash>")
            }
            NameError::UnknownPattern => f.write_str("unknown handshake pattern"),
            NameError::InvalidModifier => {
                f.write_str("a modifier is unknown, repeated, out of order or out of range")
            }
            NameError::InvalidFallback => f.write_str(
                "fallback needs a two-way pattern whose first message can become a pre-message",
            ),
            NameError::UnknownDh => f.write_str("unknown DH function (25519 is supported)"),
            NameError::UnknownCipher => f.write_str(
                "unknown cipher (ChaChaPoly is supported; AESGCM with the securemesh-noise feature `aes-gcm`)",
            ),
            NameError::UnknownHash => f.write_str(
                "unknown hash (SHA256 and SHA512 are supported; BLAKE2s and BLAKE2b with the securemesh-noise feature `blake2`)",
            ),
            NameError::TooLong => write!(f, "name longer than {} bytes", crate::MAX_NAME_LEN),
            NameError::UnknownKem => f.write_str("unknown KEM (MLKEM768 and MLKEM1024 are supported)"),
            NameError::InvalidHfs => f.write_str(
                "hfs needs a KEM after the DH name (25519+MLKEM768), a KEM needs hfs, and hfs applies once to an interactive pattern without fallback",
            ),
            NameError::FeatureDisabled { name, feature } => {
                write!(f, "{name} needs the securemesh-noise feature `{feature}`")
            }
        }
    }
}

impl core::error::Error for NameError {}

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
    /// A key derivation was asked for an output length HKDF cannot give
    /// (never with the suites' hash lengths; reported rather than keys of
    /// zeros).
    InvalidLength,
    /// The nonce space of this direction is exhausted (2^64 - 1 is reserved).
    NonceExhausted,
    /// A datagram was already received, or is older than the replay window.
    Replay,
    /// This direction is not available (one-way patterns).
    OneWay,
    /// A persisted state failed to decode.
    State(securemesh_core::Error),
    /// `hfs`: the peer's KEM public key (its `e1`) fails the scheme's key
    /// check (FIPS 203 §7.2), found when encapsulating to it for `ekem1`.
    /// Nothing changed; the handshake cannot go on: drop it.
    InvalidKemKey,
}

impl From<NameError> for Error {
    fn from(e: NameError) -> Self {
        Error::Name(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Name(e) => write!(f, "invalid Noise protocol name: {e}"),
            Error::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed; nothing changed")
            }
            Error::MessageTooLong => f.write_str("the message would exceed the Noise limit of 65535 bytes"),
            Error::Decrypt => f.write_str("decryption failed or the message is malformed"),
            Error::Poisoned => f.write_str("the handshake failed earlier and can no longer be used"),
            Error::WrongTurn => {
                f.write_str("not this party's turn to do that, or the handshake is already complete")
            }
            Error::MissingKey => {
                f.write_str("a key the pattern needs was not supplied (local static, remote static or PSK)")
            }
            Error::UnexpectedKey => f.write_str("a key was supplied that the pattern does not use"),
            Error::RemoteStaticPending => {
                f.write_str("the peer's static key must be accepted before the handshake can go on")
            }
            Error::Incomplete => f.write_str("the handshake has messages left"),
            Error::NonceExhausted => {
                f.write_str("the nonces of this direction are used up; start a new handshake")
            }
            Error::InvalidLength => f.write_str("a key derivation was asked for more output than HKDF gives"),
            Error::Replay => f.write_str("datagram already received or older than the replay window"),
            Error::OneWay => f.write_str("a one-way pattern has no transport in this direction"),
            Error::State(e) => write!(f, "persisted state refused: {e}"),
            Error::InvalidKemKey => f.write_str("the peer's KEM public key fails the key check"),
        }
    }
}

impl core::error::Error for Error {}

/// Core errors by their [`ErrorClass`](securemesh_core::ErrorClass), as
/// every securemesh crate maps them. Noise messages are parsed by the
/// handshake itself, so the codec's errors reach noise only from a
/// persisted state: they stay [`Error::State`] with the core error inside.
impl From<securemesh_core::Error> for Error {
    fn from(e: securemesh_core::Error) -> Self {
        use securemesh_core::ErrorClass as C;
        match e.class() {
            C::BufferTooSmall { needed } => Error::BufferTooSmall { needed },
            C::Decrypt => Error::Decrypt,
            C::InvalidLength => Error::InvalidLength,
            _ => Error::State(e),
        }
    }
}

#[cfg(test)]
mod class_tests {
    use super::*;
    use securemesh_core::Error as C;

    /// Core errors map by their class; an HKDF length error is its own
    /// variant (it was reported as MessageTooLong).
    #[test]
    fn core_errors_map_by_their_class() {
        assert_eq!(Error::from(C::InvalidLength), Error::InvalidLength);
        assert_eq!(Error::from(C::Decrypt), Error::Decrypt);
        assert_eq!(Error::from(C::BufferTooSmall { needed: 3 }), Error::BufferTooSmall { needed: 3 });
        assert_eq!(Error::from(C::Truncated), Error::State(C::Truncated));
    }
}

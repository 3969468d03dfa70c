//! # securemesh-core
//!
//! The shared vocabulary of securemesh, below the protocol crates
//! (`securemesh-noise`, `securemesh-ratchet`, `securemesh-mls-lite`):
//!
//! - [`Instant`] and [`UnixTime`]: time is always passed in by the caller;
//! - [`codec`]: a bounded, panic-free [`Reader`](codec::Reader) and
//!   [`Writer`](codec::Writer), with the MLS variable-length integer;
//! - [`Secret`]: key material that zeroizes on drop, never prints, and
//!   compares in constant time;
//! - [`crypto`]: suite traits (`Dh`, `Aead`, `Hash`, `Signature`, `Kem`) and
//!   the default suite X25519 / ChaCha20-Poly1305 / SHA-256 / Ed25519;
//! - [`envelope`]: the one persisted-state format, optionally sealed under a
//!   storage key with a generation counter that detects rollback.
//!
//! The crate is `no_std`, allocates nothing, holds no global state, reads no
//! clock and draws randomness only from the `&mut impl CryptoRng` a call is
//! lent.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

#[cfg(test)]
extern crate std;

pub mod codec;
pub mod crypto;
pub mod envelope;
mod error;
pub mod events;
#[cfg(any(test, feature = "kat"))]
pub mod kat;
mod secret;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod time;

pub use error::{Error, ErrorClass};
/// The randomness traits every call takes (`rand_core` 0.10): implement
/// `TryRng` + `TryCryptoRng` for a hardware generator, or wrap a fallible
/// one in `rand_core::UnwrapErr`. See the README's "Randomness".
pub use rand_core;
pub use rand_core::CryptoRng;
pub use secret::{ByteArray, Secret, ct_eq};
pub use time::{Instant, UnixTime};

#[cfg(test)]
mod size_tests {
    //! `size_of` ceilings of core's types, so firmware can budget RAM.
    use super::*;
    use core::mem::size_of;

    #[test]
    fn state_type_sizes() {
        assert_eq!(size_of::<Secret<[u8; 32]>>(), 32);
        assert_eq!(size_of::<Instant>(), 8);
        assert_eq!(size_of::<envelope::Header>(), 6);
        assert!(size_of::<codec::Reader<'_>>() <= 3 * size_of::<usize>());
        assert!(size_of::<codec::Writer<'_>>() <= 4 * size_of::<usize>());
        assert!(size_of::<crypto::DhOutput<[u8; 32]>>() <= 33);
        assert!(size_of::<crypto::Ed25519SigningKey>() <= 256);
        std::println!(
            "sizes: Secret<32>={} Header={} Reader={} Writer={} DhOutput={} Ed25519SigningKey={} Sha256={} Sha512={}",
            size_of::<Secret<[u8; 32]>>(),
            size_of::<envelope::Header>(),
            size_of::<codec::Reader<'_>>(),
            size_of::<codec::Writer<'_>>(),
            size_of::<crypto::DhOutput<[u8; 32]>>(),
            size_of::<crypto::Ed25519SigningKey>(),
            size_of::<crypto::Sha256>(),
            size_of::<crypto::Sha512>(),
        );
    }
}

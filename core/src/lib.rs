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

#[cfg(test)]
extern crate std;

pub mod codec;
pub mod crypto;
pub mod envelope;
mod error;
#[cfg(any(test, feature = "kat"))]
pub mod kat;
mod secret;
mod time;

pub use error::Error;
pub use rand_core::CryptoRng;
pub use secret::{ByteArray, Secret, ct_eq};
pub use time::{Instant, UnixTime};

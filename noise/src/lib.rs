//! # securemesh-noise
//!
//! The Noise Protocol Framework (revision 34) on `securemesh-core`, for two
//! agents that are online at the same time.
//!
//! - **Every pattern of the spec**: the 3 one-way, 12 fundamental and 23
//!   deferred patterns, `pskN` modifiers at every valid position (several
//!   in one name, e.g. `XXpsk0+psk3`), and `fallback` for Noise Pipes
//!   ([`HandshakeState::fallback`]).
//! - **Names** parse at run time ([`Protocol::parse`]) or at compile time
//!   ([`protocol!`]); both go through the same `const` parser and engine.
//! - **Sans-IO and allocation-free**: messages are written into and read
//!   from caller buffers; randomness is lent per call; nothing allocates.
//! - **Handshake** ([`HandshakeState`]): remote static keys are surfaced for
//!   the caller to accept; a failed read poisons the handshake; `finish()`
//!   consumes it into a [`Transport`].
//! - **Stream transport** ([`Transport`]): implicit nonces, 2^64-1 refused
//!   before use, rekey, in-place encryption.
//! - **Datagram transport** ([`DatagramTransport`]): explicit counters and an
//!   RFC 6479 replay window (2048 packets by default) for UDP.
//! - **Persistence** of both transports through the `core` envelope.
//! - **Hybrid forward secrecy** (feature `hfs`): the `hfs` modifier of
//!   "KEM-based Hybrid Forward Secrecy for Noise" (revision 1) on every
//!   interactive pattern, tokens `e1` and `ekem1`, with ML-KEM-768 and
//!   ML-KEM-1024 (and X-Wing with `hfs-x-wing`) named after the DH function:
//!   `Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256` (`KemChoice` when the
//!   feature is on).
//!
//! Primitives: 25519, ChaChaPoly, SHA256, SHA512.
//!
//! See [`HandshakeState`] for a complete XX handshake.
//!
//! ## Cargo features
//!
//! - `aes-gcm`: the `AESGCM` cipher.
//! - `blake2`: the `BLAKE2s` and `BLAKE2b` hashes.
//! - `hfs`: the `hfs` modifier with `MLKEM768` and `MLKEM1024`
//!   (securemesh-core's `ml-kem`); `hfs-x-wing` adds `XWING`. Still no heap
//!   and no_std; a [`HandshakeState`] grows from about 0.8 KB to 2.4 KB
//!   (the peer's KEM public key, up to 1568 bytes, and our 64-byte KEM
//!   seed, which zeroizes on drop and is dropped once `ekem1` is read).
//!   Interoperability: our `Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256`
//!   reproduces the five published js-libp2p-noise vectors byte for byte
//!   (`test-vectors/noise`). snow's `hfs` feature offers only Kyber1024
//!   (pqcrypto, pre-FIPS 203, `25519+Kyber1024`), which is not ML-KEM, so
//!   snow and we share no hfs protocol; the token placement is the same.
//! - `dangerous-testing`: `Builder::dangerous_with_ephemeral`, which fixes
//!   the ephemeral key so published test vectors and fuzz targets are
//!   reproducible. It is for test code only (the `securemesh-test-vectors`
//!   crate and `fuzz/` enable it); a product must never enable it, because
//!   a reused ephemeral key destroys the handshake's security. Without the
//!   feature the method does not exist:
#![cfg_attr(
    not(feature = "dangerous-testing"),
    doc = "```compile_fail
use securemesh_noise::{Builder, protocol, Protocol};
const NN: Protocol = protocol!(\"Noise_NN_25519_ChaChaPoly_SHA256\");
let b = Builder::new(&NN).dangerous_with_ephemeral(securemesh_core::Secret::new([7; 32]));
```"
)]
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

#[cfg(test)]
extern crate std;

mod cipher;
mod datagram;
mod error;
mod handshake;
#[cfg(feature = "hfs")]
mod kem;
mod message;
mod pattern;
mod persist;
mod symmetric;
mod transport;

pub use cipher::TAG_LEN;
pub use datagram::{
    DATAGRAM_OVERHEAD, DEFAULT_WINDOW_WORDS, DatagramTransport, DefaultDatagramTransport,
    MAX_DATAGRAM_PAYLOAD, ReplayWindow,
};
pub use error::{Error, NameError};
pub use handshake::{Builder, DH_LEN, HandshakeState, Keypair, MAX_PSKS, Role};
#[cfg(feature = "hfs")]
pub use kem::{KemChoice, MAX_KEM_CIPHERTEXT_LEN, MAX_KEM_PUBLIC_KEY_LEN};
pub use message::MAX_MESSAGE_LEN;
pub use pattern::{
    CipherChoice, DhChoice, HandshakePattern, HashChoice, MAX_MESSAGES, MAX_NAME_LEN, MAX_TOKENS,
    MessagePattern, PreMessage, Protocol, Token, pattern_names,
};
pub use symmetric::MAX_HASH_LEN;
pub use transport::{MAX_PAYLOAD_LEN, OVERHEAD, Transport};

//! # securemesh-mls-lite
//!
//! Will hold a bounded RFC 9420 profile for ciphersuite 0x0003
//! (X25519, ChaCha20-Poly1305, SHA-256, Ed25519): the ratchet tree, TreeKEM,
//! key schedule, secret tree and message framing, byte-exact with MLS, with
//! fixed capacities instead of heap allocation.
//!
//! This crate holds no API yet: it reserves its place in the workspace and
//! is already built for `thumbv7em-none-eabihf` without alloc in CI, so
//! the code it will hold stays `no_std` and allocation-free from the start.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

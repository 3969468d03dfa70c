//! # securemesh-noise
//!
//! Will hold the Noise Protocol Framework (revision 34) on `securemesh-core`:
//! every handshake pattern (one-way, fundamental, deferred), `pskN` and
//! `fallback` modifiers, a sans-IO handshake state machine writing into
//! caller buffers, stream transport with implicit nonces and rekey, and a
//! datagram transport with explicit counters and an RFC 6479 replay window.
//!
//! This crate holds no API yet: it reserves its place in the workspace and
//! is already built for `thumbv7em-none-eabihf` without alloc in CI, so
//! the code it will hold stays `no_std` and allocation-free from the start.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

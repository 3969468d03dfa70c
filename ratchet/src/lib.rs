//! # securemesh-ratchet
//!
//! Will hold Signal-style asynchronous sessions on `securemesh-core`: agent
//! identities, X3DH (and later PQXDH) prekey bundles with a one-time prekey
//! pool and its lifecycle, and the Double Ratchet with bounded skipped-key
//! storage, optional header encryption and heartbeat-driven recovery.
//!
//! This crate holds no API yet: it reserves its place in the workspace and
//! is already built for `thumbv7em-none-eabihf` without alloc in CI, so
//! the code it will hold stays `no_std` and allocation-free from the start.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

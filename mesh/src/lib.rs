//! # securemesh
//!
//! Will hold the mesh router: it picks the channel for a peer (Noise when
//! both are online, a ratchet session when the peer is offline, an MLS group
//! for fleets), binds authorization to transport identity, keeps the session
//! table and prekey pool, persists state through the sealed envelope of
//! `securemesh-core`, and reports metrics.
//!
//! This crate holds no API yet: it reserves its place in the workspace and
//! is already built for `thumbv7em-none-eabihf` without alloc in CI, so
//! the code it will hold stays `no_std` and allocation-free from the start.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

/// The README's examples, compiled and run as doc-tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

//! # securemesh-host
//!
//! The hosted agent: the sans-IO [`securemesh::Agent`] driven by a Tokio
//! runtime, configured from a YAML file, persisting through a state
//! store, reaching offline peers through a delivery service, measured
//! over Prometheus, and shown by a live demo (the `securemesh` binary).
//!
//! ## Why a separate crate
//!
//! The protocol crates and the mesh core are `no_std` without a heap and
//! are checked so on a microcontroller target. A `std`/`tokio` feature of
//! `securemesh` would put Tokio, serde and a YAML parser into that crate's
//! `cargo tree` and into the feature resolution of every build that
//! names it, and one feature unified by accident would break the
//! no-alloc check. A crate of its own (`securemesh-host`, binary
//! `securemesh`) keeps the core's graph exactly what firmware builds:
//! arrows point down, from the host to the mesh, never back.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod delivery;
pub mod error;
pub mod keys;
pub mod rng;
pub mod state;
pub mod store;

pub use error::HostError;

/// The agent the host runs: up to 32 peers, 16 sessions, 32 queued
/// envelopes of 1 KiB, and a pool of
/// [`config::PREKEY_POOL_SIZE`] one-time prekeys. About 100 KB: keep it
/// boxed.
pub type HostAgent = securemesh::Agent<32, 16, 32, 1024, 16>;
pub mod app;
pub mod demo;
pub mod metrics;
pub mod runtime;

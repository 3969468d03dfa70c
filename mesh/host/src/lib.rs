//! # securemesh-host
//!
//! The hosted agent: the sans-IO [`securemesh::Agent`] driven by a Tokio
//! runtime, configured from a YAML file, persisting through a state
//! store, reaching offline peers through a delivery service, measured
//! over Prometheus, and shown by a live demo (the `securemesh` binary:
//! `keygen`, `bundle`, `agent --config FILE [--stdio]`, `demo [--json]`;
//! with `--stdio` the agent takes [`control`] lines).
//!
//! - [`config`], the YAML file (template `examples/agent.yaml`); every
//!   refusal names the key and its line.
//! - [`store`], the [`StateStore`](store::StateStore) and the
//!   [`FileStore`](store::FileStore) (atomic writes, generation ledger);
//!   [`state`], storing what `poll_persist` hands out, restoring.
//! - [`delivery`], the [`DeliveryService`](delivery::DeliveryService)
//!   (mailboxes acknowledged after persistence, one-time prekey bundles
//!   handed out once, MLS commit order) and its embedded
//!   [`InProcess`](delivery::InProcess) implementation.
//! - [`runtime`], one Tokio task per agent; Noise over length-framed
//!   TCP, the mailbox, timers, OS randomness, shutdown that stores;
//!   [`net`], its sockets bounded (connection cap, queue, frame length).
//! - [`metrics`], Prometheus text over HTTP; [`demo`], the live demo;
//!   [`app`], the `agent` and `bundle` commands; [`keys`], [`rng`].
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
//!
//! ## Two agents on loopback
//!
//! ```
//! use securemesh::{MessageKind, Permissions, Role, Roles};
//! use securemesh_core::envelope::StorageKey;
//! use securemesh_host::delivery::InProcess;
//! use securemesh_host::runtime::{spawn, AddressBook, AgentOptions};
//! use std::{sync::Arc, time::Duration};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! const TASK: MessageKind = MessageKind(1);
//! let dir = std::env::temp_dir().join(format!("securemesh-doc-{}", std::process::id()));
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! rt.block_on(async {
//!     let delivery = Arc::new(InProcess::new(64));
//!     let book = AddressBook::default();
//!     let (app, mut delivered) = tokio::sync::mpsc::unbounded_channel();
//!     let options = |name: &str| AgentOptions {
//!         mailbox_poll: Duration::from_millis(20),
//!         ..AgentOptions::loopback(name, &dir, securemesh::Config::default())
//!     };
//!     let mut rng = securemesh_host::rng::OsRng::new()?;
//!     let (a_key, b_key) = (StorageKey::random(&mut rng), StorageKey::random(&mut rng));
//!     let alice = spawn(options("alice"), a_key, delivery.clone(), book.clone(), app.clone()).await?;
//!     let bob = spawn(options("bob"), b_key, delivery.clone(), book.clone(), app.clone()).await?;
//!     // Bob knows Alice, sees her online and lets her send tasks; Alice knows Bob.
//!     for (me, peer) in [(&bob, alice.identity), (&alice, bob.identity)] {
//!         me.with(move |agent, _, _| -> Result<(), securemesh::Error> {
//!             let id = agent.add_peer_identity(&peer)?;
//!             agent.set_reachable(&id, true)?;
//!             agent.policy_mut().define_role(Role(0), Permissions::of(&[TASK]))?;
//!             Ok(agent.policy_mut().grant(id, Roles::of(&[Role(0)]))?)
//!         })
//!         .await??;
//!     }
//!     alice.send(bob.peer_id, TASK, b"measure tank 3".to_vec()).await?;
//!     let d = delivered.recv().await.ok_or("no delivery")?;
//!     assert_eq!((d.from, d.payload.as_slice()), (alice.peer_id, &b"measure tank 3"[..]));
//!     alice.shutdown().await?;
//!     bob.shutdown().await?; // stores its state
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # let _ = std::fs::remove_dir_all(&dir);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod app;
pub mod config;
pub mod control;
pub mod delivery;
pub mod demo;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod net;
pub mod outbox;
pub mod rng;
pub mod runtime;
pub mod state;
pub mod store;

pub use error::HostError;

/// The agent the host runs: up to 32 peers, 16 sessions, 32 queued
/// envelopes of [`HOST_BYTES`], and a pool of
/// [`config::PREKEY_POOL_SIZE`] one-time prekeys. Over 100 KB: keep it
/// boxed.
pub type HostAgent = securemesh::Agent<32, 16, 32, HOST_BYTES, 16>;

/// The agent's wire buffers (`BYTES`: each queued envelope, the largest
/// handshake message): 2 KiB with the feature `pq`, which an `hfs`
/// handshake message (1453 bytes) and a PQXDH initial message with a
/// payload of up to 700 bytes need, else 1 KiB
/// ([`securemesh::pq::DEFAULT_BYTES`]).
pub const HOST_BYTES: usize = securemesh::pq::DEFAULT_BYTES;

// With the feature `pq` the agent must be able to run the hybrid
// channels (a smaller `BYTES` silently runs them as `off`).
const _: () = assert!(!cfg!(feature = "pq") || HOST_BYTES >= securemesh::pq::MIN_PQ_BYTES);

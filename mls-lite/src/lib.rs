//! # securemesh-mls-lite
//!
//! A bounded RFC 9420 profile for ciphersuite 0x0003
//! (MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519), `no_std` and
//! without heap allocation. "Lite" means a bounded profile (fixed capacities,
//! ciphersuite 3, basic credentials), not a different protocol: what it
//! does is byte-exact RFC 9420.
//!
//! What is here, each part checked against the MLS working group's test
//! vectors: [`tree_math`] (array-based tree math), [`crypto`] (the
//! labelled derivations, signatures and HPKE encryption of suite 3),
//! [`key_schedule`] (epoch secrets, PSK secret, exporter, confirmation
//! tag), [`secret_tree`] (per-sender handshake and application ratchets),
//! [`sender_ratchets`] (the epoch's secret tree as state: node secrets
//! erased once used, use-once keys and a bounded out-of-order window per
//! sender),
//! [`tree`] (the ratchet tree: encoding, tree hash, parent hash,
//! validation), [`treekem`] (UpdatePath merge and path-secret decryption),
//! [`messages`] (KeyPackage, proposals, Commit, GroupInfo, Welcome and
//! MLSMessage views), [`framing`] (PublicMessage and PrivateMessage
//! protection), [`transcript`] (transcript hashes) and [`welcome`]
//! (joining a group from a Welcome into a bounded
//! [`JoinedGroup`](welcome::JoinedGroup) state), and [`commit`]
//! (processing proposals and commits of later epochs: PublicMessage and
//! PrivateMessage framing, Add/Update/Remove/PSK/GroupContextExtensions
//! proposals by value and by reference, external senders, external
//! commits, UpdatePath, key schedule, confirmation tag and transcript
//! hashes, transactionally through a caller-lent spare slot), and
//! [`persist`] (the group state through the `core` persisted-state
//! envelope, kind `MLS_GROUP`, plain or sealed, restorable in place), and
//! [`application`] (sealing and opening application messages of a joined
//! group). Sending commits comes next.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

#[cfg(test)]
extern crate std;

pub mod application;
pub mod commit;
pub mod crypto;
mod error;
pub mod framing;
pub mod key_schedule;
pub mod messages;
pub mod persist;
pub mod secret_tree;
pub mod sender_ratchets;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transcript;
pub mod tree;
pub mod tree_math;
pub mod treekem;
pub mod welcome;

pub use error::Error;

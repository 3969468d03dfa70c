//! # securemesh
//!
//! The mesh router (in progress): the wire envelope, the peer directory,
//! the authorization policy and the routing decision matrix.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

#[cfg(test)]
extern crate std;

pub mod envelope;
pub mod peer;
pub mod policy;
pub mod route;

pub use envelope::{ChannelKind, SessionId};
pub use peer::PeerId;
pub use policy::{MessageKind, Permissions, Role, Roles};
pub use route::{Channel, Purpose, Reason, Route};

/// The README's examples, compiled and run as doc-tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

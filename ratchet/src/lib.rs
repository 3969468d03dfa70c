//! # securemesh-ratchet
//!
//! Signal-style asynchronous sessions on `securemesh-core`, for an agent
//! that sends a task to a peer that is offline:
//!
//! - [`Identity`]: an Ed25519 signing key and an X25519 key-agreement key,
//!   bound by a signature (no XEdDSA);
//! - [`Bundle`]: the peer's published prekey bundle (signed prekey, one
//!   one-time prekey, and a KEM slot for PQXDH), bounded and versioned;
//! - with the feature `ml-dsa` (off by default), hybrid identities: a
//!   `PqIdentity` (ML-DSA-65) beside the [`Identity`], and version-3
//!   bundles whose signed and KEM prekeys carry Ed25519 + ML-DSA-65 hybrid
//!   signatures, both of which must verify (spec §3.1);
//! - [`PrekeyPool`]: the prekey lifecycle as a state machine with `now`;
//! - X3DH (revision 1) or, with the feature `pq`, PQXDH (revision 3:
//!   ML-KEM-768 or ML-KEM-1024 prekeys, see [`pqxdh`]) to start a
//!   [`Session`], and the Double Ratchet
//!   (revision 1) with bounded skipped-key storage, optional header
//!   encryption and heartbeat-driven recovery after compromise.
//!
//! Sans-IO, `no_std`, no heap: buffers are lent, randomness is passed per
//! call, time is passed in. The wire format is specified in [`spec`].
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

#[cfg(test)]
extern crate std;

mod bundle;
mod error;
#[cfg(feature = "ml-dsa")]
mod hybrid_identity;
mod identity;
pub mod kdf;
mod persist;
pub mod pqxdh;
mod prekeys;
mod session;
mod skipped;
pub mod spec;
mod x3dh;

pub use bundle::{
    BUNDLE_VERSION, BUNDLE_VERSION_HYBRID, Bundle, KEM_LABEL, KemPrekey, MAX_BUNDLE_LEN,
    MAX_HYBRID_BUNDLE_LEN, MAX_KEM_PUBLIC_LEN, OneTimePrekeyPublic, SPK_LABEL, SignedPrekeyPublic,
};
pub use error::Error;
#[cfg(feature = "ml-dsa")]
pub use hybrid_identity::{
    BundlePq, BundlePqStorage, HYBRID_BUNDLE_CONTEXT, HYBRID_SIG_LEN, PQ_PUBLIC_LEN, PqIdentity,
};
pub use identity::{IDENTITY_LABEL, Identity, PublicIdentity};
pub use pqxdh::{KEM_ML_KEM_768, KEM_ML_KEM_1024, KemAlgorithm, MAX_KEM_CIPHERTEXT_LEN};
pub use prekeys::{DefaultPrekeyPool, PrekeyConfig, PrekeyEvent, PrekeyMetrics, PrekeyPool};
pub use session::{
    DefaultSession, ENC_HEADER_LEN, HEADER_LEN, INITIAL_PREFIX_LEN, MAX_INITIAL_PREFIX_LEN, MSG_INITIAL,
    MSG_INITIAL_V1, MSG_RATCHET, MSG_RATCHET_HE, PqxdhSession, RATCHET_HE_OVERHEAD, RATCHET_OVERHEAD,
    Session, SessionConfig, SessionEvent, pqxdh_prefix_extra,
};
pub use skipped::SkippedKeys;

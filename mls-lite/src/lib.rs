//! # securemesh-mls-lite
//!
//! A bounded RFC 9420 profile for ciphersuite 0x0003
//! (MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519), `no_std` and
//! without heap allocation. "Lite" means a bounded profile (fixed capacities,
//! ciphersuite 3, basic credentials), not a different protocol: what it
//! does is byte-exact RFC 9420.
//!
//! Feature `x-wing` (off by default, so the firmware and the mesh do not
//! link ML-KEM) adds the hybrid post-quantum suite 0x004D,
//! `MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519` as OpenMLS defines it
//! (`crypto::xwing`: HPKE with X-Wing, checked against OpenMLS in
//! `interop/mls`). The ciphersuite is a property of the group
//! ([`Group::suite`], [`crypto::suite::Suite`]): one build runs 0x0003
//! and, with the feature, 0x004D groups (a KeyPackage of
//! [`key_package::create_key_package_in`] chooses; X-Wing leaves are
//! about 1.4 KB, so give such a group `LEAF_BYTES` of 1536). Without the
//! feature the HPKE bounds stay 32 bytes and the state keeps its size.
//!
//! Feature `ml-dsa` (off by default) adds hybrid credentials
//! (`hybrid_credential`): a private-use credential type (0xF0A5)
//! carrying the member's ML-DSA-65 key beside its identity, and a
//! private-use LeafNode extension (0xF0A6) carrying an ML-DSA-65 signature
//! of the leaf, checked wherever a leaf is verified together with the
//! Ed25519 one (both must verify). A group requires them of every member
//! through `required_capabilities`. Hybrid leaves are about 5.7 KB
//! (`LEAF_BYTES` of `hybrid_credential::HYBRID_LEAF_BYTES`).
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
//! [`messages`] (KeyPackage, proposals, Commit, GroupInfo and Welcome
//! views), [`framing`] (PublicMessage and PrivateMessage protection),
//! [`mls_message`] (the MLSMessage envelope over both), [`transcript`] (transcript hashes), and the group itself:
//! [`Group`] ([`group`]), one member's state, whose methods are the whole
//! API of a member: joining from a Welcome ([`welcome`]), processing
//! proposals and commits of later epochs ([`commit`]: PublicMessage and
//! PrivateMessage framing, Add/Update/Remove/PSK/GroupContextExtensions
//! proposals by value and by reference, external senders, external
//! commits, UpdatePath, key schedule, confirmation tag and transcript
//! hashes, transactionally through a caller-lent spare slot), sealing and
//! opening application messages ([`application`]), the exporter and the
//! epoch authenticator, and the state through the `core` persisted-state
//! envelope, kind `MLS_GROUP`, plain or sealed, restorable in place
//! ([`persist`]). The active side: making KeyPackages
//! ([`key_package`]), creating a group ([`creation`]), sending Add,
//! Remove, PSK and GroupContextExtensions proposals by reference
//! ([`proposal`]), and commits (Adds, Removes, PSKs, GroupContextExtensions
//! by value, the cached proposals by reference, with an UpdatePath where
//! required or asked for) sent as pending commits, with their Welcome
//! ([`pending_commit`]), and joining by an external commit from a
//! published GroupInfo ([`external_commit`]).
//!
//! # Using a group
//!
//! A [`Group`] is a slot of bounded size (about 60 KB with the default
//! capacities, [`DefaultGroup`]; fewer members make it smaller), so it is
//! made empty once, on the heap or in a `static`, and filled in place. The
//! life cycle of a member:
//!
//! 1. **Join.** Parse the `MLSMessage` holding the Welcome, describe our
//!    KeyPackage and its private keys as [`JoinKeys`], and
//!    [`Group::join_into`] the slot. The ratchet tree comes from the
//!    GroupInfo's extension or from the caller; external PSKs the Welcome
//!    names are the caller's ([`ExternalPsk`]).
//!    Or **create** the group: [`Group::create_into`] with a KeyPackage of
//!    our own ([`key_package::create_key_package`]), then add (and remove) members with
//!    [`Group::commit`], which stages the next epoch in a spare slot
//!    until the delivery service has ordered the commit
//!    ([`Group::merge_pending_commit`]); the Welcome it writes is what the
//!    new members join from.
//! 2. **Follow the group.** Each proposal goes through
//!    [`Group::process_proposal`] into a [`ProposalCache`]; each commit
//!    through [`Group::process_commit`], which computes the next epoch into
//!    a second, spare slot and swaps it in only if every check passed. It
//!    returns a [`CommitEvent`]: the new epoch, or that we were removed
//!    (then drop the group).
//! 3. **Persist** after every call that changed the state, before acting
//!    on it: the group implements
//!    [`Persist`](securemesh_core::envelope::Persist) (seal it under a
//!    storage key, with a new generation each time), and restores in
//!    place with [`Group::open_state_into`] / [`Group::decode_state_into`].
//!    See [`persist`] for the rule in full.
//! 4. **Talk.** [`Group::seal_application`] and
//!    [`Group::open_application`] send and receive application data as
//!    PrivateMessages; [`Group::export_secret`] derives keys for something
//!    outside MLS; [`Group::epoch_authenticator`] is compared out of band;
//!    [`Group::members`] lists who is in the group (whether to trust their
//!    credentials is the caller's decision).
//!
//! Every call is a transaction: on error the group is as it was (a failed
//! join leaves the slot empty or unchanged, never half-built). Big
//! temporaries come from a caller-lent `scratch`, sized by the
//! `*_scratch_len` functions.
//!
//! Joining a published group (the mlswg passive-client vectors) and
//! following two commits, the second of which commits a proposal by
//! reference:
//!
//! ```
//! use securemesh_core::envelope::Persist;
//! use securemesh_core::testing::TestRng;
//! use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
//! use securemesh_mls_lite::{
//!     CommitEvent, DefaultGroup, DefaultProposalCache, Error, ExternalPsk, JoinKeys, PskStore,
//! };
//! # use securemesh_mls_lite::crypto::Secret32;
//! # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../test-vectors/mls/passive-client-handling-commit.json");
//! # let vectors: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
//! # let entry = &vectors[6];
//! # let hex = |v: &serde_json::Value| -> Vec<u8> {
//! #     let s = v.as_str().unwrap();
//! #     (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
//! # };
//! # let secret = |v: &serde_json::Value| Secret32::from_slice(&hex(v)).unwrap();
//! # let (key_package, welcome) = (hex(&entry["key_package"]), hex(&entry["welcome"]));
//! # let init_priv = secret(&entry["init_priv"]);
//! # let encryption_priv = secret(&entry["encryption_priv"]);
//! # let signature_priv = secret(&entry["signature_priv"]);
//! # let (psk_id, psk) = (hex(&entry["external_psks"][0]["psk_id"]), hex(&entry["external_psks"][0]["psk"]));
//! # let epochs: Vec<(Vec<Vec<u8>>, Vec<u8>)> = entry["epochs"].as_array().unwrap().iter()
//! #     .map(|e| (e["proposals"].as_array().unwrap().iter().map(&hex).collect(), hex(&e["commit"])))
//! #     .collect();
//! // Two slots (the spare one takes the next epoch of each commit) and the
//! // proposal cache, made once.
//! let mut group: Box<DefaultGroup> = Box::default();
//! let mut spare: Box<DefaultGroup> = Box::default();
//! let mut cache: Box<DefaultProposalCache> = Box::default();
//! let external = [ExternalPsk { id: &psk_id, psk: &psk }];
//!
//! // 1. Join from the Welcome.
//! let MlsMessageBody::KeyPackage(key_package) = MlsMessage::from_bytes(&key_package)?.body else {
//!     return Err(Error::Malformed);
//! };
//! let keys = JoinKeys {
//!     key_package,
//!     init_priv: &init_priv,
//!     encryption_priv: &encryption_priv,
//!     signature_priv: &signature_priv,
//! };
//! let MlsMessageBody::Welcome(w) = MlsMessage::from_bytes(&welcome)?.body else {
//!     return Err(Error::Malformed);
//! };
//! let mut scratch = vec![0u8; DefaultGroup::scratch_len(welcome.len())];
//! group.join_into(&w, &keys, None, &external, &mut scratch)?;
//! assert_eq!(group.members().count(), 8);
//!
//! // 2. Follow the group: proposals into the cache, then the commit.
//! let store = PskStore { external: &external, resumption: &[] };
//! for (proposals, commit) in &epochs {
//!     for proposal in proposals {
//!         let mut scratch = vec![0u8; DefaultGroup::commit_scratch_len(proposal.len())];
//!         group.process_proposal(proposal, &mut cache, &mut scratch)?;
//!     }
//!     let mut scratch = vec![0u8; DefaultGroup::commit_scratch_len(commit.len())];
//!     match group.process_commit(commit, &mut cache, &store, &mut spare, &mut scratch)? {
//!         CommitEvent::NewEpoch { epoch } => assert_eq!(epoch, group.epoch()),
//!         CommitEvent::Removed => return Ok(()), // drop the group
//!     }
//! }
//! assert_eq!(group.epoch(), 4);
//! # assert_eq!(group.epoch_authenticator().expose()[..], hex(&entry["epochs"][1]["epoch_authenticator"])[..]);
//!
//! // 3. Persist (sealed, a new generation each save) before acting on
//! // the new epoch; restore in place.
//! let key = securemesh_core::envelope::StorageKey::new([7; 32]);
//! let mut blob = vec![0u8; DefaultGroup::MAX_SEALED_LEN];
//! let n = group.seal_state(&key, 1, &mut TestRng::new(1), &mut blob)?;
//! let mut scratch = vec![0u8; DefaultGroup::MAX_BODY_LEN];
//! spare.open_state_into(&key, &blob[..n], 1, &mut scratch)?;
//! assert_eq!(spare.epoch_authenticator().expose(), group.epoch_authenticator().expose());
//! spare.clear();
//!
//! // 4. Key something outside MLS from this epoch.
//! let mut telemetry_key = [0u8; 32];
//! group.export_secret(b"telemetry key", b"v1", &mut telemetry_key)?;
//! # Ok::<(), Error>(())
//! ```
//!
//! Application messages: see [`Group::seal_application`].
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

#[cfg(test)]
extern crate std;

pub mod application;
pub mod commit;
pub mod creation;
pub mod crypto;
mod error;
pub mod external_commit;
pub mod framing;
pub mod group;
#[cfg(feature = "ml-dsa")]
pub mod hybrid_credential;
pub mod key_package;
pub mod key_schedule;
pub mod messages;
pub mod mls_message;
pub mod pending_commit;
pub mod persist;
pub mod proposal;
pub mod secret_tree;
pub mod sender_ratchets;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transcript;
pub mod tree;
pub mod tree_math;
pub mod treekem;
pub mod welcome;

pub use application::ApplicationMessage;
pub use commit::{CommitEvent, DefaultProposalCache, ProposalCache, PskStore, ResumptionPsk};
pub use error::Error;
pub use group::{DefaultGroup, Group};
pub use welcome::{ExternalPsk, JoinKeys};

//! The agent's persisted state: sealed records, the persistence rule
//! made structural, and restore.
//!
//! # What is durable
//!
//! | state | persisted | why |
//! |---|---|---|
//! | identity (its two secrets) | yes, agent record | restore needs nothing but the storage key and the records |
//! | prekey pool | yes, agent record | a one-time prekey used once must stay erased; the signed prekey must survive for the bundle peers hold |
//! | directory (ids, identities, unused bundles) | yes, agent record | identities learned in XX handshakes and bundles not yet used |
//! | reachability | no | the host's live knowledge, stale after a restart: a restored peer is unreachable until the host says otherwise |
//! | policy | yes, agent record | grants made at run time (e.g. after a handshake taught an identity) must not be lost, and a sealed policy cannot be edited in storage to grant a role; a host that treats the policy as configuration re-applies it after restore through [`Agent::policy_mut`](crate::Agent::policy_mut) |
//! | ratchet sessions | yes, one record per session slot | an offline peer's mailbox messages can only be read with them, and a session restored older than what was sent would reuse message keys |
//! | MLS groups | yes, one record per group slot | the group state (tree, epoch secrets, sender ratchets: a generation opened once must stay used), and our pending commit with its next epoch and Welcome, so a commit confirmed after a restart is still merged and its Welcome still sent |
//! | KeyPackages (our private keys, peers' KeyPackages) | yes, the KeyPackage record | a Welcome may arrive long after the KeyPackage was published; a used one stays erased |
//! | Noise transports and handshakes | **no** | they serve peers that are online, so a lost one costs a new handshake (one round trip); persisting them would mean a write before *every* Noise message, and a transport restored behind its counter would reuse nonces. After a restart the peer's next Noise message is [`Error::UnknownSession`](crate::Error::UnknownSession) and the next [`send`](crate::Agent::send) opens a new IK handshake, which the peer's agent lets supersede the old session |
//! | transmit queue, events, counters, metrics | no | what [`poll_transmit`](crate::Agent::poll_transmit) handed out is the host's; the rest is process-lifetime observability |
//!
//! # Records
//!
//! The state is cut into `1 + SESSIONS + GROUPS + 1` records
//! ([`RecordId`]): the agent record, one record per session slot, one per
//! group slot and the KeyPackage record, each sealed on its own
//! with the `securemesh-core` envelope (kind
//! [`StateKind::MESH_ROUTER`], body version 1, ChaCha20-Poly1305 under the
//! host's [`StorageKey`]) and with **its own generation**, incremented on
//! every save. One blob for the whole agent would be simpler, but with the
//! default capacities it is about 18 KB, and a ratchet message changes one
//! session (3.4 KB sealed): per-slot records keep the write per message
//! to the session it changed, and no record ever needs a heap buffer: the
//! host lends one buffer of [`Agent::MAX_RECORD_LEN`](crate::Agent::MAX_RECORD_LEN).
//!
//! Every record starts with the owner's peer id and its own record id,
//! inside the seal, so a record of another agent or of another slot is
//! refused ([`Error::WrongRecord`](crate::Error::WrongRecord)).
//!
//! ```text
//! agent record   owner [32] | 1 u8 | identity | pool | directory | policy
//!                  [ pq mode u8 (0 Off, 1 Prefer, 2 Require), if not the one the pool implies or if the ML-DSA section follows ]
//!                  [ 1 u8 | ML-DSA-65 seed [32], feature `ml-dsa` ]
//! session record owner [32] | 2 u8 | slot u16 | flag (0 empty, 1 ratchet, 2 ratchet opened with PQXDH)
//!                  [ peer [32] | session id u64 | order u64 | ratchet ]
//! key packages   owner [32] | 3 u8 | n u8 { key_package vec16 | init_priv [32] | encryption_priv [32] }
//!                  | m u8 { peer [32] | key_package vec16 }
//! group record   owner [32] | 4 u8 | slot u16 | flag (0 empty, 1 group)
//!                  [ group id u64 | group state | tag u8 (0 none, 1 pending commit, 2 Welcome to release)
//!                    [1: commit hash [32] | next epoch's group state] [1, 2: joiners u8 | PeerId [32]* | welcome vec32] ]
//! nested state   version u16 | suite u16 | len u32 | body (the Persist body of that type)
//! group state    a plain `core` envelope of the MLS group (`"SMst" | kind | version | suite | len u32 | body`)
//! ```
//!
//! The group and KeyPackage records came with the groups slice under new
//! tags; the agent and session records are unchanged (body version 1), so
//! records written before restore as they did. The post-quantum channels
//! ([`crate::pq`]) added tags, not a version: session flag 2 (a PQXDH
//! session: its [`PqStatus`] is `Hybrid`; flag 1 reads as
//! `Classical`), and in the directory, identity tag 2 (a peer known to run
//! the hybrid channels). A record written before them restores unchanged;
//! a build that predates them refuses a record with the new tags
//! (`Storage(InvalidValue)`), and a build without the feature `pq`
//! refuses an agent record whose pool holds KEM prekeys or whose
//! directory holds a PQXDH bundle (the ratchet's and the directory's
//! bounds), rather than dropping keys silently.
//!
//! The agent's [`PqMode`] came later, as a trailing byte of the agent
//! record, so a [`PqMode::Require`] agent restores as `Require` rather
//! than accepting classical channels after a restart. An agent record
//! without it (written before) restores as it did, [`PqMode::Off`],
//! except that a record whose pool holds KEM prekeys restores as
//! [`PqMode::Prefer`]: the agent published PQXDH bundles, so it ran a
//! hybrid mode, and its peers expect the hybrid channels of it. The byte
//! is written only when the mode differs from the one so implied, so
//! the records of an `Off` agent with an X3DH pool and of a `Prefer`
//! agent with a PQXDH pool are encoded as before, byte for byte (the
//! golden records of `test-vectors` re-encode unchanged). A build that
//! predates the byte refuses a record with it (`Storage(TrailingBytes)`).
//!
//! The hybrid identity (feature `ml-dsa`) came after it: the seed of the
//! agent's ML-DSA-65 key, sealed like the identity's secrets, follows the
//! mode byte (which is then always written), and the directory's pins of
//! peers' ML-DSA-65 keys are identity tags 3 and 4 (tags 1 and 2 followed
//! by the 32-byte pin), a bundle stored from a verified hybrid bundle is
//! bundle tag 2. A record without them restores as before (an agent
//! without an ML-DSA key: it publishes classical bundles only, and pins
//! nothing until a peer's hybrid bundle or introduction); a build without
//! the feature refuses a record with them (`Storage(TrailingBytes)`,
//! `Storage(InvalidValue)`) rather than forget pins.
//!
//! `identity`, `pool` and `ratchet` are the nested `Persist` bodies of the
//! ratchet crate ([`Identity`],
//! [`PrekeyPool`],
//! [`Session`]), so their versions migrate
//! as that crate specifies; `directory` and `policy` are written field by
//! field (see their modules).
//!
//! # The rule, enforced
//!
//! After a call that changed durable state the agent raises
//! [`Event::Persist`](crate::Event::Persist) for every record it changed,
//! with the generation the record will carry, and
//! [`poll_transmit`](crate::Agent::poll_transmit) returns nothing until
//! [`poll_persist`](crate::Agent::poll_persist) has handed out every
//! pending record. A host therefore cannot send what a call produced
//! before it was given the state to store; it **MUST** store each record
//! (and record its generation in monotonic storage) before it transmits,
//! and before it acts on a plaintext that [`handle_input`](crate::Agent::handle_input)
//! returned (or acknowledges the mailbox message). A record is sealed
//! when it is polled, from the state at that moment, so a record changed
//! again before it was polled is stored once, covering both calls.
//!
//! Handing something out can change durable state too (a Welcome handed
//! out by `poll_transmit` marks its group record, so a restart does not
//! send it again), and then `poll_transmit` holds the rest back until the
//! record is stored: a host loops, `poll_persist` until `None`, then
//! `poll_transmit` until `None`, and again, until
//! [`persist_pending`](crate::Agent::persist_pending) is `false` and
//! `poll_transmit` gives `None`.
//!
//! The records of one call (at most a session record and the agent
//! record, or a group record and the KeyPackage record) are one batch: write them beside the current blobs and record
//! their generations in one write (the commit), then drop the old blobs.
//! Session records are handed out before the agent record.
//!
//! # Restore
//!
//! [`Agent::restore`](crate::Agent::restore) rebuilds the agent from the
//! agent record; [`Agent::restore_record`](crate::Agent::restore_record)
//! then puts each stored session record back into its slot. Hand it
//! **every** stored record (empty ones too): a slot's generations continue
//! from its restored record. A blob whose generation is below the newest
//! recorded is refused as [`Error::Storage`](crate::Error::Storage)`(`[`Rollback`](securemesh_core::Error::Rollback)`)`,
//! a wrong key or a changed byte as `Storage(Decrypt)`.

//!
//! # A host's loop
//!
//! ```
//! use securemesh::{Config, DefaultAgent, Error, MessageKind, Permissions, RecordId, Role, Roles};
//! use securemesh_core::envelope::StorageKey;
//! use securemesh_core::{Instant, UnixTime};
//! use securemesh_ratchet::Identity;
//! use std::collections::BTreeMap;
//! # fn main() -> Result<(), Error> {
//! let mut rng = rand::rng();
//! let (now, wall) = (Instant::from_millis(0), UnixTime(1_700_000_000));
//! let bob = DefaultAgent::new(Identity::generate(&mut rng), Config::default(), &mut rng, wall);
//! let mut bundle = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
//! let n = bob.bundle(&mut bundle)?;
//!
//! let mut alice = Box::new(DefaultAgent::new(Identity::generate(&mut rng), Config::default(), &mut rng, wall));
//! alice.enable_persistence(StorageKey::new([7; 32])); // the host's key, from its keystore
//! let bob_id = alice.set_peer_bundle(&bundle[..n])?;
//! alice.policy_mut().define_role(Role(0), Permissions::of(&[MessageKind(1)]))?;
//! alice.policy_mut().grant(bob_id, Roles::of(&[Role(0)]))?;
//! alice.send(&bob_id, MessageKind(1), b"run task 42", now, &mut rng)?; // Bob is offline: ratchet
//!
//! // The host's store: blob and generation per record (a real one keeps
//! // the generations in monotonic storage).
//! let mut store: BTreeMap<RecordId, (Vec<u8>, u64)> = BTreeMap::new();
//! let mut wire = [0u8; 1024];
//! assert!(alice.poll_transmit(&mut wire)?.is_none()); // held back: the state is not stored yet
//! let mut rec = vec![0u8; DefaultAgent::MAX_RECORD_LEN];
//! while let Some(r) = alice.poll_persist(&mut rec, &mut rng)? {
//!     store.insert(r.id, (rec[..r.len].to_vec(), r.generation));
//! }
//! let t = alice.poll_transmit(&mut wire)?.expect("released once stored");
//!
//! // A restart: the agent comes back from its records alone.
//! let mut scratch = vec![0u8; DefaultAgent::MAX_RECORD_LEN];
//! let (blob, generation) = &store[&RecordId::Agent];
//! let mut alice = Box::new(DefaultAgent::restore(StorageKey::new([7; 32]), Config::default(), blob, *generation, &mut scratch)?);
//! for (id, (blob, generation)) in store.iter().filter(|(id, _)| **id != RecordId::Agent) {
//!     assert_eq!(alice.restore_record(blob, *generation, &mut scratch)?, *id);
//! }
//! assert_eq!(alice.sessions().count(), 1); // the ratchet session with Bob
//! # let _ = t;
//! # Ok(())
//! # }
//! ```

use crate::envelope::HEADER_LEN;
use crate::envelope::SessionId;
use crate::group::{
    GroupId, GroupSlot, KEY_PACKAGE_SLOTS, MAX_COMMIT_LEN, MAX_GROUP_CHANGES, MAX_KEY_PACKAGE_LEN,
    MAX_WELCOME_LEN, MlsGroup, Outgoing, OwnKeyPackage, PEER_KEY_PACKAGES, PeerKeyPackage, Pending, Release,
    WELCOME_AT,
};
use crate::metrics::PqStatus;
use crate::peer::{Directory, PeerId};
use crate::policy::Policy;
use crate::pq::{KEM_PREKEYS, PqMode, RATCHET_KEM_CT};
use securemesh_core::codec::{Reader, Writer};
use securemesh_core::crypto::{Hash, Sha256, SuiteId};
use securemesh_core::envelope::{self, Header, Persist, SEAL_OVERHEAD, StateKind, StorageKey};
use securemesh_core::{CryptoRng, Error as CoreError, Secret};
use securemesh_mls_lite::crypto::Secret32;
use securemesh_ratchet::{Identity, PrekeyPool, Session};

/// The body version of both records.
pub const RECORD_VERSION: u16 = 1;
const TAG_AGENT: u8 = 1;
const TAG_SESSION: u8 = 2;
const TAG_KEY_PACKAGES: u8 = 3;
const TAG_GROUP: u8 = 4;
/// The ML-DSA section of the agent record: the seed of its ML-DSA-65 key.
const TAG_ML_DSA_SEED: u8 = 1;
/// `version u16 | suite u16 | len u32` before a nested body.
const NESTED_OVERHEAD: usize = 8;

/// Which record a sealed blob is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordId {
    /// Identity, prekey pool, directory, policy.
    Agent,
    /// Session slot `n` (empty or a ratchet session).
    Session(u16),
    /// Group slot `n` (empty or an MLS group, with our pending commit).
    Group(u16),
    /// Our KeyPackages' private keys and the peers' KeyPackages we hold.
    KeyPackages,
}

/// One sealed record handed out by [`Agent::poll_persist`](crate::Agent::poll_persist):
/// `buf[..len]` is the blob to store under `id`, and `generation` the
/// number to record for it in monotonic storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersistRecord {
    /// Which record.
    pub id: RecordId,
    /// Its generation (one more than the previous save of this record).
    pub generation: u64,
    /// Bytes written into the caller's buffer.
    pub len: usize,
}

/// Generations of one record.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Generations {
    /// The generation of the next save.
    pub(crate) next: u64,
    /// A save the host has not polled yet, at this generation.
    pub(crate) pending: Option<u64>,
}

impl Generations {
    /// Mark the record changed; returns the generation if it was not
    /// pending already (the caller raises the event).
    pub(crate) fn mark(&mut self) -> Option<u64> {
        if self.pending.is_some() {
            return None;
        }
        let g = self.next;
        self.next = g.saturating_add(1);
        self.pending = Some(g);
        Some(g)
    }
}

fn header() -> Header {
    Header { kind: StateKind::MESH_ROUTER, version: RECORD_VERSION, suite: SuiteId::DEFAULT }
}

/// Record length bounds (associated consts: evaluated at compile time).
pub(crate) struct Bounds<const A: usize, const B: usize>;

impl<const PEERS: usize, const PREKEYS: usize> Bounds<PEERS, PREKEYS> {
    /// Largest sealed agent record.
    pub(crate) const AGENT: usize = SEAL_OVERHEAD
        + 32
        + 1
        + NESTED_OVERHEAD
        + <Identity as Persist>::MAX_BODY_LEN
        + NESTED_OVERHEAD
        + <PrekeyPool<PREKEYS, KEM_PREKEYS> as Persist>::MAX_BODY_LEN
        + Directory::<PEERS>::MAX_ENCODED_LEN
        + Policy::<PEERS>::MAX_ENCODED_LEN
        + 1
        + if cfg!(feature = "ml-dsa") { 1 + 32 } else { 0 };
}

impl<const MAX_SKIP: usize, const CAP: usize> Bounds<MAX_SKIP, CAP> {
    /// Largest sealed session record.
    pub(crate) const SESSION: usize = SEAL_OVERHEAD
        + 32
        + 1
        + 2
        + 1
        + 32
        + 8
        + 8
        + NESTED_OVERHEAD
        + <Session<MAX_SKIP, CAP, RATCHET_KEM_CT> as Persist>::MAX_BODY_LEN;
}

/// Most bytes of a group state written as a plain `core` envelope.
pub(crate) const GROUP_STATE_LEN: usize = envelope::HEADER_LEN + <MlsGroup as Persist>::MAX_BODY_LEN;

/// Largest sealed group record.
pub(crate) const GROUP_RECORD: usize = SEAL_OVERHEAD
    + 32
    + 1
    + 2
    + 1
    + 8
    + GROUP_STATE_LEN
    + 1
    + 32
    + GROUP_STATE_LEN
    + 1
    + 32 * MAX_GROUP_CHANGES
    + 4
    + HEADER_LEN
    + MAX_WELCOME_LEN
    + 4
    + HEADER_LEN
    + MAX_COMMIT_LEN;

/// Largest sealed KeyPackage record.
pub(crate) const KEY_PACKAGE_RECORD: usize = SEAL_OVERHEAD
    + 32
    + 1
    + 1
    + KEY_PACKAGE_SLOTS * (2 + MAX_KEY_PACKAGE_LEN + 64)
    + 1
    + PEER_KEY_PACKAGES * (32 + 2 + MAX_KEY_PACKAGE_LEN);

fn write_nested<T: Persist>(w: &mut Writer<'_>, v: &T) -> Result<(), CoreError> {
    let h = v.header();
    w.write_u16(h.version)?;
    w.write_u16(h.suite.0)?;
    w.write_nested32(|w| v.encode_body(w))
}

fn read_nested<T: Persist>(r: &mut Reader<'_>) -> Result<T, CoreError> {
    let version = r.read_u16()?;
    let suite = SuiteId(r.read_u16()?);
    if version == 0 || version > T::VERSION {
        return Err(CoreError::UnknownVersion { found: version });
    }
    let body = r.read_vec32()?;
    if body.len() > T::MAX_BODY_LEN {
        return Err(CoreError::LengthOverflow);
    }
    let mut br = Reader::new(body);
    let v = T::decode_body(&Header { kind: T::KIND, version, suite }, &mut br)?;
    br.finish()?;
    Ok(v)
}

/// What the agent record holds.
pub(crate) struct AgentParts<'a, const PEERS: usize, const PREKEYS: usize> {
    pub(crate) owner: &'a PeerId,
    pub(crate) identity: &'a Identity,
    pub(crate) pool: &'a PrekeyPool<PREKEYS, KEM_PREKEYS>,
    pub(crate) directory: &'a Directory<PEERS>,
    pub(crate) policy: &'a Policy<PEERS>,
    pub(crate) pq: PqMode,
    /// The seed of the agent's ML-DSA-65 key.
    #[cfg(feature = "ml-dsa")]
    pub(crate) ml_dsa: Option<&'a Secret<[u8; 32]>>,
}

/// The agent record, decoded.
pub(crate) struct AgentState<const PEERS: usize, const PREKEYS: usize> {
    pub(crate) identity: Identity,
    pub(crate) pool: PrekeyPool<PREKEYS, KEM_PREKEYS>,
    pub(crate) directory: Directory<PEERS>,
    pub(crate) policy: Policy<PEERS>,
    /// The mode of the record (or the one a record without it implies).
    pub(crate) pq: PqMode,
    /// The seed of the agent's ML-DSA-65 key (`None` in a record without).
    #[cfg(feature = "ml-dsa")]
    pub(crate) ml_dsa: Option<Secret<[u8; 32]>>,
}

/// Seal one record: the owner's peer id and the record's tag, then `body`.
fn seal_record<R: CryptoRng + ?Sized>(
    key: &StorageKey,
    generation: u64,
    rng: &mut R,
    out: &mut [u8],
    owner: &PeerId,
    tag: u8,
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), CoreError>,
) -> Result<usize, CoreError> {
    envelope::seal(key, &header(), generation, rng, out, |w| {
        w.write_bytes(&owner.0)?;
        w.write_u8(tag)?;
        body(w)
    })
}

pub(crate) fn seal_agent<R: CryptoRng + ?Sized, const PEERS: usize, const PREKEYS: usize>(
    key: &StorageKey,
    generation: u64,
    rng: &mut R,
    out: &mut [u8],
    parts: &AgentParts<'_, PEERS, PREKEYS>,
) -> Result<usize, CoreError> {
    seal_record(key, generation, rng, out, parts.owner, TAG_AGENT, |w| {
        write_nested(w, parts.identity)?;
        write_nested(w, parts.pool)?;
        parts.directory.encode(w)?;
        parts.policy.encode(w)?;
        #[cfg(feature = "ml-dsa")]
        let ml_dsa = parts.ml_dsa;
        #[cfg(not(feature = "ml-dsa"))]
        let ml_dsa: Option<&Secret<[u8; 32]>> = None;
        // The mode byte is written if it differs from the implied mode, or
        // before the ML-DSA section (which follows it).
        if parts.pq == implied_mode(parts.pool) && ml_dsa.is_none() {
            return Ok(());
        }
        w.write_u8(match parts.pq {
            PqMode::Off => 0,
            PqMode::Prefer => 1,
            PqMode::Require => 2,
        })?;
        if let Some(seed) = ml_dsa {
            w.write_u8(TAG_ML_DSA_SEED)?;
            w.write_bytes(seed.expose())?;
        }
        Ok(())
    })
}

/// The mode of an agent record without the mode byte: [`PqMode::Prefer`]
/// if its pool holds KEM prekeys (the agent published PQXDH bundles), else
/// [`PqMode::Off`].
fn implied_mode<const PREKEYS: usize>(pool: &PrekeyPool<PREKEYS, KEM_PREKEYS>) -> PqMode {
    if pool.last_resort_kem_id().is_some() { PqMode::Prefer } else { PqMode::Off }
}

/// A session slot's record (a transient value: moved into the table).
#[allow(clippy::large_enum_variant)]
pub(crate) enum SlotState<const MAX_SKIP: usize, const CAP: usize> {
    Empty,
    Ratchet {
        peer: PeerId,
        id: SessionId,
        order: u64,
        pq: PqStatus,
        session: Session<MAX_SKIP, CAP, RATCHET_KEM_CT>,
    },
}

/// What a session record holds when sealed.
pub(crate) type SlotParts<'a, const MAX_SKIP: usize, const CAP: usize> =
    Option<(&'a PeerId, SessionId, u64, PqStatus, &'a Session<MAX_SKIP, CAP, RATCHET_KEM_CT>)>;

pub(crate) fn seal_slot<R: CryptoRng + ?Sized, const MAX_SKIP: usize, const CAP: usize>(
    key: &StorageKey,
    generation: u64,
    rng: &mut R,
    out: &mut [u8],
    owner: &PeerId,
    slot: u16,
    parts: SlotParts<'_, MAX_SKIP, CAP>,
) -> Result<usize, CoreError> {
    seal_record(key, generation, rng, out, owner, TAG_SESSION, |w| {
        w.write_u16(slot)?;
        match parts {
            None => w.write_u8(0),
            Some((peer, id, order, pq, session)) => {
                w.write_u8(match pq {
                    PqStatus::Classical => 1,
                    PqStatus::Hybrid => 2,
                })?;
                w.write_bytes(&peer.0)?;
                w.write_u64(id.0)?;
                w.write_u64(order)?;
                write_nested(w, session)
            }
        }
    })
}

/// Write a group state as a plain `core` envelope (so it decodes in place
/// with [`MlsGroup::decode_state_into`]).
fn write_group(w: &mut Writer<'_>, g: &MlsGroup) -> Result<(), CoreError> {
    let h = g.header();
    w.write_bytes(&envelope::MAGIC)?;
    w.write_u8(h.kind.0)?;
    w.write_u16(h.version)?;
    w.write_u16(h.suite.0)?;
    w.write_nested32(|w| g.encode_body(w))
}

/// Read a group state written by [`write_group`] into `g` (left empty on
/// error).
fn read_group_into(r: &mut Reader<'_>, g: &mut MlsGroup) -> Result<(), CoreError> {
    let start = r.rest();
    let _ = r.read_bytes(envelope::HEADER_LEN - 4)?;
    let body = r.read_vec32()?;
    let len = body.len().checked_add(envelope::HEADER_LEN).ok_or(CoreError::LengthOverflow)?;
    let state = start.get(..len).ok_or(CoreError::Truncated)?;
    g.decode_state_into(state)
}

/// Save group state `g` into `buf` ([`GROUP_STATE_LEN`] bytes are
/// enough): what [`load_group_state`] puts back. Returns its length.
pub(crate) fn save_group_state(g: &MlsGroup, buf: &mut [u8]) -> Result<usize, CoreError> {
    let mut w = Writer::new(buf);
    write_group(&mut w, g)?;
    w.finish()
}

/// Put back into the empty `g` a state [`save_group_state`] saved (`g` is
/// left empty on error).
pub(crate) fn load_group_state(saved: &[u8], g: &mut MlsGroup) -> Result<(), CoreError> {
    read_group_into(&mut Reader::new(saved), g)
}

/// What the KeyPackage record holds.
pub(crate) type KeyPackageParts<'a> =
    (&'a [Option<OwnKeyPackage>; KEY_PACKAGE_SLOTS], &'a [Option<PeerKeyPackage>; PEER_KEY_PACKAGES]);

pub(crate) fn seal_key_packages<R: CryptoRng + ?Sized>(
    key: &StorageKey,
    generation: u64,
    rng: &mut R,
    out: &mut [u8],
    owner: &PeerId,
    (own, peers): KeyPackageParts<'_>,
) -> Result<usize, CoreError> {
    seal_record(key, generation, rng, out, owner, TAG_KEY_PACKAGES, |w| {
        w.write_u8(u8::try_from(own.iter().flatten().count()).map_err(|_| CoreError::LengthOverflow)?)?;
        for k in own.iter().flatten() {
            w.write_vec16(k.as_bytes())?;
            w.write_bytes(k.init_priv.expose())?;
            w.write_bytes(k.encryption_priv.expose())?;
        }
        w.write_u8(u8::try_from(peers.iter().flatten().count()).map_err(|_| CoreError::LengthOverflow)?)?;
        for k in peers.iter().flatten() {
            w.write_bytes(&k.peer.0)?;
            w.write_vec16(k.as_bytes())?;
        }
        Ok(())
    })
}

pub(crate) fn seal_group<R: CryptoRng + ?Sized>(
    key: &StorageKey,
    generation: u64,
    rng: &mut R,
    out: &mut [u8],
    owner: &PeerId,
    slot: u16,
    g: &GroupSlot,
) -> Result<usize, CoreError> {
    seal_record(key, generation, rng, out, owner, TAG_GROUP, |w| {
        w.write_u16(slot)?;
        if !g.is_used() {
            return w.write_u8(0);
        }
        w.write_u8(1)?;
        w.write_u64(g.id.0)?;
        write_group(w, &g.group)?;
        let welcome = |w: &mut Writer<'_>, joiners: &[PeerId], len: usize| {
            w.write_u8(u8::try_from(joiners.len()).map_err(|_| CoreError::LengthOverflow)?)?;
            for j in joiners {
                w.write_bytes(&j.0)?;
            }
            let end = WELCOME_AT.checked_add(len).ok_or(CoreError::LengthOverflow)?;
            w.write_vec32(g.buf.get(WELCOME_AT..end).ok_or(CoreError::LengthOverflow)?)
        };
        match (&g.pending, &g.welcome_out) {
            (Some(p), _) => {
                // 3 (1 before the commit envelope was kept): the pending
                // commit, its Welcome and the commit envelope itself (empty
                // once handed out), to send it again after a restart.
                w.write_u8(3)?;
                w.write_bytes(&p.hash)?;
                write_group(w, &g.next)?;
                welcome(w, p.joiners(), p.welcome_len)?;
                let commit = g.commit_out.map_or(0, |o| o.len);
                w.write_vec32(g.buf.get(..commit).ok_or(CoreError::LengthOverflow)?)
            }
            (None, Some(r)) => {
                w.write_u8(2)?;
                welcome(w, r.joiners.get(..r.left).unwrap_or_default(), r.len)
            }
            (None, None) => w.write_u8(0),
        }
    })
}

/// Decode a group record's state (after the slot number) into `g`, which
/// must be empty; on error `g` is left empty.
fn read_group_slot(r: &mut Reader<'_>, g: &mut GroupSlot) -> Result<(), CoreError> {
    let result = (|| {
        match r.read_u8()? {
            0 => return Ok(()),
            1 => {}
            _ => return Err(CoreError::InvalidValue),
        }
        g.id = GroupId(r.read_u64()?);
        read_group_into(r, &mut g.group)?;
        if g.group.group_id() != g.id.to_bytes() {
            return Err(CoreError::InvalidValue);
        }
        match r.read_u8()? {
            0 => Ok(()),
            kind @ (1 | 3) => {
                let hash = r.read_array()?;
                read_group_into(r, &mut g.next)?;
                if g.next.group_id() != g.group.group_id()
                    || Some(g.next.epoch()) != g.group.epoch().checked_add(1)
                {
                    return Err(CoreError::InvalidValue);
                }
                let (joiners, joiner_count, welcome_len) = read_welcome(r, g)?;
                g.pending = Some(Pending { hash, joiners, joiner_count, welcome_len });
                if kind == 3 {
                    let commit = r.read_vec32()?;
                    if !commit.is_empty() {
                        // Queued again: the delivery order admits one commit
                        // per epoch, so a second copy changes nothing.
                        let body = commit.get(HEADER_LEN..).ok_or(CoreError::InvalidValue)?;
                        if commit.len() > WELCOME_AT || Sha256::digest(&[body]) != hash {
                            return Err(CoreError::InvalidValue);
                        }
                        g.buf.get_mut(..commit.len()).ok_or(CoreError::InvalidValue)?.copy_from_slice(commit);
                        g.commit_out = Some(Outgoing { seq: 0, len: commit.len() });
                    }
                }
                Ok(())
            }
            2 => {
                let (joiners, left, len) = read_welcome(r, g)?;
                if left == 0 {
                    return Err(CoreError::InvalidValue);
                }
                // Handed out again from the first joiner not handed out
                // when it was saved (a joiner that has it refuses a copy).
                g.welcome_out = Some(Release { seq: 0, len, joiners, left });
                Ok(())
            }
            _ => Err(CoreError::InvalidValue),
        }
    })();
    if result.is_err() {
        g.clear();
    }
    result
}

/// A Welcome and its joiners (written by `seal_group`) into `g`'s buffer.
fn read_welcome(
    r: &mut Reader<'_>,
    g: &mut GroupSlot,
) -> Result<([PeerId; MAX_GROUP_CHANGES], usize, usize), CoreError> {
    let count = usize::from(r.read_u8()?);
    let mut joiners = [PeerId([0; 32]); MAX_GROUP_CHANGES];
    for j in joiners.get_mut(..count).ok_or(CoreError::InvalidValue)? {
        *j = PeerId(r.read_array()?);
    }
    let welcome = r.read_vec32()?;
    let end = WELCOME_AT.checked_add(welcome.len()).ok_or(CoreError::LengthOverflow)?;
    g.buf.get_mut(WELCOME_AT..end).ok_or(CoreError::LengthOverflow)?.copy_from_slice(welcome);
    if (count == 0) != welcome.is_empty() {
        return Err(CoreError::InvalidValue);
    }
    Ok((joiners, count, welcome.len()))
}

/// Decode the KeyPackage record's state (after the tag).
fn read_key_packages(r: &mut Reader<'_>) -> Result<KeyPackageState, CoreError> {
    let mut own = [const { None }; KEY_PACKAGE_SLOTS];
    let n = usize::from(r.read_u8()?);
    for slot in own.get_mut(..n).ok_or(CoreError::InvalidValue)? {
        let kp = r.read_vec16()?;
        let mut bytes = [0u8; MAX_KEY_PACKAGE_LEN];
        bytes.get_mut(..kp.len()).ok_or(CoreError::InvalidValue)?.copy_from_slice(kp);
        let init_priv = Secret32::new(r.read_array()?);
        let encryption_priv = Secret32::new(r.read_array()?);
        *slot = Some(OwnKeyPackage { bytes, len: kp.len(), init_priv, encryption_priv });
    }
    let mut peers = [None; PEER_KEY_PACKAGES];
    let n = usize::from(r.read_u8()?);
    for slot in peers.get_mut(..n).ok_or(CoreError::InvalidValue)? {
        let peer = PeerId(r.read_array()?);
        let kp = r.read_vec16()?;
        let mut bytes = [0u8; MAX_KEY_PACKAGE_LEN];
        bytes.get_mut(..kp.len()).ok_or(CoreError::InvalidValue)?.copy_from_slice(kp);
        *slot = Some(PeerKeyPackage { peer, bytes, len: kp.len() });
    }
    Ok(KeyPackageState { own, peers })
}

/// The KeyPackage record, decoded (its contents are checked by the agent).
pub(crate) struct KeyPackageState {
    pub(crate) own: [Option<OwnKeyPackage>; KEY_PACKAGE_SLOTS],
    pub(crate) peers: [Option<PeerKeyPackage>; PEER_KEY_PACKAGES],
}

/// A decoded record (a transient value: moved into the agent).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Opened<const PEERS: usize, const PREKEYS: usize, const MAX_SKIP: usize, const CAP: usize> {
    Agent {
        owner: PeerId,
        state: AgentState<PEERS, PREKEYS>,
    },
    Slot {
        owner: PeerId,
        slot: u16,
        state: SlotState<MAX_SKIP, CAP>,
    },
    KeyPackages {
        owner: PeerId,
        state: KeyPackageState,
    },
    /// A group record, decoded in place into the agent's slot `slot` if
    /// `restored` (the owner was the expected one and the slot existed and
    /// was empty; otherwise nothing was touched).
    Group {
        slot: u16,
        restored: bool,
    },
}

/// Open and decode a record; `scratch` holds the plaintext body while it
/// is decoded and is wiped before returning.
/// A group record is decoded in place into `groups[slot]` (only if its
/// owner is `owner` and that slot is empty; else it is reported with
/// `restored: false`).
pub(crate) fn open<const PEERS: usize, const PREKEYS: usize, const MAX_SKIP: usize, const CAP: usize>(
    key: &StorageKey,
    blob: &[u8],
    newest_seen: u64,
    scratch: &mut [u8],
    owner: &PeerId,
    groups: &mut [GroupSlot],
) -> Result<(Opened<PEERS, PREKEYS, MAX_SKIP, CAP>, u64), CoreError> {
    let opened = envelope::open(key, blob, newest_seen, scratch)?;
    let (h, generation, body) = (opened.header, opened.generation, opened.body);
    let len = body.len();
    let result = decode(&h, body, owner, groups);
    if let Some(s) = scratch.get_mut(..len) {
        s.fill(0);
    }
    Ok((result?, generation))
}

fn decode<const PEERS: usize, const PREKEYS: usize, const MAX_SKIP: usize, const CAP: usize>(
    h: &Header,
    body: &[u8],
    expected_owner: &PeerId,
    groups: &mut [GroupSlot],
) -> Result<Opened<PEERS, PREKEYS, MAX_SKIP, CAP>, CoreError> {
    if h.kind != StateKind::MESH_ROUTER {
        return Err(CoreError::WrongKind { found: h.kind.0, expected: StateKind::MESH_ROUTER.0 });
    }
    if h.version == 0 || h.version > RECORD_VERSION {
        return Err(CoreError::UnknownVersion { found: h.version });
    }
    if h.suite != SuiteId::DEFAULT {
        return Err(CoreError::SuiteMismatch { found: h.suite.0 });
    }
    let mut r = Reader::new(body);
    let owner = PeerId(r.read_array()?);
    let opened = match r.read_u8()? {
        TAG_AGENT => {
            let identity: Identity = read_nested(&mut r)?;
            let pool: PrekeyPool<PREKEYS, KEM_PREKEYS> = read_nested(&mut r)?;
            let directory = Directory::decode(&mut r)?;
            let policy = Policy::decode(&mut r)?;
            let pq = if r.is_empty() {
                implied_mode(&pool)
            } else {
                match r.read_u8()? {
                    0 => PqMode::Off,
                    1 => PqMode::Prefer,
                    2 => PqMode::Require,
                    _ => return Err(CoreError::InvalidValue),
                }
            };
            // The ML-DSA section, in a build that runs it (a build without
            // the feature refuses it as trailing bytes).
            #[cfg(feature = "ml-dsa")]
            let ml_dsa = if r.is_empty() {
                None
            } else if r.read_u8()? == TAG_ML_DSA_SEED {
                Some(Secret::new(r.read_array()?))
            } else {
                return Err(CoreError::InvalidValue);
            };
            Opened::Agent {
                owner,
                state: AgentState {
                    identity,
                    pool,
                    directory,
                    policy,
                    pq,
                    #[cfg(feature = "ml-dsa")]
                    ml_dsa,
                },
            }
        }
        TAG_SESSION => {
            let slot = r.read_u16()?;
            let state = match r.read_u8()? {
                0 => SlotState::Empty,
                flag @ (1 | 2) => {
                    let pq = if flag == 2 { PqStatus::Hybrid } else { PqStatus::Classical };
                    let peer = PeerId(r.read_array()?);
                    let id = SessionId(r.read_u64()?);
                    let order = r.read_u64()?;
                    let session: Session<MAX_SKIP, CAP, RATCHET_KEM_CT> = read_nested(&mut r)?;
                    if PeerId::of(session.remote_identity()) != peer {
                        return Err(CoreError::InvalidValue);
                    }
                    SlotState::Ratchet { peer, id, order, pq, session }
                }
                _ => return Err(CoreError::InvalidValue),
            };
            Opened::Slot { owner, slot, state }
        }
        TAG_KEY_PACKAGES => Opened::KeyPackages { owner, state: read_key_packages(&mut r)? },
        TAG_GROUP => {
            let slot = r.read_u16()?;
            match groups.get_mut(usize::from(slot)) {
                Some(g) if owner == *expected_owner && !g.is_used() => {
                    read_group_slot(&mut r, g)?;
                    if let Err(e) = r.finish() {
                        g.clear();
                        return Err(e);
                    }
                    let id = g.id;
                    let used = g.is_used();
                    // Two records of one group: the second is refused.
                    let dup = used && groups.iter().filter(|o| o.is_used() && o.id == id).count() > 1;
                    if dup {
                        if let Some(g) = groups.get_mut(usize::from(slot)) {
                            g.clear();
                        }
                        return Ok(Opened::Group { slot, restored: false });
                    }
                    return Ok(Opened::Group { slot, restored: true });
                }
                _ => return Ok(Opened::Group { slot, restored: false }),
            }
        }
        _ => return Err(CoreError::InvalidValue),
    };
    r.finish()?;
    Ok(opened)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::policy::{MessageKind, Permissions, Role, Roles};
    use securemesh_core::UnixTime;
    use securemesh_core::testing::TestRng;
    use securemesh_ratchet::PrekeyConfig;
    use std::vec;

    type Record = Opened<2, 4, 4, 4>;

    fn open_any(key: &StorageKey, blob: &[u8]) -> Result<Record, CoreError> {
        let mut scratch = vec![0u8; blob.len()];
        open::<2, 4, 4, 4>(key, blob, 0, &mut scratch, &PeerId([0; 32]), &mut []).map(|(r, _)| r)
    }

    /// The agent record round-trips: identity, pool, directory (without
    /// reachability) and policy.
    #[test]
    fn agent_record_roundtrip() {
        let mut rng = TestRng::new(0x7001);
        let me = Identity::generate(&mut rng);
        let peer = Identity::generate(&mut rng);
        let pool: PrekeyPool<4, KEM_PREKEYS> =
            PrekeyPool::new(&me, &mut rng, UnixTime(1), PrekeyConfig::default());
        let mut bundle = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
        let peer_pool: PrekeyPool<4> = PrekeyPool::new(&peer, &mut rng, UnixTime(1), PrekeyConfig::default());
        let n = peer_pool.bundle(peer_pool.one_time_ids().next()).encode(&mut bundle).unwrap();
        let mut directory: Directory<2> = Directory::new();
        let pid = directory.set_bundle(&bundle[..n]).unwrap();
        directory.set_reachable(&pid, true).unwrap();
        directory.add(PeerId([9; 32])).unwrap();
        let mut policy: Policy<2> = Policy::new();
        policy.define_role(Role(3), Permissions::of(&[MessageKind(7)])).unwrap();
        policy.grant(pid, Roles::of(&[Role(3)])).unwrap();
        let owner = PeerId::of(me.public());
        let parts = AgentParts {
            owner: &owner,
            identity: &me,
            pool: &pool,
            directory: &directory,
            policy: &policy,
            pq: PqMode::Require,
            #[cfg(feature = "ml-dsa")]
            ml_dsa: None,
        };
        let key = StorageKey::new([4; 32]);
        let mut out = vec![0u8; Bounds::<2, 4>::AGENT];
        let len = seal_agent(&key, 3, &mut rng, &mut out, &parts).unwrap();
        let Opened::Agent { owner: o, state } = open_any(&key, &out[..len]).unwrap() else { panic!("kind") };
        assert_eq!(o, owner);
        assert_eq!(state.identity.public(), me.public());
        assert_eq!(
            state.pool.one_time_ids().collect::<vec::Vec<_>>(),
            pool.one_time_ids().collect::<vec::Vec<_>>()
        );
        let p = state.directory.get(&pid).unwrap();
        assert_eq!((p.identity(), p.is_reachable()), (Some(peer.public()), false));
        assert_eq!(p.bundle().unwrap().as_bytes(), &bundle[..n]);
        assert!(state.directory.get(&PeerId([9; 32])).unwrap().identity().is_none());
        assert!(state.policy.check(&pid, MessageKind(7)).is_ok());
        assert!(state.policy.check(&pid, MessageKind(6)).is_err());
        assert_eq!(state.pq, PqMode::Require);
    }

    proptest::proptest! {
        /// Any body sealed under the right key (so past the AEAD) never
        /// panics the decoder.
        #[test]
        fn arbitrary_sealed_bodies_never_panic(
            tag in 0u8..4,
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
        ) {
            let key = StorageKey::new([5; 32]);
            let mut out = vec![0u8; SEAL_OVERHEAD + 40 + body.len()];
            let n = envelope::seal(&key, &header(), 0, &mut TestRng::new(1), &mut out, |w| {
                w.write_bytes(&[0u8; 32])?;
                w.write_u8(tag)?;
                w.write_bytes(&body)
            })
            .unwrap();
            let _ = open_any(&key, &out[..n]);
        }
    }
}

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
//! | Noise transports and handshakes | **no** | they serve peers that are online, so a lost one costs a new handshake (one round trip); persisting them would mean a write before *every* Noise message, and a transport restored behind its counter would reuse nonces. After a restart the peer's next Noise message is [`Error::UnknownSession`](crate::Error::UnknownSession) and the next [`send`](crate::Agent::send) opens a new IK handshake, which the peer's agent lets supersede the old session |
//! | transmit queue, events, counters, metrics | no | what [`poll_transmit`](crate::Agent::poll_transmit) handed out is the host's; the rest is process-lifetime observability |
//!
//! # Records
//!
//! The state is cut into `1 + SESSIONS` records ([`RecordId`]): the
//! agent record and one record per session slot, each sealed on its own
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
//! session record owner [32] | 2 u8 | slot u16 | flag (0 empty, 1 ratchet)
//!                  [ peer [32] | session id u64 | order u64 | ratchet ]
//! nested state   version u16 | suite u16 | len u32 | body (the Persist body of that type)
//! ```
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
//! The records of one call (at most a session record and the agent
//! record) are one batch: write them beside the current blobs and record
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

use crate::envelope::SessionId;
use crate::peer::{Directory, PeerId};
use crate::policy::Policy;
use securemesh_core::codec::{Reader, Writer};
use securemesh_core::crypto::SuiteId;
use securemesh_core::envelope::{self, Header, Persist, SEAL_OVERHEAD, StateKind, StorageKey};
use securemesh_core::{CryptoRng, Error as CoreError};
use securemesh_ratchet::{Identity, PrekeyPool, Session};

/// The body version of both records.
pub const RECORD_VERSION: u16 = 1;
const TAG_AGENT: u8 = 1;
const TAG_SESSION: u8 = 2;
/// `version u16 | suite u16 | len u32` before a nested body.
const NESTED_OVERHEAD: usize = 8;

/// Which record a sealed blob is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordId {
    /// Identity, prekey pool, directory, policy.
    Agent,
    /// Session slot `n` (empty or a ratchet session).
    Session(u16),
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
        + <PrekeyPool<PREKEYS> as Persist>::MAX_BODY_LEN
        + Directory::<PEERS>::MAX_ENCODED_LEN
        + Policy::<PEERS>::MAX_ENCODED_LEN;
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
        + <Session<MAX_SKIP, CAP> as Persist>::MAX_BODY_LEN;
}

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
    pub(crate) pool: &'a PrekeyPool<PREKEYS>,
    pub(crate) directory: &'a Directory<PEERS>,
    pub(crate) policy: &'a Policy<PEERS>,
}

/// The agent record, decoded.
pub(crate) struct AgentState<const PEERS: usize, const PREKEYS: usize> {
    pub(crate) identity: Identity,
    pub(crate) pool: PrekeyPool<PREKEYS>,
    pub(crate) directory: Directory<PEERS>,
    pub(crate) policy: Policy<PEERS>,
}

pub(crate) fn seal_agent<R: CryptoRng + ?Sized, const PEERS: usize, const PREKEYS: usize>(
    key: &StorageKey,
    generation: u64,
    rng: &mut R,
    out: &mut [u8],
    parts: &AgentParts<'_, PEERS, PREKEYS>,
) -> Result<usize, CoreError> {
    envelope::seal(key, &header(), generation, rng, out, |w| {
        w.write_bytes(&parts.owner.0)?;
        w.write_u8(TAG_AGENT)?;
        write_nested(w, parts.identity)?;
        write_nested(w, parts.pool)?;
        parts.directory.encode(w)?;
        parts.policy.encode(w)
    })
}

/// A session slot's record (a transient value: moved into the table).
#[allow(clippy::large_enum_variant)]
pub(crate) enum SlotState<const MAX_SKIP: usize, const CAP: usize> {
    Empty,
    Ratchet { peer: PeerId, id: SessionId, order: u64, session: Session<MAX_SKIP, CAP> },
}

/// What a session record holds when sealed.
pub(crate) type SlotParts<'a, const MAX_SKIP: usize, const CAP: usize> =
    Option<(&'a PeerId, SessionId, u64, &'a Session<MAX_SKIP, CAP>)>;

pub(crate) fn seal_slot<R: CryptoRng + ?Sized, const MAX_SKIP: usize, const CAP: usize>(
    key: &StorageKey,
    generation: u64,
    rng: &mut R,
    out: &mut [u8],
    owner: &PeerId,
    slot: u16,
    parts: SlotParts<'_, MAX_SKIP, CAP>,
) -> Result<usize, CoreError> {
    envelope::seal(key, &header(), generation, rng, out, |w| {
        w.write_bytes(&owner.0)?;
        w.write_u8(TAG_SESSION)?;
        w.write_u16(slot)?;
        match parts {
            None => w.write_u8(0),
            Some((peer, id, order, session)) => {
                w.write_u8(1)?;
                w.write_bytes(&peer.0)?;
                w.write_u64(id.0)?;
                w.write_u64(order)?;
                write_nested(w, session)
            }
        }
    })
}

/// A decoded record (a transient value: moved into the agent).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Opened<const PEERS: usize, const PREKEYS: usize, const MAX_SKIP: usize, const CAP: usize> {
    Agent { owner: PeerId, state: AgentState<PEERS, PREKEYS> },
    Slot { owner: PeerId, slot: u16, state: SlotState<MAX_SKIP, CAP> },
}

/// Open and decode a record; `scratch` holds the plaintext body while it
/// is decoded and is wiped before returning.
pub(crate) fn open<const PEERS: usize, const PREKEYS: usize, const MAX_SKIP: usize, const CAP: usize>(
    key: &StorageKey,
    blob: &[u8],
    newest_seen: u64,
    scratch: &mut [u8],
) -> Result<(Opened<PEERS, PREKEYS, MAX_SKIP, CAP>, u64), CoreError> {
    let opened = envelope::open(key, blob, newest_seen, scratch)?;
    let (h, generation, body) = (opened.header, opened.generation, opened.body);
    let len = body.len();
    let result = decode(&h, body);
    if let Some(s) = scratch.get_mut(..len) {
        s.fill(0);
    }
    Ok((result?, generation))
}

fn decode<const PEERS: usize, const PREKEYS: usize, const MAX_SKIP: usize, const CAP: usize>(
    h: &Header,
    body: &[u8],
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
            let pool: PrekeyPool<PREKEYS> = read_nested(&mut r)?;
            let directory = Directory::decode(&mut r)?;
            let policy = Policy::decode(&mut r)?;
            Opened::Agent { owner, state: AgentState { identity, pool, directory, policy } }
        }
        TAG_SESSION => {
            let slot = r.read_u16()?;
            let state = match r.read_u8()? {
                0 => SlotState::Empty,
                1 => {
                    let peer = PeerId(r.read_array()?);
                    let id = SessionId(r.read_u64()?);
                    let order = r.read_u64()?;
                    let session: Session<MAX_SKIP, CAP> = read_nested(&mut r)?;
                    if PeerId::of(session.remote_identity()) != peer {
                        return Err(CoreError::InvalidValue);
                    }
                    SlotState::Ratchet { peer, id, order, session }
                }
                _ => return Err(CoreError::InvalidValue),
            };
            Opened::Slot { owner, slot, state }
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
        open::<2, 4, 4, 4>(key, blob, 0, &mut scratch).map(|(r, _)| r)
    }

    /// The agent record round-trips: identity, pool, directory (without
    /// reachability) and policy.
    #[test]
    fn agent_record_roundtrip() {
        let mut rng = TestRng::new(0x7001);
        let me = Identity::generate(&mut rng);
        let peer = Identity::generate(&mut rng);
        let pool: PrekeyPool<4> = PrekeyPool::new(&me, &mut rng, UnixTime(1), PrekeyConfig::default());
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
        let parts =
            AgentParts { owner: &owner, identity: &me, pool: &pool, directory: &directory, policy: &policy };
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

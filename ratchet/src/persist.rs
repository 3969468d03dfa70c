//! Persisted sessions, prekey pools and identities through the `core`
//! envelope ([`securemesh_core::envelope`]), suite [`SuiteId::DEFAULT`]:
//! [`Session`] is kind [`StateKind::RATCHET_SESSION`] and [`PrekeyPool`]
//! kind [`StateKind::PREKEY_POOL`], both body version 2 (a version-1
//! session still decodes, see below; a version-1 pool does not: it did not
//! record its owner), or version 3 for PQXDH state (below); [`Identity`]
//! is kind [`StateKind::IDENTITY`], body version 1 (its two secrets).
//!
//! Bodies are written field by field, never from the in-memory layout. All
//! integers are big-endian. `flag` is one byte, 0 (absent / false) or 1
//! (present / true); any other value is refused with
//! [`Error::InvalidValue`]. `[n]` is `n` raw bytes. Event tags are a
//! registry: a tag never changes meaning.
//!
//! ## Session, version 2 (and 1)
//!
//! ```text
//! max_skip u16 | cap u16                         MAX_SKIP and CAP of the writer
//! | ad [128]                                     X3DH associated data
//! | remote [128]                                 sign_pub | dh_pub | sig, re-verified on decode
//! | rk [32]
//! | dhs: flag [secret [32] | public [32]]        public checked == X25519(secret) on decode
//! | dhr: flag [32] | prev_dhr: flag [32]
//! | cks: flag [32] | ckr: flag [32]
//! | ns u32 | nr u32 | pn u32 | step_pending flag
//! | he flag | hks: flag [32] | hkr: flag [32] | nhks: flag [32] | nhkr: flag [32] | prev_hkr: flag [32]
//! | skipped_count u16 (<= CAP of the reader)
//!   | skipped_count * (chain [32] | n u32 | mk [32] | seq u64)   in slot order, seq < next_seq
//!   | next_seq u64
//! | prekey: flag [alice [128] (re-verified) | ek [32] | spk_id u32 | opk: flag [opk_id u32]]
//! | initial: flag [ek [32] | spk_id u32 | opk: flag [opk_id u32]]   Bob: Alice's X3DH header
//! | heartbeat_ms u64 | since_step u64 (ms from the last DH step to the latest `now` a call passed) | heartbeat_reported flag
//! | event_count u8 (<= 4) | event_count * event, oldest first
//!     event = 1 RatchetStepped | sending flag
//!           | 2 HeartbeatDue
//! ```
//!
//! Version 2 has the layout of version 1; it marks sessions whose X3DH
//! bound the initial message's prefix into `SK` (wire version 2 of
//! `securemesh_ratchet::spec`), and its `since_step` is a duration where
//! version 1 stored `last_step`, an `Instant` of the saving process's
//! clock: a restored session carries that age over and counts on from the
//! restoring process's first call with `now` (until then `poll_timeout`
//! says "due now"), so the heartbeat keeps its deadline relative to the
//! last step even when the clock's origin changed with the restart; time
//! while no process ran the session (powered off) is not counted.
//! Decoding version 1 migrates:
//!
//! - a session that still awaits its first reply (`prekey` present) is
//!   refused with [`Error::UnknownVersion`] `{ found: 1 }`: its keys come
//!   from the version-1 X3DH, which version-2 peers refuse, so it cannot go
//!   on; start a new session from the peer's bundle;
//! - a responder's session that has not sent yet (`initial` present, `cks`
//!   absent) drops `dhs`, which is then the signed prekey's private key
//!   (version 2 erases it in `respond`);
//! - the heartbeat counts from the restore (`since_step` 0: the stored
//!   `Instant` belongs to another clock);
//! - everything else decodes unchanged.
//!
//! `max_skip` must equal the reader's `MAX_SKIP` (else
//! [`Error::InvalidValue`]): the skip bound is part of the session's
//! policy. `cap` need not equal the reader's `CAP`: a state is accepted as
//! long as its stored skipped keys fit (`skipped_count <= CAP`, and
//! `skipped_count <= cap`), so a session can move to a larger (or, when it
//! holds few keys, a smaller) store. Skipped keys are stored compacted into
//! the first slots; slot positions carry no meaning (lookup is by chain and
//! number, eviction by `seq`), so the restored session behaves exactly like
//! the saved one.
//!
//! ## Prekey pool, version 2
//!
//! ```text
//! cap u16 (== CAP of the reader)
//! | owner [128]                                  sign_pub | dh_pub | sig, re-verified on decode
//! | one_time_count u16
//!   | one_time_count * (slot u16 | id u32 | secret [32])   slots strictly increasing, < CAP; ids distinct
//! | next_id u32 (0: every identifier issued) | consumed_total u64
//! | signed: id u32 | secret [32] | sig [64] | created u64 (UnixTime)
//! | previous: flag [id u32 | secret [32] | sig [64] | created u64 | retired u64]
//! | refill_threshold_percent u8 | rotation_interval_secs u64 | grace_period_secs u64
//! | low_reported flag
//! | event_count u8 (<= 4) | event_count * event, oldest first
//!     event = 1 PoolLow | available u32 | capacity u32
//!           | 2 SignedPrekeyRotated | id u32
//!           | 3 PreviousSignedPrekeyErased | id u32
//! ```
//!
//! Public keys of prekeys are recomputed from their secrets on decode, and
//! the signatures of the signed prekeys (current and previous) must verify
//! under the owner (else [`Error::InvalidValue`]). Version 1 had no
//! `owner`; it is refused with [`Error::UnknownVersion`] `{ found: 1 }`
//! (create a new pool and publish its bundle). The
//! pool's `cap` must equal the reader's `CAP` (else
//! [`Error::InvalidValue`]): the slot of each one-time prekey is kept (so
//! refills after a restore fill the same slots in the same order) and the
//! low-pool threshold and `PoolLow` events are relative to `CAP`.
//!
//! `MAX_SKIP` and `CAP` are recorded as `u16`: a session or pool with a
//! capacity above 65535 cannot be encoded ([`Error::LengthOverflow`]).
//!
//! ## PQXDH state, version 3
//!
//! A session or pool with PQXDH state is written as version 3: the body of
//! version 2 followed by one section. Everything else is still written as
//! version 2, byte for byte as before; both versions decode.
//!
//! ```text
//! session: alice_kem: flag [kem_id u32 | kem_alg u16 | ct <u16 length>]   Alice's pending KEM slot (with `prekey`)
//!        | bob_kem:   flag [kem_id u32 | kem_alg u16 | ct_sha256 [32]]    the KEM slot of the initial header Bob answered (with `initial`)
//! pool:    kem_count u16 | kem_count * (slot u16 | kem_key)              one-time KEM prekeys; slots strictly increasing, < KEM; ids distinct from every one-time id
//!        | current: flag [kem_key] | previous: flag [kem_key]           last-resort KEM prekeys of the current and previous signed prekey
//! kem_key = id u32 | alg u16 (1 or 3) | seed [64] (d || z) | sig [64]
//! ```
//!
//! A KEM prekey's public key is recomputed from its seed and its signature
//! must verify under the owner (else [`Error::InvalidValue`]; without the
//! feature `pq` no KEM prekey decodes). A ciphertext longer than the
//! reader's `KEM_CT` is [`Error::InvalidValue`].
//!
//! ## Rules
//!
//! Both bodies hold live secrets (root, chain and message keys, ratchet and
//! prekey private keys): seal them ([`Persist::seal_state`], with a new
//! generation on every save) unless the storage is already confidential and
//! integrity-protected, and keep the newest generation in monotonic storage.
//!
//! A caller **MUST** persist the new state (sealed, with a new generation)
//! **before** it transmits what [`Session::encrypt`] produced, and after
//! every successful [`Session::decrypt`] or [`Session::respond`] before it
//! acts on the plaintext. A crash after transmitting but before persisting
//! restores a session that encrypts the next message with the keys of the
//! transmitted one; a restored older state (rollback) does the same, which
//! is why [`Persist::open_state`] refuses an older generation.

use crate::bundle::SignedPrekeyPublic;
use crate::identity::{Identity, PublicIdentity};
use crate::kdf::Key32;
use crate::pqxdh::KemAlgorithm;
use crate::prekeys::{KemKey, OneTime, POOL_EVENT_SLOTS, PrekeyConfig, PrekeyEvent, PrekeyPool, Signed};
use crate::session::{KemCiphertext, KemRef, PrekeyHeader, SESSION_EVENT_SLOTS, Session, SessionEvent};
use crate::skipped::{Entry, SkippedKeys};
use securemesh_core::codec::{Reader, Writer};
use securemesh_core::crypto::{Dh, Hash, Sha256, SuiteId, X25519};
use securemesh_core::envelope::{Header, Persist, StateKind};
use securemesh_core::events::EventQueue;
use securemesh_core::{Error, Instant, UnixTime};

/// Length of the event queue of a type, read from the type of its field
/// (so the body bound follows the struct if the queue ever grows).
const SESSION_EVENTS: usize = EventQueue::<SessionEvent, SESSION_EVENT_SLOTS>::CAPACITY;
const POOL_EVENTS: usize = EventQueue::<PrekeyEvent, POOL_EVENT_SLOTS>::CAPACITY;

/// An optional 32-byte value: flag and bytes.
const OPT32: usize = 1 + 32;
/// One stored skipped key: chain, n, mk, seq.
const SKIPPED_ENTRY_LEN: usize = 32 + 4 + 32 + 8;
/// Everything of a session body except the skipped entries.
const SESSION_FIXED_LEN: usize = 2 + 2 // max_skip, cap
    + 128 + PublicIdentity::LEN + 32 // ad, remote, rk
    + 1 + 32 + 32 // dhs
    + 4 * OPT32 // dhr, prev_dhr, cks, ckr
    + 3 * 4 + 1 // ns, nr, pn, step_pending
    + 1 + 5 * OPT32 // he, hks, hkr, nhks, nhkr, prev_hkr
    + 2 + 8 // skipped count, next_seq
    + 1 + PublicIdentity::LEN + 32 + 4 + 1 + 4 // prekey
    + 1 + 32 + 4 + 1 + 4 // initial
    + 8 + 8 + 1 // heartbeat_ms, since_step, heartbeat_reported
    + 1 + SESSION_EVENTS * 2; // events: count, tag + sending flag

/// The version-3 PQXDH slots of a session with room for a `kem_ct`-byte
/// ciphertext (none can exist without `pq`).
const fn session_kem_len(kem_ct: usize) -> usize {
    // Saturates only for a `kem_ct` no memory holds.
    if cfg!(feature = "pq") { kem_ct.saturating_add(1 + 4 + 2 + 2 + 1 + 4 + 2 + 32) } else { 0 }
}
/// A KEM prekey: id, alg, seed, signature.
const KEM_KEY_LEN: usize = 4 + 2 + 64 + 64;
/// The version-3 KEM prekeys of a pool with `kem` one-time KEM slots.
const fn pool_kem_len(kem: usize) -> usize {
    // Saturates only for a `kem` no memory holds.
    if cfg!(feature = "pq") {
        kem.saturating_mul(2 + KEM_KEY_LEN).saturating_add(2 + 2 * (1 + KEM_KEY_LEN))
    } else {
        0
    }
}

/// One one-time prekey: slot, id, secret.
const ONE_TIME_ENTRY_LEN: usize = 2 + 4 + 32;
/// A signed prekey: id, secret, signature, created.
const SIGNED_LEN: usize = 4 + 32 + 64 + 8;
/// Everything of a pool body except the one-time entries.
const POOL_FIXED_LEN: usize = 2 + 2 // cap, one-time count
    + PublicIdentity::LEN // owner
    + 4 + 8 // next_id, consumed_total
    + SIGNED_LEN // signed
    + 1 + SIGNED_LEN + 8 // previous and its retirement time
    + 1 + 8 + 8 // config
    + 1 // low_reported
    + 1 + POOL_EVENTS * (1 + 4 + 4); // events: count, largest is PoolLow

const SESSION_EVENT_STEPPED: u8 = 1;
const SESSION_EVENT_HEARTBEAT: u8 = 2;
const POOL_EVENT_LOW: u8 = 1;
const POOL_EVENT_ROTATED: u8 = 2;
const POOL_EVENT_ERASED: u8 = 3;

/// The suite and a body version in `1..=newest`.
fn check_header(header: &Header, newest: u16) -> Result<(), Error> {
    if header.version == 0 || header.version > newest {
        return Err(Error::UnknownVersion { found: header.version });
    }
    if header.suite != SuiteId::DEFAULT {
        return Err(Error::SuiteMismatch { found: header.suite.0 });
    }
    Ok(())
}

fn to_u16(n: usize) -> Result<u16, Error> {
    u16::try_from(n).map_err(|_| Error::LengthOverflow)
}

fn write_flag(w: &mut Writer<'_>, b: bool) -> Result<(), Error> {
    w.write_u8(u8::from(b))
}

fn read_flag(r: &mut Reader<'_>) -> Result<bool, Error> {
    match r.read_u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::InvalidValue),
    }
}

/// `ek [32] | spk_id u32 | opk: flag [opk_id u32]`.
fn write_prekey_header(w: &mut Writer<'_>, p: &PrekeyHeader) -> Result<(), Error> {
    w.write_bytes(&p.ek)?;
    w.write_u32(p.spk_id)?;
    match p.opk_id {
        Some(id) => {
            w.write_u8(1)?;
            w.write_u32(id)
        }
        None => w.write_u8(0),
    }
}

fn read_prekey_header(r: &mut Reader<'_>) -> Result<PrekeyHeader, Error> {
    let ek = r.read_array()?;
    let spk_id = r.read_u32()?;
    let opk_id = if read_flag(r)? { Some(r.read_u32()?) } else { None };
    Ok(PrekeyHeader { ek, spk_id, opk_id, kem: None })
}

fn write_opt(w: &mut Writer<'_>, v: Option<&[u8; 32]>) -> Result<(), Error> {
    match v {
        Some(bytes) => {
            w.write_u8(1)?;
            w.write_bytes(bytes)
        }
        None => w.write_u8(0),
    }
}

fn write_opt_key(w: &mut Writer<'_>, k: Option<&Key32>) -> Result<(), Error> {
    write_opt(w, k.map(Key32::expose))
}

/// Read a secret straight into its zeroizing container.
fn read_key(r: &mut Reader<'_>) -> Result<Key32, Error> {
    let mut k = Key32::zeroed();
    k.expose_mut().copy_from_slice(r.read_bytes(32)?);
    Ok(k)
}

fn read_opt_key(r: &mut Reader<'_>) -> Result<Option<Key32>, Error> {
    if read_flag(r)? { Ok(Some(read_key(r)?)) } else { Ok(None) }
}

fn read_opt(r: &mut Reader<'_>) -> Result<Option<[u8; 32]>, Error> {
    if read_flag(r)? { Ok(Some(r.read_array()?)) } else { Ok(None) }
}

fn read_identity(r: &mut Reader<'_>) -> Result<PublicIdentity, Error> {
    PublicIdentity::from_bytes(&r.read_array()?).map_err(|_| Error::BadSignature)
}

fn write_session_event(w: &mut Writer<'_>, e: &SessionEvent) -> Result<(), Error> {
    match e {
        SessionEvent::RatchetStepped { sending } => {
            w.write_u8(SESSION_EVENT_STEPPED)?;
            write_flag(w, *sending)
        }
        SessionEvent::HeartbeatDue => w.write_u8(SESSION_EVENT_HEARTBEAT),
    }
}

fn read_session_event(r: &mut Reader<'_>) -> Result<SessionEvent, Error> {
    match r.read_u8()? {
        SESSION_EVENT_STEPPED => Ok(SessionEvent::RatchetStepped { sending: read_flag(r)? }),
        SESSION_EVENT_HEARTBEAT => Ok(SessionEvent::HeartbeatDue),
        _ => Err(Error::InvalidValue),
    }
}

fn write_pool_event(w: &mut Writer<'_>, e: &PrekeyEvent) -> Result<(), Error> {
    match e {
        PrekeyEvent::PoolLow { available, capacity } => {
            w.write_u8(POOL_EVENT_LOW)?;
            w.write_u32(*available)?;
            w.write_u32(*capacity)
        }
        PrekeyEvent::SignedPrekeyRotated { id } => {
            w.write_u8(POOL_EVENT_ROTATED)?;
            w.write_u32(*id)
        }
        PrekeyEvent::PreviousSignedPrekeyErased { id } => {
            w.write_u8(POOL_EVENT_ERASED)?;
            w.write_u32(*id)
        }
    }
}

fn read_pool_event(r: &mut Reader<'_>) -> Result<PrekeyEvent, Error> {
    match r.read_u8()? {
        POOL_EVENT_LOW => Ok(PrekeyEvent::PoolLow { available: r.read_u32()?, capacity: r.read_u32()? }),
        POOL_EVENT_ROTATED => Ok(PrekeyEvent::SignedPrekeyRotated { id: r.read_u32()? }),
        POOL_EVENT_ERASED => Ok(PrekeyEvent::PreviousSignedPrekeyErased { id: r.read_u32()? }),
        _ => Err(Error::InvalidValue),
    }
}

/// Write the pending events of a queue (the `Some` slots, oldest first).
fn write_events<T: Copy, const N: usize>(
    w: &mut Writer<'_>,
    events: &EventQueue<T, N>,
    write: impl Fn(&mut Writer<'_>, &T) -> Result<(), Error>,
) -> Result<(), Error> {
    w.write_u8(u8::try_from(events.len()).map_err(|_| Error::LengthOverflow)?)?;
    for e in events.iter() {
        write(w, e)?;
    }
    Ok(())
}

/// Read pending events into the first slots of an empty queue.
fn read_events<T: Copy, const N: usize>(
    r: &mut Reader<'_>,
    read: impl Fn(&mut Reader<'_>) -> Result<T, Error>,
) -> Result<EventQueue<T, N>, Error> {
    let mut events = EventQueue::new();
    let count = usize::from(r.read_u8()?);
    if count > N {
        return Err(Error::InvalidValue);
    }
    for _ in 0..count {
        events.push(read(r)?);
    }
    Ok(events)
}

impl<const MAX_SKIP: usize, const CAP: usize, const KEM_CT: usize> Persist
    for Session<MAX_SKIP, CAP, KEM_CT>
{
    const KIND: StateKind = StateKind::RATCHET_SESSION;
    const VERSION: u16 = 3;
    const MAX_BODY_LEN: usize = SESSION_FIXED_LEN + session_kem_len(KEM_CT) + CAP * SKIPPED_ENTRY_LEN;

    fn suite(&self) -> SuiteId {
        SuiteId::DEFAULT
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.write_u16(to_u16(MAX_SKIP)?)?;
        w.write_u16(to_u16(CAP)?)?;
        w.write_bytes(&self.ad)?;
        w.write_bytes(&self.remote.to_bytes())?;
        w.write_bytes(self.rk.expose())?;
        match &self.dhs {
            Some((secret, public)) => {
                w.write_u8(1)?;
                w.write_bytes(secret.expose())?;
                w.write_bytes(public)?;
            }
            None => w.write_u8(0)?,
        }
        write_opt(w, self.dhr.as_ref())?;
        write_opt(w, self.prev_dhr.as_ref())?;
        write_opt_key(w, self.cks.as_ref())?;
        write_opt_key(w, self.ckr.as_ref())?;
        w.write_u32(self.ns)?;
        w.write_u32(self.nr)?;
        w.write_u32(self.pn)?;
        write_flag(w, self.step_pending)?;
        write_flag(w, self.he)?;
        for k in [&self.hks, &self.hkr, &self.nhks, &self.nhkr, &self.prev_hkr] {
            write_opt_key(w, k.as_ref())?;
        }
        w.write_u16(to_u16(self.skipped.len())?)?;
        for (_, e) in self.skipped.iter() {
            w.write_bytes(e.chain.expose())?;
            w.write_u32(e.n)?;
            w.write_bytes(e.mk.expose())?;
            w.write_u64(e.seq)?;
        }
        w.write_u64(self.skipped.next_seq)?;
        match &self.prekey {
            Some((alice, p)) => {
                w.write_u8(1)?;
                w.write_bytes(&alice.to_bytes())?;
                write_prekey_header(w, p)?;
            }
            None => w.write_u8(0)?,
        }
        match &self.initial {
            Some(p) => {
                w.write_u8(1)?;
                write_prekey_header(w, p)?;
            }
            None => w.write_u8(0)?,
        }
        w.write_u64(self.heartbeat_ms)?;
        w.write_u64(self.since_last_step_ms())?;
        write_flag(w, self.heartbeat_reported)?;
        write_events(w, &self.events, write_session_event)?;
        if self.is_pqxdh() {
            match (self.prekey.as_ref().and_then(|(_, p)| p.kem.as_ref()), &self.kem_ct) {
                (Some(k), Some(ct)) => {
                    w.write_u8(1)?;
                    w.write_u32(k.id)?;
                    w.write_u16(k.alg)?;
                    w.write_vec16(ct.as_slice())?;
                }
                _ => w.write_u8(0)?,
            }
            match self.initial.as_ref().and_then(|p| p.kem.as_ref()) {
                Some(k) => {
                    w.write_u8(1)?;
                    w.write_u32(k.id)?;
                    w.write_u16(k.alg)?;
                    w.write_bytes(&k.ct_hash)?;
                }
                None => w.write_u8(0)?,
            }
        }
        Ok(())
    }

    /// Version 3 only for a session with a PQXDH slot to save, so every
    /// X3DH session encodes as before (version 2), byte for byte.
    fn header(&self) -> Header {
        let version = if self.is_pqxdh() { Self::VERSION } else { 2 };
        Header { kind: Self::KIND, version, suite: self.suite() }
    }

    fn decode_body(header: &Header, r: &mut Reader<'_>) -> Result<Self, Error> {
        check_header(header, Self::VERSION)?;
        if usize::from(r.read_u16()?) != MAX_SKIP {
            return Err(Error::InvalidValue);
        }
        let written_cap = usize::from(r.read_u16()?);
        let ad = r.read_array()?;
        let remote = read_identity(r)?;
        let rk = read_key(r)?;
        let dhs = if read_flag(r)? {
            let secret = read_key(r)?;
            let public: [u8; 32] = r.read_array()?;
            // A cached public key that does not match its secret would put a
            // key on the wire the peer cannot use: refuse the state.
            if X25519::public_key(&secret) != public {
                return Err(Error::InvalidValue);
            }
            Some((secret, public))
        } else {
            None
        };
        let dhr = read_opt(r)?;
        let prev_dhr = read_opt(r)?;
        let cks = read_opt_key(r)?;
        let ckr = read_opt_key(r)?;
        let ns = r.read_u32()?;
        let nr = r.read_u32()?;
        let pn = r.read_u32()?;
        let step_pending = read_flag(r)?;
        let he = read_flag(r)?;
        let hks = read_opt_key(r)?;
        let hkr = read_opt_key(r)?;
        let nhks = read_opt_key(r)?;
        let nhkr = read_opt_key(r)?;
        let prev_hkr = read_opt_key(r)?;

        let count = usize::from(r.read_u16()?);
        if count > CAP || count > written_cap {
            return Err(Error::InvalidValue);
        }
        let mut skipped = SkippedKeys::<CAP>::default();
        let mut max_seq = None;
        for slot in skipped.entries.iter_mut().take(count) {
            let chain = read_key(r)?;
            let n = r.read_u32()?;
            let mk = read_key(r)?;
            let seq = r.read_u64()?;
            max_seq = max_seq.max(Some(seq));
            *slot = Some(Entry { chain, n, mk, seq });
        }
        skipped.next_seq = r.read_u64()?;
        // Sequence numbers are handed out from next_seq: all lie below it.
        if max_seq.is_some_and(|s| s >= skipped.next_seq) {
            return Err(Error::InvalidValue);
        }

        let prekey = if read_flag(r)? {
            let alice = read_identity(r)?;
            Some((alice, read_prekey_header(r)?))
        } else {
            None
        };
        let initial = if read_flag(r)? { Some(read_prekey_header(r)?) } else { None };
        let mut dhs = dhs;
        if header.version == 1 {
            if prekey.is_some() {
                return Err(Error::UnknownVersion { found: 1 });
            }
            if initial.is_some() && cks.is_none() {
                dhs = None;
            }
        }
        let heartbeat_ms = r.read_u64()?;
        // Version 2: a duration, placed on the restoring process's clock by
        // its first call with `now`. Version 1 stored the saver's absolute
        // `Instant`, meaningless on another clock: the heartbeat then
        // counts from the restore.
        let since = r.read_u64()?;
        let age_at_origin = if header.version == 1 { 0 } else { since };
        let heartbeat_reported = read_flag(r)?;
        let events = read_events(r, read_session_event)?;
        let mut prekey = prekey;
        let mut initial = initial;
        let mut kem_ct = None;
        if header.version >= 3 {
            // Version 3: the PQXDH slots of Alice's pending header (with its
            // ciphertext) and of the initial header Bob answered; at least
            // one (a state without is written as version 2: canonical).
            let mut any = false;
            if read_flag(r)? {
                let (id, alg) = (r.read_u32()?, r.read_u16()?);
                let ct = r.read_vec16()?;
                let kem = KemAlgorithm::from_code(alg).ok_or(Error::InvalidValue)?;
                if ct.len() != kem.ciphertext_len() {
                    return Err(Error::InvalidValue);
                }
                let ct = KemCiphertext::from_slice(ct).map_err(|_| Error::InvalidValue)?;
                let (_, p) = prekey.as_mut().ok_or(Error::InvalidValue)?;
                p.kem = Some(KemRef { id, alg, ct_hash: Sha256::digest(&[ct.as_slice()]) });
                kem_ct = Some(ct);
                any = true;
            }
            if read_flag(r)? {
                let k = KemRef { id: r.read_u32()?, alg: r.read_u16()?, ct_hash: r.read_array()? };
                KemAlgorithm::from_code(k.alg).ok_or(Error::InvalidValue)?;
                initial.as_mut().ok_or(Error::InvalidValue)?.kem = Some(k);
                any = true;
            }
            if !any {
                return Err(Error::InvalidValue);
            }
        }
        Ok(Session {
            ad,
            remote,
            rk,
            dhs,
            dhr,
            prev_dhr,
            cks,
            ckr,
            ns,
            nr,
            pn,
            step_pending,
            he,
            hks,
            hkr,
            nhks,
            nhkr,
            prev_hkr,
            skipped,
            prekey,
            kem_ct,
            initial,
            heartbeat_ms,
            age_origin: Instant::ZERO,
            age_at_origin,
            origin_pending: true,
            clock: Instant::ZERO,
            heartbeat_reported,
            events,
        })
    }
}

/// An identity persists as its two secrets (body version 1, kind
/// [`StateKind::IDENTITY`]): `sign_seed [32] | dh_secret [32]`; the public
/// keys and the binding signature are derived again on decode. The body is
/// the identity's private keys: seal it.
///
/// ```
/// use securemesh_core::envelope::{Persist, StorageKey};
/// use securemesh_ratchet::Identity;
/// # let mut rng = securemesh_core::testing::TestRng::new(1);
/// let alice = Identity::generate(&mut rng);
/// let key = StorageKey::new([3u8; 32]); // from the agent's key store
/// let mut blob = [0u8; Identity::MAX_SEALED_LEN];
/// let n = alice.seal_state(&key, 0, &mut rng, &mut blob)?;
/// let mut scratch = [0u8; Identity::MAX_BODY_LEN];
/// let (restored, _) = Identity::open_state(&key, &blob[..n], 0, &mut scratch)?;
/// assert_eq!(restored.public(), alice.public());
/// # Ok::<(), securemesh_core::Error>(())
/// ```
impl Persist for Identity {
    const KIND: StateKind = StateKind::IDENTITY;
    const VERSION: u16 = 1;
    const MAX_BODY_LEN: usize = 64;

    fn suite(&self) -> SuiteId {
        SuiteId::DEFAULT
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.write_bytes(self.signing_seed().expose())?;
        w.write_bytes(self.dh_secret().expose())
    }

    fn decode_body(header: &Header, r: &mut Reader<'_>) -> Result<Self, Error> {
        check_header(header, Self::VERSION)?;
        let seed = read_key(r)?;
        let dh = read_key(r)?;
        Ok(Identity::from_secrets(seed, dh))
    }
}

fn write_signed(w: &mut Writer<'_>, s: &Signed) -> Result<(), Error> {
    w.write_u32(s.public.id)?;
    w.write_bytes(s.secret.expose())?;
    w.write_bytes(&s.public.sig)?;
    w.write_u64(s.created.0)
}

/// `id u32 | alg u16 | seed [64] | sig [64]`.
fn write_kem_key(w: &mut Writer<'_>, k: &KemKey) -> Result<(), Error> {
    w.write_u32(k.id)?;
    w.write_u16(k.alg.code())?;
    w.write_bytes(k.seed.expose())?;
    w.write_bytes(&k.sig)
}

/// A KEM prekey whose signature verifies under `owner` (its public key
/// recomputed from the seed; without the feature `pq` no KEM prekey
/// decodes).
fn read_kem_key(r: &mut Reader<'_>, owner: &PublicIdentity) -> Result<KemKey, Error> {
    let id = r.read_u32()?;
    let alg = KemAlgorithm::from_code(r.read_u16()?).ok_or(Error::InvalidValue)?;
    let mut seed = crate::pqxdh::KemSeed::zeroed();
    seed.expose_mut().copy_from_slice(r.read_bytes(64)?);
    let key = KemKey { id, alg, seed, sig: r.read_array()? };
    let mut buf = [0u8; crate::MAX_KEM_PUBLIC_LEN];
    let public = key.public(&mut buf).map_err(|_| Error::InvalidValue)?;
    crate::bundle::verify_kem(&public, owner).map_err(|_| Error::InvalidValue)?;
    Ok(key)
}

fn read_signed(r: &mut Reader<'_>) -> Result<Signed, Error> {
    let id = r.read_u32()?;
    let secret = read_key(r)?;
    let sig = r.read_array()?;
    let created = UnixTime(r.read_u64()?);
    let public = SignedPrekeyPublic { id, public: X25519::public_key(&secret), sig };
    Ok(Signed { secret, public, created, kem: None })
}

impl<const CAP: usize, const KEM: usize> Persist for PrekeyPool<CAP, KEM> {
    const KIND: StateKind = StateKind::PREKEY_POOL;
    const VERSION: u16 = 3;
    const MAX_BODY_LEN: usize = POOL_FIXED_LEN + CAP * ONE_TIME_ENTRY_LEN + pool_kem_len(KEM);

    /// Version 3 only for a pool with KEM prekeys, so every X3DH pool
    /// encodes as before (version 2), byte for byte.
    fn header(&self) -> Header {
        let version = if self.has_kem() { Self::VERSION } else { 2 };
        Header { kind: Self::KIND, version, suite: self.suite() }
    }

    fn suite(&self) -> SuiteId {
        SuiteId::DEFAULT
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.write_u16(to_u16(CAP)?)?;
        w.write_bytes(&self.owner.to_bytes())?;
        w.write_u16(to_u16(self.one_time.iter().flatten().count())?)?;
        for (slot, o) in self.one_time.iter().enumerate() {
            if let Some(o) = o {
                w.write_u16(to_u16(slot)?)?;
                w.write_u32(o.id)?;
                w.write_bytes(o.secret.expose())?;
            }
        }
        w.write_u32(self.next_id)?;
        w.write_u64(self.consumed_total)?;
        write_signed(w, &self.signed)?;
        match &self.previous {
            Some((p, retired)) => {
                w.write_u8(1)?;
                write_signed(w, p)?;
                w.write_u64(retired.0)?;
            }
            None => w.write_u8(0)?,
        }
        w.write_u8(self.config.refill_threshold_percent)?;
        w.write_u64(self.config.rotation_interval_secs)?;
        w.write_u64(self.config.grace_period_secs)?;
        write_flag(w, self.low_reported)?;
        write_events(w, &self.events, write_pool_event)?;
        if self.has_kem() {
            w.write_u16(to_u16(self.kem_one_time.iter().flatten().count())?)?;
            for (slot, k) in self.kem_one_time.iter().enumerate() {
                if let Some(k) = k {
                    w.write_u16(to_u16(slot)?)?;
                    write_kem_key(w, k)?;
                }
            }
            for s in [Some(&self.signed), self.previous.as_ref().map(|(p, _)| p)] {
                match s.and_then(|s| s.kem.as_ref()) {
                    Some(k) => {
                        w.write_u8(1)?;
                        write_kem_key(w, k)?;
                    }
                    None => w.write_u8(0)?,
                }
            }
        }
        Ok(())
    }

    fn decode_body(header: &Header, r: &mut Reader<'_>) -> Result<Self, Error> {
        check_header(header, Self::VERSION)?;
        if header.version == 1 {
            return Err(Error::UnknownVersion { found: 1 });
        }
        if usize::from(r.read_u16()?) != CAP {
            return Err(Error::InvalidValue);
        }
        let owner = read_identity(r)?;
        let count = usize::from(r.read_u16()?);
        if count > CAP {
            return Err(Error::InvalidValue);
        }
        let mut one_time: [Option<OneTime>; CAP] = [const { None }; CAP];
        let mut kem_one_time: [Option<KemKey>; KEM] = [const { None }; KEM];
        let mut next_slot = 0usize;
        for _ in 0..count {
            let slot = usize::from(r.read_u16()?);
            let id = r.read_u32()?;
            let secret = read_key(r)?;
            // Strictly increasing slots: canonical, and no slot twice.
            if slot < next_slot {
                return Err(Error::InvalidValue);
            }
            // Each identifier is consumed exactly once: refuse a state that
            // holds one twice.
            if one_time.iter().flatten().any(|o| o.id == id) {
                return Err(Error::InvalidValue);
            }
            let public = X25519::public_key(&secret);
            *one_time.get_mut(slot).ok_or(Error::InvalidValue)? = Some(OneTime { id, secret, public });
            next_slot = slot + 1;
        }
        let next_id = r.read_u32()?;
        let consumed_total = r.read_u64()?;
        let signed = read_signed(r)?;
        let previous = if read_flag(r)? {
            let p = read_signed(r)?;
            Some((p, UnixTime(r.read_u64()?)))
        } else {
            None
        };
        // Prekeys signed by another identity would make every bundle of
        // this pool fail to verify where it is published.
        for s in core::iter::once(&signed).chain(previous.as_ref().map(|(p, _)| p)) {
            s.public.verify(&owner).map_err(|_| Error::InvalidValue)?;
        }
        let config = PrekeyConfig {
            refill_threshold_percent: r.read_u8()?,
            rotation_interval_secs: r.read_u64()?,
            grace_period_secs: r.read_u64()?,
        };
        let low_reported = read_flag(r)?;
        let events = read_events(r, read_pool_event)?;
        let mut signed = signed;
        let mut previous = previous;
        if header.version >= 3 {
            let count = usize::from(r.read_u16()?);
            if count > KEM {
                return Err(Error::InvalidValue);
            }
            let mut next_slot = 0usize;
            for _ in 0..count {
                let slot = usize::from(r.read_u16()?);
                let k = read_kem_key(r, &owner)?;
                let taken = one_time.iter().flatten().any(|o| o.id == k.id)
                    || kem_one_time.iter().flatten().any(|o| o.id == k.id);
                if slot < next_slot || taken {
                    return Err(Error::InvalidValue);
                }
                *kem_one_time.get_mut(slot).ok_or(Error::InvalidValue)? = Some(k);
                next_slot = slot + 1;
            }
            if read_flag(r)? {
                signed.kem = Some(read_kem_key(r, &owner)?);
            }
            if read_flag(r)? {
                previous.as_mut().ok_or(Error::InvalidValue)?.0.kem = Some(read_kem_key(r, &owner)?);
            }
            // At least one KEM prekey (a pool without is written as
            // version 2: canonical); a last-resort identifier is not one of
            // another prekey (the one-time ones were checked as read).
            let lasts = [Some(&signed), previous.as_ref().map(|(p, _)| p)];
            let lasts: [Option<u32>; 2] = lasts.map(|s| s.and_then(|s| s.kem.as_ref()).map(|k| k.id));
            if lasts.iter().all(Option::is_none) && kem_one_time.iter().all(Option::is_none) {
                return Err(Error::InvalidValue);
            }
            for id in lasts.iter().flatten() {
                if one_time.iter().flatten().any(|o| o.id == *id)
                    || kem_one_time.iter().flatten().any(|k| k.id == *id)
                {
                    return Err(Error::InvalidValue);
                }
            }
            if let [Some(a), Some(b)] = lasts
                && a == b
            {
                return Err(Error::InvalidValue);
            }
        }
        Ok(PrekeyPool {
            owner,
            one_time,
            kem_one_time,
            next_id,
            consumed_total,
            signed,
            previous,
            config,
            low_reported,
            events,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::identity::Identity;
    use crate::pqxdh::MAX_KEM_CIPHERTEXT_LEN;
    use crate::session::SessionConfig;
    use securemesh_core::testing::TestRng;
    use std::vec;

    /// A session with every optional field present, a full skipped store
    /// and a full event queue encodes to exactly `MAX_BODY_LEN`.
    #[test]
    fn session_max_body_len_is_exact() {
        let mut rng = TestRng::new(1);
        let alice = Identity::generate(&mut rng);
        let bob = Identity::generate(&mut rng);
        let pool: PrekeyPool<2> = PrekeyPool::new(&bob, &mut rng, UnixTime(1), PrekeyConfig::default());
        let bundle = pool.bundle(pool.one_time_ids().next());
        let cfg = SessionConfig { header_encryption: true, ..SessionConfig::default() };
        let mut s: Session<5, 3, MAX_KEM_CIPHERTEXT_LEN> =
            Session::initiate(&alice, &bundle, cfg, &mut rng, Instant(0)).unwrap();
        let mut wire = [0u8; 512];
        s.encrypt(b"x", &mut wire, &mut rng, Instant(0)).unwrap();
        let k = || Key32::new([7u8; 32]);
        s.prev_dhr = Some([1u8; 32]);
        s.ckr = Some(k());
        (s.hks, s.hkr, s.nhks, s.nhkr, s.prev_hkr) = (Some(k()), Some(k()), Some(k()), Some(k()), Some(k()));
        for n in 0..3 {
            s.skipped.insert(&[2u8; 32], n, k());
        }
        s.initial = Some(PrekeyHeader { ek: [3u8; 32], spk_id: 7, opk_id: Some(9), kem: None });
        // With `pq`, the PQXDH slots at their largest (ML-KEM-1024).
        #[cfg(feature = "pq")]
        {
            let kem = KemRef { id: 4, alg: crate::KEM_ML_KEM_1024, ct_hash: [5u8; 32] };
            let ct = KemCiphertext::from_slice(&[6u8; MAX_KEM_CIPHERTEXT_LEN]).unwrap();
            if let Some((_, p)) = s.prekey.as_mut() {
                p.kem = Some(KemRef { ct_hash: Sha256::digest(&[ct.as_slice()]), ..kem });
            }
            s.kem_ct = Some(ct);
            s.initial = s.initial.map(|p| PrekeyHeader { kem: Some(kem), ..p });
        }
        for _ in 0..SESSION_EVENTS {
            s.events.push(SessionEvent::RatchetStepped { sending: false });
        }
        assert!(s.prekey.is_some_and(|(_, p)| p.opk_id.is_some()));
        assert!(s.dhs.is_some() && s.dhr.is_some() && s.cks.is_some());
        type S = Session<5, 3, MAX_KEM_CIPHERTEXT_LEN>;
        let mut buf = vec![0u8; S::MAX_ENCODED_LEN];
        let n = s.encode_state(&mut buf).unwrap();
        assert_eq!(n, S::MAX_ENCODED_LEN);
        let back = S::decode_state(&buf[..n]).unwrap();
        let mut again = vec![0u8; n];
        assert_eq!(back.encode_state(&mut again).unwrap(), n);
        assert_eq!(again, buf);
    }

    /// Version 1 of a session migrates: a session awaiting its first reply
    /// is refused (its X3DH was version 1), a responder that has not sent
    /// drops its signed prekey's private key, anything else is unchanged.
    #[test]
    fn version_1_sessions_migrate() {
        let mut rng = TestRng::new(3);
        let alice = Identity::generate(&mut rng);
        let bob = Identity::generate(&mut rng);
        let mut pool: PrekeyPool<2> = PrekeyPool::new(&bob, &mut rng, UnixTime(1), PrekeyConfig::default());
        let bundle = pool.bundle(pool.one_time_ids().next());
        let cfg = SessionConfig::default();
        let mut a: Session = Session::initiate(&alice, &bundle, cfg, &mut rng, Instant(0)).unwrap();
        let (mut wire, mut out) = ([0u8; 512], [0u8; 512]);
        let m = a.encrypt(b"x", &mut wire, &mut rng, Instant(0)).unwrap();
        let as_v1 = |s: &Session| {
            let mut buf = vec![0u8; Session::<128, 128>::MAX_ENCODED_LEN];
            let n = s.encode_state(&mut buf).unwrap();
            buf.truncate(n);
            buf[6] = 1; // version u16 at 5..7
            buf
        };
        assert_eq!(
            Session::<128, 128>::decode_state(&as_v1(&a)).err(),
            Some(Error::UnknownVersion { found: 1 })
        );
        let (mut b, _) =
            Session::<128, 128>::respond(&bob, &mut pool, &wire[..m], &mut out, cfg, Instant(0)).unwrap();
        assert!(b.dhs.is_none());
        // A version-1 responder still held the signed prekey's secret there.
        let spk = pool.signed_secret(bundle.signed.id).map(|(k, p)| (k.duplicate(), p)).unwrap();
        b.dhs = Some(spk);
        assert!(Session::<128, 128>::decode_state(&as_v1(&b)).unwrap().dhs.is_none());
        // Once Bob has sent, `dhs` is his own ratchet key and is kept.
        let m = b.encrypt(b"y", &mut wire, &mut rng, Instant(0)).unwrap();
        a.decrypt(&wire[..m], &mut out, Instant(0)).unwrap();
        for s in [&a, &b] {
            let back = Session::<128, 128>::decode_state(&as_v1(s)).unwrap();
            assert!(back.dhs.is_some());
            let mut again = as_v1(&back);
            again[6] = 1;
            assert_eq!(again, as_v1(s));
        }
    }

    /// A pool records its owner: version 1 (without it) is refused, and a
    /// pool whose signed prekeys do not verify under the recorded owner is
    /// refused too.
    #[test]
    fn pools_record_their_owner() {
        let mut rng = TestRng::new(4);
        let (bob, carol) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
        let pool: PrekeyPool<2> = PrekeyPool::new(&bob, &mut rng, UnixTime(1), PrekeyConfig::default());
        let mut buf = vec![0u8; PrekeyPool::<2>::MAX_ENCODED_LEN];
        let n = pool.encode_state(&mut buf).unwrap();
        buf.truncate(n);
        assert_eq!(PrekeyPool::<2>::decode_state(&buf).unwrap().owner(), bob.public());
        let mut v1 = buf.clone();
        v1[6] = 1;
        assert_eq!(PrekeyPool::<2>::decode_state(&v1).err(), Some(Error::UnknownVersion { found: 1 }));
        let at = securemesh_core::envelope::HEADER_LEN + 2;
        let mut other = buf.clone();
        other[at..at + 128].copy_from_slice(&carol.public().to_bytes());
        assert_eq!(PrekeyPool::<2>::decode_state(&other).err(), Some(Error::InvalidValue));
    }

    /// A full pool with a previous signed prekey and a full event queue
    /// encodes to exactly `MAX_BODY_LEN`.
    /// With `pq`, a PQXDH pool with every KEM slot full.
    #[test]
    fn pool_max_body_len_is_exact() {
        let mut rng = TestRng::new(2);
        let bob = Identity::generate(&mut rng);
        #[cfg(not(feature = "pq"))]
        let mut pool: PrekeyPool<3, 2> =
            PrekeyPool::new(&bob, &mut rng, UnixTime(1), PrekeyConfig::default());
        #[cfg(feature = "pq")]
        let mut pool: PrekeyPool<3, 2> = PrekeyPool::new_pq(
            &bob,
            &mut rng,
            UnixTime(1),
            PrekeyConfig::default(),
            crate::KemAlgorithm::MlKem768,
        )
        .unwrap();
        pool.rotate(&bob, &mut rng, UnixTime(2)).unwrap();
        for _ in 0..POOL_EVENTS {
            pool.events.push(PrekeyEvent::PoolLow { available: 1, capacity: 3 });
        }
        let mut buf = vec![0u8; PrekeyPool::<3, 2>::MAX_ENCODED_LEN];
        let n = pool.encode_state(&mut buf).unwrap();
        assert_eq!(n, PrekeyPool::<3, 2>::MAX_ENCODED_LEN);
        let back = PrekeyPool::<3, 2>::decode_state(&buf[..n]).unwrap();
        let mut again = vec![0u8; n];
        assert_eq!(back.encode_state(&mut again).unwrap(), n);
        assert_eq!(again, buf);
        assert_eq!(back.signed_public(), pool.signed_public());
    }
}

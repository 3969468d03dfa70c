//! Double Ratchet sessions (Signal spec revision 1, §3 and §5.2; header
//! encryption §4), started by X3DH.
//!
//! Decryption is a transaction: every key is derived into locals, the AEAD
//! is checked, and only then is the state changed (skipped keys stored,
//! chains advanced). A forged, replayed or malformed message leaves the
//! session exactly as it was.
//!
//! The sending half of a DH ratchet step (a fresh ratchet key pair) is
//! taken at the next [`Session::encrypt`], not when the peer's new key is
//! received: the wire and the keys are those of the spec, and decryption
//! needs no randomness. The ratchet public key is cached, never recomputed
//! per message.

use crate::bundle::Bundle;
use crate::error::Error;
use crate::identity::{Identity, PublicIdentity, canonical_dh};
use crate::kdf::{self, Key32};
use crate::pqxdh::{self, KemAlgorithm, MAX_KEM_CIPHERTEXT_LEN};
use crate::prekeys::PrekeyPool;
use crate::skipped::SkippedKeys;
use crate::x3dh;
use securemesh_core::codec::{Reader, Writer};
use securemesh_core::crypto::{Aead, ChaChaPoly, Dh, Hash, Sha256, X25519, XChaChaPoly};
use securemesh_core::events::EventQueue;
use securemesh_core::{CryptoRng, Instant};

/// Message type: X3DH initial message wrapping a ratchet message (wire
/// version 2: the prefix is bound into the X3DH KDF).
pub const MSG_INITIAL: u8 = 0x04;
/// Message type of the retired version-1 initial message, whose prefix was
/// not bound to the session keys: refused with [`Error::UnknownVersion`].
pub const MSG_INITIAL_V1: u8 = 0x01;
/// Message type: ratchet message with a clear header.
pub const MSG_RATCHET: u8 = 0x02;
/// Message type: ratchet message with an encrypted header.
pub const MSG_RATCHET_HE: u8 = 0x03;
/// Clear header: ratchet public key 32, PN u32, N u32.
pub const HEADER_LEN: usize = 40;
/// Encrypted header: nonce 24, header 40, tag 16.
pub const ENC_HEADER_LEN: usize = 24 + HEADER_LEN + 16;
/// Bytes a ratchet message adds to its payload (clear header).
pub const RATCHET_OVERHEAD: usize = 1 + HEADER_LEN + 16;
/// Bytes a ratchet message adds to its payload (encrypted header).
pub const RATCHET_HE_OVERHEAD: usize = 1 + ENC_HEADER_LEN + 16;
/// Bytes of the X3DH prefix of an initial message with a one-time prekey
/// (4 fewer without one; no KEM ciphertext).
pub const INITIAL_PREFIX_LEN: usize = 1 + PublicIdentity::LEN + 32 + 4 + 1 + 4 + 1 + 1;
/// Bytes the KEM slot of a PQXDH initial message adds to its prefix:
/// `kem_id u32 | kem_alg u16 | ct_len u16` and the ciphertext (1088 bytes
/// for ML-KEM-768, 1568 for ML-KEM-1024).
pub const fn pqxdh_prefix_extra(alg: KemAlgorithm) -> usize {
    alg.ciphertext_len().saturating_add(4 + 2 + 2) // at most 1576
}
/// Largest prefix of an initial message (PQXDH with ML-KEM-1024 and a
/// one-time prefix).
pub const MAX_INITIAL_PREFIX_LEN: usize = INITIAL_PREFIX_LEN + 4 + 2 + 2 + MAX_KEM_CIPHERTEXT_LEN;
/// [`Session`] with room for the KEM ciphertext of PQXDH (ML-KEM-768 or
/// ML-KEM-1024) and the default capacities: the session type of an
/// initiator that uses [`Session::initiate_pq`].
pub type PqxdhSession = Session<128, 128, MAX_KEM_CIPHERTEXT_LEN>;
/// Pending session events kept (oldest dropped first).
pub(crate) const SESSION_EVENT_SLOTS: usize = 4;
/// Largest AD: X3DH AD and the longest message prefix through the header.
const MAX_AD: usize = 128 + 1 + ENC_HEADER_LEN;

/// How a session runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Encrypt headers (spec §4) with XChaCha20-Poly1305 and random nonces.
    ///
    /// The initiator chooses the mode of a session. For the responder
    /// ([`Session::respond`]) this is a requirement: `true` refuses an
    /// initial message with clear headers
    /// ([`Error::HeaderEncryptionRequired`]), `false` accepts either mode
    /// and follows the initiator's.
    pub header_encryption: bool,
    /// Report [`SessionEvent::HeartbeatDue`] when the DH ratchet has not
    /// stepped for this many milliseconds (default one hour).
    pub heartbeat_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { header_encryption: false, heartbeat_ms: 3_600_000 }
    }
}

/// What a session tells its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// A DH ratchet step happened (`sending`: a new own ratchet key; else a
    /// new key of the peer was received).
    RatchetStepped {
        /// Which half of the step.
        sending: bool,
    },
    /// The DH ratchet has not stepped for the heartbeat interval: send an
    /// empty message ([`Session::encrypt`] with an empty payload) so the
    /// ratchet advances and a compromised state heals.
    HeartbeatDue,
}

/// Alice's X3DH header, repeated on every message until Bob answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PrekeyHeader {
    pub(crate) ek: [u8; 32],
    pub(crate) spk_id: u32,
    pub(crate) opk_id: Option<u32>,
    /// PQXDH: the KEM prekey and a digest of the ciphertext.
    pub(crate) kem: Option<KemRef>,
}

/// The KEM slot of a PQXDH header: which KEM prekey, and SHA-256 of the
/// ciphertext (what a repeated initial message is compared by).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KemRef {
    pub(crate) id: u32,
    pub(crate) alg: u16,
    pub(crate) ct_hash: [u8; 32],
}

/// Alice's KEM ciphertext, repeated in her initial messages (public
/// data), in a session with room for `N` bytes.
#[derive(Clone, Copy)]
pub(crate) struct KemCiphertext<const N: usize> {
    pub(crate) len: usize,
    pub(crate) bytes: [u8; N],
}

impl<const N: usize> KemCiphertext<N> {
    /// [`Error::UnsupportedKem`] if `ct` is longer than `N`.
    pub(crate) fn from_slice(ct: &[u8]) -> Result<Self, Error> {
        let mut bytes = [0u8; N];
        bytes.get_mut(..ct.len()).ok_or(Error::UnsupportedKem)?.copy_from_slice(ct);
        Ok(KemCiphertext { len: ct.len(), bytes })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

/// The parsed X3DH prefix of an initial message.
pub(crate) struct Initial<'a> {
    pub(crate) alice: PublicIdentity,
    pub(crate) header: PrekeyHeader,
    pub(crate) header_encryption: bool,
    /// The X3DH prefix, byte for byte (bound into the X3DH KDF).
    pub(crate) prefix: &'a [u8],
    /// The KEM ciphertext of a PQXDH initial message.
    pub(crate) kem_ct: Option<&'a [u8]>,
    pub(crate) inner: &'a [u8],
}

impl<'a> Initial<'a> {
    pub(crate) fn parse(msg: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(msg);
        match r.read_u8()? {
            MSG_INITIAL => {}
            MSG_INITIAL_V1 => return Err(Error::UnknownVersion),
            _ => return Err(Error::Malformed),
        }
        // Verified by `respond` after the cheap prekey checks; a repeated
        // initial message is compared byte for byte with the verified one.
        let alice = PublicIdentity::from_bytes_unverified(&r.read_array()?)?;
        let ek = canonical_dh(r.read_array()?)?;
        let spk_id = r.read_u32()?;
        let opk_id = match r.read_u8()? {
            0 => None,
            1 => Some(r.read_u32()?),
            _ => return Err(Error::Malformed),
        };
        // KEM slot (PQXDH): the prekey and the ciphertext. Another count,
        // or a slot that cannot be read, is a format this version does not
        // know (as every non-zero count was before PQXDH).
        let (kem, kem_ct) = match r.read_u8()? {
            0 => (None, None),
            1 => {
                let mut slot = || -> Result<_, securemesh_core::Error> {
                    Ok((r.read_u32()?, r.read_u16()?, r.read_vec16()?))
                };
                let (id, alg, ct) = slot().map_err(|_| Error::UnknownVersion)?;
                if ct.len() > MAX_KEM_CIPHERTEXT_LEN {
                    return Err(Error::UnknownVersion);
                }
                (Some(KemRef { id, alg, ct_hash: Sha256::digest(&[ct]) }), Some(ct))
            }
            _ => return Err(Error::UnknownVersion),
        };
        let header_encryption = match r.read_u8()? {
            0 => false,
            1 => true,
            _ => return Err(Error::Malformed),
        };
        let inner = r.rest();
        let prefix = msg.get(..msg.len().saturating_sub(inner.len())).ok_or(Error::Malformed)?;
        Ok(Initial {
            alice,
            header: PrekeyHeader { ek, spk_id, opk_id, kem },
            header_encryption,
            prefix,
            kem_ct,
            inner,
        })
    }
}

/// The X3DH prefix of Alice's initial messages (spec §6.4), with the KEM
/// ciphertext `ct` of PQXDH.
fn write_prefix(
    w: &mut Writer<'_>,
    alice: &PublicIdentity,
    p: &PrekeyHeader,
    ct: Option<&[u8]>,
    he: bool,
) -> Result<(), Error> {
    write_prefix_head(w, alice, p, ct.map(<[u8]>::len))?;
    w.write_bytes(ct.unwrap_or(&[]))?;
    w.write_u8(u8::from(he))?;
    Ok(())
}

/// The prefix up to the KEM ciphertext (its length `ct_len` included).
fn write_prefix_head(
    w: &mut Writer<'_>,
    alice: &PublicIdentity,
    p: &PrekeyHeader,
    ct_len: Option<usize>,
) -> Result<(), Error> {
    w.write_u8(MSG_INITIAL)?;
    w.write_bytes(&alice.to_bytes())?;
    w.write_bytes(&p.ek)?;
    w.write_u32(p.spk_id)?;
    match p.opk_id {
        Some(id) => {
            w.write_u8(1)?;
            w.write_u32(id)?;
        }
        None => w.write_u8(0)?,
    }
    match (&p.kem, ct_len) {
        (Some(k), Some(len)) => {
            w.write_u8(1)?;
            w.write_u32(k.id)?;
            w.write_u16(k.alg)?;
            w.write_u16(u16::try_from(len).map_err(|_| Error::Malformed)?)?;
        }
        (None, None) => w.write_u8(0)?,
        _ => return Err(Error::Malformed),
    }
    Ok(())
}

/// Whole milliseconds of `d`, saturating.
fn ms(d: core::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A parsed ratchet header.
#[derive(Clone, Copy)]
struct Header {
    dh: [u8; 32],
    pn: u32,
    n: u32,
}

impl Header {
    fn parse(b: &[u8]) -> Result<Header, Error> {
        let mut r = Reader::new(b);
        let h = Header { dh: canonical_dh(r.read_array()?)?, pn: r.read_u32()?, n: r.read_u32()? };
        r.finish()?;
        Ok(h)
    }

    fn bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let (dh, rest) = out.split_at_mut(32);
        let (pn, n) = rest.split_at_mut(4);
        dh.copy_from_slice(&self.dh);
        pn.copy_from_slice(&self.pn.to_be_bytes());
        n.copy_from_slice(&self.n.to_be_bytes());
        out
    }
}

#[cfg(test)]
std::thread_local! {
    /// Header decryptions tried (tests count the work a message costs).
    static HEADER_OPENS: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// `HDECRYPT(hk, enc_header)`.
fn open_header(hk: &Key32, enc: &[u8]) -> Option<Header> {
    #[cfg(test)]
    HEADER_OPENS.with(|c| c.set(c.get() + 1));
    let (nonce, rest) = enc.split_first_chunk::<24>()?;
    let (ct, tag) = rest.split_first_chunk::<HEADER_LEN>()?;
    let tag: [u8; 16] = tag.try_into().ok()?;
    let mut buf = *ct;
    XChaChaPoly::open_detached(hk, nonce, &[], &mut buf, &tag).ok()?;
    Header::parse(&buf).ok()
}

/// [`Session`] with its default capacities (`MAX_SKIP` 128, 128 stored
/// skipped keys), named so that calls need no annotation: Rust does not
/// apply a type's default const parameters in expression position, so
/// `Session::initiate(..)` alone cannot infer them, `DefaultSession::initiate(..)` can.
///
/// ```
/// use securemesh_ratchet::{DefaultPrekeyPool, DefaultSession, Identity, PrekeyConfig, SessionConfig};
/// use securemesh_core::{Instant, UnixTime};
/// # let mut rng = securemesh_core::testing::TestRng::new(1);
/// let (alice, bob) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
/// let pool = DefaultPrekeyPool::new(&bob, &mut rng, UnixTime(1_700_000_000), PrekeyConfig::default());
/// let a = DefaultSession::initiate(&alice, &pool.bundle(None), SessionConfig::default(), &mut rng, Instant(0))?;
/// assert!(a.awaiting_reply());
/// # Ok::<(), securemesh_ratchet::Error>(())
/// ```
pub type DefaultSession = Session;

/// A Double Ratchet session with `MAX_SKIP` skipped keys per chain and at
/// most `CAP` stored skipped keys (oldest evicted first), and room for a
/// PQXDH ciphertext of `KEM_CT` bytes (default 0: an initiator of this type
/// runs X3DH only; see [`PqxdhSession`]; a responder needs no room).
///
/// Not `Clone`: two copies would encrypt different messages with the same
/// keys. Persist it (sealed, with a generation) before transmitting what
/// [`encrypt`](Self::encrypt) produced.
///
/// ```
/// use securemesh_ratchet::{Identity, PrekeyPool, PrekeyConfig, Session, SessionConfig, Bundle};
/// use securemesh_core::{Instant, UnixTime};
/// # let mut rng = securemesh_core::testing::TestRng::new(1);
/// let (alice, bob) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
/// let mut pool: PrekeyPool<4> = PrekeyPool::new(&bob, &mut rng, UnixTime(1_700_000_000), PrekeyConfig::default());
/// let mut buf = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
/// let n = pool.bundle(pool.one_time_ids().next()).encode(&mut buf)?;
/// let bundle = Bundle::decode(&buf[..n])?;
///
/// // Alice, while Bob is offline:
/// let now = Instant::from_millis(0);
/// let mut a: Session = Session::initiate(&alice, &bundle, SessionConfig::default(), &mut rng, now)?;
/// let (mut wire, mut out) = ([0u8; 512], [0u8; 512]);
/// let m = a.encrypt(b"run task 42", &mut wire, &mut rng, now)?;
///
/// // Bob, later:
/// let (mut b, k): (Session, usize) =
///     Session::respond(&bob, &mut pool, &wire[..m], &mut out, SessionConfig::default(), now)?;
/// assert_eq!(&out[..k], b"run task 42");
/// let m = b.encrypt(b"done", &mut wire, &mut rng, now)?;
/// let k = a.decrypt(&wire[..m], &mut out, now)?;
/// assert_eq!(&out[..k], b"done");
/// # Ok::<(), securemesh_ratchet::Error>(())
/// ```
pub struct Session<const MAX_SKIP: usize = 128, const CAP: usize = 128, const KEM_CT: usize = 0> {
    pub(crate) ad: [u8; 128],
    pub(crate) remote: PublicIdentity,
    pub(crate) rk: Key32,
    pub(crate) dhs: Option<(Key32, [u8; 32])>,
    pub(crate) dhr: Option<[u8; 32]>,
    pub(crate) prev_dhr: Option<[u8; 32]>,
    pub(crate) cks: Option<Key32>,
    pub(crate) ckr: Option<Key32>,
    pub(crate) ns: u32,
    pub(crate) nr: u32,
    pub(crate) pn: u32,
    pub(crate) step_pending: bool,
    pub(crate) he: bool,
    pub(crate) hks: Option<Key32>,
    pub(crate) hkr: Option<Key32>,
    pub(crate) nhks: Option<Key32>,
    pub(crate) nhkr: Option<Key32>,
    pub(crate) prev_hkr: Option<Key32>,
    pub(crate) skipped: SkippedKeys<CAP>,
    /// Alice: her identity and X3DH header until Bob answers.
    pub(crate) prekey: Option<(PublicIdentity, PrekeyHeader)>,
    /// Alice (PQXDH): the KEM ciphertext her initial messages repeat.
    pub(crate) kem_ct: Option<KemCiphertext<KEM_CT>>,
    /// Bob: Alice's X3DH header, to accept her repeated initial messages
    /// (every field must match: the prefix is not in the AEAD's AD).
    pub(crate) initial: Option<PrekeyHeader>,
    pub(crate) heartbeat_ms: u64,
    /// The time since the last DH ratchet step is `age_at_origin` plus
    /// the time since `age_origin` (on this process's clock). A step sets
    /// both (0, now); a restore carries the saved age over and takes
    /// `age_origin` from the first call with `now` (`origin_pending`), so
    /// the age survives a clock whose origin changed and never depends on
    /// how far the new clock has run.
    pub(crate) age_origin: Instant,
    pub(crate) age_at_origin: u64,
    pub(crate) origin_pending: bool,
    /// The latest `now` any call passed (the caller's clock is monotonic).
    pub(crate) clock: Instant,
    pub(crate) heartbeat_reported: bool,
    pub(crate) events: EventQueue<SessionEvent, SESSION_EVENT_SLOTS>,
}

impl<const MAX_SKIP: usize, const CAP: usize, const KEM_CT: usize> core::fmt::Debug
    for Session<MAX_SKIP, CAP, KEM_CT>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("remote", &self.remote.sign)
            .field("ns", &self.ns)
            .field("nr", &self.nr)
            .field("pn", &self.pn)
            .field("skipped", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

/// Tries a message key on the message being decrypted.
type Opener<'a> = dyn Fn(&Key32, &mut [u8]) -> Result<(), Error> + 'a;

/// What a successful decryption found, for the commit.
enum Plan {
    Skipped(usize),
    SameChain { n: u32, next: Key32 },
    NewChain { header: Header, rk: Key32, ckr: Key32, next: Key32, nhkr: Option<Key32> },
}

impl<const MAX_SKIP: usize, const CAP: usize, const KEM_CT: usize> Session<MAX_SKIP, CAP, KEM_CT> {
    fn blank(ad: [u8; 128], remote: PublicIdentity, rk: Key32, config: SessionConfig, now: Instant) -> Self {
        Session {
            ad,
            remote,
            rk,
            dhs: None,
            dhr: None,
            prev_dhr: None,
            cks: None,
            ckr: None,
            ns: 0,
            nr: 0,
            pn: 0,
            step_pending: false,
            he: config.header_encryption,
            hks: None,
            hkr: None,
            nhks: None,
            nhkr: None,
            prev_hkr: None,
            skipped: SkippedKeys::default(),
            prekey: None,
            kem_ct: None,
            initial: None,
            heartbeat_ms: config.heartbeat_ms,
            age_origin: now,
            age_at_origin: 0,
            origin_pending: false,
            clock: now,
            heartbeat_reported: false,
            events: EventQueue::new(),
        }
    }

    /// Alice: start a session from Bob's verified bundle (X3DH). Nothing is
    /// sent yet; every message until Bob answers carries the X3DH header.
    /// The bundle's KEM slot is not used: for a bundle with a KEM prekey
    /// use [`initiate_pq`](Self::initiate_pq) (a PQXDH responder refuses
    /// an X3DH initial message to it with [`Error::Downgrade`]).
    pub fn initiate<R: CryptoRng + ?Sized>(
        identity: &Identity,
        bundle: &Bundle<'_>,
        config: SessionConfig,
        rng: &mut R,
        now: Instant,
    ) -> Result<Self, Error> {
        Self::start(identity, bundle, false, config, rng, now)
    }

    /// Alice: start a session with PQXDH: as [`initiate`](Self::initiate),
    /// and she encapsulates to the bundle's KEM prekey; the KEM shared
    /// secret is an input of the KDF and her initial messages carry the
    /// ciphertext and the KEM prekey's identifier, so her session needs
    /// room for it: `KEM_CT` at least the algorithm's ciphertext length
    /// ([`PqxdhSession`] has room for every algorithm). A bundle without a
    /// KEM prekey, with an algorithm this build does not run, or a session
    /// type without that room is [`Error::UnsupportedKem`] (use X3DH for
    /// peers without KEM prekeys); a KEM key that fails its check is
    /// [`Error::Malformed`].
    ///
    /// ```
    /// # use securemesh_ratchet::*;
    /// # use securemesh_core::{Instant, UnixTime};
    /// # let mut rng = securemesh_core::testing::TestRng::new(1);
    /// let (alice, bob) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
    /// let mut pool: PrekeyPool<4, 2> =
    ///     PrekeyPool::new_pq(&bob, &mut rng, UnixTime(1), PrekeyConfig::default(), KemAlgorithm::MlKem768)?;
    /// let mut kem_buf = [0u8; MAX_KEM_PUBLIC_LEN];
    /// let bundle = pool.bundle_pq(pool.one_time_ids().next(), pool.kem_one_time_ids().next(), &mut kem_buf)?;
    /// // Alice's session keeps the ciphertext her initial messages repeat.
    /// let mut a = PqxdhSession::initiate_pq(&alice, &bundle, SessionConfig::default(), &mut rng, Instant(0))?;
    /// let (mut wire, mut out) = ([0u8; 2048], [0u8; 2048]);
    /// let m = a.encrypt(b"hi", &mut wire, &mut rng, Instant(0))?;
    /// let (_b, k): (Session, usize) =
    ///     Session::respond(&bob, &mut pool, &wire[..m], &mut out, SessionConfig::default(), Instant(0))?;
    /// assert_eq!(&out[..k], b"hi");
    /// assert_eq!(pool.kem_available(), 1); // the one-time KEM prekey is spent
    /// # Ok::<(), securemesh_ratchet::Error>(())
    /// ```
    #[cfg(feature = "pq")]
    pub fn initiate_pq<R: CryptoRng + ?Sized>(
        identity: &Identity,
        bundle: &Bundle<'_>,
        config: SessionConfig,
        rng: &mut R,
        now: Instant,
    ) -> Result<Self, Error> {
        Self::start(identity, bundle, true, config, rng, now)
    }

    fn start<R: CryptoRng + ?Sized>(
        identity: &Identity,
        bundle: &Bundle<'_>,
        pq: bool,
        config: SessionConfig,
        rng: &mut R,
        now: Instant,
    ) -> Result<Self, Error> {
        let kem = if pq {
            let k = bundle.kem.as_ref().ok_or(Error::UnsupportedKem)?;
            Some((k, KemAlgorithm::from_code(k.alg).ok_or(Error::UnsupportedKem)?))
        } else {
            None
        };
        let ek = X25519::generate(rng);
        let ek_pub = X25519::public_key(&ek);
        let (kem_ref, kem_ct, ss) = match kem {
            Some((k, alg)) => {
                // The session must hold the ciphertext its initial
                // messages repeat (see `PqxdhSession`).
                if KEM_CT < alg.ciphertext_len() {
                    return Err(Error::UnsupportedKem);
                }
                let mut ct = KemCiphertext { len: 0, bytes: [0u8; KEM_CT] };
                let (n, ss) = pqxdh::encapsulate(alg, k.public, rng, &mut ct.bytes)?;
                ct.len = n;
                let r = KemRef { id: k.id, alg: k.alg, ct_hash: Sha256::digest(&[ct.as_slice()]) };
                (Some(r), Some(ct), Some((ss, alg)))
            }
            None => (None, None, None),
        };
        let opk = bundle.one_time.as_ref().map(|o| &o.public);
        let header = PrekeyHeader {
            ek: ek_pub,
            spk_id: bundle.signed.id,
            opk_id: bundle.one_time.map(|o| o.id),
            kem: kem_ref,
        };
        // The prefix in three parts (head, ciphertext, header mode), so no
        // buffer holds a copy of the ciphertext.
        let ct = kem_ct.as_ref().map(|c| c.as_slice());
        let mut head = [0u8; INITIAL_PREFIX_LEN + 4 + 2 + 2];
        let mut w = Writer::new(&mut head);
        write_prefix_head(&mut w, identity.public(), &header, ct.map(<[u8]>::len))?;
        let head_len = w.finish()?;
        let he = [u8::from(config.header_encryption)];
        let parts = [head.get(..head_len).ok_or(Error::Malformed)?, ct.unwrap_or(&[]), &he];
        let context = x3dh::Context {
            kem: ss.as_ref().map(|(ss, alg)| (ss, *alg)),
            prefix: &parts,
            he: config.header_encryption,
        };
        let agreement =
            x3dh::initiator(identity, &bundle.identity, &bundle.signed.public, opk, &ek, &context)?;
        let mut s = Self::blank(agreement.ad, bundle.identity, agreement.sk, config, now);
        s.dhr = Some(bundle.signed.public);
        s.step_pending = true;
        if let Some((hka, nhkb)) = agreement.header_keys {
            // The first sending step moves NHKs into HKs (spec: HKs = shared HKa).
            s.nhks = Some(hka);
            s.nhkr = Some(nhkb);
        }
        s.prekey = Some((*identity.public(), header));
        s.kem_ct = kem_ct;
        Ok(s)
    }

    /// The sender of the initial message `message`, read before anything
    /// of ours is used: its public identity, parsed with the message's
    /// whole X3DH prefix (the wire checks of [`respond`](Self::respond))
    /// and with its binding signature verified. A host uses it to decide
    /// whether to [`respond`](Self::respond) at all (policy, directory),
    /// without knowing the wire format.
    ///
    /// ```
    /// # use securemesh_core::testing::TestRng;
    /// # use securemesh_core::{Instant, UnixTime};
    /// # use securemesh_ratchet::{Identity, PrekeyConfig, PrekeyPool, Session, SessionConfig};
    /// # let mut rng = TestRng::new(1);
    /// # let (alice, bob) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
    /// # let pool: PrekeyPool<2> = PrekeyPool::new(&bob, &mut rng, UnixTime(1), PrekeyConfig::default());
    /// # let bundle = pool.bundle(pool.one_time_ids().next());
    /// # let mut session: Session = Session::initiate(&alice, &bundle, SessionConfig::default(), &mut rng, Instant(0))?;
    /// # let mut first = [0u8; 512];
    /// # let m = session.encrypt(b"hi", &mut first, &mut rng, Instant(0))?;
    /// // Bob learns who writes before he spends a prekey on it.
    /// let sender = Session::<128, 128>::initial_sender(&first[..m])?;
    /// assert_eq!(sender, *alice.public());
    /// # Ok::<(), securemesh_ratchet::Error>(())
    /// ```
    pub fn initial_sender(message: &[u8]) -> Result<PublicIdentity, Error> {
        let init = Initial::parse(message)?;
        init.alice.verify()?;
        Ok(init.alice)
    }

    /// Bob: answer an initial message. Runs X3DH with the named prekeys and
    /// decrypts the first message into `out`. The session runs in the
    /// initiator's header mode; `config.header_encryption` set requires
    /// that mode to be encrypted headers. The one-time prekey is
    /// consumed only if the message authenticates, so a replayed initial
    /// message cannot open a second session from it.
    pub fn respond<const P: usize, const K: usize>(
        identity: &Identity,
        pool: &mut PrekeyPool<P, K>,
        message: &[u8],
        out: &mut [u8],
        config: SessionConfig,
        now: Instant,
    ) -> Result<(Self, usize), Error> {
        let init = Initial::parse(message)?;
        if config.header_encryption && !init.header_encryption {
            return Err(Error::HeaderEncryptionRequired);
        }
        let (spk, spk_pub) = pool.signed_secret(init.header.spk_id).ok_or(Error::UnknownPrekey)?;
        let opk = match init.header.opk_id {
            Some(id) => Some(pool.one_time_secret(id).ok_or(Error::UnknownPrekey)?),
            None => None,
        };
        // PQXDH: the KEM prekey the message names must be one we hold (a
        // one-time one not yet consumed, or a last-resort one), of the
        // algorithm the message says; a message without a KEM ciphertext
        // to a signed prekey we publish only with KEM prekeys is a
        // downgrade.
        let kem = match (&init.header.kem, init.kem_ct) {
            (Some(k), Some(ct)) => {
                let (key, one_time) = pool.kem_secret(k.id).ok_or(Error::UnknownPrekey)?;
                if key.alg.code() != k.alg || ct.len() != key.alg.ciphertext_len() {
                    return Err(Error::Malformed);
                }
                Some((key, one_time, ct))
            }
            (None, None) if pool.requires_kem(init.header.spk_id) => return Err(Error::Downgrade),
            (None, None) => None,
            _ => return Err(Error::Malformed),
        };
        // Only now the Ed25519 verify: refusing a replay or an unknown
        // prekey stays cheap.
        init.alice.verify()?;
        let he = init.header_encryption;
        let ss = match &kem {
            Some((key, _, ct)) => Some((pqxdh::decaps(key.alg, &key.seed, ct)?, key.alg)),
            None => None,
        };
        let context =
            x3dh::Context { kem: ss.as_ref().map(|(ss, alg)| (ss, *alg)), prefix: &[init.prefix], he };
        let agreement = x3dh::responder(identity, &init.alice, spk, opk, &init.header.ek, &context)?;
        let kem_one_time = kem.and_then(|(key, one_time, _)| one_time.then_some(key.id));
        let config = SessionConfig { header_encryption: he, ..config };
        let mut s = Self::blank(agreement.ad, init.alice, agreement.sk, config, now);
        s.dhs = Some((spk.duplicate(), spk_pub));
        if let Some((hka, nhkb)) = agreement.header_keys {
            s.nhks = Some(nhkb);
            s.nhkr = Some(hka);
        }
        s.initial = Some(init.header);
        let n = s.decrypt_ratchet(init.inner, out, now)?;
        // The signed prekey's private key was needed for this receiving
        // step only: every later message of Alice's first chain uses the
        // chain key, and her next ratchet key can only answer Bob's. Erase
        // it here, so the pool's erasure after the grace period is final.
        s.dhs = None;
        if let Some(id) = init.header.opk_id {
            pool.consume_one_time(id);
        }
        if let Some(id) = kem_one_time {
            pool.consume_kem_one_time(id);
        }
        Ok((s, n))
    }

    /// Whether PQXDH started this session (its X3DH header has a KEM slot:
    /// Alice's until Bob answers, Bob's as long as he keeps Alice's
    /// initial header).
    pub(crate) fn is_pqxdh(&self) -> bool {
        self.prekey.as_ref().is_some_and(|(_, p)| p.kem.is_some())
            || self.initial.as_ref().is_some_and(|p| p.kem.is_some())
    }

    /// The peer's identity.
    pub fn remote_identity(&self) -> &PublicIdentity {
        &self.remote
    }

    /// The associated data X3DH bound to this session.
    pub fn associated_data(&self) -> &[u8; 128] {
        &self.ad
    }

    /// Messages sent in the current sending chain.
    pub fn sending_index(&self) -> u32 {
        self.ns
    }

    /// Skipped message keys held.
    pub fn skipped_keys(&self) -> usize {
        self.skipped.len()
    }

    /// Whether Alice still waits for Bob's first answer (her messages then
    /// carry the X3DH header).
    pub fn awaiting_reply(&self) -> bool {
        self.prekey.is_some()
    }

    /// Bytes [`encrypt`](Self::encrypt) writes for a payload of `len` bytes.
    pub fn encrypted_len(&self, len: usize) -> usize {
        let prefix = match &self.prekey {
            Some((_, p)) => {
                let kem = self.kem_ct.as_ref().map_or(0, |ct| ct.len.saturating_add(4 + 2 + 2));
                let opk = if p.opk_id.is_some() { INITIAL_PREFIX_LEN } else { INITIAL_PREFIX_LEN - 4 };
                opk.saturating_add(kem)
            }
            None => 0,
        };
        // Saturates only for a `len` no buffer can hold (`encrypt` then
        // reports `BufferTooSmall`).
        prefix
            .saturating_add(if self.he { RATCHET_HE_OVERHEAD } else { RATCHET_OVERHEAD })
            .saturating_add(len)
    }

    fn push_event(&mut self, e: SessionEvent) {
        self.events.push(e);
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due: the
    /// heartbeat deadline since the last DH ratchet step. A session
    /// restored from its persisted state does not know the restoring
    /// process's clock until a call passes `now`, so until then this is
    /// [`Instant::ZERO`] ("due now"): call `handle_timeout(now)`, which
    /// places the deadline on the current clock and raises
    /// [`SessionEvent::HeartbeatDue`] only if it has really passed.
    ///
    /// ```
    /// # use securemesh_ratchet::{Identity, PrekeyPool, PrekeyConfig, Session, SessionConfig};
    /// # use securemesh_core::{Instant, UnixTime, envelope::Persist};
    /// # let mut rng = securemesh_core::testing::TestRng::new(1);
    /// # let (alice, bob) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
    /// # let pool: PrekeyPool<4> = PrekeyPool::new(&bob, &mut rng, UnixTime(1_700_000_000), PrekeyConfig::default());
    /// let config = SessionConfig { heartbeat_ms: 60_000, ..SessionConfig::default() };
    /// // This process's clock starts at 5,000,000 ms.
    /// let a: Session = Session::initiate(&alice, &pool.bundle(None), config, &mut rng, Instant(5_000_000))?;
    /// assert_eq!(a.poll_timeout(), Some(Instant(5_060_000)));
    /// let mut buf = [0u8; Session::<128, 128>::MAX_ENCODED_LEN];
    /// let n = a.encode_state(&mut buf)?; // 0 ms after the step
    /// // A restart: the new process's clock starts at 0; 10 s later it restores.
    /// let mut a = Session::<128, 128>::decode_state(&buf[..n])?;
    /// assert_eq!(a.poll_timeout(), Some(Instant::ZERO)); // call handle_timeout now
    /// a.handle_timeout(Instant(10_000));
    /// assert_eq!(a.poll_timeout(), Some(Instant(70_000))); // 60 s after the step, on the new clock
    /// assert_eq!(a.poll_event(), None);
    /// # Ok::<(), securemesh_ratchet::Error>(())
    /// ```
    ///
    /// Once [`SessionEvent::HeartbeatDue`] is raised there is no timer
    /// (`None`) until the next DH ratchet step, so a driver that sleeps
    /// until the earliest deadline does not spin.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.origin_pending {
            return Some(Instant::ZERO);
        }
        if self.heartbeat_reported {
            return None;
        }
        let left = self.heartbeat_ms.saturating_sub(self.age_at_origin);
        Some(self.age_origin.saturating_add(core::time::Duration::from_millis(left)))
    }

    /// Milliseconds since the last DH ratchet step at the latest `now`
    /// a call passed (the "ratchet state age": the longer, the longer a
    /// compromised state would stay useful).
    pub fn since_last_step_ms(&self) -> u64 {
        if self.origin_pending {
            return self.age_at_origin;
        }
        self.age_at_origin.saturating_add(ms(self.clock.saturating_duration_since(self.age_origin)))
    }

    /// Take `now` as the current time: after a restore, the carried-over
    /// age counts from here.
    fn observe(&mut self, now: Instant) {
        if self.origin_pending {
            self.origin_pending = false;
            self.age_origin = now;
        }
        self.clock = self.clock.max(now);
    }

    /// Raise [`SessionEvent::HeartbeatDue`] once the deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        if self.poll_timeout().is_some_and(|t| now >= t) && !self.heartbeat_reported {
            self.heartbeat_reported = true;
            self.push_event(SessionEvent::HeartbeatDue);
        }
    }

    fn stepped(&mut self, sending: bool, now: Instant) {
        self.observe(now);
        self.age_origin = now;
        self.age_at_origin = 0;
        self.heartbeat_reported = false;
        self.push_event(SessionEvent::RatchetStepped { sending });
    }

    /// Encrypt `payload` into `out`; returns the message length. An empty
    /// payload is a heartbeat. [`Error::BufferTooSmall`] changes nothing.
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        payload: &[u8],
        out: &mut [u8],
        rng: &mut R,
        now: Instant,
    ) -> Result<usize, Error> {
        let needed = self.encrypted_len(payload.len());
        if out.len() < needed {
            return Err(Error::BufferTooSmall { needed });
        }
        if !self.step_pending && self.ns == u32::MAX {
            return Err(Error::CounterExhausted);
        }
        if self.step_pending {
            // The sending half of the DH ratchet step, in locals first.
            let dhr = self.dhr.ok_or(Error::Malformed)?;
            let new = X25519::generate(rng);
            let dh_out = X25519::dh(&new, &dhr).require_contributory().map_err(|_| Error::NonContributory)?;
            let (rk, cks, nhks) = kdf::root(&self.rk, &dh_out, self.he)?;
            let public = X25519::public_key(&new);
            self.pn = self.ns;
            self.ns = 0;
            if self.he {
                self.hks = self.nhks.take();
                self.nhks = nhks;
            }
            self.rk = rk;
            self.cks = Some(cks);
            self.dhs = Some((new, public));
            self.step_pending = false;
            self.stepped(true, now);
        }
        let (Some(cks), Some((_, dhs_pub))) = (&self.cks, &self.dhs) else { return Err(Error::Malformed) };
        let (next_ck, mk) = kdf::chain(cks);
        let header = Header { dh: *dhs_pub, pn: self.pn, n: self.ns };
        let mut w = Writer::new(out);
        if let Some((alice, p)) = &self.prekey {
            write_prefix(&mut w, alice, p, self.kem_ct.as_ref().map(|c| c.as_slice()), self.he)?;
        }
        let start = w.len();
        if self.he {
            let hks = self.hks.as_ref().ok_or(Error::Malformed)?;
            let mut nonce = [0u8; 24];
            rng.fill_bytes(&mut nonce);
            let mut h = header.bytes();
            let tag = XChaChaPoly::seal_detached(hks, &nonce, &[], &mut h)?;
            w.write_u8(MSG_RATCHET_HE)?;
            w.write_bytes(&nonce)?;
            w.write_bytes(&h)?;
            w.write_bytes(&tag)?;
        } else {
            w.write_u8(MSG_RATCHET)?;
            w.write_bytes(&header.bytes())?;
        }
        let header_end = w.len();
        w.write_bytes(payload)?;
        w.reserve(16)?;
        let total = w.finish()?;
        let mut ad = [0u8; MAX_AD];
        let ad_len = self.build_ad(&mut ad, out.get(start..header_end).ok_or(Error::Malformed)?)?;
        let (key, nonce) = kdf::message_keys(&mk)?;
        let (body, tag_dst) = out
            .get_mut(header_end..total)
            .ok_or(Error::BufferTooSmall { needed: total })?
            .split_at_mut(payload.len());
        let tag = ChaChaPoly::seal_detached(&key, &nonce, ad.get(..ad_len).unwrap_or(&[]), body)?;
        tag_dst.copy_from_slice(&tag);
        self.cks = Some(next_ck);
        // Below u32::MAX: the CounterExhausted check above.
        self.ns = self.ns.saturating_add(1);
        self.observe(now);
        Ok(total)
    }

    fn build_ad(&self, buf: &mut [u8; MAX_AD], header: &[u8]) -> Result<usize, Error> {
        let (a, b) = buf.split_at_mut(128);
        a.copy_from_slice(&self.ad);
        b.get_mut(..header.len()).ok_or(Error::Malformed)?.copy_from_slice(header);
        Ok(header.len().saturating_add(128))
    }

    /// Decrypt `message` into `out`; returns the payload length. A failure
    /// of any kind leaves the session unchanged and `out` without plaintext.
    pub fn decrypt(&mut self, message: &[u8], out: &mut [u8], now: Instant) -> Result<usize, Error> {
        let inner = match message.first() {
            Some(&(MSG_INITIAL | MSG_INITIAL_V1)) => {
                // Alice's repeated initial message (Bob has not answered yet).
                let init = Initial::parse(message)?;
                if self.initial != Some(init.header)
                    || init.alice != self.remote
                    || init.header_encryption != self.he
                {
                    return Err(Error::Malformed);
                }
                init.inner
            }
            _ => message,
        };
        let n = self.decrypt_ratchet(inner, out, now)?;
        // Any message from Bob acknowledges Alice's X3DH.
        self.prekey = None;
        self.kem_ct = None;
        Ok(n)
    }

    fn decrypt_ratchet(&mut self, msg: &[u8], out: &mut [u8], now: Instant) -> Result<usize, Error> {
        let (ty, _) = msg.split_first().ok_or(Error::Malformed)?;
        let header_len = match (*ty, self.he) {
            (MSG_RATCHET, false) => HEADER_LEN,
            (MSG_RATCHET_HE, true) => ENC_HEADER_LEN,
            _ => return Err(Error::Malformed),
        };
        let (prefix, body) = msg.split_at_checked(header_len.saturating_add(1)).ok_or(Error::Malformed)?;
        let pt_len = body.len().checked_sub(16).ok_or(Error::Malformed)?;
        let (ct, tag) = body.split_at(pt_len);
        let tag: [u8; 16] = tag.try_into().map_err(|_| Error::Malformed)?;
        let dst = out.get_mut(..pt_len).ok_or(Error::BufferTooSmall { needed: pt_len })?;
        let mut ad = [0u8; MAX_AD];
        let ad_len = self.build_ad(&mut ad, prefix)?;
        let ad = ad.get(..ad_len).unwrap_or(&[]);
        let hdr = prefix.get(1..).unwrap_or(&[]);

        let open = |mk: &Key32, dst: &mut [u8]| -> Result<(), Error> {
            let (key, nonce) = kdf::message_keys(mk)?;
            dst.copy_from_slice(ct);
            ChaChaPoly::open_detached(&key, &nonce, ad, dst, &tag).map_err(|e| {
                dst.fill(0);
                Error::from(e)
            })
        };

        let plan = if self.he { self.plan_he(hdr, dst, &open)? } else { self.plan_clear(hdr, dst, &open)? };
        self.commit(plan, now);
        Ok(pt_len)
    }

    /// Derive the message key of message `n` of a chain at index `from`.
    fn walk(ck: &Key32, from: u32, n: u32) -> (Key32, Key32) {
        let mut ck = ck.duplicate();
        for _ in from..n {
            ck = kdf::chain(&ck).0;
        }
        kdf::chain(&ck)
    }

    fn check_skip(from: u32, to: u32) -> Result<(), Error> {
        if to.saturating_sub(from) as usize > MAX_SKIP { Err(Error::TooManySkipped) } else { Ok(()) }
    }

    fn plan_clear(&self, hdr: &[u8], dst: &mut [u8], open: &Opener<'_>) -> Result<Plan, Error> {
        let h = Header::parse(hdr)?;
        if let Some(i) = self.skipped.find(&h.dh, h.n) {
            open(self.skipped.get(i).ok_or(Error::Decrypt)?, dst)?;
            return Ok(Plan::Skipped(i));
        }
        if self.dhr == Some(h.dh) {
            return self.plan_same_chain(h, dst, open);
        }
        if self.prev_dhr == Some(h.dh) {
            return Err(Error::Duplicate);
        }
        self.plan_new_chain(h, dst, open)
    }

    fn plan_he(&self, hdr: &[u8], dst: &mut [u8], open: &Opener<'_>) -> Result<Plan, Error> {
        // Each distinct header key of the store is tried once (the store
        // holds up to CAP keys, most of them of one or two chains: one
        // trial per stored key would let one skip make every later message
        // cost CAP header decryptions). `tried` holds the slots of the keys
        // tried so far, so the bookkeeping is (stored x distinct) compares.
        let mut tried = [0usize; CAP];
        let mut distinct = 0;
        for (i, e) in self.skipped.iter() {
            let seen = tried.get(..distinct).unwrap_or(&[]).iter().any(|&j| {
                self.skipped.chain(j).is_some_and(|c| securemesh_core::ct_eq(c.expose(), e.chain.expose()))
            });
            if seen {
                continue;
            }
            if let Some(slot) = tried.get_mut(distinct) {
                *slot = i;
                distinct = distinct.saturating_add(1); // at most CAP
            }
            let Some(h) = open_header(&e.chain, hdr) else { continue };
            if let Some(k) = self.skipped.find(e.chain.expose(), h.n) {
                open(self.skipped.get(k).ok_or(Error::Decrypt)?, dst)?;
                return Ok(Plan::Skipped(k));
            }
        }
        if let Some(h) = self.hkr.as_ref().and_then(|hk| open_header(hk, hdr)) {
            return self.plan_same_chain(h, dst, open);
        }
        if let Some(h) = self.nhkr.as_ref().and_then(|hk| open_header(hk, hdr)) {
            return self.plan_new_chain(h, dst, open);
        }
        if self.prev_hkr.as_ref().and_then(|hk| open_header(hk, hdr)).is_some() {
            return Err(Error::Duplicate);
        }
        Err(Error::Decrypt)
    }

    /// A message of the current receiving chain.
    fn plan_same_chain(&self, h: Header, dst: &mut [u8], open: &Opener<'_>) -> Result<Plan, Error> {
        let ckr = self.ckr.as_ref().ok_or(Error::Decrypt)?;
        if h.n < self.nr {
            return Err(Error::Duplicate);
        }
        Self::check_skip(self.nr, h.n)?;
        let (next, mk) = Self::walk(ckr, self.nr, h.n);
        open(&mk, dst)?;
        Ok(Plan::SameChain { n: h.n, next })
    }

    fn plan_new_chain(&self, h: Header, dst: &mut [u8], open: &Opener<'_>) -> Result<Plan, Error> {
        if self.ckr.is_some() {
            Self::check_skip(self.nr, h.pn)?;
        }
        Self::check_skip(0, h.n)?;
        let (dhs, _) = self.dhs.as_ref().ok_or(Error::Decrypt)?;
        let dh_out = X25519::dh(dhs, &h.dh).require_contributory().map_err(|_| Error::Decrypt)?;
        let (rk, ckr, nhkr) = kdf::root(&self.rk, &dh_out, self.he)?;
        let (next, mk) = Self::walk(&ckr, 0, h.n);
        open(&mk, dst)?;
        Ok(Plan::NewChain { header: h, rk, ckr, next, nhkr })
    }

    /// Store the keys of messages `from..to` of the current receiving chain
    /// as skipped, and leave `ckr` at message `to`.
    fn skip_to(&mut self, to: u32) {
        if to <= self.nr {
            return;
        }
        let (Some(ckr), Some(chain)) = (self.ckr.as_ref().map(Key32::duplicate), self.chain_id()) else {
            return;
        };
        let mut ck = ckr;
        for i in self.nr..to {
            let (next, mk) = kdf::chain(&ck);
            self.skipped.insert(&chain, i, mk);
            ck = next;
        }
        self.ckr = Some(ck);
        self.nr = self.nr.max(to);
    }

    fn chain_id(&self) -> Option<[u8; 32]> {
        if self.he { self.hkr.as_ref().map(|k| *k.expose()) } else { self.dhr }
    }

    fn commit(&mut self, plan: Plan, now: Instant) {
        self.observe(now);
        match plan {
            Plan::Skipped(i) => self.skipped.remove(i),
            Plan::SameChain { n, next } => {
                self.skip_to(n);
                self.advance_receiving(next);
            }
            Plan::NewChain { header, rk, ckr, next, nhkr } => {
                self.skip_to(header.pn);
                self.prev_dhr = self.dhr.replace(header.dh);
                if self.he {
                    self.prev_hkr = self.hkr.take();
                    self.hkr = self.nhkr.take();
                    self.nhkr = nhkr;
                }
                self.rk = rk;
                self.ckr = Some(ckr);
                self.nr = 0;
                self.skip_to(header.n);
                self.advance_receiving(next);
                self.step_pending = true;
                self.stepped(false, now);
            }
        }
    }

    /// Consume the key of message `nr` (just decrypted): `next` is the chain
    /// key after it, already derived while decrypting.
    fn advance_receiving(&mut self, next: Key32) {
        self.ckr = Some(next);
        self.nr = self.nr.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::prekeys::PrekeyConfig;
    use securemesh_core::UnixTime;
    use securemesh_core::envelope::Persist;
    use securemesh_core::testing::TestRng;
    use std::vec::Vec;

    /// Alice, Bob and Bob's pool from a seeded generator.
    fn parties(seed: u64) -> (TestRng, Identity, Identity, PrekeyPool<2>) {
        let mut rng = TestRng::new(seed);
        let (alice, bob) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
        let pool = PrekeyPool::new(&bob, &mut rng, UnixTime(1), PrekeyConfig::default());
        (rng, alice, bob, pool)
    }

    fn state(s: &Session) -> Vec<u8> {
        let mut buf = std::vec![0u8; Session::<128, 128>::MAX_ENCODED_LEN];
        let n = s.encode_state(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    /// With encrypted headers, a message costs one header decryption per
    /// distinct header key in the store, not one per stored key: after a
    /// skip of 100 keys of one chain, an in-order message of the next chain
    /// tries 3 header keys (the store's one, HKr, NHKr), not 102.
    #[test]
    fn header_decryption_tries_each_distinct_key_once() {
        let (mut rng, alice, bob, mut pool) = parties(6);
        let bundle = pool.bundle(pool.one_time_ids().next());
        let now = Instant(0);
        let cfg = SessionConfig { header_encryption: true, ..SessionConfig::default() };
        let mut a: Session = Session::initiate(&alice, &bundle, cfg, &mut rng, now).unwrap();
        let (mut wire, mut out) = ([0u8; 512], [0u8; 512]);
        let mut sent = Vec::new();
        for _ in 0..101 {
            let m = a.encrypt(b"x", &mut wire, &mut rng, now).unwrap();
            sent.push(wire[..m].to_vec());
        }
        // Bob starts from the last one: 100 keys of one chain stored.
        let (mut b, _) = Session::<128, 128>::respond(
            &bob,
            &mut pool,
            &sent[100],
            &mut out,
            SessionConfig::default(),
            now,
        )
        .unwrap();
        assert_eq!(b.skipped_keys(), 100);
        let m = b.encrypt(b"y", &mut wire, &mut rng, now).unwrap();
        a.decrypt(&wire[..m], &mut out, now).unwrap();
        let m = a.encrypt(b"z", &mut wire, &mut rng, now).unwrap();
        HEADER_OPENS.with(|c| c.set(0));
        b.decrypt(&wire[..m], &mut out, now).unwrap();
        assert_eq!(HEADER_OPENS.with(|c| c.get()), 3);
        // A skipped message still opens with its stored key, and only once.
        HEADER_OPENS.with(|c| c.set(0));
        b.decrypt(&sent[50], &mut out, now).unwrap();
        assert_eq!(HEADER_OPENS.with(|c| c.get()), 1);
        assert_eq!(b.decrypt(&sent[50], &mut out, now), Err(Error::Duplicate));
    }

    /// A restored session keeps its age since the last DH step even when
    /// the new clock is younger than that age (a device whose clock
    /// restarts at 0 on every boot): saved 50 minutes after its step with a
    /// one-hour heartbeat, restored on a clock at 10 s, it is due 10
    /// minutes later, not an hour later. After `HeartbeatDue` there is no
    /// timer until the next step.
    #[test]
    fn a_restored_session_keeps_its_age_on_a_younger_clock() {
        let (mut rng, alice, _, pool) = parties(9);
        let config = SessionConfig { heartbeat_ms: 3_600_000, ..SessionConfig::default() };
        let mut a: Session =
            Session::initiate(&alice, &pool.bundle(None), config, &mut rng, Instant(100)).unwrap();
        a.handle_timeout(Instant(100 + 3_000_000)); // 50 minutes after the step
        assert_eq!(a.since_last_step_ms(), 3_000_000);
        let mut r = Session::<128, 128>::decode_state(&state(&a)).unwrap();
        assert_eq!(r.since_last_step_ms(), 3_000_000);
        assert_eq!(r.poll_timeout(), Some(Instant::ZERO));
        r.handle_timeout(Instant(10_000));
        assert_eq!(r.poll_timeout(), Some(Instant(610_000)));
        assert_eq!(r.since_last_step_ms(), 3_000_000);
        assert_eq!(r.poll_event(), None);
        r.handle_timeout(Instant(610_000));
        assert_eq!(r.poll_event(), Some(SessionEvent::HeartbeatDue));
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.since_last_step_ms(), 3_600_000);
    }

    /// A sending chain carries at most 2^32 - 1 messages: the last number
    /// is 2^32 - 2, then `CounterExhausted` (state unchanged) until a DH
    /// step, after which the new chain starts at 0.
    #[test]
    fn the_sending_counter_is_exhausted_at_its_last_number() {
        let (mut rng, alice, bob, mut pool) = parties(5);
        let bundle = pool.bundle(pool.one_time_ids().next());
        let now = Instant(0);
        let mut a: Session =
            Session::initiate(&alice, &bundle, SessionConfig::default(), &mut rng, now).unwrap();
        let (mut wire, mut out) = ([0u8; 512], [0u8; 512]);
        let m = a.encrypt(b"hi", &mut wire, &mut rng, now).unwrap();
        let (mut b, _) = Session::<128, 128>::respond(
            &bob,
            &mut pool,
            &wire[..m],
            &mut out,
            SessionConfig::default(),
            now,
        )
        .unwrap();
        let m = b.encrypt(b"ok", &mut wire, &mut rng, now).unwrap();
        a.decrypt(&wire[..m], &mut out, now).unwrap();
        let m = a.encrypt(b"step", &mut wire, &mut rng, now).unwrap();
        b.decrypt(&wire[..m], &mut out, now).unwrap();
        // Alice is in a chain with no step pending: jump to its end.
        a.ns = u32::MAX - 1;
        a.encrypt(b"last", &mut wire, &mut rng, now).unwrap();
        assert_eq!(&wire[1 + 32 + 4..1 + HEADER_LEN], &(u32::MAX - 1).to_be_bytes());
        let before = state(&a);
        assert_eq!(a.encrypt(b"one more", &mut wire, &mut rng, now), Err(Error::CounterExhausted));
        assert_eq!(state(&a), before);
        // Bob's reply brings a DH step; the next chain starts at 0.
        let m = b.encrypt(b"reply", &mut wire, &mut rng, now).unwrap();
        a.decrypt(&wire[..m], &mut out, now).unwrap();
        a.encrypt(b"again", &mut wire, &mut rng, now).unwrap();
        assert_eq!(&wire[1 + 32 + 4..1 + HEADER_LEN], &0u32.to_be_bytes());
    }
}

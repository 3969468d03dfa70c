//! The peer directory: what an agent knows about each peer, by peer id.
//!
//! A peer is named by its [`PeerId`], the SHA-256 of its identity key
//! (the ratchet crate's Ed25519 + X25519 [`PublicIdentity`]). The
//! directory may know a peer by its id alone (from configuration or an
//! introduction), or also by its full identity (then its Noise static key
//! is known: it is the identity's X25519 key), its prekey bundle (then it
//! can be reached while offline) and whether it is reachable now.
//!
//! Everything stored is checked against the id: an identity or bundle is
//! accepted for a peer only if it hashes to that peer's id, so a directory
//! entry never holds keys of someone else.
//!
//! # ML-DSA-65 pins (feature `ml-dsa`)
//!
//! A peer with a hybrid identity (an ML-DSA-65 key beside its Ed25519
//! key) publishes version-3 bundles signed by both keys. The directory
//! pins the peer's ML-DSA-65 key as its [`MlDsaPin`], a 32-byte
//! fingerprint rather than the 1952-byte key: given when the peer is
//! introduced (`Directory::pin_ml_dsa`,
//! `Agent::add_peer_identity_pinned`),
//! or trusted on first use from the first verified hybrid bundle. From
//! then on a bundle of the peer is stored only if it is hybrid with that
//! key (compared in constant time): a classical bundle (e.g. one whose
//! ML-DSA section was stripped) is refused as
//! [`BadBundle`](DirectoryError::BadBundle)`(Downgrade)` and another
//! ML-DSA key as `BadBundle(WrongIdentity)`, with nothing changed. The
//! pin is persisted and never forgotten (only with the peer). A hybrid
//! bundle is stored without its ML-DSA section, which has served once it
//! was verified ([`StoredBundle::is_hybrid_signed`]), so a directory slot
//! is no larger than a PQXDH bundle.

use securemesh_core::Error as CoreError;
use securemesh_core::codec::{Reader, Writer};
use securemesh_core::crypto::{Hash, Sha256};
use securemesh_core::ct_eq;
use securemesh_ratchet::{Bundle, PublicIdentity};

/// Domain-separation label of [`PeerId::of`].
pub const PEER_ID_LABEL: &[u8] = b"securemesh-peer-id-v1";
/// Domain-separation label of [`MlDsaPin::of`].
pub const ML_DSA_PIN_LABEL: &[u8] = b"securemesh-ml-dsa-pin-v1";

/// The fingerprint by which the directory pins a peer's ML-DSA-65 public
/// key: `SHA-256("securemesh-ml-dsa-pin-v1" || public key)`, 32 bytes
/// instead of the 1952-byte key (see the [module docs](self)). Compared
/// in constant time.
///
/// ```
/// use securemesh::peer::MlDsaPin;
/// let pin = MlDsaPin::of(&[7u8; 1952]);
/// assert_eq!(pin, MlDsaPin::of(&[7u8; 1952]));
/// assert_ne!(pin, MlDsaPin::of(&[8u8; 1952]));
/// ```
#[derive(Clone, Copy, Debug, Eq)]
pub struct MlDsaPin(pub [u8; 32]);

impl MlDsaPin {
    /// The pin of the ML-DSA-65 public key `public`.
    pub fn of(public: &[u8]) -> Self {
        MlDsaPin(Sha256::digest(&[ML_DSA_PIN_LABEL, public]))
    }
}

/// In constant time.
impl PartialEq for MlDsaPin {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

/// Largest prekey bundle the directory stores: a bundle of the ratchet
/// format version 1 with a one-time prekey and without a KEM prekey
/// (`1 + 128 + 100 + 37 + 1` = 267 bytes), or, with the feature `pq`,
/// with an ML-KEM-768 prekey (`+ 4 + 2 + 2 + 1184 + 64` = 1523 bytes, a
/// PQXDH bundle; see [`crate::pq`]).
pub const MAX_STORED_BUNDLE_LEN: usize =
    CLASSICAL_BUNDLE_LEN + if cfg!(feature = "pq") { KEM_SLOT_768 } else { 0 };

/// Bytes of a persisted pin (feature `ml-dsa`).
const PIN_LEN: usize = if cfg!(feature = "ml-dsa") { 32 } else { 0 };

/// A classical bundle with a one-time prekey.
const CLASSICAL_BUNDLE_LEN: usize = 1 + 128 + (4 + 32 + 64) + (1 + 4 + 32) + 1;
/// What an ML-KEM-768 prekey adds to a bundle (id, algorithm, length,
/// public key, signature).
const KEM_SLOT_768: usize = 4 + 2 + 2 + 1184 + 64;

/// The name of an agent: `SHA-256("securemesh-peer-id-v1" || sign_pub || dh_pub)`
/// of its identity (the binding signature is not hashed: the id names the
/// keys, not one signature over them).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; 32]);

impl PeerId {
    /// The peer id of `identity`.
    ///
    /// ```
    /// use securemesh::PeerId;
    /// use securemesh_ratchet::Identity;
    /// # let mut rng = securemesh_core::testing::TestRng::new(1);
    /// let alice = Identity::generate(&mut rng);
    /// let id = PeerId::of(alice.public());
    /// assert_eq!(id, PeerId::of(alice.public()));
    /// assert_ne!(id, PeerId::of(Identity::generate(&mut rng).public()));
    /// ```
    pub fn of(identity: &PublicIdentity) -> Self {
        PeerId(Sha256::digest(&[PEER_ID_LABEL, identity.sign_public(), identity.dh_public()]))
    }
}

/// The first 8 bytes in hex: enough to tell peers apart in logs.
impl core::fmt::Debug for PeerId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PeerId(")?;
        for b in self.0.iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        f.write_str("..)")
    }
}

/// Why the directory refused a change. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectoryError {
    /// Every slot holds another peer.
    Full,
    /// The peer is not in the directory.
    UnknownPeer,
    /// The identity does not hash to the peer's id, or differs from the
    /// identity already known for it.
    IdentityMismatch,
    /// The bundle did not decode or verify; or (feature `ml-dsa`) the
    /// peer's ML-DSA-65 key is pinned and the bundle is classical
    /// (`Downgrade`) or hybrid with another ML-DSA key (`WrongIdentity`).
    BadBundle(securemesh_ratchet::Error),
    /// The bundle is longer than [`MAX_STORED_BUNDLE_LEN`] (a KEM prekey).
    BundleTooLong,
    /// The peer's ML-DSA-65 key is pinned already, to another key.
    PinMismatch,
}

impl core::fmt::Display for DirectoryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DirectoryError::Full => f.write_str("peer directory full"),
            DirectoryError::UnknownPeer => f.write_str("peer not in the directory"),
            DirectoryError::IdentityMismatch => {
                f.write_str("identity does not match the peer id or the identity already known")
            }
            DirectoryError::BadBundle(e) => write!(f, "prekey bundle refused: {e}"),
            DirectoryError::BundleTooLong => {
                write!(f, "prekey bundle longer than {MAX_STORED_BUNDLE_LEN} bytes")
            }
            DirectoryError::PinMismatch => f.write_str("the peer's ML-DSA-65 key is pinned to another key"),
        }
    }
}

impl core::error::Error for DirectoryError {}

/// A verified prekey bundle, kept as its encoding (a [`Bundle`] borrows
/// its bytes) and decoded again when a session is started from it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StoredBundle {
    bytes: [u8; MAX_STORED_BUNDLE_LEN],
    len: u16,
    /// Stored from a hybrid bundle whose ML-DSA section verified.
    #[cfg(feature = "ml-dsa")]
    hybrid_signed: bool,
}

impl StoredBundle {
    /// The encoding.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// The bundle, verified again (every signature).
    pub fn bundle(&self) -> Result<Bundle<'_>, securemesh_ratchet::Error> {
        Bundle::decode(self.as_bytes())
    }

    /// Whether the bundle carries a KEM prekey (a PQXDH bundle).
    pub fn has_kem(&self) -> bool {
        self.bundle().is_ok_and(|b| b.kem().is_some())
    }

    /// Whether it came in a hybrid (version-3) bundle whose Ed25519 +
    /// ML-DSA-65 signatures verified, by the peer's pinned ML-DSA key
    /// (feature `ml-dsa`). The stored encoding is the bundle without its
    /// ML-DSA section (version 1), which [`bundle`](Self::bundle) decodes.
    pub fn is_hybrid_signed(&self) -> bool {
        #[cfg(feature = "ml-dsa")]
        return self.hybrid_signed;
        #[cfg(not(feature = "ml-dsa"))]
        false
    }

    /// `bytes` as stored (nothing else checked).
    fn new(bytes: &[u8], hybrid_signed: bool) -> Option<Self> {
        #[cfg(not(feature = "ml-dsa"))]
        let _ = hybrid_signed;
        let mut stored = StoredBundle {
            bytes: [0; MAX_STORED_BUNDLE_LEN],
            len: 0,
            #[cfg(feature = "ml-dsa")]
            hybrid_signed,
        };
        stored.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        stored.len = u16::try_from(bytes.len()).ok()?;
        Some(stored)
    }
}

impl core::fmt::Debug for StoredBundle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StoredBundle")
            .field("len", &self.len)
            .field("hybrid_signed", &self.is_hybrid_signed())
            .finish()
    }
}

/// What the directory knows about one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    id: PeerId,
    identity: Option<PublicIdentity>,
    bundle: Option<StoredBundle>,
    reachable: bool,
    /// Known to run the hybrid channels (see [`crate::pq`]).
    hybrid: bool,
    /// The pinned ML-DSA-65 key (feature `ml-dsa`; only with an identity).
    #[cfg(feature = "ml-dsa")]
    ml_dsa: Option<MlDsaPin>,
}

impl PeerInfo {
    /// The peer's id.
    pub fn id(&self) -> &PeerId {
        &self.id
    }

    /// The peer's identity, if known (verified, and hashing to [`id`](Self::id)).
    pub fn identity(&self) -> Option<&PublicIdentity> {
        self.identity.as_ref()
    }

    /// The peer's Noise static key (its identity's X25519 key), if known.
    pub fn static_key(&self) -> Option<&[u8; 32]> {
        self.identity.as_ref().map(PublicIdentity::dh_public)
    }

    /// The peer's prekey bundle, if one is stored and not yet used.
    pub fn bundle(&self) -> Option<&StoredBundle> {
        self.bundle.as_ref()
    }

    /// Whether the host reported the peer reachable now.
    pub fn is_reachable(&self) -> bool {
        self.reachable
    }

    /// Whether the peer is known to run the hybrid post-quantum channels:
    /// a bundle of it with a KEM prekey was stored, or it opened an `hfs`
    /// handshake or a PQXDH session (see [`crate::pq`]). Persisted.
    pub fn is_hybrid(&self) -> bool {
        self.hybrid
    }

    /// The pin of the peer's ML-DSA-65 key, if pinned (feature `ml-dsa`;
    /// see the [module docs](self)). Persisted.
    pub fn ml_dsa_pin(&self) -> Option<&MlDsaPin> {
        #[cfg(feature = "ml-dsa")]
        return self.ml_dsa.as_ref();
        #[cfg(not(feature = "ml-dsa"))]
        None
    }

    /// Pin `pin` (a no-op without the feature `ml-dsa`, where no bundle
    /// yields one).
    fn set_pin(&mut self, pin: MlDsaPin) {
        #[cfg(feature = "ml-dsa")]
        {
            self.ml_dsa = Some(pin);
        }
        #[cfg(not(feature = "ml-dsa"))]
        let _ = pin;
    }
}

/// The pin of a hybrid bundle's ML-DSA-65 key (verified by its decoding);
/// `None` for a classical bundle.
#[cfg(feature = "ml-dsa")]
fn hybrid_pin(bundle: &Bundle<'_>) -> Option<MlDsaPin> {
    bundle.pq().map(|pq| MlDsaPin::of(pq.public()))
}

/// Without the feature `ml-dsa` every bundle is classical (a version-3
/// one does not decode).
#[cfg(not(feature = "ml-dsa"))]
fn hybrid_pin(_: &Bundle<'_>) -> Option<MlDsaPin> {
    None
}

/// A verified hybrid bundle (`bytes`, decoded as `bundle`) as the
/// directory keeps it: without its ML-DSA section, which follows the
/// version-1 fields at the end (`securemesh-ratchet`'s bundle v3), so the
/// stored bytes are the version-1 bundle of the same prekeys. Checked by
/// decoding it: its prekeys must be the hybrid bundle's.
#[cfg(feature = "ml-dsa")]
fn strip_pq(bytes: &[u8], bundle: &Bundle<'_>) -> Result<StoredBundle, DirectoryError> {
    use securemesh_ratchet::{BUNDLE_VERSION, HYBRID_SIG_LEN, PQ_PUBLIC_LEN};
    const SECTION: usize = PQ_PUBLIC_LEN + HYBRID_SIG_LEN;
    const SECTION_KEM: usize = SECTION + HYBRID_SIG_LEN;
    let section = if bundle.kem().is_some() { SECTION_KEM } else { SECTION };
    let fields = bytes
        .len()
        .checked_sub(section)
        .and_then(|end| bytes.get(1..end))
        .ok_or(DirectoryError::BadBundle(securemesh_ratchet::Error::Malformed))?;
    let mut stored = StoredBundle::new(&[BUNDLE_VERSION], true).ok_or(DirectoryError::BundleTooLong)?;
    let end = fields.len().checked_add(1).ok_or(DirectoryError::BundleTooLong)?;
    stored.bytes.get_mut(1..end).ok_or(DirectoryError::BundleTooLong)?.copy_from_slice(fields);
    stored.len = u16::try_from(end).map_err(|_| DirectoryError::BundleTooLong)?;
    let classical = stored.bundle().map_err(DirectoryError::BadBundle)?;
    if classical.identity() != bundle.identity()
        || classical.signed() != bundle.signed()
        || classical.one_time() != bundle.one_time()
        || classical.kem() != bundle.kem()
    {
        return Err(DirectoryError::BadBundle(securemesh_ratchet::Error::Malformed));
    }
    Ok(stored)
}

/// Without the feature `ml-dsa` no bundle is hybrid.
#[cfg(not(feature = "ml-dsa"))]
fn strip_pq(_: &[u8], _: &Bundle<'_>) -> Result<StoredBundle, DirectoryError> {
    Err(DirectoryError::BadBundle(securemesh_ratchet::Error::UnknownVersion))
}

/// Up to `N` peers, by id.
///
/// ```
/// use securemesh::peer::{Directory, DirectoryError};
/// use securemesh::PeerId;
/// use securemesh_ratchet::Identity;
/// # let mut rng = securemesh_core::testing::TestRng::new(1);
/// let bob = Identity::generate(&mut rng);
/// let mut dir: Directory<2> = Directory::new();
/// let id = dir.add_identity(bob.public())?;
/// assert_eq!(dir.get(&id).and_then(|p| p.static_key()), Some(bob.public().dh_public()));
/// // Another identity is refused under Bob's id.
/// let mallory = Identity::generate(&mut rng);
/// assert_eq!(dir.learn_identity(&id, mallory.public()), Err(DirectoryError::IdentityMismatch));
/// # Ok::<(), DirectoryError>(())
/// ```
#[derive(Debug)]
pub struct Directory<const N: usize> {
    peers: [Option<PeerInfo>; N],
}

impl<const N: usize> Default for Directory<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Directory<N> {
    /// An empty directory.
    pub const fn new() -> Self {
        Directory { peers: [None; N] }
    }

    /// The peer `id`, if known.
    pub fn get(&self, id: &PeerId) -> Option<&PeerInfo> {
        self.peers.iter().flatten().find(|p| p.id == *id)
    }

    fn get_mut(&mut self, id: &PeerId) -> Option<&mut PeerInfo> {
        self.peers.iter_mut().flatten().find(|p| p.id == *id)
    }

    /// Every known peer.
    pub fn iter(&self) -> impl Iterator<Item = &PeerInfo> {
        self.peers.iter().flatten()
    }

    /// Number of known peers.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether no peer is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Know a peer by its id alone (its keys are learned later, in an XX
    /// handshake or from a bundle). Adding a known id changes nothing.
    pub fn add(&mut self, id: PeerId) -> Result<(), DirectoryError> {
        if self.get(&id).is_some() {
            return Ok(());
        }
        let slot = self.peers.iter_mut().find(|s| s.is_none()).ok_or(DirectoryError::Full)?;
        *slot = Some(PeerInfo {
            id,
            identity: None,
            bundle: None,
            reachable: false,
            hybrid: false,
            #[cfg(feature = "ml-dsa")]
            ml_dsa: None,
        });
        Ok(())
    }

    /// Know a peer by its identity; returns its id. An identity differing
    /// from the one already known under that id cannot occur (the id is
    /// its hash), so this only fills in what was missing.
    pub fn add_identity(&mut self, identity: &PublicIdentity) -> Result<PeerId, DirectoryError> {
        let id = PeerId::of(identity);
        if self.get(&id).is_none() {
            self.add(id)?;
        }
        self.learn_identity(&id, identity)?;
        Ok(id)
    }

    /// Record `identity` for the known peer `id`: refused unless it hashes
    /// to `id` and equals any identity already recorded.
    pub fn learn_identity(&mut self, id: &PeerId, identity: &PublicIdentity) -> Result<(), DirectoryError> {
        if PeerId::of(identity) != *id {
            return Err(DirectoryError::IdentityMismatch);
        }
        let peer = self.get_mut(id).ok_or(DirectoryError::UnknownPeer)?;
        match &peer.identity {
            Some(known) if known != identity => Err(DirectoryError::IdentityMismatch),
            _ => {
                peer.identity = Some(*identity);
                Ok(())
            }
        }
    }

    /// Store a peer's published prekey bundle (decoded and verified here;
    /// the peer is added if unknown, its identity recorded); returns its id.
    /// The bundle is used by the next X3DH with the peer and then
    /// forgotten, since its one-time prekey is spent. With the feature
    /// `ml-dsa` a hybrid bundle pins the peer's ML-DSA-65 key on first use,
    /// and a pinned peer's bundle must be hybrid with that key (see the
    /// [module docs](self)).
    pub fn set_bundle(&mut self, bytes: &[u8]) -> Result<PeerId, DirectoryError> {
        let bundle = Bundle::decode(bytes).map_err(DirectoryError::BadBundle)?;
        self.store_bundle(bytes, &bundle)
    }

    /// [`set_bundle`](Self::set_bundle) of `bytes`, already decoded as
    /// `bundle` (so an ML-DSA signature is verified once).
    pub(crate) fn store_bundle(
        &mut self,
        bytes: &[u8],
        bundle: &Bundle<'_>,
    ) -> Result<PeerId, DirectoryError> {
        let identity = *bundle.identity();
        let id = PeerId::of(&identity);
        let known = self.get(&id);
        if let Some(known) = known.and_then(PeerInfo::identity)
            && *known != identity
        {
            return Err(DirectoryError::IdentityMismatch);
        }
        let pinned = known.and_then(PeerInfo::ml_dsa_pin).copied();
        let (stored, pin) = match hybrid_pin(bundle) {
            Some(pin) => {
                if pinned.is_some_and(|p| p != pin) {
                    return Err(DirectoryError::BadBundle(securemesh_ratchet::Error::WrongIdentity));
                }
                (strip_pq(bytes, bundle)?, Some(pin))
            }
            None if pinned.is_some() => {
                return Err(DirectoryError::BadBundle(securemesh_ratchet::Error::Downgrade));
            }
            None => (StoredBundle::new(bytes, false).ok_or(DirectoryError::BundleTooLong)?, None),
        };
        let hybrid = bundle.kem().is_some();
        self.add(id)?;
        let peer = self.get_mut(&id).ok_or(DirectoryError::UnknownPeer)?;
        peer.identity = Some(identity);
        peer.bundle = Some(stored);
        peer.hybrid |= hybrid;
        if let Some(pin) = pin {
            peer.set_pin(pin);
        }
        Ok(id)
    }

    /// Pin the ML-DSA-65 key of the known peer `id`, whose identity is
    /// known (its introduction: the pin came with the identity, e.g.
    /// [`MlDsaPin::of`] of the key its owner published beside it).
    /// Refused if another key is pinned ([`DirectoryError::PinMismatch`])
    /// or the identity is not known ([`DirectoryError::IdentityMismatch`]);
    /// pinning the same key again changes nothing. A stored classical
    /// bundle of the peer is dropped: it is not signed by the pinned key.
    ///
    /// ```
    /// use securemesh::peer::{Directory, DirectoryError, MlDsaPin};
    /// use securemesh_ratchet::Identity;
    /// # let mut rng = securemesh_core::testing::TestRng::new(0x5eed_7001);
    /// let bob = Identity::generate(&mut rng);
    /// let mut dir: Directory<2> = Directory::new();
    /// let id = dir.add_identity(bob.public())?;
    /// let pin = MlDsaPin::of(&[3u8; 1952]); // the fingerprint of Bob's ML-DSA-65 key
    /// dir.pin_ml_dsa(&id, &pin)?;
    /// assert_eq!(dir.get(&id).and_then(|p| p.ml_dsa_pin()), Some(&pin));
    /// assert_eq!(dir.pin_ml_dsa(&id, &MlDsaPin::of(&[4u8; 1952])), Err(DirectoryError::PinMismatch));
    /// # Ok::<(), DirectoryError>(())
    /// ```
    #[cfg(feature = "ml-dsa")]
    pub fn pin_ml_dsa(&mut self, id: &PeerId, pin: &MlDsaPin) -> Result<(), DirectoryError> {
        let peer = self.get_mut(id).ok_or(DirectoryError::UnknownPeer)?;
        if peer.identity.is_none() {
            return Err(DirectoryError::IdentityMismatch);
        }
        match &peer.ml_dsa {
            Some(p) if p != pin => Err(DirectoryError::PinMismatch),
            _ => {
                peer.ml_dsa = Some(*pin);
                if peer.bundle.is_some_and(|b| !b.hybrid_signed) {
                    peer.bundle = None;
                }
                Ok(())
            }
        }
    }

    /// Record that peer `id` (whose identity is known) runs the hybrid
    /// channels; returns whether that is new.
    pub(crate) fn learn_hybrid(&mut self, id: &PeerId) -> bool {
        match self.get_mut(id) {
            Some(p) if p.identity.is_some() && !p.hybrid => {
                p.hybrid = true;
                true
            }
            _ => false,
        }
    }

    /// Forget the peer's bundle (after its one-time prekey was used).
    pub(crate) fn take_bundle(&mut self, id: &PeerId) -> Option<StoredBundle> {
        self.get_mut(id).and_then(|p| p.bundle.take())
    }

    /// Record whether the peer is reachable now (the host's knowledge:
    /// a live link, presence, a recent packet).
    pub fn set_reachable(&mut self, id: &PeerId, reachable: bool) -> Result<(), DirectoryError> {
        self.get_mut(id).ok_or(DirectoryError::UnknownPeer)?.reachable = reachable;
        Ok(())
    }

    /// Forget a peer; returns whether it was known.
    pub fn remove(&mut self, id: &PeerId) -> bool {
        match self.peers.iter_mut().find(|s| s.as_ref().is_some_and(|p| p.id == *id)) {
            Some(slot) => {
                *slot = None;
                true
            }
            None => false,
        }
    }
}

/// Persisted form of the directory (inside the agent record, see
/// [`crate::persist`]): `count u16 | count * (id [32] | identity: flag
/// [128] | bundle: flag [len u16 | bytes])`. Reachability is not stored:
/// it is the host's live knowledge and stale after a restart (a restored
/// peer is unreachable until the host says otherwise).
impl<const N: usize> Directory<N> {
    /// Largest encoding.
    pub(crate) const MAX_ENCODED_LEN: usize =
        2 + N * (32 + 1 + PublicIdentity::LEN + PIN_LEN + 1 + 2 + MAX_STORED_BUNDLE_LEN);

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<(), CoreError> {
        w.write_u16(u16::try_from(self.len()).map_err(|_| CoreError::LengthOverflow)?)?;
        for p in self.iter() {
            w.write_bytes(&p.id.0)?;
            // 0: no identity; 1: identity; 2: identity, and the peer runs
            // the hybrid channels (tag 2 came with them: records without
            // it read as before); 3, 4: as 1, 2, and the pin of the peer's
            // ML-DSA-65 key follows the identity (feature `ml-dsa`).
            match &p.identity {
                Some(i) => {
                    w.write_u8(match (p.hybrid, p.ml_dsa_pin().is_some()) {
                        (false, false) => 1,
                        (true, false) => 2,
                        (false, true) => 3,
                        (true, true) => 4,
                    })?;
                    w.write_bytes(&i.to_bytes())?;
                    if let Some(pin) = p.ml_dsa_pin() {
                        w.write_bytes(&pin.0)?;
                    }
                }
                None => w.write_u8(0)?,
            }
            // 0: none; 1: a bundle; 2: a hybrid bundle without its
            // verified ML-DSA section (feature `ml-dsa`).
            match &p.bundle {
                Some(b) => {
                    w.write_u8(if b.is_hybrid_signed() { 2 } else { 1 })?;
                    w.write_vec16(b.as_bytes())?;
                }
                None => w.write_u8(0)?,
            }
        }
        Ok(())
    }

    /// Every identity is verified again and must hash to its id; every
    /// bundle is verified again and must carry that identity.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, CoreError> {
        let mut dir = Directory::new();
        let count = usize::from(r.read_u16()?);
        if count > N {
            return Err(CoreError::LengthOverflow);
        }
        for slot in dir.peers.iter_mut().take(count) {
            let id = PeerId(r.read_array()?);
            let tag = r.read_u8()?;
            // Pins (tags 3, 4) only where they can be enforced.
            let max_tag = if cfg!(feature = "ml-dsa") { 4 } else { 2 };
            let identity = match tag {
                0 => None,
                t if t <= max_tag => {
                    let i =
                        PublicIdentity::from_bytes(&r.read_array()?).map_err(|_| CoreError::BadSignature)?;
                    if PeerId::of(&i) != id {
                        return Err(CoreError::InvalidValue);
                    }
                    Some(i)
                }
                _ => return Err(CoreError::InvalidValue),
            };
            let ml_dsa = if tag >= 3 { Some(MlDsaPin(r.read_array()?)) } else { None };
            let bundle = match r.read_u8()? {
                0 => None,
                flag @ (1 | 2) => {
                    // A pinned peer's bundle came hybrid, and only such one.
                    if (flag == 2) != ml_dsa.is_some() {
                        return Err(CoreError::InvalidValue);
                    }
                    let bytes = r.read_vec16()?;
                    let b = Bundle::decode(bytes).map_err(|_| CoreError::InvalidValue)?;
                    if identity.as_ref() != Some(b.identity()) {
                        return Err(CoreError::InvalidValue);
                    }
                    Some(StoredBundle::new(bytes, flag == 2).ok_or(CoreError::LengthOverflow)?)
                }
                _ => return Err(CoreError::InvalidValue),
            };
            let hybrid = tag == 2 || tag == 4;
            let mut info = PeerInfo {
                id,
                identity,
                bundle,
                reachable: false,
                hybrid,
                #[cfg(feature = "ml-dsa")]
                ml_dsa: None,
            };
            if let Some(pin) = ml_dsa {
                info.set_pin(pin);
            }
            *slot = Some(info);
        }
        // Ids are unique (the directory never holds one twice).
        for (i, p) in dir.iter().enumerate() {
            if dir.iter().skip(i.saturating_add(1)).any(|q| q.id == p.id) {
                return Err(CoreError::InvalidValue);
            }
        }
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use securemesh_core::UnixTime;
    use securemesh_core::testing::TestRng;
    use securemesh_ratchet::{Identity, PrekeyConfig, PrekeyPool};

    #[test]
    fn bundles_are_verified_bound_and_bounded() {
        let mut rng = TestRng::new(0x5151);
        let bob = Identity::generate(&mut rng);
        let pool: PrekeyPool<2> =
            PrekeyPool::new(&bob, &mut rng, UnixTime(1_700_000_000), PrekeyConfig::default());
        let mut buf = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
        let n = pool.bundle(pool.one_time_ids().next()).encode(&mut buf).unwrap();
        assert_eq!(n, CLASSICAL_BUNDLE_LEN);
        let mut dir: Directory<1> = Directory::new();
        let mut bad = buf;
        bad[200] ^= 1;
        assert!(matches!(dir.set_bundle(&bad[..n]), Err(DirectoryError::BadBundle(_))));
        assert!(dir.is_empty());
        let id = dir.set_bundle(&buf[..n]).unwrap();
        assert_eq!(id, PeerId::of(bob.public()));
        let p = dir.get(&id).unwrap();
        assert_eq!(p.identity(), Some(bob.public()));
        assert_eq!(p.bundle().unwrap().bundle().unwrap().identity(), bob.public());
        // Full directory: another peer is refused, the known one updated.
        let carol = Identity::generate(&mut rng);
        assert_eq!(dir.add_identity(carol.public()), Err(DirectoryError::Full));
        assert!(dir.take_bundle(&id).is_some());
        assert!(dir.get(&id).unwrap().bundle().is_none());
        assert!(dir.remove(&id));
        assert!(dir.is_empty());
    }

    /// Pins and hybrid-signed bundles round-trip through the persisted
    /// directory; a record whose hybrid-signed bundle lost its pin, or
    /// whose pinned peer holds a bundle not marked hybrid-signed, is
    /// refused.
    #[cfg(feature = "ml-dsa")]
    #[test]
    fn pins_persist_and_inconsistent_records_are_refused() {
        use securemesh_ratchet::{BundlePqStorage, MAX_HYBRID_BUNDLE_LEN, PqIdentity};
        // ML-DSA-65 signs on the stack: a thread with room for it.
        std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(|| {
                let mut rng = TestRng::new(0x5152_0001);
                let bob = Identity::generate(&mut rng);
                let pq = PqIdentity::generate(&bob, &mut rng);
                let pool: PrekeyPool<2> =
                    PrekeyPool::new(&bob, &mut rng, UnixTime(1_700_000_000), PrekeyConfig::default());
                let mut storage = BundlePqStorage::new();
                let hybrid =
                    pool.bundle(pool.one_time_ids().next()).sign_pq(&pq, &mut rng, &mut storage).unwrap();
                let mut buf = std::vec![0u8; MAX_HYBRID_BUNDLE_LEN];
                let n = hybrid.encode(&mut buf).unwrap();
                let mut dir: Directory<2> = Directory::new();
                let id = dir.set_bundle(&buf[..n]).unwrap();
                assert_eq!(dir.get(&id).unwrap().ml_dsa_pin(), Some(&MlDsaPin::of(pq.public())));
                assert!(dir.get(&id).unwrap().bundle().unwrap().is_hybrid_signed());
                let carol = Identity::generate(&mut rng);
                let cid = dir.add_identity(carol.public()).unwrap();
                dir.pin_ml_dsa(&cid, &MlDsaPin::of(&[5; 1952])).unwrap();

                let mut enc = std::vec![0u8; Directory::<2>::MAX_ENCODED_LEN];
                let mut w = Writer::new(&mut enc);
                dir.encode(&mut w).unwrap();
                let len = w.finish().unwrap();
                let back = Directory::<2>::decode(&mut Reader::new(&enc[..len])).unwrap();
                assert_eq!(back.get(&id), dir.get(&id));
                assert_eq!(back.get(&cid), dir.get(&cid));

                // Bob's entry: id [32] | tag 3 | identity [128] | pin [32] | bundle tag 2.
                let (tag, bundle_tag) = (2 + 32, 2 + 32 + 1 + PublicIdentity::LEN + 32);
                assert_eq!((enc[tag], enc[bundle_tag]), (3, 2));
                let mut classical = enc.clone();
                classical[bundle_tag] = 1;
                assert!(Directory::<2>::decode(&mut Reader::new(&classical[..len])).is_err());
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn reachability_and_unknown_peers() {
        let mut dir: Directory<2> = Directory::new();
        let id = PeerId([9; 32]);
        assert_eq!(dir.set_reachable(&id, true), Err(DirectoryError::UnknownPeer));
        dir.add(id).unwrap();
        dir.add(id).unwrap();
        assert_eq!(dir.len(), 1);
        dir.set_reachable(&id, true).unwrap();
        assert!(dir.get(&id).unwrap().is_reachable());
        assert!(dir.get(&id).unwrap().static_key().is_none());
    }
}

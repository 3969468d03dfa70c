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

use securemesh_core::Error as CoreError;
use securemesh_core::codec::{Reader, Writer};
use securemesh_core::crypto::{Hash, Sha256};
use securemesh_ratchet::{Bundle, PublicIdentity};

/// Domain-separation label of [`PeerId::of`].
pub const PEER_ID_LABEL: &[u8] = b"securemesh-peer-id-v1";

/// Largest prekey bundle the directory stores: a bundle of the ratchet
/// format version 1 with a one-time prekey and without a KEM prekey
/// (`1 + 128 + 100 + 37 + 1` = 267 bytes), or, with the feature `pq`,
/// with an ML-KEM-768 prekey (`+ 4 + 2 + 2 + 1184 + 64` = 1523 bytes, a
/// PQXDH bundle; see [`crate::pq`]).
pub const MAX_STORED_BUNDLE_LEN: usize =
    CLASSICAL_BUNDLE_LEN + if cfg!(feature = "pq") { KEM_SLOT_768 } else { 0 };

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
    /// The bundle did not decode or verify.
    BadBundle(securemesh_ratchet::Error),
    /// The bundle is longer than [`MAX_STORED_BUNDLE_LEN`] (a KEM prekey).
    BundleTooLong,
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
}

impl core::fmt::Debug for StoredBundle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StoredBundle").field("len", &self.len).finish()
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
        *slot = Some(PeerInfo { id, identity: None, bundle: None, reachable: false, hybrid: false });
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
    /// forgotten, since its one-time prekey is spent.
    pub fn set_bundle(&mut self, bytes: &[u8]) -> Result<PeerId, DirectoryError> {
        let bundle = Bundle::decode(bytes).map_err(DirectoryError::BadBundle)?;
        if bytes.len() > MAX_STORED_BUNDLE_LEN {
            return Err(DirectoryError::BundleTooLong);
        }
        let identity = *bundle.identity();
        let id = PeerId::of(&identity);
        if let Some(known) = self.get(&id).and_then(PeerInfo::identity)
            && *known != identity
        {
            return Err(DirectoryError::IdentityMismatch);
        }
        let mut stored = StoredBundle { bytes: [0; MAX_STORED_BUNDLE_LEN], len: 0 };
        let dst = stored.bytes.get_mut(..bytes.len()).ok_or(DirectoryError::BundleTooLong)?;
        dst.copy_from_slice(bytes);
        stored.len = u16::try_from(bytes.len()).map_err(|_| DirectoryError::BundleTooLong)?;
        let hybrid = bundle.kem().is_some();
        self.add(id)?;
        let peer = self.get_mut(&id).ok_or(DirectoryError::UnknownPeer)?;
        peer.identity = Some(identity);
        peer.bundle = Some(stored);
        peer.hybrid |= hybrid;
        Ok(id)
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
        2 + N * (32 + 1 + PublicIdentity::LEN + 1 + 2 + MAX_STORED_BUNDLE_LEN);

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<(), CoreError> {
        w.write_u16(u16::try_from(self.len()).map_err(|_| CoreError::LengthOverflow)?)?;
        for p in self.iter() {
            w.write_bytes(&p.id.0)?;
            // 0: no identity; 1: identity; 2: identity, and the peer runs
            // the hybrid channels (tag 2 came with them: records without
            // it read as before).
            match &p.identity {
                Some(i) => {
                    w.write_u8(if p.hybrid { 2 } else { 1 })?;
                    w.write_bytes(&i.to_bytes())?;
                }
                None => w.write_u8(0)?,
            }
            match &p.bundle {
                Some(b) => {
                    w.write_u8(1)?;
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
            let identity = match tag {
                0 => None,
                1 | 2 => {
                    let i =
                        PublicIdentity::from_bytes(&r.read_array()?).map_err(|_| CoreError::BadSignature)?;
                    if PeerId::of(&i) != id {
                        return Err(CoreError::InvalidValue);
                    }
                    Some(i)
                }
                _ => return Err(CoreError::InvalidValue),
            };
            let bundle = match r.read_u8()? {
                0 => None,
                1 => {
                    let bytes = r.read_vec16()?;
                    let b = Bundle::decode(bytes).map_err(|_| CoreError::InvalidValue)?;
                    if identity.as_ref() != Some(b.identity()) {
                        return Err(CoreError::InvalidValue);
                    }
                    let mut stored = StoredBundle { bytes: [0; MAX_STORED_BUNDLE_LEN], len: 0 };
                    stored
                        .bytes
                        .get_mut(..bytes.len())
                        .ok_or(CoreError::LengthOverflow)?
                        .copy_from_slice(bytes);
                    stored.len = u16::try_from(bytes.len()).map_err(|_| CoreError::LengthOverflow)?;
                    Some(stored)
                }
                _ => return Err(CoreError::InvalidValue),
            };
            *slot = Some(PeerInfo { id, identity, bundle, reachable: false, hybrid: tag == 2 });
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

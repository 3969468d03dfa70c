//! The group: [`Group`], the state of one member of one MLS group, and
//! the whole API of a member on it.
//!
//! A [`Group`] is a slot: made empty ([`Group::new`], `const`, so it can sit
//! in a `static`), filled by a join, then moved from epoch to epoch by the
//! commits it processes. Every call is a transaction (on error nothing
//! changed, see each method), and every input is `&[u8]` with the output
//! written into a caller-lent buffer.
//!
//! | step | method | scratch |
//! | --- | --- | --- |
//! | join from a Welcome | [`Group::join_into`] | [`Group::scratch_len`] |
//! | create a group | [`Group::create_into`] | |
//! | join from a GroupInfo by an external commit | [`Group::join_by_external_commit`] (with a spare slot) | [`Group::external_commit_scratch_len`] |
//! | add and remove members (pending commit and Welcome) | [`Group::commit`] (with a spare slot) | [`Group::send_commit_scratch_len`] |
//! | commit PSKs, extensions and the cached proposals too | [`Group::commit_with`] (with a spare slot) | [`Group::send_commit_scratch_len`] |
//! | send a proposal for a later commit | [`Group::propose`] | [`Group::propose_scratch_len`] |
//! | apply our commit once ordered | [`Group::merge_pending_commit`] | |
//! | the tree for a Welcome without it | [`Group::export_ratchet_tree`] | |
//! | publish the epoch's GroupInfo | [`Group::export_group_info`] | [`Group::MAX_GROUP_INFO_LEN`] |
//! | cache a proposal | [`Group::process_proposal`] | [`Group::commit_scratch_len`] |
//! | move to the next epoch | [`Group::process_commit`] (with a spare slot) | [`Group::commit_scratch_len`] |
//! | send application data | [`Group::seal_application`] | [`Group::seal_scratch_len`] |
//! | receive application data | [`Group::open_application`] | [`Group::application_scratch_len`] |
//! | key something outside MLS | [`Group::export_secret`] | |
//! | compare epochs out of band | [`Group::epoch_authenticator`] | |
//! | who is in the group | [`Group::members`], [`Group::own_leaf`], [`Group::tree`] | |
//! | save | [`Persist::encode_state`], [`Persist::seal_state`] | |
//! | restore in place | [`Group::decode_state_into`], [`Group::open_state_into`] | [`Persist::MAX_BODY_LEN`] |
//!
//! The methods are implemented beside the part of RFC 9420 they follow:
//! creating in [`creation`](crate::creation), joining by an external
//! commit in [`external_commit`](crate::external_commit), sending proposals in
//! [`proposal`](crate::proposal), sending commits in
//! [`pending_commit`](crate::pending_commit), joining in [`welcome`](crate::welcome), proposals and commits in
//! [`commit`](crate::commit), application messages in
//! [`application`](crate::application), the persisted state in
//! [`persist`](crate::persist); the types they take and return are
//! re-exported at the crate root. The crate documentation walks the life
//! cycle ("Using a group").
//!
//! [`Persist::encode_state`]: securemesh_core::envelope::Persist::encode_state
//! [`Persist::seal_state`]: securemesh_core::envelope::Persist::seal_state
//! [`Persist::MAX_BODY_LEN`]: securemesh_core::envelope::Persist::MAX_BODY_LEN

use crate::crypto::suite::Suite;
use crate::crypto::{NH, Secret32};
use crate::error::Error;
use crate::key_schedule::GroupContext;
use crate::sender_ratchets::SenderRatchets;
use crate::tree::RatchetTree;
use crate::tree::node::LeafNode;
use crate::tree_math::{self, NodeIndex};
use crate::welcome::{EpochSecretsKept, MAX_PATH_KEYS, PathKey};
use securemesh_core::Secret;
use securemesh_core::crypto::Ed25519SigningKey;

/// A [`Group`] with the default capacities (64 members of at most 384
/// bytes each, a group id of at most 64 bytes, 256 bytes of GroupContext
/// extensions), so that associated functions need no annotation:
/// `DefaultGroup::scratch_len(n)`.
pub type DefaultGroup = Group;

/// One member's state of one MLS group, and the group API (see the
/// [module documentation](self) for the list): the GroupContext of the
/// epoch, the ratchet tree, our leaf and private keys, the transcript
/// hashes, the epoch's secrets and the secret tree's ratchets. Bounded by
/// const generics: at most `MAX_LEAVES` members of at most `LEAF_BYTES`
/// bytes each, a group id of at most `GROUP_ID_BYTES` and GroupContext
/// extensions of at most `EXTENSION_BYTES` bytes ([`DefaultGroup`] names
/// the defaults).
///
/// The state is large (the tree dominates: about 60 KB with the defaults),
/// so it is built in place: make an empty one once ([`Group::new`],
/// e.g. in a `static`) and [`join_into`](Group::join_into) it.
///
/// (Called `welcome::JoinedGroup` before; that name is a deprecated alias.)
///
/// ```
/// use securemesh_mls_lite::Group;
/// let slot: Box<Group<8>> = Box::default();
/// assert!(!slot.is_joined());
/// ```
pub struct Group<
    const MAX_LEAVES: usize = 64,
    const LEAF_BYTES: usize = 384,
    const GROUP_ID_BYTES: usize = 64,
    const EXTENSION_BYTES: usize = 256,
> {
    pub(crate) joined: bool,
    /// The ciphersuite: which HPKE the tree's keys, UpdatePaths, Welcomes
    /// and external commits use ([`Group::suite`]).
    pub(crate) suite: Suite,
    pub(crate) group_id: heapless::Vec<u8, GROUP_ID_BYTES>,
    pub(crate) epoch: u64,
    pub(crate) tree_hash: [u8; NH],
    pub(crate) confirmed_transcript_hash: heapless::Vec<u8, NH>,
    pub(crate) interim_transcript_hash: [u8; NH],
    pub(crate) extensions: heapless::Vec<u8, EXTENSION_BYTES>,
    pub(crate) tree: RatchetTree<MAX_LEAVES, LEAF_BYTES>,
    pub(crate) own_leaf: u32,
    pub(crate) leaf_private_key: Secret32,
    pub(crate) signature_private_key: Secret32,
    /// The signing key loaded from `signature_private_key` on first use
    /// (loading recomputes the public key: a base-point multiplication per
    /// signature otherwise). Emptied wherever the seed is set.
    pub(crate) signing_key: Option<Ed25519SigningKey>,
    /// The ML-DSA-65 seed of our hybrid credential
    /// ([`Group::set_ml_dsa_key`]), which re-signs our leaf.
    #[cfg(feature = "ml-dsa")]
    pub(crate) ml_dsa_private_key: Option<Secret32>,
    pub(crate) path_keys: heapless::Vec<PathKey, MAX_PATH_KEYS>,
    /// The private key of the leaf of the Update we proposed in this
    /// epoch ([`Group::propose`]), kept until a commit covers it or the
    /// epoch ends.
    pub(crate) pending_update: Option<Secret32>,
    pub(crate) secrets: EpochSecretsKept,
    pub(crate) ratchets: SenderRatchets<MAX_LEAVES>,
}

impl<const L: usize, const B: usize, const G: usize, const E: usize> Default for Group<L, B, G, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const L: usize, const B: usize, const G: usize, const E: usize> Group<L, B, G, E> {
    /// An empty slot (not joined); `const`, so it can initialise a `static`.
    ///
    /// ```
    /// use securemesh_mls_lite::Group;
    /// // 8 members, 384-byte leaves, 32-byte group ids, 64 bytes of
    /// // extensions: a slot for firmware, placed statically.
    /// static SLOT: std::sync::Mutex<Group<8, 384, 32, 64>> = std::sync::Mutex::new(Group::new());
    /// assert!(!SLOT.lock().unwrap().is_joined());
    /// ```
    pub const fn new() -> Self {
        Group {
            joined: false,
            suite: Suite::Mls128X25519,
            group_id: heapless::Vec::new(),
            epoch: 0,
            tree_hash: [0; NH],
            confirmed_transcript_hash: heapless::Vec::new(),
            interim_transcript_hash: [0; NH],
            extensions: heapless::Vec::new(),
            tree: RatchetTree::new(),
            own_leaf: 0,
            leaf_private_key: Secret::new([0; NH]),
            signature_private_key: Secret::new([0; NH]),
            signing_key: None,
            #[cfg(feature = "ml-dsa")]
            ml_dsa_private_key: None,
            path_keys: heapless::Vec::new(),
            pending_update: None,
            secrets: EpochSecretsKept::zeroed(),
            ratchets: SenderRatchets::empty(),
        }
    }

    /// Before we sign: the slot must hold a group ([`Error::Malformed`]
    /// otherwise); the signing key is loaded from the seed if not yet.
    pub(crate) fn ready_to_sign(&mut self) -> Result<(), Error> {
        if !self.joined {
            return Err(Error::Malformed);
        }
        if self.signing_key.is_none() {
            self.signing_key =
                Some(<securemesh_core::crypto::Ed25519 as securemesh_core::crypto::Signature>::signing_key(
                    &self.signature_private_key,
                ));
        }
        Ok(())
    }

    /// Content we send in the current epoch, from our leaf.
    pub(crate) fn own_content<'a>(
        &'a self,
        authenticated_data: &'a [u8],
        content: crate::framing::Content<'a>,
    ) -> crate::framing::FramedContent<'a> {
        crate::framing::FramedContent {
            group_id: &self.group_id,
            epoch: self.epoch,
            sender: crate::framing::Sender::Member(self.own_leaf),
            authenticated_data,
            content,
        }
    }

    /// Enter the epoch the slot's GroupContext describes without a commit
    /// (a new group, or test members that share an epoch): the key
    /// schedule from `init_secret` and `commit_secret` with no PSK over the
    /// encoded GroupContext (`work` holds it, wiped after), the interim
    /// transcript hash from the epoch's confirmation tag (§8.2, as after a
    /// commit, so an exported GroupInfo reproduces it), a fresh secret
    /// tree, and the slot marked joined.
    pub(crate) fn start_epoch(
        &mut self,
        init_secret: &Secret32,
        commit_secret: &[u8; NH],
        work: &mut [u8],
    ) -> Result<(), Error> {
        let n = self.group_context().encode(work)?;
        let secrets = crate::key_schedule::EpochSecrets::derive(
            init_secret.expose(),
            commit_secret,
            &[0u8; NH],
            work.get(..n).ok_or(Error::Capacity)?,
        );
        work.fill(0);
        let secrets = secrets?;
        let tag = secrets.confirmation_tag(&self.confirmed_transcript_hash);
        self.interim_transcript_hash =
            crate::transcript::InterimTranscriptHashInput { confirmation_tag: &tag }
                .interim_transcript_hash(&self.confirmed_transcript_hash)?;
        self.ratchets.reset(&secrets.encryption, self.tree.leaf_count())?;
        self.secrets = secrets.into();
        self.joined = true;
        Ok(())
    }

    /// Encode and sign a new LeafNode for our leaf into `out` (returning
    /// its length): `encryption_key`, `source`, and the credential and
    /// extensions of our current leaf. `scratch`: as
    /// [`write_leaf_node`](crate::tree::node::write_leaf_node). A hybrid
    /// leaf is signed with ML-DSA-65 too (hedged, from `rng`), with the key
    /// of [`Group::set_ml_dsa_key`] ([`Error::Unsupported`] without one).
    pub(crate) fn write_own_leaf<R: securemesh_core::CryptoRng + ?Sized>(
        &self,
        encryption_key: &[u8],
        source: crate::tree::node::LeafNodeSource<'_>,
        rng: &mut R,
        out: &mut [u8],
        scratch: &mut [u8],
    ) -> Result<usize, Error> {
        use crate::tree::node::{Credential, LeafNodeParams, write_leaf_node};
        let current = self.tree.leaf(self.own_leaf).ok_or(Error::Malformed)?;
        let signing = self.signing_key.as_ref().ok_or(Error::Malformed)?;
        #[cfg(feature = "ml-dsa")]
        if let Credential::Hybrid(c) = current.credential {
            let seed = self.ml_dsa_private_key.as_ref().ok_or(Error::Unsupported)?;
            let params = LeafNodeParams {
                encryption_key,
                identity: c.identity,
                source,
                extensions: current.extensions,
            };
            let mut signer = crate::hybrid_credential::MlDsaLeafSigner::new(seed, rng);
            return crate::tree::node::write_leaf(
                out,
                &params,
                signing,
                Some(&mut signer),
                &self.group_id,
                self.own_leaf,
                scratch,
            );
        }
        let _ = &rng;
        let Credential::Basic { identity } = current.credential else { return Err(Error::Unsupported) };
        let params = LeafNodeParams { encryption_key, identity, source, extensions: current.extensions };
        write_leaf_node(out, &params, signing, &self.group_id, self.own_leaf, scratch)
    }

    /// Protect our handshake message `ac` (a proposal or commit of the
    /// current epoch) as its wire format says into `out`: a PublicMessage
    /// with the membership tag, or a PrivateMessage under our next
    /// handshake generation, which is returned for the caller to consume
    /// ([`SenderRatchets::consume`](crate::sender_ratchets::SenderRatchets::consume))
    /// once the message is sure to go out. Returns the length written.
    pub(crate) fn protect_own<R: securemesh_core::CryptoRng + ?Sized>(
        &self,
        ac: &crate::framing::AuthenticatedContent<'_>,
        padding: usize,
        rng: &mut R,
        out: &mut [u8],
    ) -> Result<(usize, Option<u32>), Error> {
        use crate::framing::{protect_private, protect_public};
        use crate::messages::WireFormat;
        match ac.wire_format {
            WireFormat::PublicMessage => {
                let n = protect_public(ac, &self.group_context(), &self.secrets.membership_key, out)?;
                Ok((n, None))
            }
            WireFormat::PrivateMessage => {
                let kind = crate::secret_tree::RatchetKind::Handshake;
                let generation = self.ratchets.next_generation(self.own_leaf, kind)?;
                let kn = self.ratchets.key_nonce(self.own_leaf, generation, kind)?;
                let n = protect_private(ac, &self.secrets.sender_data, &kn, generation, padding, rng, out)?;
                Ok((n, Some(generation)))
            }
            _ => Err(Error::Malformed),
        }
    }

    /// Empty the slot, zeroizing every secret it held.
    pub fn clear(&mut self) {
        self.joined = false;
        self.suite = Suite::Mls128X25519;
        self.group_id.clear();
        self.epoch = 0;
        self.tree_hash = [0; NH];
        self.confirmed_transcript_hash.clear();
        self.interim_transcript_hash = [0; NH];
        self.extensions.clear();
        self.tree.clear();
        self.own_leaf = 0;
        self.leaf_private_key = Secret32::zeroed();
        self.signature_private_key = Secret32::zeroed();
        self.signing_key = None;
        #[cfg(feature = "ml-dsa")]
        {
            self.ml_dsa_private_key = None;
        }
        self.path_keys.clear();
        self.pending_update = None;
        self.secrets = EpochSecretsKept::zeroed();
        self.ratchets.clear();
    }

    /// Whether the slot holds a joined group.
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// The GroupContext of the current epoch.
    pub fn group_context(&self) -> GroupContext<'_> {
        GroupContext {
            cipher_suite: self.suite.id(),
            group_id: &self.group_id,
            epoch: self.epoch,
            tree_hash: &self.tree_hash,
            confirmed_transcript_hash: &self.confirmed_transcript_hash,
            extensions: &self.extensions,
        }
    }

    /// The ciphersuite of the group: the suite of the KeyPackage it was
    /// created with, of the Welcome or GroupInfo it was joined from, or of
    /// the persisted record it was restored from (0x0003 for an empty
    /// slot).
    ///
    /// ```
    /// use securemesh_mls_lite::{DefaultGroup, crypto::suite::Suite};
    /// let slot: Box<DefaultGroup> = Box::default();
    /// assert_eq!(slot.suite().id(), 0x0003);
    /// assert_eq!(slot.suite(), Suite::Mls128X25519);
    /// ```
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The group id.
    pub fn group_id(&self) -> &[u8] {
        &self.group_id
    }

    /// The epoch number.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The interim transcript hash of the current epoch.
    pub fn interim_transcript_hash(&self) -> &[u8; NH] {
        &self.interim_transcript_hash
    }

    /// The ratchet tree.
    pub fn tree(&self) -> &RatchetTree<L, B> {
        &self.tree
    }

    /// Our leaf index.
    pub fn own_leaf(&self) -> u32 {
        self.own_leaf
    }

    /// The members of the current epoch: each occupied leaf with its index,
    /// lowest first (ours among them, at [`own_leaf`](Self::own_leaf)).
    /// Whether to trust a member's credential is the caller's decision.
    /// Empty for an empty slot.
    ///
    /// ```
    /// use securemesh_core::testing::TestRng;
    /// use securemesh_mls_lite::Group;
    /// use securemesh_mls_lite::testing::member_pair;
    /// let mut a: Box<Group<4, 256, 16, 16>> = Box::default();
    /// let mut b: Box<Group<4, 256, 16, 16>> = Box::default();
    /// assert_eq!(a.members().count(), 0);
    /// member_pair(b"agents", &mut TestRng::new(1), [&mut *a, &mut *b])?;
    /// let leaves: Vec<u32> = a.members().map(|(leaf, _)| leaf).collect();
    /// assert_eq!(leaves, [0, 1]);
    /// let (_, own) = b.members().find(|(leaf, _)| *leaf == b.own_leaf()).unwrap();
    /// assert_eq!(own.signature_key, b.tree().leaf(1).unwrap().signature_key);
    /// # Ok::<(), securemesh_mls_lite::Error>(())
    /// ```
    pub fn members(&self) -> impl Iterator<Item = (u32, LeafNode<'_>)> + '_ {
        let count = if self.joined { self.tree.leaf_count() } else { 0 };
        (0..count).filter_map(|i| self.tree.leaf(i).map(|leaf| (i, leaf)))
    }

    /// The secrets of the current epoch.
    pub fn secrets(&self) -> &EpochSecretsKept {
        &self.secrets
    }

    /// `epoch_authenticator` of the current epoch (RFC 9420 §8.7): equal
    /// at every member of the epoch, for comparing out of band (a
    /// mismatch means the views of the group differ).
    ///
    /// ```
    /// use securemesh_core::testing::TestRng;
    /// use securemesh_mls_lite::Group;
    /// use securemesh_mls_lite::testing::member_pair;
    /// let mut a: Box<Group<4, 256, 16, 16>> = Box::default();
    /// let mut b: Box<Group<4, 256, 16, 16>> = Box::default();
    /// member_pair(b"agents", &mut TestRng::new(1), [&mut *a, &mut *b])?;
    /// assert_eq!(a.epoch(), b.epoch());
    /// assert_eq!(a.epoch_authenticator().expose(), b.epoch_authenticator().expose());
    /// # Ok::<(), securemesh_mls_lite::Error>(())
    /// ```
    pub fn epoch_authenticator(&self) -> &Secret32 {
        &self.secrets.epoch_authenticator
    }

    /// Our Ed25519 signing seed.
    pub fn signature_private_key(&self) -> &Secret32 {
        &self.signature_private_key
    }

    /// `MLS-Exporter(label, context, out.len())` of the current epoch
    /// (RFC 9420 §8.5): a secret every member of the epoch derives alike,
    /// for keying something outside MLS. Fails only for an empty slot
    /// ([`Error::Malformed`]) or an output longer than HKDF allows
    /// ([`Error::InvalidLength`]).
    ///
    /// ```
    /// use securemesh_core::testing::TestRng;
    /// use securemesh_mls_lite::testing::member_pair;
    /// use securemesh_mls_lite::Group;
    /// let mut a: Box<Group<4, 256, 16, 16>> = Box::default();
    /// let mut b: Box<Group<4, 256, 16, 16>> = Box::default();
    /// member_pair(b"agents", &mut TestRng::new(1), [&mut *a, &mut *b])?;
    /// let (mut ka, mut kb) = ([0u8; 32], [0u8; 32]);
    /// a.export_secret(b"telemetry key", b"v1", &mut ka)?;
    /// b.export_secret(b"telemetry key", b"v1", &mut kb)?;
    /// assert_eq!(ka, kb);
    /// # Ok::<(), securemesh_mls_lite::Error>(())
    /// ```
    pub fn export_secret(&self, label: &[u8], context: &[u8], out: &mut [u8]) -> Result<(), Error> {
        if !self.joined {
            return Err(Error::Malformed);
        }
        crate::key_schedule::mls_exporter(&self.secrets.exporter, label, context, out)
    }

    /// The current tree hash.
    pub fn tree_hash(&self) -> &[u8; NH] {
        &self.tree_hash
    }

    /// The confirmed transcript hash of the current epoch.
    pub fn confirmed_transcript_hash(&self) -> &[u8] {
        &self.confirmed_transcript_hash
    }

    /// The GroupContext extensions of the current epoch (`extensions<V>` body).
    pub fn extensions(&self) -> &[u8] {
        &self.extensions
    }

    /// The path-node private keys we hold, lowest first.
    pub fn path_keys(&self) -> &[PathKey] {
        &self.path_keys
    }

    /// The HPKE private key we hold for node `x` (our leaf or a path node),
    /// as `RatchetTree::decrypt_path_secret` asks for it.
    pub fn private_key(&self, x: NodeIndex) -> Option<Secret32> {
        if !self.joined {
            return None;
        }
        if Some(x) == tree_math::leaf_to_node(self.own_leaf) {
            return Some(self.leaf_private_key.duplicate());
        }
        self.path_keys.iter().find(|k| k.node == x).map(|k| k.private_key.duplicate())
    }
}

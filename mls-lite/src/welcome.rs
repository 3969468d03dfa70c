//! Joining a group from a Welcome (RFC 9420 §12.4.3.1).
//!
//! The new member whose KeyPackage a commit added receives a `Welcome`. To
//! join, it
//!
//! 1. finds the `EncryptedGroupSecrets` whose `new_member` is the
//!    `KeyPackageRef` of its KeyPackage and opens it with its `init_key`
//!    (`DecryptWithLabel(init_priv, "Welcome", encrypted_group_info, …)`);
//! 2. derives `welcome_secret` from `joiner_secret` and the PSK secret and
//!    opens the `GroupInfo` (`ExpandWithLabel(welcome_secret, "key"/"nonce",
//!    "", Nk/Nn)`, ChaCha20-Poly1305, empty AAD);
//! 3. takes the ratchet tree from the GroupInfo's `ratchet_tree` extension
//!    (or from the caller), validates it, checks its tree hash against the
//!    GroupContext, verifies the GroupInfo signature with the signer's leaf
//!    key, finds its own leaf and sets its private keys: the leaf's
//!    encryption key and, from `path_secret`, the keys of the signer's
//!    filtered direct path from the lowest common ancestor up, each checked
//!    against the public key in the tree;
//! 4. runs the key schedule with the GroupInfo's GroupContext, verifies the
//!    confirmation tag and computes the interim transcript hash.
//!
//! The result is a [`Group`], a bounded state built in place into a
//! caller-owned slot ([`Group::join_into`]) so that firmware can place
//! it statically. The lower-level steps ([`open_group_secrets`],
//! [`welcome_secret`], [`open_group_info`], [`psk_secret_for`]) are public
//! for callers (and vectors) that only need part of the join.
//!
//! Policy that is the caller's, not checked here: KeyPackage lifetimes,
//! the group's `required_capabilities` against our own capabilities, and
//! whether to trust the credentials in the tree (surface them to the
//! application). Resumption PSKs (reinit, branch) are [`Error::Unsupported`];
//! external PSKs are looked up in a caller-provided list.

use crate::crypto::suite::Suite;
use crate::crypto::{self, NH, NK, NN, Secret32};
use crate::error::Error;
use crate::group::Group;
use crate::key_schedule::{EpochSecrets, PskInput};
use crate::messages::{GroupInfo, GroupSecrets, KeyPackage, Psk, Welcome};
use crate::transcript::{InterimTranscriptHashInput, verify_confirmation_tag};
use crate::tree::Node;
use crate::tree_math::{self, NodeIndex};
use crate::treekem::{next_path_secret, node_key_pair_in};
use securemesh_core::codec::Reader;
use securemesh_core::crypto::{Aead, ChaChaPoly, Ed25519, Signature};
use securemesh_core::{Secret, ct_eq};

/// Extension type of `ratchet_tree` (RFC 9420 §12.4.3.3).
pub const RATCHET_TREE_EXTENSION: u16 = 0x0002;

/// Most PSKs a Welcome may list.
pub const MAX_PSKS: usize = 8;

/// Most path-node private keys a member holds (the depth of a tree of
/// 2^31 leaves; the real bound is `log2(MAX_LEAVES)`).
pub const MAX_PATH_KEYS: usize = 32;

/// An external PSK the caller provisioned (`psktype = external`).
#[derive(Clone, Copy)]
pub struct ExternalPsk<'a> {
    /// `psk_id`.
    pub id: &'a [u8],
    /// The PSK value.
    pub psk: &'a [u8],
}

impl core::fmt::Debug for ExternalPsk<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ExternalPsk").field("id", &self.id).finish_non_exhaustive()
    }
}

/// The private keys of the joining member: those of its KeyPackage.
pub struct JoinKeys<'a> {
    /// Our KeyPackage (the one the commit added).
    pub key_package: KeyPackage<'a>,
    /// Private key of the KeyPackage's `init_key`.
    pub init_priv: &'a Secret32,
    /// Private key of the leaf node's `encryption_key`.
    pub encryption_priv: &'a Secret32,
    /// Ed25519 seed of the leaf node's `signature_key`.
    pub signature_priv: &'a Secret32,
}

/// Open the `EncryptedGroupSecrets` of `welcome` meant for `key_package`:
/// the sealed `GroupSecrets` is copied into `out` (which must hold the
/// ciphertext, `BufferTooSmall` otherwise), decrypted there and parsed.
/// `scratch` holds the HPKE `EncryptContext` (`encrypted_group_info` plus
/// 32 bytes). No entry for our KeyPackage, or one that does not decrypt, is
/// [`Error::Decrypt`].
pub fn open_group_secrets<'o>(
    welcome: &Welcome<'_>,
    key_package: &KeyPackage<'_>,
    init_priv: &Secret32,
    out: &'o mut [u8],
    scratch: &mut [u8],
) -> Result<GroupSecrets<'o>, Error> {
    let reference = key_package.reference()?;
    let entry = welcome.secrets_for(&reference)?.ok_or(Error::Decrypt)?;
    let body_len = entry.ciphertext.len().checked_sub(16).ok_or(Error::Decrypt)?;
    let (body, tag) = entry.ciphertext.split_at(body_len);
    let tag: [u8; 16] = tag.try_into().map_err(|_| Error::Decrypt)?;
    let needed = body_len;
    let buf = out.get_mut(..body_len).ok_or(Error::BufferTooSmall { needed })?;
    buf.copy_from_slice(body);
    let opened = Suite::from_id(welcome.cipher_suite)?.decrypt_with_label(
        init_priv,
        b"Welcome",
        welcome.encrypted_group_info,
        entry.kem_output,
        buf,
        &tag,
        scratch,
    );
    if let Err(e) = opened {
        buf.fill(0);
        return Err(e);
    }
    let gs = GroupSecrets::from_bytes(buf)?;
    if gs.joiner_secret.len() != NH || gs.path_secret.is_some_and(|p| p.len() != NH) {
        return Err(Error::Malformed);
    }
    Ok(gs)
}

/// The PSK secret of the PSKs a `GroupSecrets` lists (§8.4): all-zero for
/// none; external PSKs are looked up by `psk_id` in `external_psks`
/// (missing: [`Error::Unsupported`]); resumption PSKs are
/// [`Error::Unsupported`]; a `psk_nonce` that is not `Nh` bytes is
/// [`Error::Malformed`].
pub fn psk_secret_for(gs: &GroupSecrets<'_>, external_psks: &[ExternalPsk<'_>]) -> Result<Secret32, Error> {
    let mut inputs: heapless::Vec<PskInput<'_>, MAX_PSKS> = heapless::Vec::new();
    for id in gs.psks() {
        let id = id?;
        if id.psk_nonce.len() != NH {
            return Err(Error::Malformed);
        }
        let psk = match id.psk {
            Psk::External { psk_id } => {
                external_psks.iter().find(|p| p.id == psk_id).ok_or(Error::Unsupported)?.psk
            }
            Psk::Resumption { .. } => return Err(Error::Unsupported),
        };
        inputs.push(PskInput { id: id.as_bytes(), psk }).map_err(|_| Error::Capacity)?;
    }
    crate::key_schedule::psk_secret(&inputs)
}

/// `welcome_secret = DeriveSecret(KDF.Extract(joiner_secret, psk_secret), "welcome")`.
pub fn welcome_secret(joiner_secret: &[u8], psk_secret: &Secret32) -> Result<Secret32, Error> {
    let member = crypto::extract(joiner_secret, psk_secret.expose());
    crypto::derive_secret(member.expose(), b"welcome")
}

/// Decrypt and parse the GroupInfo of `welcome` with `welcome_secret`
/// (`welcome_key` / `welcome_nonce`, ChaCha20-Poly1305, empty AAD). `out`
/// must hold `encrypted_group_info` (`BufferTooSmall` otherwise). The
/// GroupInfo is not verified here.
pub fn open_group_info<'o>(
    welcome: &Welcome<'_>,
    welcome_secret: &Secret32,
    out: &'o mut [u8],
) -> Result<GroupInfo<'o>, Error> {
    let egi = welcome.encrypted_group_info;
    let buf = out.get_mut(..egi.len()).ok_or(Error::BufferTooSmall { needed: egi.len() })?;
    buf.copy_from_slice(egi);
    let (key, nonce) = welcome_key_nonce(welcome_secret)?;
    let len = match ChaChaPoly::open(&key, &nonce, &[], buf) {
        Ok(len) => len,
        Err(_) => {
            buf.fill(0);
            return Err(Error::Decrypt);
        }
    };
    GroupInfo::from_bytes(buf.get(..len).ok_or(Error::Decrypt)?)
}

/// `welcome_key` and `welcome_nonce` (§12.4.3.1):
/// `ExpandWithLabel(welcome_secret, "key" / "nonce", "", AEAD.Nk / Nn)`.
pub(crate) fn welcome_key_nonce(welcome_secret: &Secret32) -> Result<(Secret<[u8; NK]>, [u8; NN]), Error> {
    let mut key = Secret::new([0u8; NK]);
    crypto::expand_with_label(welcome_secret.expose(), b"key", &[], key.expose_mut())?;
    let mut nonce = [0u8; NN];
    crypto::expand_with_label(welcome_secret.expose(), b"nonce", &[], &mut nonce)?;
    Ok((key, nonce))
}

/// The data of an extension of type `ty` in an `extensions<V>` body.
pub fn find_extension(extensions: &[u8], ty: u16) -> Result<Option<&[u8]>, Error> {
    let mut r = Reader::new(extensions);
    while !r.is_empty() {
        let t = r.read_u16()?;
        let data = r.read_vec_varint()?;
        if t == ty {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// The secrets of the current epoch a member keeps (§8): everything the
/// key schedule produced except `joiner_secret` and `welcome_secret`,
/// which a member never needs again, and `encryption_secret`, which lives
/// on only as the root of the epoch's secret tree
/// ([`SenderRatchets`](crate::sender_ratchets::SenderRatchets), erased there
/// once used, §9.2). All zeroize on drop.
pub struct EpochSecretsKept {
    /// `sender_data_secret` (PrivateMessage sender data).
    pub sender_data: Secret32,
    /// `exporter_secret`.
    pub exporter: Secret32,
    /// `external_secret` (external commits).
    pub external: Secret32,
    /// `confirmation_key`.
    pub confirmation_key: Secret32,
    /// `membership_key`.
    pub membership_key: Secret32,
    /// `resumption_psk`.
    pub resumption_psk: Secret32,
    /// `epoch_authenticator`.
    pub epoch_authenticator: Secret32,
    /// `init_secret` of the next epoch.
    pub init: Secret32,
}

impl EpochSecretsKept {
    /// All-zero secrets (an empty slot).
    pub const fn zeroed() -> Self {
        const Z: Secret32 = Secret::new([0; NH]);
        EpochSecretsKept {
            sender_data: Z,
            exporter: Z,
            external: Z,
            confirmation_key: Z,
            membership_key: Z,
            resumption_psk: Z,
            epoch_authenticator: Z,
            init: Z,
        }
    }
}

impl Default for EpochSecretsKept {
    fn default() -> Self {
        Self::zeroed()
    }
}

impl From<EpochSecrets> for EpochSecretsKept {
    fn from(s: EpochSecrets) -> Self {
        // The kept secrets move over (no copy); `joiner`, `welcome` and
        // `encryption` are dropped (and zeroized) with the rest of `s`.
        EpochSecretsKept {
            sender_data: s.sender_data,
            exporter: s.exporter,
            external: s.external,
            confirmation_key: s.confirmation_key,
            membership_key: s.membership_key,
            resumption_psk: s.resumption_psk,
            epoch_authenticator: s.epoch_authenticator,
            init: s.init,
        }
    }
}

impl EpochSecretsKept {
    /// A second copy, made on purpose (a commit's spare slot).
    pub(crate) fn duplicate(&self) -> Self {
        EpochSecretsKept {
            sender_data: self.sender_data.duplicate(),
            exporter: self.exporter.duplicate(),
            external: self.external.duplicate(),
            confirmation_key: self.confirmation_key.duplicate(),
            membership_key: self.membership_key.duplicate(),
            resumption_psk: self.resumption_psk.duplicate(),
            epoch_authenticator: self.epoch_authenticator.duplicate(),
            init: self.init.duplicate(),
        }
    }
}

/// The former name of [`Group`], kept so that existing code compiles.
#[deprecated(since = "0.1.0", note = "renamed `Group` (`securemesh_mls_lite::Group`)")]
pub type JoinedGroup<
    const MAX_LEAVES: usize = 64,
    const LEAF_BYTES: usize = 384,
    const GROUP_ID_BYTES: usize = 64,
    const EXTENSION_BYTES: usize = 256,
> = Group<MAX_LEAVES, LEAF_BYTES, GROUP_ID_BYTES, EXTENSION_BYTES>;

/// A path node's private key.
pub struct PathKey {
    /// The parent node.
    pub node: NodeIndex,
    /// Its HPKE private key.
    pub private_key: Secret32,
}

impl<const L: usize, const B: usize, const G: usize, const E: usize> Group<L, B, G, E> {
    /// Scratch bytes [`join_into`](Self::join_into) needs at most for a
    /// Welcome of `welcome_len` bytes.
    pub const fn scratch_len(welcome_len: usize) -> usize {
        welcome_len
            .saturating_mul(3)
            .saturating_add(B.saturating_add(G).saturating_mul(2))
            .saturating_add(E)
            .saturating_add(512)
    }

    /// Join from `welcome` as the member `keys` describes (§12.4.3.1),
    /// building the state into `self`.
    ///
    /// `ratchet_tree` is the encoded `ratchet_tree` (as in the extension)
    /// when the GroupInfo does not carry the extension; the extension wins
    /// when both are present. `external_psks` are the external PSKs the
    /// Welcome may name. `scratch` holds the decrypted GroupSecrets and
    /// GroupInfo and the signature inputs:
    /// [`scratch_len`](Self::scratch_len)`(welcome.as_bytes().len())` bytes
    /// are always enough (`BufferTooSmall { needed }` otherwise).
    ///
    /// Transactional as far as a slot allows: every check that needs no
    /// tree (our entry, both decryptions, PSKs, capacities, the key
    /// schedule and the confirmation tag) runs before `self` is touched, so
    /// those failures leave it unchanged; a failure after the tree is
    /// decoded into the slot (tree validation, tree hash, GroupInfo
    /// signature, our leaf, path keys) leaves it empty, as after
    /// [`clear`](Self::clear). A slot is never left half-built. Join into a
    /// spare slot, not over a live group.
    ///
    /// ```
    /// use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
    /// use securemesh_mls_lite::{DefaultGroup, Error, JoinKeys};
    ///
    /// /// Join from the `MLSMessage` bytes of a Welcome whose GroupInfo
    /// /// carries the ratchet tree, naming no external PSK.
    /// fn join(slot: &mut DefaultGroup, welcome: &[u8], keys: &JoinKeys<'_>) -> Result<(), Error> {
    ///     let MlsMessageBody::Welcome(w) = MlsMessage::from_bytes(welcome)?.body else {
    ///         return Err(Error::Malformed);
    ///     };
    ///     let mut scratch = vec![0u8; DefaultGroup::scratch_len(welcome.len())];
    ///     slot.join_into(&w, keys, None, &[], &mut scratch)
    ///     // Persist the group now, before acting on it.
    /// }
    /// ```
    ///
    /// The crate documentation ("Using a group") joins a published group.
    pub fn join_into(
        &mut self,
        welcome: &Welcome<'_>,
        keys: &JoinKeys<'_>,
        ratchet_tree: Option<&[u8]>,
        external_psks: &[ExternalPsk<'_>],
        scratch: &mut [u8],
    ) -> Result<(), Error> {
        // Phase 1: everything that needs no tree, in scratch only.
        let reference = keys.key_package.reference()?;
        let entry = welcome.secrets_for(&reference)?.ok_or(Error::Decrypt)?;
        let egi_len = welcome.encrypted_group_info.len();
        let gs_len = entry.ciphertext.len();
        let work_len = egi_len.saturating_add(Self::scratch_len(0));
        let needed = gs_len.saturating_add(egi_len).saturating_add(work_len);
        if scratch.len() < needed {
            return Err(Error::BufferTooSmall { needed });
        }
        let (gs_buf, rest) = scratch.split_at_mut_checked(gs_len).ok_or(Error::BufferTooSmall { needed })?;
        let (gi_buf, work) = rest.split_at_mut_checked(egi_len).ok_or(Error::BufferTooSmall { needed })?;
        let result = self.join_with(welcome, keys, ratchet_tree, external_psks, gs_buf, gi_buf, work);
        // The plaintexts (joiner and path secrets, the GroupInfo) do not
        // outlive the call.
        gs_buf.fill(0);
        gi_buf.fill(0);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn join_with(
        &mut self,
        welcome: &Welcome<'_>,
        keys: &JoinKeys<'_>,
        ratchet_tree: Option<&[u8]>,
        external_psks: &[ExternalPsk<'_>],
        gs_buf: &mut [u8],
        gi_buf: &mut [u8],
        work: &mut [u8],
    ) -> Result<(), Error> {
        let suite = Suite::from_id(welcome.cipher_suite)?;
        let gs = open_group_secrets(welcome, &keys.key_package, keys.init_priv, gs_buf, work)?;
        let psk_secret = psk_secret_for(&gs, external_psks)?;
        let ws = welcome_secret(gs.joiner_secret, &psk_secret)?;
        let gi = open_group_info(welcome, &ws, gi_buf)?;
        let gc = gi.group_context;
        if gc.tree_hash.len() != NH || gc.confirmed_transcript_hash.len() > NH {
            return Err(Error::Malformed);
        }
        if gc.group_id.len() > G || gc.extensions.len() > E {
            return Err(Error::Capacity);
        }
        let gc_len = gc.encode(work)?;
        let joiner = Secret32::from_slice(gs.joiner_secret).ok_or(Error::Malformed)?;
        let epoch_secrets = EpochSecrets::from_joiner(
            joiner,
            psk_secret.expose(),
            work.get(..gc_len).ok_or(Error::Capacity)?,
        )?;
        verify_confirmation_tag(
            epoch_secrets.confirmation_key.expose(),
            gc.confirmed_transcript_hash,
            gi.confirmation_tag,
        )?;
        let tree_bytes = match find_extension(gi.extensions, RATCHET_TREE_EXTENSION)? {
            Some(t) => t,
            None => ratchet_tree.ok_or(Error::Malformed)?,
        };
        // Our own keys must be those of the KeyPackage's leaf.
        let own = &keys.key_package.leaf_node;
        if suite.public_key(keys.encryption_priv)?[..] != *own.encryption_key {
            return Err(Error::Malformed);
        }
        let signing = Ed25519::signing_key(keys.signature_priv);
        if Ed25519::verifying_key(&signing) != *own.signature_key {
            return Err(Error::Malformed);
        }

        // Phase 2: build into the slot; on error empty it.
        let built = self.build(suite, &gi, &gs, tree_bytes, keys, epoch_secrets, work);
        if built.is_err() {
            self.clear();
        }
        built
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &mut self,
        suite: Suite,
        gi: &GroupInfo<'_>,
        gs: &GroupSecrets<'_>,
        tree_bytes: &[u8],
        keys: &JoinKeys<'_>,
        epoch_secrets: EpochSecrets,
        work: &mut [u8],
    ) -> Result<(), Error> {
        self.adopt_group_info(gi, tree_bytes, work)?;
        if self.suite != suite {
            return Err(Error::Malformed);
        }
        let tree = &self.tree;
        let own_bytes = keys.key_package.leaf_node.as_bytes();
        let own_leaf = (0..tree.leaf_count())
            .find(|i| tree.leaf(*i).is_some_and(|l| l.as_bytes() == own_bytes))
            .ok_or(Error::Malformed)?;

        let mut path_keys: heapless::Vec<PathKey, MAX_PATH_KEYS> = heapless::Vec::new();
        if let Some(ps) = gs.path_secret {
            if own_leaf == gi.signer {
                return Err(Error::Malformed);
            }
            let signer_node = tree_math::leaf_to_node(gi.signer).ok_or(Error::Malformed)?;
            let own_node = tree_math::leaf_to_node(own_leaf).ok_or(Error::Malformed)?;
            let lca = tree_math::direct_path(own_node, tree.leaf_count())
                .find(|p| tree_math::is_in_subtree(signer_node, *p))
                .ok_or(Error::Malformed)?;
            let mut filtered: heapless::Vec<NodeIndex, MAX_PATH_KEYS> = heapless::Vec::new();
            let mut overflow = false;
            tree.filtered_direct_path(gi.signer, &mut |p, _| overflow |= filtered.push(p).is_err());
            if overflow {
                return Err(Error::Capacity);
            }
            let start = filtered.iter().position(|p| *p == lca).ok_or(Error::Malformed)?;
            let mut secret = Secret32::from_slice(ps).ok_or(Error::Malformed)?;
            for (i, node) in filtered.iter().skip(start).enumerate() {
                if i > 0 {
                    secret = next_path_secret(&secret)?;
                }
                let (private_key, public_key) = node_key_pair_in(suite, &secret)?;
                match tree.node(*node) {
                    Node::Parent(p) if ct_eq(&p.encryption_key, &public_key) => {}
                    _ => return Err(Error::Decrypt),
                }
                path_keys.push(PathKey { node: *node, private_key }).map_err(|_| Error::Capacity)?;
            }
        }

        self.suite = suite;
        self.own_leaf = own_leaf;
        self.leaf_private_key = keys.encryption_priv.duplicate();
        self.signature_private_key = keys.signature_priv.duplicate();
        self.path_keys = path_keys;
        self.ratchets.reset(&epoch_secrets.encryption, self.tree.leaf_count())?;
        self.secrets = epoch_secrets.into();
        self.joined = true;
        Ok(())
    }

    /// Empty `self`, then take the public state of the group from `gi`
    /// and the encoded tree `tree_bytes`: the tree (its hash must be the
    /// GroupContext's; validated as a joiner must, §12.4.3.1), the signer's
    /// signature over the GroupInfo, group id, epoch, extensions and both
    /// transcript hashes (the interim one from the confirmation tag). No
    /// member keys and no epoch secrets: the caller's. On error `self` may
    /// be partly built: the caller empties it.
    pub(crate) fn adopt_group_info(
        &mut self,
        gi: &GroupInfo<'_>,
        tree_bytes: &[u8],
        work: &mut [u8],
    ) -> Result<(), Error> {
        let gc = gi.group_context;
        if gc.tree_hash.len() != NH || gc.confirmed_transcript_hash.len() > NH {
            return Err(Error::Malformed);
        }
        self.clear();
        self.suite = Suite::from_id(gc.cipher_suite)?;
        self.tree.decode(tree_bytes)?;
        let tree = &self.tree;
        if !ct_eq(&tree.tree_hash(tree.root())?, gc.tree_hash) {
            return Err(Error::Malformed);
        }
        tree.validate(gc.group_id, work)?;
        if gi.signer >= tree.leaf_count() {
            return Err(Error::Malformed);
        }
        let signer = tree.leaf(gi.signer).ok_or(Error::Malformed)?;
        gi.verify(signer.signature_key, work)?;
        let interim = InterimTranscriptHashInput { confirmation_tag: gi.confirmation_tag }
            .interim_transcript_hash(gc.confirmed_transcript_hash)?;
        self.group_id = heapless::Vec::from_slice(gc.group_id).map_err(|_| Error::Capacity)?;
        self.epoch = gc.epoch;
        self.tree_hash = gc.tree_hash.try_into().map_err(|_| Error::Malformed)?;
        self.confirmed_transcript_hash =
            heapless::Vec::from_slice(gc.confirmed_transcript_hash).map_err(|_| Error::Capacity)?;
        self.interim_transcript_hash = interim;
        self.extensions = heapless::Vec::from_slice(gc.extensions).map_err(|_| Error::Capacity)?;
        #[cfg(feature = "ml-dsa")]
        self.check_required_capabilities()?;
        Ok(())
    }
}

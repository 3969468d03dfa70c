//! Processing proposals and commits as a member (RFC 9420 §12.1–12.4.2).
//!
//! A member that joined ([`Group`]) follows the group by
//!
//! - [`Group::process_proposal`]: authenticate a proposal sent as a
//!   PublicMessage (signature, and membership tag for a member sender) or a
//!   PrivateMessage (sender data, handshake ratchet of the secret tree,
//!   signature) and cache it by its `ProposalRef` in a bounded
//!   [`ProposalCache`], for a later commit that lists it by reference;
//! - [`Group::process_commit`]: authenticate a commit (same two
//!   framings), resolve its proposals (by value and by reference), validate
//!   them, apply them to a provisional tree in the order of §12.2
//!   (GroupContextExtensions, Updates, Removes with truncation, Adds into
//!   the leftmost blank leaf with unmerged-leaf bookkeeping), merge the
//!   UpdatePath (parent hashes, new committer leaf), decrypt our path
//!   secret with the provisional GroupContext as context (leaves added by
//!   this commit excluded from the resolutions; the old confirmed
//!   transcript hash, which the new one depends on), derive the new path keys
//!   and the commit secret, run the key schedule of the new epoch (PSK
//!   proposals with caller-provisioned external PSKs), verify the
//!   confirmation tag and update both transcript hashes.
//!
//! The tree part of Add, Update and Remove is also available on its own,
//! for one proposal at a time, as [`apply_to_tree`].
//!
//! Supported proposals: Add, Update, Remove, PreSharedKey (external PSKs
//! and `application` resumption PSKs, looked up in a caller-kept
//! [`PskStore`]; the current epoch's resumption PSK is known to the group)
//! and GroupContextExtensions. Proposal senders may be members, external
//! senders listed in the `external_senders` GroupContext extension and new
//! members proposing their own Add. External commits (sender
//! `new_member_commit` with an ExternalInit proposal, §12.4.3.2) are
//! processed too: the joiner takes the leftmost blank leaf and the epoch's
//! `init_secret` comes from the HPKE export with the external key pair.
//! ReInit proposals and branch/reinit resumption PSKs are
//! [`Error::Unsupported`], as is a commit by our own leaf (our own commit
//! is applied with [`Group::merge_pending_commit`] once the delivery
//! service has ordered it, not processed) or an Update of our own leaf
//! other than the one we proposed in this epoch (whose key we keep).
//!
//! # Transactions and the spare slot
//!
//! The state is large (about 60 KB with the default capacities, the tree
//! dominates), so neither a copy on the stack nor a heap copy is an option.
//! The caller lends a **second slot** of the same type (`spare`, e.g. a
//! second `static`): the commit is computed into `spare` (a node-by-node
//! copy of the current state, then the changes), and only when every check
//! passed are the two slots swapped ([`core::mem::swap`] swaps in place,
//! without a tree-sized temporary). On any error `self` is untouched and
//! `spare` is emptied; after success `spare` is emptied too (the previous
//! epoch's secrets are zeroized). Big temporaries (the decrypted
//! PrivateMessage, signature inputs, the GroupContext) come from `scratch`:
//! [`Group::commit_scratch_len`] bytes are always enough.
//!
//! A commit that removes us is authenticated (signature, membership tag)
//! and reported as [`CommitEvent::Removed`]; the state is left as it was
//! (the new epoch cannot be computed without a path secret for us) and the
//! caller should drop the group.
//!
//! Not checked here (caller policy, as for the join): KeyPackage
//! lifetimes, required capabilities, credential trust.
//!
//! PrivateMessage keys come from the group's secret-tree state
//! ([`SenderRatchets`](crate::sender_ratchets::SenderRatchets)): each
//! generation opens one message, and a proposal's key is used up when the
//! proposal is cached (a commit moves to a new epoch and a new secret
//! tree).

use crate::crypto::suite::HpkePublicKey;
use crate::crypto::{NH, Secret32};
use crate::error::Error;
use crate::framing::{AuthenticatedContent, Content, Sender, SenderData};
use crate::group::Group;
use crate::key_schedule::{self, EpochSecrets, GroupContext, PskInput};
use crate::messages::{Proposal, ProposalBody, ProposalOrRef, Psk, ResumptionPskUsage};
use crate::mls_message::{MlsMessage, MlsMessageBody};
use crate::secret_tree::RatchetKind;
use crate::transcript::{TranscriptHashes, verify_confirmation_tag};
use crate::tree::node::{LeafNode, LeafNodeSource};
use crate::tree::{Node, Parent, RatchetTree};
use crate::tree_math::{self, NodeIndex};
use crate::treekem::{UpdatePath, next_path_secret, node_key_pair_in};
use crate::welcome::{ExternalPsk, MAX_PATH_KEYS, MAX_PSKS, PathKey, find_extension};
use securemesh_core::codec::Reader;
use securemesh_core::crypto::Ed25519SigningKey;
use securemesh_core::ct_eq;

/// Extension type of `external_senders` (RFC 9420 §12.1.8.1).
pub const EXTERNAL_SENDERS_EXTENSION: u16 = 0x0005;

/// Most proposals one commit may cover.
pub const MAX_COMMIT_PROPOSALS: usize = 32;

/// What a processed commit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitEvent {
    /// The group moved to this epoch.
    NewEpoch {
        /// The new epoch number.
        epoch: u64,
    },
    /// The commit removes us; the state was left unchanged.
    Removed,
}

/// A resumption PSK the caller kept (`resumption_psk` of an earlier
/// epoch, e.g. from [`Group::secrets`] before each commit).
#[derive(Clone, Copy)]
pub struct ResumptionPsk<'a> {
    /// `psk_group_id`.
    pub group_id: &'a [u8],
    /// `psk_epoch`.
    pub epoch: u64,
    /// The epoch's `resumption_psk`.
    pub psk: &'a Secret32,
}

impl core::fmt::Debug for ResumptionPsk<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ResumptionPsk")
            .field("group_id", &self.group_id)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// The PSKs a commit's PreSharedKey proposals may name: external PSKs the
/// caller provisioned, and resumption PSKs (usage `application`) of
/// earlier epochs the caller kept. The current epoch's resumption PSK is
/// always known to the group and need not be listed.
#[derive(Clone, Copy, Debug, Default)]
pub struct PskStore<'a> {
    /// External PSKs, by `psk_id`.
    pub external: &'a [ExternalPsk<'a>],
    /// Resumption PSKs, by group id and epoch.
    pub resumption: &'a [ResumptionPsk<'a>],
}

/// A [`ProposalCache`] with the default capacities (16 proposals, 8192
/// bytes), so that `DefaultProposalCache::new()` needs no annotation.
pub type DefaultProposalCache = ProposalCache;

/// One cached proposal.
#[derive(Clone, Copy, Debug)]
struct CachedProposal {
    reference: [u8; NH],
    sender: Sender,
    start: usize,
    len: usize,
}

/// Proposals received in the current epoch, by `ProposalRef`: at most `N`
/// proposals whose encodings total at most `BYTES` bytes (beyond that:
/// [`Error::Capacity`], nothing stored and nothing forgotten). Emptied by a
/// successful commit and when a proposal of a new epoch is cached.
///
/// ```
/// use securemesh_mls_lite::commit::ProposalCache;
/// let cache: ProposalCache = ProposalCache::new();
/// assert!(cache.is_empty());
/// ```
#[derive(Debug)]
pub struct ProposalCache<const N: usize = 16, const BYTES: usize = 8192> {
    epoch: u64,
    entries: heapless::Vec<CachedProposal, N>,
    bytes: heapless::Vec<u8, BYTES>,
}

impl<const N: usize, const BYTES: usize> Default for ProposalCache<N, BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const BYTES: usize> ProposalCache<N, BYTES> {
    /// An empty cache.
    pub const fn new() -> Self {
        ProposalCache { epoch: 0, entries: heapless::Vec::new(), bytes: heapless::Vec::new() }
    }

    /// Forget every proposal.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes.clear();
    }

    /// Number of cached proposals.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no proposal is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The proposal cached under `reference` in `epoch`, with its sender.
    pub fn get(&self, epoch: u64, reference: &[u8]) -> Option<(Sender, Proposal<'_>)> {
        if epoch != self.epoch {
            return None;
        }
        let e = self.entries.iter().find(|e| e.reference[..] == *reference)?;
        let bytes = self.bytes.get(e.start..e.start.checked_add(e.len)?)?;
        Proposal::from_bytes(bytes).ok().map(|p| (e.sender, p))
    }

    /// The references of the proposals cached for `epoch`, in the order
    /// they were cached.
    pub fn references(&self, epoch: u64) -> impl Iterator<Item = [u8; NH]> + '_ {
        let entries = if epoch == self.epoch { &self.entries[..] } else { &[] };
        entries.iter().map(|e| e.reference)
    }

    /// Bytes of the proposals cached for `epoch` (what
    /// [`Group::send_commit_scratch_len`] counts for a commit that covers
    /// them).
    pub fn encoded_len(&self, epoch: u64) -> usize {
        if epoch == self.epoch { self.bytes.len() } else { 0 }
    }

    /// Cache `proposal` (its encoding) of `epoch`, sent by `sender`, under
    /// `reference`.
    pub(crate) fn insert(
        &mut self,
        epoch: u64,
        reference: [u8; NH],
        sender: Sender,
        proposal: &[u8],
    ) -> Result<(), Error> {
        // A proposal of a new epoch replaces the cached ones, but only once
        // it is known to fit: a refused insert changes nothing.
        let new_epoch = epoch != self.epoch;
        if !new_epoch && self.entries.iter().any(|e| e.reference == reference) {
            return Ok(());
        }
        let (count, used) = if new_epoch { (0, 0) } else { (self.entries.len(), self.bytes.len()) };
        // `used <= BYTES`, so the subtraction never saturates.
        if count >= N || BYTES.saturating_sub(used) < proposal.len() {
            return Err(Error::Capacity);
        }
        if new_epoch {
            self.clear();
            self.epoch = epoch;
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(proposal).map_err(|_| Error::Capacity)?;
        self.entries
            .push(CachedProposal { reference, sender, start, len: proposal.len() })
            .map_err(|_| Error::Capacity)?;
        Ok(())
    }
}

/// The signature key of external sender `index` in an `external_senders`
/// extension body (`ExternalSender external_senders<V>`).
fn external_sender_key(extensions: &[u8], index: u32) -> Result<[u8; 32], Error> {
    let data = find_extension(extensions, EXTERNAL_SENDERS_EXTENSION)?.ok_or(Error::Malformed)?;
    let mut outer = Reader::new(data);
    let list = outer.read_vec_varint()?;
    outer.finish()?;
    let mut r = Reader::new(list);
    let mut i = 0u32;
    while !r.is_empty() {
        let key = r.read_vec_varint()?;
        match r.read_u16()? {
            1 | 2 => {
                r.read_vec_varint()?;
            }
            _ => return Err(Error::Unsupported),
        }
        if i == index {
            return key.try_into().map_err(|_| Error::Unsupported);
        }
        i = i.checked_add(1).ok_or(Error::Malformed)?;
    }
    Err(Error::Malformed)
}

/// Merge `path` from `sender` into `tree` in place (§12.4.2, as
/// [`RatchetTree::merge_update_path`] but without a copy of the tree: the
/// caller works on a provisional tree it discards on error).
fn merge_path<const L: usize, const B: usize>(
    tree: &mut RatchetTree<L, B>,
    sender: u32,
    path: &UpdatePath<'_>,
    group_id: &[u8],
    scratch: &mut [u8],
) -> Result<(), Error> {
    let filtered = filtered_path(tree, sender)?;
    let mut n = 0usize;
    for node in path.nodes() {
        node?;
        n = n.checked_add(1).ok_or(Error::Malformed)?;
    }
    if n != filtered.len() {
        return Err(Error::Malformed);
    }
    let mut keys = path.nodes().map(|n| n.and_then(|n| HpkePublicKey::from_slice(n.encryption_key)));
    let above = set_path_keys(tree, sender, &filtered, &mut keys)?;
    let expected: &[u8] = above.as_ref().map_or(&[], |h| &h[..]);
    match path.leaf_node.source {
        LeafNodeSource::Commit { parent_hash } if parent_hash == expected => {}
        _ => return Err(Error::Malformed),
    }
    path.leaf_node.verify(group_id, sender, scratch)?;
    tree.set_leaf(sender, Some(path.leaf_node.as_bytes()))
}

/// The filtered direct path of `leaf` (§4.1.2), each node with its copath
/// child.
pub(crate) fn filtered_path<const L: usize, const B: usize>(
    tree: &RatchetTree<L, B>,
    leaf: u32,
) -> Result<heapless::Vec<(NodeIndex, NodeIndex), MAX_PATH_KEYS>, Error> {
    let mut filtered = heapless::Vec::new();
    let mut overflow = false;
    tree.filtered_direct_path(leaf, &mut |p, c| overflow |= filtered.push((p, c)).is_err());
    if overflow {
        return Err(Error::Capacity);
    }
    Ok(filtered)
}

/// Put a new path into `tree` (§7.9): blank the direct path of `sender`,
/// give each node of its filtered direct path (`filtered`, with the copath
/// children) the next public key of `keys`, and set their parent hashes
/// top-down. Returns the parent hash the sender's new leaf must carry
/// (`None` for an empty filtered path).
pub(crate) fn set_path_keys<const L: usize, const B: usize>(
    tree: &mut RatchetTree<L, B>,
    sender: u32,
    filtered: &[(NodeIndex, NodeIndex)],
    keys: &mut dyn Iterator<Item = Result<HpkePublicKey, Error>>,
) -> Result<Option<[u8; NH]>, Error> {
    let width = tree.leaf_count();
    let sender_node = tree_math::leaf_to_node(sender).ok_or(Error::Malformed)?;
    for p in tree_math::direct_path(sender_node, width) {
        tree.set_parent(p, None)?;
    }
    for (p, _) in filtered {
        let parent = Parent {
            encryption_key: keys.next().ok_or(Error::Malformed)??,
            parent_hash: heapless::Vec::new(),
            unmerged: heapless::Vec::new(),
        };
        tree.set_parent(*p, Some(parent))?;
    }
    let mut above: Option<[u8; NH]> = None;
    for (p, copath) in filtered.iter().rev() {
        if let (Some(h), Node::Parent(existing)) = (above, tree.node(*p)) {
            let mut updated = existing.clone();
            updated.parent_hash = heapless::Vec::from_slice(&h).map_err(|_| Error::Capacity)?;
            tree.set_parent(*p, Some(updated))?;
        }
        above = Some(tree.parent_hash(*p, *copath)?);
    }
    Ok(above)
}

/// Add `new` at the leftmost blank leaf (extending the tree when none is
/// blank) and list it as unmerged at the non-blank parents above it (§7.7).
/// Its keys must not be used by another leaf.
pub(crate) fn add_leaf<const L: usize, const B: usize>(
    tree: &mut RatchetTree<L, B>,
    new: &crate::tree::node::LeafNode<'_>,
) -> Result<u32, Error> {
    let width = tree.leaf_count();
    for i in 0..width {
        if let Some(l) = tree.leaf(i)
            && (l.encryption_key == new.encryption_key || l.signature_key == new.signature_key)
        {
            return Err(Error::Malformed);
        }
    }
    let leaf = match (0..width).find(|i| tree.leaf(*i).is_none()) {
        Some(i) => i,
        None => {
            tree.extend()?;
            width
        }
    };
    let node = tree_math::leaf_to_node(leaf).ok_or(Error::Capacity)?;
    tree.set_leaf(leaf, Some(new.as_bytes()))?;
    for x in tree_math::direct_path(node, tree.leaf_count()) {
        if let Node::Parent(parent) = tree.node(x) {
            let mut updated = parent.clone();
            let at = updated.unmerged.iter().position(|u| *u > leaf).unwrap_or(updated.unmerged.len());
            updated.unmerged.insert(at, leaf).map_err(|_| Error::Capacity)?;
            tree.set_parent(x, Some(updated))?;
        }
    }
    Ok(leaf)
}

/// Update (§12.1.2): replace the leaf of `sender` and blank its direct path.
fn update_leaf<const L: usize, const B: usize>(
    tree: &mut RatchetTree<L, B>,
    sender: u32,
    leaf: &crate::tree::node::LeafNode<'_>,
) -> Result<(), Error> {
    let node = tree_math::leaf_to_node(sender).ok_or(Error::Malformed)?;
    tree.set_leaf(sender, Some(leaf.as_bytes()))?;
    for x in tree_math::direct_path(node, tree.leaf_count()) {
        tree.set_parent(x, None)?;
    }
    Ok(())
}

/// Remove (§12.1.3), without the truncation (which follows all Removes of
/// a commit): blank the leaf of `removed` and its direct path.
pub(crate) fn blank_leaf<const L: usize, const B: usize>(
    tree: &mut RatchetTree<L, B>,
    removed: u32,
) -> Result<(), Error> {
    let node = tree_math::leaf_to_node(removed).ok_or(Error::Malformed)?;
    tree.set_leaf(removed, None)?;
    for x in tree_math::direct_path(node, tree.leaf_count()) {
        tree.set_parent(x, None)?;
    }
    Ok(())
}

/// What [`apply_to_tree`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeChange {
    /// An Add put the new member at this leaf.
    Added(u32),
    /// An Update replaced the sender's leaf.
    Updated(u32),
    /// A Remove blanked this leaf (and the tree was truncated).
    Removed(u32),
}

/// Apply one Add, Update or Remove proposal from member `sender` to `tree`
/// with the tree operations of commit processing (§12.1.1–12.1.3): an Add
/// takes the leftmost blank leaf (extending the tree when none is blank)
/// and is listed as unmerged at the non-blank parents above it; an Update
/// replaces the sender's leaf and blanks its direct path; a Remove blanks
/// the removed leaf and its direct path and truncates the tree. Other
/// proposal types are [`Error::Unsupported`].
///
/// This is the tree part only: signatures, leaf sources, capabilities and
/// the other proposal checks of [`Group::process_commit`] are not
/// run (the caller validates; an Update's leaf signature needs the group
/// id). On error `tree` may be partly changed: apply to a copy.
pub fn apply_to_tree<const L: usize, const B: usize>(
    tree: &mut RatchetTree<L, B>,
    proposal: &Proposal<'_>,
    sender: u32,
) -> Result<TreeChange, Error> {
    match proposal.body {
        ProposalBody::Add(kp) => add_leaf(tree, &kp.leaf_node).map(TreeChange::Added),
        ProposalBody::Update(leaf) => {
            if tree.leaf(sender).is_none() {
                return Err(Error::Malformed);
            }
            update_leaf(tree, sender, &leaf)?;
            Ok(TreeChange::Updated(sender))
        }
        ProposalBody::Remove { removed } => {
            if tree.leaf(removed).is_none() {
                return Err(Error::Malformed);
            }
            blank_leaf(tree, removed)?;
            tree.truncate();
            Ok(TreeChange::Removed(removed))
        }
        _ => Err(Error::Unsupported),
    }
}

/// The proposals of a commit, each as its encoding and its sender, in
/// the commit's order: by value from `list` (sent by `committer`), by
/// reference from `cache` (§12.4). A reference the cache lacks, or any
/// reference in an external commit, is [`Error::Malformed`].
pub(crate) fn resolve<'p, const N: usize, const PB: usize>(
    list: impl Iterator<Item = Result<ProposalOrRef<'p>, Error>> + 'p,
    cache: &'p ProposalCache<N, PB>,
    epoch: u64,
    committer: Sender,
) -> impl Iterator<Item = Result<(&'p [u8], Sender), Error>> + 'p {
    list.map(move |por| match por? {
        ProposalOrRef::Proposal { proposal, .. } => Ok((proposal.as_bytes(), committer)),
        ProposalOrRef::Reference { .. } if committer == Sender::NewMemberCommit => Err(Error::Malformed),
        ProposalOrRef::Reference { reference, .. } => {
            let (sender, proposal) = cache.get(epoch, reference).ok_or(Error::Malformed)?;
            Ok((proposal.as_bytes(), sender))
        }
    })
}

/// What the proposals of a commit ask for, once checked
/// ([`Group::check_proposals`]).
pub(crate) struct CheckedProposals<'p, 's> {
    /// An UpdatePath is required (§12.4: an Update, Remove or
    /// GroupContextExtensions proposal, or no proposal at all).
    pub(crate) path_required: bool,
    /// The new GroupContext extensions (`extensions<V>` body), if proposed.
    pub(crate) gce: Option<&'p [u8]>,
    /// The PSKs to inject, in order.
    pub(crate) psks: heapless::Vec<PskInput<'s>, MAX_PSKS>,
    /// A Remove names our leaf.
    pub(crate) removed_us: bool,
    /// The `kem_output` of the ExternalInit proposal, if any.
    pub(crate) external_init: Option<&'p [u8]>,
}

impl<const L: usize, const B: usize, const G: usize, const E: usize> Group<L, B, G, E> {
    /// Scratch bytes [`process_commit`](Self::process_commit) and
    /// [`process_proposal`](Self::process_proposal) need at most for a
    /// message of `message_len` bytes.
    pub const fn commit_scratch_len(message_len: usize) -> usize {
        message_len
            .saturating_mul(3)
            .saturating_add(B.saturating_mul(4))
            .saturating_add(G.saturating_add(E).saturating_mul(3))
            .saturating_add(2048)
    }

    /// Make `self` a copy of `other`, field by field (no state-sized
    /// temporary).
    pub(crate) fn copy_from(&mut self, other: &Self) -> Result<(), Error> {
        self.joined = other.joined;
        self.suite = other.suite;
        self.group_id.clone_from(&other.group_id);
        self.epoch = other.epoch;
        self.tree_hash = other.tree_hash;
        self.confirmed_transcript_hash.clone_from(&other.confirmed_transcript_hash);
        self.interim_transcript_hash = other.interim_transcript_hash;
        self.extensions.clone_from(&other.extensions);
        self.tree.copy_from(&other.tree);
        self.own_leaf = other.own_leaf;
        self.leaf_private_key = other.leaf_private_key.duplicate();
        self.signature_private_key = other.signature_private_key.duplicate();
        #[cfg(feature = "ml-dsa")]
        {
            self.ml_dsa_private_key = other.ml_dsa_private_key.as_ref().map(Secret32::duplicate);
        }
        self.signing_key = other.signing_key.as_ref().map(Ed25519SigningKey::duplicate);
        self.path_keys.clear();
        for k in &other.path_keys {
            self.path_keys
                .push(PathKey { node: k.node, private_key: k.private_key.duplicate() })
                .map_err(|_| Error::Capacity)?;
        }
        self.pending_update = other.pending_update.as_ref().map(Secret32::duplicate);
        self.secrets = other.secrets.duplicate();
        Ok(())
    }

    /// The signature key of `sender` for `content` in this epoch.
    fn sender_key(&self, sender: Sender, content: &Content<'_>) -> Result<[u8; 32], Error> {
        match sender {
            Sender::Member(i) => self.tree.leaf(i).map(|l| *l.signature_key).ok_or(Error::Malformed),
            Sender::External(i) => external_sender_key(&self.extensions, i),
            Sender::NewMemberProposal => match content {
                Content::Proposal(Proposal { body: ProposalBody::Add(kp), .. }) => {
                    Ok(*kp.leaf_node.signature_key)
                }
                _ => Err(Error::Malformed),
            },
            Sender::NewMemberCommit => match content {
                Content::Commit(c) => c.path.map(|p| *p.leaf_node.signature_key).ok_or(Error::Malformed),
                _ => Err(Error::Malformed),
            },
        }
    }

    /// Authenticate a PublicMessage or PrivateMessage of the current
    /// epoch, changing nothing. For a PrivateMessage also the sender data,
    /// whose generation the caller consumes
    /// ([`SenderRatchets::consume`](crate::sender_ratchets::SenderRatchets::consume))
    /// once it has used the message. A PrivateMessage from leaf
    /// `refuse_sender` is [`Error::Malformed`] (checked on the sender data,
    /// before any content key is derived).
    pub(crate) fn authenticate<'p>(
        &self,
        msg: &MlsMessage<'p>,
        refuse_sender: Option<u32>,
        plain: &'p mut [u8],
        work: &mut [u8],
    ) -> Result<(AuthenticatedContent<'p>, Option<SenderData>), Error> {
        let gc = self.group_context();
        match msg.body {
            MlsMessageBody::PublicMessage(pm) => {
                let key = self.sender_key(pm.content.sender, &pm.content.content)?;
                Ok((pm.verify(&key, &gc, &self.secrets.membership_key, work)?, None))
            }
            MlsMessageBody::PrivateMessage(pm) => {
                if pm.group_id != &self.group_id[..] || pm.epoch != self.epoch {
                    return Err(Error::Malformed);
                }
                let keys = |leaf, generation, kind| {
                    if refuse_sender == Some(leaf) {
                        return Err(Error::Malformed);
                    }
                    self.ratchets.key_nonce(leaf, generation, kind)
                };
                let (sd, ac) = pm.unprotect(
                    &self.secrets.sender_data,
                    &keys,
                    |leaf| self.tree.leaf(leaf).map(|l| *l.signature_key),
                    &gc,
                    plain,
                    work,
                )?;
                Ok((ac, Some(sd)))
            }
            _ => Err(Error::Malformed),
        }
    }

    /// The checks every received message starts with: the slot holds a
    /// group, `scratch` has `needed` bytes, `message` parses; then the
    /// scratch split into the plaintext buffer (the message's length) and
    /// the working space.
    pub(crate) fn prepare<'m, 's>(
        &self,
        message: &'m [u8],
        needed: usize,
        scratch: &'s mut [u8],
    ) -> Result<(MlsMessage<'m>, &'s mut [u8], &'s mut [u8]), Error> {
        if !self.joined {
            return Err(Error::Malformed);
        }
        if scratch.len() < needed {
            return Err(Error::BufferTooSmall { needed });
        }
        let msg = MlsMessage::from_bytes(message)?;
        let (plain, work) =
            scratch.split_at_mut_checked(message.len()).ok_or(Error::BufferTooSmall { needed })?;
        Ok((msg, plain, work))
    }

    /// Authenticate the proposal in `message` (an `MLSMessage` holding a
    /// PublicMessage or PrivateMessage of the current epoch) and cache it
    /// by its `ProposalRef`, which is returned. `scratch`:
    /// [`commit_scratch_len`](Self::commit_scratch_len)`(message.len())`
    /// bytes. On error the cache and the group are unchanged; on success a
    /// PrivateMessage's handshake key is used up (a replay is
    /// [`Error::Decrypt`]).
    ///
    /// ```
    /// use securemesh_core::testing::TestRng;
    /// use securemesh_mls_lite::testing::member_pair;
    /// use securemesh_mls_lite::{DefaultGroup, DefaultProposalCache};
    /// let (mut a, mut b): (Box<DefaultGroup>, Box<DefaultGroup>) = (Box::default(), Box::default());
    /// member_pair(b"agents", &mut TestRng::new(1), [&mut *a, &mut *b])?;
    /// let mut cache: Box<DefaultProposalCache> = Box::default();
    ///
    /// let proposal = [0u8; 40]; // not an MLSMessage: refused, nothing cached
    /// let mut scratch = vec![0u8; DefaultGroup::commit_scratch_len(proposal.len())];
    /// assert!(a.process_proposal(&proposal, &mut cache, &mut scratch).is_err());
    /// assert!(cache.is_empty());
    /// # Ok::<(), securemesh_mls_lite::Error>(())
    /// ```
    pub fn process_proposal<const N: usize, const PB: usize>(
        &mut self,
        message: &[u8],
        cache: &mut ProposalCache<N, PB>,
        scratch: &mut [u8],
    ) -> Result<[u8; NH], Error> {
        let (msg, plain, work) = self.prepare(message, Self::commit_scratch_len(message.len()), scratch)?;
        let result = (|| {
            let (ac, sd) = self.authenticate(&msg, None, plain, work)?;
            let Content::Proposal(p) = ac.content.content else { return Err(Error::Malformed) };
            let reference = ac.proposal_ref()?;
            cache.insert(self.epoch, reference, ac.content.sender, p.as_bytes())?;
            if let Some(sd) = sd {
                // Cannot fail: `authenticate` just derived this key.
                self.ratchets.consume(sd.leaf_index, sd.generation, RatchetKind::Handshake)?;
            }
            Ok(reference)
        })();
        plain.fill(0);
        result
    }

    /// Process the commit in `message` (an `MLSMessage` holding a
    /// PublicMessage or PrivateMessage of the current epoch), moving the
    /// group to the next epoch. Proposals it lists by reference must be in
    /// `cache` ([`process_proposal`](Self::process_proposal)); PSK
    /// proposals name PSKs of `psk_store` (or the current epoch's
    /// resumption PSK). The new state is computed
    /// into `spare` and swapped in only if every check passes (see the
    /// module documentation); `scratch`:
    /// [`commit_scratch_len`](Self::commit_scratch_len)`(message.len())`
    /// bytes (`BufferTooSmall { needed }` otherwise). On success the cache
    /// is emptied (its proposals belong to the old epoch).
    ///
    /// ```
    /// use securemesh_mls_lite::{CommitEvent, DefaultGroup, DefaultProposalCache, Error, PskStore};
    ///
    /// /// Follow one commit; `Ok(false)`: it removed us, drop the group.
    /// fn on_commit(
    ///     group: &mut DefaultGroup,
    ///     spare: &mut DefaultGroup,
    ///     cache: &mut DefaultProposalCache,
    ///     commit: &[u8],
    /// ) -> Result<bool, Error> {
    ///     let mut scratch = vec![0u8; DefaultGroup::commit_scratch_len(commit.len())];
    ///     match group.process_commit(commit, cache, &PskStore::default(), spare, &mut scratch)? {
    ///         // Persist the group now, before acting on the new epoch.
    ///         CommitEvent::NewEpoch { .. } => Ok(true),
    ///         CommitEvent::Removed => Ok(false),
    ///     }
    /// }
    ///
    /// # use securemesh_core::testing::TestRng;
    /// # use securemesh_mls_lite::testing::member_pair;
    /// let (mut a, mut b): (Box<DefaultGroup>, Box<DefaultGroup>) = (Box::default(), Box::default());
    /// # member_pair(b"agents", &mut TestRng::new(1), [&mut *a, &mut *b])?;
    /// let (mut spare, mut cache) = (Box::<DefaultGroup>::default(), Box::<DefaultProposalCache>::default());
    /// // A forged commit is refused and changes nothing.
    /// assert!(on_commit(&mut a, &mut spare, &mut cache, &[0u8; 64]).is_err());
    /// assert_eq!(a.epoch(), 1);
    /// assert!(!spare.is_joined());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn process_commit<const N: usize, const PB: usize>(
        &mut self,
        message: &[u8],
        cache: &mut ProposalCache<N, PB>,
        psk_store: &PskStore<'_>,
        spare: &mut Self,
        scratch: &mut [u8],
    ) -> Result<CommitEvent, Error> {
        let (msg, plain, work) = self.prepare(message, Self::commit_scratch_len(message.len()), scratch)?;
        let result = self.stage_commit(&msg, cache, psk_store, spare, plain, work);
        plain.fill(0);
        if let Ok(CommitEvent::NewEpoch { .. }) = result {
            core::mem::swap(self, spare);
            cache.clear();
        }
        spare.clear();
        result
    }

    /// Check the proposals of a commit against the current epoch (§12.2),
    /// changing nothing: each parses, Add KeyPackages and Update leaves
    /// verify, no leaf is updated or removed twice or by its own committer
    /// (`committer`: its leaf; `None` for an external commit, `external`,
    /// or for proposals checked before anyone commits them), PSKs are known
    /// (`psk_store`, or the current epoch's resumption PSK) and named once,
    /// at most one GroupContextExtensions that fits `E`, an external commit
    /// carries exactly one ExternalInit and only Removes and PSKs besides.
    /// ReInit is [`Error::Unsupported`], as is an Update of our own leaf
    /// other than the one we proposed in this epoch.
    pub(crate) fn check_proposals<'s, 'p: 's, F, I>(
        &'s self,
        proposals: &F,
        committer: Option<u32>,
        external: bool,
        psk_store: &PskStore<'s>,
        work: &mut [u8],
    ) -> Result<CheckedProposals<'p, 's>, Error>
    where
        F: Fn() -> I,
        I: Iterator<Item = Result<(&'p [u8], Sender), Error>>,
    {
        let mut count = 0usize;
        for p in proposals() {
            p?;
            count = count.checked_add(1).ok_or(Error::Capacity)?;
        }
        if count > MAX_COMMIT_PROPOSALS {
            return Err(Error::Capacity);
        }
        let mut checked = CheckedProposals {
            path_required: count == 0,
            gce: None,
            psks: heapless::Vec::new(),
            removed_us: false,
            external_init: None,
        };
        let mut touched: heapless::Vec<u32, MAX_COMMIT_PROPOSALS> = heapless::Vec::new();
        for item in proposals() {
            let (raw, sender) = item?;
            let p = Proposal::from_bytes(raw)?;
            // An external commit carries only ExternalInit, Remove and PSKs.
            if external
                && !matches!(
                    p.body,
                    ProposalBody::ExternalInit { .. }
                        | ProposalBody::Remove { .. }
                        | ProposalBody::PreSharedKey(_)
                )
            {
                return Err(Error::Malformed);
            }
            match p.body {
                ProposalBody::ExternalInit { kem_output } => {
                    if !external || checked.external_init.is_some() {
                        return Err(Error::Malformed);
                    }
                    checked.external_init = Some(kem_output);
                }
                ProposalBody::Add(kp) => kp.verify(work)?,
                ProposalBody::Update(leaf) => {
                    checked.path_required = true;
                    let Sender::Member(s) = sender else { return Err(Error::Malformed) };
                    if Some(s) == committer || touched.contains(&s) || self.tree.leaf(s).is_none() {
                        return Err(Error::Malformed);
                    }
                    if s == self.own_leaf && self.own_update_key(&leaf).is_none() {
                        // Not the Update we proposed (whose key we keep).
                        return Err(Error::Unsupported);
                    }
                    if leaf.source != LeafNodeSource::Update {
                        return Err(Error::Malformed);
                    }
                    leaf.verify(&self.group_id, s, work)?;
                    touched.push(s).map_err(|_| Error::Capacity)?;
                }
                ProposalBody::Remove { removed } => {
                    checked.path_required = true;
                    if Some(removed) == committer
                        || touched.contains(&removed)
                        || self.tree.leaf(removed).is_none()
                    {
                        return Err(Error::Malformed);
                    }
                    checked.removed_us |= removed == self.own_leaf;
                    touched.push(removed).map_err(|_| Error::Capacity)?;
                }
                ProposalBody::PreSharedKey(id) => {
                    if id.psk_nonce.len() != NH || checked.psks.iter().any(|p| p.id == id.as_bytes()) {
                        return Err(Error::Malformed);
                    }
                    let psk = self.psk_value(&id.psk, psk_store)?;
                    checked.psks.push(PskInput { id: id.as_bytes(), psk }).map_err(|_| Error::Capacity)?;
                }
                ProposalBody::GroupContextExtensions { extensions } => {
                    checked.path_required = true;
                    if checked.gce.is_some() {
                        return Err(Error::Malformed);
                    }
                    if extensions.len() > E {
                        return Err(Error::Capacity);
                    }
                    checked.gce = Some(extensions);
                }
                ProposalBody::ReInit(_) => return Err(Error::Unsupported),
            }
        }
        if external && checked.external_init.is_none() {
            return Err(Error::Malformed);
        }
        // The new leaves' keys (Adds and Updates) are unique (§12.2): among
        // themselves, and against every leaf that stays (not removed or
        // replaced by this commit). Compared pairwise by parsing again
        // rather than collected (this frame sits under a device's commit).
        let new_leaf = |raw: &'p [u8]| -> Result<Option<LeafNode<'p>>, Error> {
            Ok(match Proposal::from_bytes(raw)?.body {
                ProposalBody::Add(kp) => Some(kp.leaf_node),
                ProposalBody::Update(leaf) => Some(leaf),
                _ => None,
            })
        };
        let clash = |a: &LeafNode<'_>, b: &LeafNode<'_>| {
            a.encryption_key == b.encryption_key || a.signature_key == b.signature_key
        };
        for (i, item) in proposals().enumerate() {
            let Some(leaf) = new_leaf(item?.0)? else { continue };
            for earlier in proposals().take(i) {
                if new_leaf(earlier?.0)?.is_some_and(|e| clash(&e, &leaf)) {
                    return Err(Error::Malformed);
                }
            }
            for l in 0..self.tree.leaf_count() {
                if !touched.contains(&l) && self.tree.leaf(l).is_some_and(|staying| clash(&staying, &leaf)) {
                    return Err(Error::Malformed);
                }
            }
        }
        Ok(checked)
    }

    /// The private key of `leaf` if it is the leaf of the Update we
    /// proposed in this epoch.
    fn own_update_key(&self, leaf: &LeafNode<'_>) -> Option<&Secret32> {
        self.pending_update
            .as_ref()
            .filter(|k| self.suite.public_key(k).is_ok_and(|p| ct_eq(&p, leaf.encryption_key)))
    }

    /// The value of the PSK `psk` names: an external PSK of `psk_store`, or
    /// an `application` resumption PSK (the current epoch's, or one of
    /// `psk_store`). Unknown PSKs, and reinit and branch PSKs (they belong
    /// to those flows, not to a commit), are [`Error::Unsupported`].
    pub(crate) fn psk_value<'s>(
        &'s self,
        psk: &Psk<'_>,
        psk_store: &PskStore<'s>,
    ) -> Result<&'s [u8], Error> {
        match *psk {
            Psk::External { psk_id } => {
                Ok(psk_store.external.iter().find(|p| p.id == psk_id).ok_or(Error::Unsupported)?.psk)
            }
            Psk::Resumption { usage: ResumptionPskUsage::Application, psk_group_id, psk_epoch } => {
                if psk_group_id == &self.group_id[..] && psk_epoch == self.epoch {
                    Ok(self.secrets.resumption_psk.expose())
                } else {
                    Ok(psk_store
                        .resumption
                        .iter()
                        .find(|p| p.group_id == psk_group_id && p.epoch == psk_epoch)
                        .ok_or(Error::Unsupported)?
                        .psk
                        .expose())
                }
            }
            Psk::Resumption { .. } => Err(Error::Unsupported),
        }
    }

    /// Build the provisional state of a commit in `next`: a copy of ours,
    /// then the checked `proposals` applied in the order of §12.2: the new
    /// GroupContext extensions (`gce`), Updates, Removes (then the
    /// truncation), Adds. Returns the leaves the Adds took, in order.
    pub(crate) fn apply_proposals<'p, F, I>(
        &self,
        next: &mut Self,
        proposals: &F,
        gce: Option<&[u8]>,
    ) -> Result<heapless::Vec<u32, MAX_COMMIT_PROPOSALS>, Error>
    where
        F: Fn() -> I,
        I: Iterator<Item = Result<(&'p [u8], Sender), Error>>,
    {
        next.copy_from(self)?;
        if let Some(ext) = gce {
            next.extensions = heapless::Vec::from_slice(ext).map_err(|_| Error::Capacity)?;
        }
        for item in proposals() {
            let (raw, sender) = item?;
            let p = Proposal::from_bytes(raw)?;
            if let (ProposalBody::Update(leaf), Sender::Member(s)) = (p.body, sender) {
                update_leaf(&mut next.tree, s, &leaf)?;
            }
        }
        let mut any_removed = false;
        for item in proposals() {
            let p = Proposal::from_bytes(item?.0)?;
            if let ProposalBody::Remove { removed } = p.body {
                blank_leaf(&mut next.tree, removed)?;
                any_removed = true;
            }
        }
        if any_removed {
            next.tree.truncate();
        }
        let mut added: heapless::Vec<u32, MAX_COMMIT_PROPOSALS> = heapless::Vec::new();
        for item in proposals() {
            let p = Proposal::from_bytes(item?.0)?;
            if let ProposalBody::Add(kp) = p.body {
                let leaf = add_leaf(&mut next.tree, &kp.leaf_node)?;
                added.push(leaf).map_err(|_| Error::Capacity)?;
            }
        }
        Ok(added)
    }

    #[allow(clippy::too_many_arguments)]
    fn stage_commit<const N: usize, const PB: usize>(
        &self,
        msg: &MlsMessage<'_>,
        cache: &ProposalCache<N, PB>,
        psk_store: &PskStore<'_>,
        next: &mut Self,
        plain: &mut [u8],
        work: &mut [u8],
    ) -> Result<CommitEvent, Error> {
        let (ac, _) = self.authenticate(msg, None, plain, work)?;
        let Content::Commit(commit) = ac.content.content else { return Err(Error::Malformed) };
        // An external commit's committer gets its leaf index below.
        let (external, mut committer) = match ac.content.sender {
            Sender::Member(i) => (false, i),
            Sender::NewMemberCommit => (true, u32::MAX),
            _ => return Err(Error::Malformed),
        };
        if committer == self.own_leaf {
            return Err(Error::Unsupported);
        }

        // The proposals, in order, each as its encoding and sender: resolved
        // again on each of the passes below (by value from the commit, by
        // reference from the cache) rather than kept in a list, and views
        // re-parsed where needed, to keep this frame small (it sits above
        // signature verifications on a device's stack).
        let sender_now = ac.content.sender;
        let proposals = || resolve(commit.proposals(), cache, self.epoch, sender_now);
        let checked =
            self.check_proposals(&proposals, (!external).then_some(committer), external, psk_store, work)?;
        if (checked.path_required || external) && commit.path.is_none() {
            return Err(Error::Malformed);
        }
        if checked.removed_us {
            return Ok(CommitEvent::Removed);
        }
        let transcript = TranscriptHashes::after_commit(&self.interim_transcript_hash, &ac)?;
        let confirmation_tag = ac.auth.confirmation_tag.ok_or(Error::Malformed)?;
        let epoch = self.epoch.checked_add(1).ok_or(Error::Capacity)?;

        // The provisional state.
        let added = self.apply_proposals(next, &proposals, checked.gce)?;
        // Our Update, if the commit covers it (checked above): its leaf's
        // key is ours from now on. The key of an Update left out is dropped.
        let own_now = next.tree.leaf(self.own_leaf).ok_or(Error::Malformed)?;
        if Some(own_now.encryption_key) != self.tree.leaf(self.own_leaf).map(|l| l.encryption_key) {
            next.leaf_private_key = self.own_update_key(&own_now).ok_or(Error::Malformed)?.duplicate();
        }
        next.pending_update = None;
        if external {
            // The joiner takes the leftmost blank leaf, as if added (§12.4.3.2).
            let path = commit.path.as_ref().ok_or(Error::Malformed)?;
            committer = add_leaf(&mut next.tree, &path.leaf_node)?;
        }
        let (external_init, psks) = (checked.external_init, checked.psks);
        let init_secret = match external_init {
            Some(kem_output) => self.suite.external_init_receive(&self.secrets.external, kem_output)?,
            None => self.secrets.init.duplicate(),
        };

        let gc_len = G.saturating_add(E).saturating_add(160);
        let (gc_buf, work) = work.split_at_mut_checked(gc_len).ok_or(Error::Capacity)?;
        if let Some(path) = &commit.path {
            merge_path(&mut next.tree, committer, path, &self.group_id, work)?;
        }
        // Path keys (`next` holds a copy of ours): those whose node still
        // holds the same public key as in the current tree stay (ours
        // matches its node there, checked when it was derived or restored:
        // no scalar multiplication per key); blanked or replaced nodes drop
        // out, the new path's keys are added below.
        next.path_keys.retain(|k| match (next.tree.node(k.node), self.tree.node(k.node)) {
            (Node::Parent(new), Node::Parent(old)) => ct_eq(&new.encryption_key, &old.encryption_key),
            _ => false,
        });
        let commit_secret = match &commit.path {
            None => Secret32::zeroed(),
            Some(path) => {
                let tree_hash = next.tree.tree_hash(next.tree.root())?;
                let gc = GroupContext {
                    cipher_suite: self.suite.id(),
                    group_id: &self.group_id,
                    epoch,
                    tree_hash: &tree_hash,
                    // The provisional GroupContext keeps the old transcript
                    // hash (§12.4.2): the new one covers the signature.
                    confirmed_transcript_hash: &self.confirmed_transcript_hash,
                    extensions: &next.extensions,
                };
                let n = gc.encode(gc_buf)?;
                let gc_bytes = gc_buf.get(..n).ok_or(Error::Capacity)?;
                let (from, path_secret, _) = next.tree.decrypt_path_secret_excluding(
                    self.suite,
                    committer,
                    self.own_leaf,
                    path,
                    &|x| next.private_key(x),
                    &added,
                    gc_bytes,
                    work,
                )?;
                let mut filtered: heapless::Vec<NodeIndex, MAX_PATH_KEYS> = heapless::Vec::new();
                let mut overflow = false;
                next.tree.filtered_direct_path(committer, &mut |p, _| overflow |= filtered.push(p).is_err());
                if overflow {
                    return Err(Error::Capacity);
                }
                let start = filtered.iter().position(|p| *p == from).ok_or(Error::Malformed)?;
                let mut secret = path_secret;
                for (i, (node, upn)) in filtered.iter().zip(path.nodes()).enumerate().skip(start) {
                    if i > start {
                        secret = next_path_secret(&secret)?;
                    }
                    let (private_key, public_key) = node_key_pair_in(self.suite, &secret)?;
                    if !ct_eq(&public_key, upn?.encryption_key) {
                        return Err(Error::Decrypt);
                    }
                    next.path_keys.retain(|k| k.node != *node);
                    next.path_keys.push(PathKey { node: *node, private_key }).map_err(|_| Error::Capacity)?;
                }
                next_path_secret(&secret)?
            }
        };

        next.path_keys.sort_unstable_by_key(|k| k.node);
        #[cfg(feature = "ml-dsa")]
        next.check_required_capabilities()?;

        // The new epoch.
        let tree_hash = next.tree.tree_hash(next.tree.root())?;
        let gc = GroupContext {
            cipher_suite: self.suite.id(),
            group_id: &self.group_id,
            epoch,
            tree_hash: &tree_hash,
            confirmed_transcript_hash: &transcript.confirmed,
            extensions: &next.extensions,
        };
        let n = gc.encode(gc_buf)?;
        let psk_secret = key_schedule::psk_secret(&psks)?;
        let secrets = EpochSecrets::derive(
            init_secret.expose(),
            commit_secret.expose(),
            psk_secret.expose(),
            gc_buf.get(..n).ok_or(Error::Capacity)?,
        )?;
        verify_confirmation_tag(secrets.confirmation_key.expose(), &transcript.confirmed, confirmation_tag)?;

        next.epoch = epoch;
        next.tree_hash = tree_hash;
        next.confirmed_transcript_hash =
            heapless::Vec::from_slice(&transcript.confirmed).map_err(|_| Error::Capacity)?;
        next.interim_transcript_hash = transcript.interim;
        next.ratchets.reset(&secrets.encryption, next.tree.leaf_count())?;
        next.secrets = secrets.into();
        Ok(CommitEvent::NewEpoch { epoch })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `Remove { removed }`, encoded.
    fn remove(removed: u32) -> [u8; 6] {
        let [a, b, c, d] = removed.to_be_bytes();
        [0, 3, a, b, c, d]
    }

    #[test]
    fn a_proposal_of_a_new_epoch_that_does_not_fit_changes_nothing() {
        let mut cache: ProposalCache<2, 8> = ProposalCache::new();
        cache.insert(1, [1; NH], Sender::Member(0), &remove(1)).unwrap();
        // Too many bytes for the cache even when empty: refused, and the
        // proposal of epoch 1 is still there.
        assert_eq!(cache.insert(2, [2; NH], Sender::Member(0), &[0; 9]), Err(Error::Capacity));
        assert_eq!(cache.len(), 1);
        let (sender, proposal) = cache.get(1, &[1; NH]).unwrap();
        assert_eq!(sender, Sender::Member(0));
        assert_eq!(proposal.body, ProposalBody::Remove { removed: 1 });

        // A proposal of the new epoch that fits replaces the old ones.
        cache.insert(2, [2; NH], Sender::Member(1), &remove(0)).unwrap();
        assert_eq!(cache.len(), 1);
        assert!(cache.get(1, &[1; NH]).is_none());
        assert_eq!(cache.get(2, &[2; NH]).unwrap().0, Sender::Member(1));
    }

    #[test]
    fn a_full_cache_refuses_without_forgetting_and_ignores_duplicates() {
        let mut cache: ProposalCache<1, 16> = ProposalCache::new();
        cache.insert(3, [1; NH], Sender::Member(0), &remove(1)).unwrap();
        cache.insert(3, [1; NH], Sender::Member(0), &remove(1)).unwrap();
        assert_eq!(cache.insert(3, [2; NH], Sender::Member(0), &remove(2)), Err(Error::Capacity));
        assert_eq!(cache.len(), 1);
        assert!(cache.get(3, &[1; NH]).is_some());
        // Full, but a proposal of a new epoch fits once the old one goes.
        cache.insert(4, [2; NH], Sender::Member(0), &remove(2)).unwrap();
        assert_eq!(cache.len(), 1);
        assert!(cache.get(4, &[2; NH]).is_some());
    }
}

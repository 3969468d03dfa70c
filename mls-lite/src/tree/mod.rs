//! The ratchet tree (RFC 9420 §7): bounded storage of the public tree,
//! its wire encoding (`optional<Node> ratchet_tree<V>`, §12.4.3.3), tree
//! hashes (§7.8), resolutions (§4.1.1), and validation (§7.9.2 parent
//! hashes, §12.4.3.1 unmerged leaves, §7.2 leaf signatures).

pub mod node;

use crate::crypto::NH;
use crate::crypto::suite::HpkePublicKey;
use crate::error::Error;
use crate::tree_math::{self, NodeIndex};
use core::cell::Cell;
use node::{LeafNode, LeafNodeSource, ParentNode};
use securemesh_core::codec::{Reader, Writer};
use securemesh_core::crypto::{Hash, Sha256};

/// A parent node as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parent<const MAX_LEAVES: usize> {
    /// HPKE public key.
    pub encryption_key: HpkePublicKey,
    /// `parent_hash` (empty or `Nh` bytes).
    pub parent_hash: heapless::Vec<u8, NH>,
    /// Unmerged leaves, increasing.
    pub unmerged: heapless::Vec<u32, MAX_LEAVES>,
}

/// A node as seen through the tree.
// A short-lived borrowed view; with `ml-dsa` the hybrid credential makes
// a leaf view 8 bytes larger than the lint's bound (no heap to box into).
#[cfg_attr(feature = "ml-dsa", allow(clippy::large_enum_variant))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node<'a, const MAX_LEAVES: usize> {
    /// A blank node.
    Blank,
    /// A leaf.
    Leaf(LeafNode<'a>),
    /// A parent.
    Parent(&'a Parent<MAX_LEAVES>),
}

/// The public ratchet tree of a group of at most `MAX_LEAVES` members
/// (default 64), each leaf encoding at most `LEAF_BYTES` bytes (default 384).
///
/// ```
/// use securemesh_mls_lite::tree::RatchetTree;
/// let tree: RatchetTree<8, 384> = RatchetTree::new();
/// assert_eq!(tree.leaf_count(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct RatchetTree<const MAX_LEAVES: usize = 64, const LEAF_BYTES: usize = 384> {
    /// Number of leaves of the complete tree (a power of two, or 0).
    width: u32,
    leaves: [Option<heapless::Vec<u8, LEAF_BYTES>>; MAX_LEAVES],
    parents: [Option<Parent<MAX_LEAVES>>; MAX_LEAVES],
    /// The tree hashes of parent nodes computed so far (§7.8), by slot: an
    /// entry is emptied when its node or one below it changes, so the
    /// root's hash after a commit rehashes only the changed paths and the
    /// leaves right below them (O(log N) for one path). Leaves are not
    /// cached: one is hashed only below a changed parent, and caching them
    /// too would double the memory (33 bytes per slot). Derived data:
    /// neither encoded nor persisted; a decoded tree starts without it.
    parent_hashes: [Cell<Option<[u8; NH]>>; MAX_LEAVES],
}

impl<const MAX_LEAVES: usize, const LEAF_BYTES: usize> Default for RatchetTree<MAX_LEAVES, LEAF_BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

/// Most bytes of an encoded `ParentNode` (with its `optional` and type
/// prefixes): the HPKE key, the parent hash and up to 256 unmerged leaves.
const PARENT_NODE_MAX_LEN: usize = 128 + 4 * 256 + (crate::crypto::suite::MAX_HPKE_PUBLIC_LEN - 32);

fn hash_vec(h: &mut Sha256, bytes: &[u8]) -> Result<(), Error> {
    let (v, n) = crate::crypto::varint(bytes.len())?;
    h.update(v.get(..n).unwrap_or(&[]));
    h.update(bytes);
    Ok(())
}

impl<const MAX_LEAVES: usize, const LEAF_BYTES: usize> RatchetTree<MAX_LEAVES, LEAF_BYTES> {
    /// An empty tree.
    pub const fn new() -> Self {
        RatchetTree {
            width: 0,
            leaves: [const { None }; MAX_LEAVES],
            parents: [const { None }; MAX_LEAVES],
            parent_hashes: [const { Cell::new(None) }; MAX_LEAVES],
        }
    }

    /// The cache entry of the tree hash of node `x` (parents only).
    fn cached_hash(&self, x: NodeIndex) -> Option<&Cell<Option<[u8; NH]>>> {
        if x.is_multiple_of(2) { None } else { self.parent_hashes.get((x / 2) as usize) }
    }

    /// Forget the cached tree hashes of `x` and of its ancestors.
    fn changed(&self, x: NodeIndex) {
        for y in core::iter::once(x).chain(tree_math::direct_path(x, self.width)) {
            if let Some(c) = self.cached_hash(y) {
                c.set(None);
            }
        }
    }

    /// Number of leaves of the complete tree (including blank ones).
    pub fn leaf_count(&self) -> u32 {
        self.width
    }

    /// Number of nodes of the complete tree.
    pub fn node_count(&self) -> u32 {
        // `width` is 0 or a power of two below 2^32, so at most 2^31, whose
        // node width is `u32::MAX`: the fallback is never taken.
        tree_math::node_width(self.width).unwrap_or(u32::MAX)
    }

    /// The root node index.
    pub fn root(&self) -> NodeIndex {
        // As in `node_count`; the fallback is the root of 2^31 leaves.
        tree_math::root(self.width).unwrap_or(u32::MAX >> 1)
    }

    /// The node at `x`.
    pub fn node(&self, x: NodeIndex) -> Node<'_, MAX_LEAVES> {
        if x.is_multiple_of(2) {
            match self.leaves.get((x / 2) as usize).and_then(Option::as_ref) {
                Some(bytes) => LeafNode::from_bytes(bytes).map_or(Node::Blank, Node::Leaf),
                None => Node::Blank,
            }
        } else {
            match self.parents.get((x / 2) as usize).and_then(Option::as_ref) {
                Some(p) => Node::Parent(p),
                None => Node::Blank,
            }
        }
    }

    /// The leaf node of member `leaf`, if not blank.
    pub fn leaf(&self, leaf: u32) -> Option<LeafNode<'_>> {
        // Untrusted indices (message senders, Remove proposals) may be
        // out of range: no node index arithmetic on them.
        if leaf >= self.width {
            return None;
        }
        match self.node(tree_math::leaf_to_node(leaf)?) {
            Node::Leaf(l) => Some(l),
            _ => None,
        }
    }

    /// Whether node `x` is blank.
    pub fn is_blank(&self, x: NodeIndex) -> bool {
        matches!(self.node(x), Node::Blank)
    }

    /// Set (or blank, with `None`) parent node `x`.
    pub fn set_parent(&mut self, x: NodeIndex, parent: Option<Parent<MAX_LEAVES>>) -> Result<(), Error> {
        if x.is_multiple_of(2) || x >= self.node_count() {
            return Err(Error::Malformed);
        }
        *self.parents.get_mut((x / 2) as usize).ok_or(Error::Capacity)? = parent;
        self.changed(x);
        Ok(())
    }

    /// Set (or blank, with `None`) the leaf of member `leaf` from its
    /// encoding (which must parse as one `LeafNode`).
    pub fn set_leaf(&mut self, leaf: u32, bytes: Option<&[u8]>) -> Result<(), Error> {
        if leaf >= self.width {
            return Err(Error::Malformed);
        }
        let value = match bytes {
            Some(b) => {
                LeafNode::from_bytes(b)?;
                Some(heapless::Vec::from_slice(b).map_err(|_| Error::Capacity)?)
            }
            None => None,
        };
        *self.leaves.get_mut(leaf as usize).ok_or(Error::Capacity)? = value;
        self.changed(leaf.saturating_mul(2));
        Ok(())
    }

    /// Make `self` a copy of `other`, node by node (no tree-sized
    /// temporary on the stack, unlike `*self = other.clone()`).
    pub fn copy_from(&mut self, other: &Self) {
        self.width = other.width;
        for (d, s) in self.leaves.iter_mut().zip(other.leaves.iter()) {
            d.clone_from(s);
        }
        for (d, s) in self.parents.iter_mut().zip(other.parents.iter()) {
            d.clone_from(s);
        }
        for (d, s) in self.parent_hashes.iter().zip(other.parent_hashes.iter()) {
            d.set(s.get());
        }
    }

    /// Double the tree to the right (§7.7: add a leaf when none is blank);
    /// an empty tree gets one leaf. Beyond `MAX_LEAVES`: [`Error::Capacity`].
    pub fn extend(&mut self) -> Result<(), Error> {
        let width = if self.width == 0 { 1 } else { self.width.checked_mul(2).ok_or(Error::Capacity)? };
        if width as usize > MAX_LEAVES {
            return Err(Error::Capacity);
        }
        // The new nodes (the new right half and the new root) have no
        // hash yet; the old ones keep theirs (a subtree's hash does not
        // depend on the width).
        let old_nodes = self.node_count();
        self.width = width;
        for x in old_nodes..self.node_count() {
            if let Some(c) = self.cached_hash(x) {
                c.set(None);
            }
        }
        Ok(())
    }

    /// Truncate (§7.7): while the right half of the leaves is entirely
    /// blank, replace the tree by its left subtree (the nodes dropped are
    /// blanked).
    pub fn truncate(&mut self) {
        while self.width > 1 {
            let half = self.width / 2;
            if (half..self.width).any(|l| self.leaf(l).is_some()) {
                break;
            }
            for l in half..self.width {
                if let Some(slot) = self.leaves.get_mut(l as usize) {
                    *slot = None;
                }
            }
            // Parents of the right half and the old root: nodes
            // 2*half-1 ..= 2*width-2, i.e. parent slots half-1 .. width-1.
            for i in (half.saturating_sub(1))..self.width {
                if let Some(slot) = self.parents.get_mut(i as usize) {
                    *slot = None;
                }
                if let Some(c) = self.parent_hashes.get(i as usize) {
                    c.set(None);
                }
            }
            self.width = half;
        }
    }

    /// Empty the tree in place (no tree-sized temporary on the stack,
    /// unlike `*self = Self::new()`).
    pub fn clear(&mut self) {
        self.width = 0;
        self.leaves.iter_mut().for_each(|l| *l = None);
        self.parents.iter_mut().for_each(|p| *p = None);
        self.parent_hashes.iter().for_each(|h| h.set(None));
    }

    /// Replace the tree by the decoding of `optional<Node> ratchet_tree<V>`
    /// (the `ratchet_tree` extension). On error the tree is left empty.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.clear();
        let result = self.decode_inner(bytes);
        if result.is_err() {
            self.clear();
        }
        result
    }

    fn decode_inner(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let mut outer = Reader::new(bytes);
        let body = outer.read_vec_varint()?;
        outer.finish()?;
        let mut r = Reader::new(body);
        let mut x: u32 = 0;
        let mut last_present = false;
        while !r.is_empty() {
            last_present = match r.read_u8()? {
                0 => false,
                1 => {
                    let ty = r.read_u8()?;
                    match (ty, x.is_multiple_of(2)) {
                        (1, true) => {
                            let leaf = LeafNode::parse(&mut r)?;
                            let slot = self.leaves.get_mut((x / 2) as usize).ok_or(Error::Capacity)?;
                            *slot = Some(
                                heapless::Vec::from_slice(leaf.as_bytes()).map_err(|_| Error::Capacity)?,
                            );
                        }
                        (2, false) => {
                            let p = ParentNode::parse(&mut r)?;
                            let mut unmerged = heapless::Vec::new();
                            for l in p.unmerged_leaves() {
                                unmerged.push(l).map_err(|_| Error::Capacity)?;
                            }
                            let stored = Parent {
                                encryption_key: HpkePublicKey::from_slice(p.encryption_key)?,
                                parent_hash: heapless::Vec::from_slice(p.parent_hash)
                                    .map_err(|_| Error::Malformed)?,
                                unmerged,
                            };
                            *self.parents.get_mut((x / 2) as usize).ok_or(Error::Capacity)? = Some(stored);
                        }
                        _ => return Err(Error::Malformed),
                    }
                    true
                }
                _ => return Err(Error::Malformed),
            };
            x = x.checked_add(1).ok_or(Error::Capacity)?;
        }
        if x == 0 || !last_present {
            // The encoding is truncated after the last non-blank node.
            return Err(Error::Malformed);
        }
        // The smallest complete tree holding x nodes.
        let mut width = 1u32;
        while tree_math::node_width(width).is_some_and(|w| w < x) {
            width = width.checked_mul(2).ok_or(Error::Capacity)?;
        }
        if width as usize > MAX_LEAVES {
            return Err(Error::Capacity);
        }
        self.width = width;
        Ok(())
    }

    /// Encode as `optional<Node> ratchet_tree<V>`, truncated after the last
    /// non-blank node.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        let n = self.node_count();
        let last = (0..n).rev().find(|x| !self.is_blank(*x)).map_or(Some(0), |x| x.checked_add(1));
        let last = last.ok_or(Error::Capacity)?;
        let mut w = Writer::new(out);
        let mut body_len = 0usize;
        for x in 0..last {
            // Presence byte, then type byte and node.
            let node_len = match self.node(x) {
                Node::Blank => Some(1),
                Node::Leaf(l) => l.as_bytes().len().checked_add(2),
                Node::Parent(p) => parent_len(p)?.checked_add(2),
            };
            body_len = node_len.and_then(|n| body_len.checked_add(n)).ok_or(Error::Capacity)?;
        }
        w.write_varint(u32::try_from(body_len).map_err(|_| Error::Capacity)?)?;
        for x in 0..last {
            match self.node(x) {
                Node::Blank => w.write_u8(0)?,
                Node::Leaf(l) => {
                    w.write_u8(1)?;
                    w.write_u8(1)?;
                    w.write_bytes(l.as_bytes())?;
                }
                Node::Parent(p) => {
                    w.write_u8(1)?;
                    w.write_u8(2)?;
                    write_parent(&mut w, p, &[])?;
                }
            }
        }
        Ok(w.finish()?)
    }

    /// The resolution of `x` (§4.1.1), in order, passed to `f`. An
    /// unmerged leaf without a node index (at or beyond 2^31, which
    /// [`validate`](Self::validate) refuses) is left out.
    pub fn resolution(&self, x: NodeIndex, f: &mut impl FnMut(NodeIndex)) {
        match self.node(x) {
            Node::Leaf(_) => f(x),
            Node::Parent(p) => {
                f(x);
                p.unmerged.iter().filter_map(|l| tree_math::leaf_to_node(*l)).for_each(&mut *f);
            }
            Node::Blank => {
                if let (Some(l), Some(r)) = (tree_math::left(x), tree_math::right(x)) {
                    self.resolution(l, f);
                    self.resolution(r, f);
                }
            }
        }
    }

    /// The tree hash of `x` (§7.8), from the cache where the subtree did
    /// not change since it was last computed.
    pub fn tree_hash(&self, x: NodeIndex) -> Result<[u8; NH], Error> {
        let cell = self.cached_hash(x);
        if let Some(h) = cell.and_then(Cell::get) {
            return Ok(h);
        }
        let h = self.hash_node(x, &[])?;
        if let Some(c) = cell {
            c.set(Some(h));
        }
        Ok(h)
    }

    /// The tree hash of `x` with the leaves in `exclude` blanked and removed
    /// from every `unmerged_leaves` list (the "original" tree hash of §7.9.2).
    /// A subtree that holds none of them has its plain tree hash (an
    /// unmerged leaf is always below its parent), cached.
    pub fn tree_hash_excluding(&self, x: NodeIndex, exclude: &[u32]) -> Result<[u8; NH], Error> {
        let touches = exclude
            .iter()
            .any(|l| tree_math::leaf_to_node(*l).is_some_and(|n| tree_math::is_in_subtree(n, x)));
        if touches { self.hash_node(x, exclude) } else { self.tree_hash(x) }
    }

    /// Hash node `x` over its children's (excluded) tree hashes.
    fn hash_node(&self, x: NodeIndex, exclude: &[u32]) -> Result<[u8; NH], Error> {
        let mut h = Sha256::default();
        match (tree_math::left(x), tree_math::right(x)) {
            (None, _) | (_, None) => {
                let leaf = x / 2;
                h.update(&[1]);
                h.update(&leaf.to_be_bytes());
                match self.node(x) {
                    Node::Leaf(l) if !exclude.contains(&leaf) => {
                        h.update(&[1]);
                        h.update(l.as_bytes());
                    }
                    _ => h.update(&[0]),
                }
            }
            (Some(l), Some(r)) => {
                let left = self.tree_hash_excluding(l, exclude)?;
                let right = self.tree_hash_excluding(r, exclude)?;
                h.update(&[2]);
                match self.node(x) {
                    Node::Parent(p) => {
                        h.update(&[1]);
                        let mut buf = [0u8; PARENT_NODE_MAX_LEN];
                        let mut w = Writer::new(&mut buf);
                        write_parent(&mut w, p, exclude)?;
                        let n = w.finish()?;
                        h.update(buf.get(..n).unwrap_or(&[]));
                    }
                    _ => h.update(&[0]),
                }
                hash_vec(&mut h, &left)?;
                hash_vec(&mut h, &right)?;
            }
        }
        Ok(h.finalize())
    }

    /// `ParentHash(P)` with respect to its child `sibling_of` the path
    /// (§7.9): `Hash(encryption_key<V> || parent_hash<V> || original_sibling_tree_hash<V>)`.
    pub fn parent_hash(&self, p: NodeIndex, sibling: NodeIndex) -> Result<[u8; NH], Error> {
        let Node::Parent(parent) = self.node(p) else { return Err(Error::Malformed) };
        let osth = self.tree_hash_excluding(sibling, &parent.unmerged)?;
        let mut h = Sha256::default();
        hash_vec(&mut h, &parent.encryption_key)?;
        hash_vec(&mut h, &parent.parent_hash)?;
        hash_vec(&mut h, &osth)?;
        Ok(h.finalize())
    }

    fn node_parent_hash(&self, x: NodeIndex) -> Option<&[u8]> {
        match self.node(x) {
            Node::Leaf(l) => match l.source {
                LeafNodeSource::Commit { parent_hash } => Some(parent_hash),
                _ => None,
            },
            Node::Parent(p) => Some(&p.parent_hash),
            Node::Blank => None,
        }
    }

    /// Whether non-blank parent `p` is parent-hash valid (§7.9.2): some
    /// node in the resolution of one child, excluding `p`'s unmerged
    /// leaves, carries `ParentHash(p)` computed with the other child as
    /// sibling.
    pub fn is_parent_hash_valid(&self, p: NodeIndex) -> Result<bool, Error> {
        let Node::Parent(parent) = self.node(p) else { return Ok(true) };
        let (Some(l), Some(r)) = (tree_math::left(p), tree_math::right(p)) else {
            return Err(Error::Malformed);
        };
        for (child, sibling) in [(l, r), (r, l)] {
            let ph = self.parent_hash(p, sibling)?;
            let mut found = false;
            self.resolution(child, &mut |d| {
                let excluded = d % 2 == 0 && parent.unmerged.contains(&(d / 2));
                if !excluded && self.node_parent_hash(d) == Some(&ph[..]) {
                    found = true;
                }
            });
            if found {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Validate the tree as a joiner must (§12.4.3.1): every non-blank
    /// parent is parent-hash valid; every unmerged leaf is a non-blank leaf
    /// below its parent, listed by every non-blank node in between; every
    /// leaf signature verifies (with `group_id` for update/commit leaves);
    /// no two leaves share an encryption or signature key.
    pub fn validate(&self, group_id: &[u8], scratch: &mut [u8]) -> Result<(), Error> {
        let n = self.node_count();
        for x in (1..n).step_by(2) {
            let Node::Parent(p) = self.node(x) else { continue };
            if !self.is_parent_hash_valid(x)? {
                return Err(Error::Malformed);
            }
            for leaf in &p.unmerged {
                let ln = tree_math::leaf_to_node(*leaf).ok_or(Error::Malformed)?;
                if !tree_math::is_in_subtree(ln, x) || self.leaf(*leaf).is_none() {
                    return Err(Error::Malformed);
                }
                for a in tree_math::direct_path(ln, self.width).take_while(|a| *a != x) {
                    if let Node::Parent(mid) = self.node(a)
                        && !mid.unmerged.contains(leaf)
                    {
                        return Err(Error::Malformed);
                    }
                }
            }
        }
        for i in 0..self.width {
            let Some(leaf) = self.leaf(i) else { continue };
            leaf.verify(group_id, i, scratch)?;
            for j in (i..self.width).skip(1) {
                if let Some(other) = self.leaf(j)
                    && (other.encryption_key == leaf.encryption_key
                        || other.signature_key == leaf.signature_key)
                {
                    return Err(Error::Malformed);
                }
            }
        }
        Ok(())
    }
}

fn parent_len<const N: usize>(p: &Parent<N>) -> Result<usize, Error> {
    let mut buf = [0u8; PARENT_NODE_MAX_LEN];
    let mut w = Writer::new(&mut buf);
    write_parent(&mut w, p, &[])?;
    Ok(w.len())
}

/// `ParentNode` encoding, leaving out the leaves in `exclude`.
fn write_parent<const N: usize>(w: &mut Writer<'_>, p: &Parent<N>, exclude: &[u32]) -> Result<(), Error> {
    w.write_vec_varint(&p.encryption_key)?;
    w.write_vec_varint(&p.parent_hash)?;
    let kept = p.unmerged.iter().filter(|l| !exclude.contains(l)).count();
    let kept_len = kept.checked_mul(4).ok_or(Error::Capacity)?;
    w.write_varint(u32::try_from(kept_len).map_err(|_| Error::Capacity)?)?;
    for l in p.unmerged.iter().filter(|l| !exclude.contains(l)) {
        w.write_u32(*l)?;
    }
    Ok(())
}

//! TreeKEM (RFC 9420 §7.4–7.6, §12.4.2): the UpdatePath a committer
//! sends, merging it into the public tree (with parent-hash checks), and
//! decrypting the path secret it carries for this member.
//!
//! ```text
//! struct { opaque kem_output<V>; opaque ciphertext<V>; } HPKECiphertext;
//! struct { HPKEPublicKey encryption_key; HPKECiphertext encrypted_path_secret<V>; } UpdatePathNode;
//! struct { LeafNode leaf_node; UpdatePathNode nodes<V>; } UpdatePath;
//! ```

use crate::crypto::suite::{HpkePublicKey, Suite};
use crate::crypto::{NH, Secret32, derive_key_pair, derive_secret};
use crate::error::Error;
use crate::tree::node::{LeafNode, LeafNodeSource};
use crate::tree::{Node, Parent, RatchetTree};
use crate::tree_math::{self, NodeIndex};
use securemesh_core::codec::Reader;

/// One node of an UpdatePath.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdatePathNode<'a> {
    /// The node's new HPKE public key.
    pub encryption_key: &'a [u8],
    ciphertexts: &'a [u8],
}

impl<'a> UpdatePathNode<'a> {
    fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let encryption_key = crate::tree::node::hpke_key(r)?;
        let ciphertexts = r.read_vec_varint()?;
        let node = UpdatePathNode { encryption_key, ciphertexts };
        for c in node.ciphertexts() {
            c?;
        }
        Ok(node)
    }

    /// The `(kem_output, ciphertext)` pairs, one per node of the copath
    /// child's resolution, in order.
    pub fn ciphertexts(&self) -> impl Iterator<Item = Result<(&'a [u8], &'a [u8]), Error>> + 'a {
        let mut r = Reader::new(self.ciphertexts);
        core::iter::from_fn(move || {
            if r.is_empty() {
                return None;
            }
            Some((|| Ok((r.read_vec_varint()?, r.read_vec_varint()?)))())
        })
    }
}

/// A parsed UpdatePath.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdatePath<'a> {
    /// The committer's new leaf.
    pub leaf_node: LeafNode<'a>,
    nodes: &'a [u8],
}

impl<'a> UpdatePath<'a> {
    /// Parse from `r`.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let leaf_node = LeafNode::parse(r)?;
        let nodes = r.read_vec_varint()?;
        let path = UpdatePath { leaf_node, nodes };
        for n in path.nodes() {
            n?;
        }
        Ok(path)
    }

    /// Parse a whole buffer.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let p = Self::parse(&mut r)?;
        r.finish()?;
        Ok(p)
    }

    /// The path nodes, lowest first (one per filtered direct path node).
    pub fn nodes(&self) -> impl Iterator<Item = Result<UpdatePathNode<'a>, Error>> + 'a {
        let mut r = Reader::new(self.nodes);
        core::iter::from_fn(move || if r.is_empty() { None } else { Some(UpdatePathNode::parse(&mut r)) })
    }
}

/// The HPKE key pair of a path node: `DeriveKeyPair(DeriveSecret(path_secret, "node"))`
/// (suite 0x0003; [`node_key_pair_in`] for any suite).
pub fn node_key_pair(path_secret: &Secret32) -> Result<(Secret32, [u8; 32]), Error> {
    let node_secret = derive_secret(path_secret.expose(), b"node")?;
    Ok(derive_key_pair(node_secret.expose()))
}

/// The HPKE key pair of a path node in `suite`.
///
/// ```
/// use securemesh_mls_lite::crypto::{Secret32, suite::Suite};
/// use securemesh_mls_lite::treekem::{node_key_pair, node_key_pair_in};
/// let secret = Secret32::new([5; 32]);
/// let (_, public) = node_key_pair_in(Suite::Mls128X25519, &secret)?;
/// assert_eq!(public[..], node_key_pair(&secret)?.1[..]);
/// # Ok::<(), securemesh_mls_lite::Error>(())
/// ```
pub fn node_key_pair_in(suite: Suite, path_secret: &Secret32) -> Result<(Secret32, HpkePublicKey), Error> {
    let node_secret = derive_secret(path_secret.expose(), b"node")?;
    suite.derive_key_pair(node_secret.expose())
}

/// The next path secret up the path: `DeriveSecret(path_secret, "path")`;
/// applied to the root's path secret it gives the commit secret.
pub fn next_path_secret(path_secret: &Secret32) -> Result<Secret32, Error> {
    derive_secret(path_secret.expose(), b"path")
}

impl<const MAX_LEAVES: usize, const LEAF_BYTES: usize> RatchetTree<MAX_LEAVES, LEAF_BYTES> {
    /// The filtered direct path of `leaf` (§4.1.2): each ancestor whose
    /// child on the copath has a non-empty resolution, lowest first, passed
    /// to `f` with that copath child. Nothing for a leaf outside the tree.
    pub fn filtered_direct_path(&self, leaf: u32, f: &mut impl FnMut(NodeIndex, NodeIndex)) {
        let Some(mut below) = tree_math::leaf_to_node(leaf) else { return };
        for p in tree_math::direct_path(below, self.leaf_count()) {
            if let Some(copath) = tree_math::sibling(below, self.leaf_count()) {
                let mut empty = true;
                self.resolution(copath, &mut |_| empty = false);
                if !empty {
                    f(p, copath);
                }
            }
            below = p;
        }
    }

    /// Merge `path` from `sender` (§12.4.2): blank the sender's direct path,
    /// set the filtered path nodes' keys, compute their parent hashes top
    /// down, check the new leaf commits to the lowest one and is validly
    /// signed, and install it. On error the tree is unchanged.
    pub fn merge_update_path(
        &mut self,
        sender: u32,
        path: &UpdatePath<'_>,
        group_id: &[u8],
        scratch: &mut [u8],
    ) -> Result<(), Error> {
        let mut filtered: heapless::Vec<(NodeIndex, NodeIndex), 32> = heapless::Vec::new();
        let mut overflow = false;
        self.filtered_direct_path(sender, &mut |p, c| overflow |= filtered.push((p, c)).is_err());
        if overflow {
            return Err(Error::Capacity);
        }
        // The keys are read from `path` where used (an X-Wing key is 1216
        // bytes: too many to collect on the stack).
        let mut count = 0usize;
        for n in path.nodes() {
            n?;
            count = count.checked_add(1).ok_or(Error::Malformed)?;
        }
        if count != filtered.len() {
            return Err(Error::Malformed);
        }
        let sender_node = tree_math::leaf_to_node(sender).ok_or(Error::Malformed)?;
        let mut next = self.clone();
        for p in tree_math::direct_path(sender_node, self.leaf_count()) {
            next.set_parent(p, None)?;
        }
        for ((p, _), node) in filtered.iter().zip(path.nodes()) {
            let parent = Parent {
                encryption_key: HpkePublicKey::from_slice(node?.encryption_key)?,
                parent_hash: heapless::Vec::new(),
                unmerged: heapless::Vec::new(),
            };
            next.set_parent(*p, Some(parent))?;
        }
        // Parent hashes, top down: the root-most node's is empty.
        let mut above: Option<[u8; NH]> = None;
        for (p, copath) in filtered.iter().rev() {
            if let (Some(h), Node::Parent(existing)) = (above, next.node(*p)) {
                let mut updated = existing.clone();
                updated.parent_hash = heapless::Vec::from_slice(&h).map_err(|_| Error::Capacity)?;
                next.set_parent(*p, Some(updated))?;
            }
            above = Some(next.parent_hash(*p, *copath)?);
        }
        let expected: &[u8] = above.as_ref().map_or(&[], |h| &h[..]);
        match path.leaf_node.source {
            LeafNodeSource::Commit { parent_hash } if parent_hash == expected => {}
            _ => return Err(Error::Malformed),
        }
        path.leaf_node.verify(group_id, sender, scratch)?;
        next.set_leaf(sender, Some(path.leaf_node.as_bytes()))?;
        *self = next;
        Ok(())
    }

    /// Decrypt the path secret `path` from `sender` carries for `receiver`:
    /// the secret of the lowest filtered-path node above `receiver`, from the
    /// ciphertext for the one node of the copath child's resolution whose
    /// private key `private_key` knows. Returns that node and its path
    /// secret, after checking the derived public key against the path.
    #[allow(clippy::too_many_arguments)]
    pub fn decrypt_path_secret(
        &self,
        sender: u32,
        receiver: u32,
        path: &UpdatePath<'_>,
        private_key: &dyn Fn(NodeIndex) -> Option<Secret32>,
        group_context: &[u8],
        scratch: &mut [u8],
    ) -> Result<(NodeIndex, Secret32), Error> {
        let (p, secret, expected) = self.decrypt_path_secret_excluding(
            Suite::Mls128X25519,
            sender,
            receiver,
            path,
            private_key,
            &[],
            group_context,
            scratch,
        )?;
        if node_key_pair(&secret)?.1[..] != expected[..] {
            return Err(Error::Decrypt);
        }
        Ok((p, secret))
    }

    /// [`decrypt_path_secret`](Self::decrypt_path_secret) with the leaves in
    /// `exclude` (added by the same commit) left out of the copath
    /// resolutions, returning the public key the path gives that node
    /// unchecked: the caller derives the node's key pair and compares.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decrypt_path_secret_excluding(
        &self,
        suite: Suite,
        sender: u32,
        receiver: u32,
        path: &UpdatePath<'_>,
        private_key: &dyn Fn(NodeIndex) -> Option<Secret32>,
        exclude: &[u32],
        group_context: &[u8],
        scratch: &mut [u8],
    ) -> Result<(NodeIndex, Secret32, HpkePublicKey), Error> {
        let me = tree_math::leaf_to_node(receiver).ok_or(Error::Malformed)?;
        let mut filtered: heapless::Vec<(NodeIndex, NodeIndex), 32> = heapless::Vec::new();
        let mut overflow = false;
        self.filtered_direct_path(sender, &mut |p, c| overflow |= filtered.push((p, c)).is_err());
        if overflow {
            return Err(Error::Capacity);
        }
        let (index, &(p, copath)) = filtered
            .iter()
            .enumerate()
            .find(|(_, (_, c))| tree_math::is_in_subtree(me, *c))
            .ok_or(Error::Malformed)?;
        let node = path.nodes().nth(index).ok_or(Error::Malformed)??;
        // The position of the first resolution node whose key we hold;
        // `pos` is `None` only past `usize::MAX` nodes (then no match).
        let mut pos = Some(0usize);
        let mut found: Option<(usize, Secret32)> = None;
        self.resolution(copath, &mut |d| {
            if found.is_some() || (d % 2 == 0 && exclude.contains(&(d / 2))) {
                return;
            }
            match private_key(d) {
                Some(k) => found = pos.map(|j| (j, k)),
                None => pos = pos.and_then(|j| j.checked_add(1)),
            }
        });
        let (j, key) = found.ok_or(Error::Decrypt)?;
        let (kem_output, ct) = node.ciphertexts().nth(j).ok_or(Error::Malformed)??;
        let body_len = ct.len().checked_sub(16).ok_or(Error::Decrypt)?;
        let (body, tag) = ct.split_at(body_len);
        let tag: [u8; 16] = tag.try_into().map_err(|_| Error::Decrypt)?;
        let mut secret = Secret32::zeroed();
        if body.len() != NH {
            return Err(Error::Decrypt);
        }
        secret.expose_mut().copy_from_slice(body);
        suite.decrypt_with_label(
            &key,
            b"UpdatePathNode",
            group_context,
            kem_output,
            secret.expose_mut(),
            &tag,
            scratch,
        )?;
        Ok((p, secret, HpkePublicKey::from_slice(node.encryption_key)?))
    }

    /// From the path secret at filtered-path node `from`, walk up the rest
    /// of `sender`'s filtered path, checking every derived public key
    /// against `path`, and return the commit secret.
    pub fn commit_secret(
        &self,
        sender: u32,
        path: &UpdatePath<'_>,
        from: NodeIndex,
        path_secret: &Secret32,
    ) -> Result<Secret32, Error> {
        let mut nodes: heapless::Vec<NodeIndex, 32> = heapless::Vec::new();
        let mut overflow = false;
        self.filtered_direct_path(sender, &mut |p, _| overflow |= nodes.push(p).is_err());
        if overflow {
            return Err(Error::Capacity);
        }
        // The nodes up to and including `from` are done.
        let done =
            nodes.iter().position(|p| *p == from).and_then(|i| i.checked_add(1)).ok_or(Error::Malformed)?;
        let mut secret = path_secret.duplicate();
        for node in path.nodes().skip(done) {
            secret = next_path_secret(&secret)?;
            if node_key_pair(&secret)?.1[..] != *node?.encryption_key {
                return Err(Error::Decrypt);
            }
        }
        next_path_secret(&secret)
    }
}

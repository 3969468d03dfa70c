//! The secret tree of one epoch as state (RFC 9420 §9, §9.1, §9.2): node
//! secrets derived on demand and erased once used, per sender a handshake
//! and an application ratchet whose keys are used once and erased, and a
//! bounded store of keys skipped over for messages that arrive out of
//! order.
//!
//! Deletion schedule (§9.2): the state starts with the root secret
//! (`encryption_secret`) only. The first message from a leaf walks from the
//! root down to it: each node secret on the way is replaced by its two
//! children's secrets, and the leaf secret by its two ratchets. So on every
//! root-to-leaf path exactly one node holds a secret or the leaf holds its
//! ratchets; a secret that was used is gone, and a copy of the state taken
//! later cannot recompute a key that was consumed before.
//!
//! Out of order (§9.1 leaves the policy to the application, as OpenMLS's
//! `maximum_forward_distance` and `out_of_order_tolerance` do): a message
//! may be at most [`MAX_FORWARD_DISTANCE`] generations ahead of the next
//! one expected from its sender and ratchet. Of the generations skipped
//! over, the keys of the last [`OUT_OF_ORDER_TOLERANCE`] before the newest
//! generation used are kept, in a store of `SKIPPED` keys shared by all
//! senders (the oldest evicted first when it is full). Every key opens one
//! message only.
//!
//! Reading is split from consuming so decryption stays a transaction:
//! [`SenderRatchets::key_nonce`] (also the [`crate::framing::SenderKeys`]
//! implementation) changes nothing; call [`SenderRatchets::consume`] only
//! after the whole message authenticated.

use crate::crypto::{Secret32, expand_with_label};
use crate::error::Error;
use crate::secret_tree::{KeyNonce, Ratchet, RatchetKind};
use crate::tree_math::{self, NodeIndex};

/// How far ahead of the next expected generation a message may be (per
/// sender and ratchet): a forged generation costs at most this many hash
/// steps. OpenMLS's default `maximum_forward_distance`.
pub const MAX_FORWARD_DISTANCE: u32 = 1000;

/// How many generations before the newest one used (per sender and
/// ratchet) stay openable, if their keys were skipped over. OpenMLS's
/// default `out_of_order_tolerance`.
pub const OUT_OF_ORDER_TOLERANCE: u32 = 5;

/// How many skipped keys a group keeps (all senders together).
pub const SKIPPED_KEYS: usize = 32;

/// A key skipped over, kept for a late message.
pub(crate) struct Skipped {
    pub(crate) leaf: u32,
    /// `kind_index` of the ratchet (a plain `u8`, not `RatchetKind`: with
    /// the enum's niche an empty slot would not be all-zero bytes, and the
    /// whole state would move from `.bss` to `.data` on a device).
    pub(crate) kind: u8,
    pub(crate) generation: u32,
    /// Insertion order (eviction: the smallest goes first).
    pub(crate) seq: u64,
    pub(crate) key: KeyNonce,
}

/// The secret-tree state of one epoch for a tree of at most `MAX_LEAVES`
/// leaves, with at most `SKIPPED` skipped keys kept (defaults 64 and 32;
/// about 11 KB with the defaults).
///
/// ```
/// use securemesh_core::Secret;
/// use securemesh_mls_lite::secret_tree::RatchetKind;
/// use securemesh_mls_lite::sender_ratchets::SenderRatchets;
/// let mut r: SenderRatchets<4, 8> = SenderRatchets::new(&Secret::new([7u8; 32]), 4)?;
/// let k2 = r.key_nonce(1, 2, RatchetKind::Application)?; // out of order: 2 before 0
/// r.consume(1, 2, RatchetKind::Application)?;
/// assert!(r.key_nonce(1, 0, RatchetKind::Application).is_ok()); // kept for a late message
/// assert!(r.consume(1, 2, RatchetKind::Application).is_err()); // used once only
/// # let _ = k2;
/// # Ok::<(), securemesh_mls_lite::Error>(())
/// ```
pub struct SenderRatchets<const MAX_LEAVES: usize = 64, const SKIPPED: usize = SKIPPED_KEYS> {
    pub(crate) n_leaves: u32,
    /// Node secrets not used yet: node `x` at `[x / 2][x % 2]`.
    pub(crate) nodes: [[Option<Secret32>; 2]; MAX_LEAVES],
    /// Per leaf, its handshake and application ratchets once derived.
    pub(crate) ratchets: [Option<[Ratchet; 2]>; MAX_LEAVES],
    pub(crate) skipped: [Option<Skipped>; SKIPPED],
    pub(crate) seq: u64,
}

pub(crate) fn kind_index(kind: RatchetKind) -> usize {
    usize::from(kind_u8(kind))
}

pub(crate) fn kind_u8(kind: RatchetKind) -> u8 {
    match kind {
        RatchetKind::Handshake => 0,
        RatchetKind::Application => 1,
    }
}

/// The two children secrets of a node secret (§9: "tree", "left"/"right").
fn children(secret: &Secret32) -> Result<(Secret32, Secret32), Error> {
    let mut left = Secret32::zeroed();
    expand_with_label(secret.expose(), b"tree", b"left", left.expose_mut())?;
    let mut right = Secret32::zeroed();
    expand_with_label(secret.expose(), b"tree", b"right", right.expose_mut())?;
    Ok((left, right))
}

/// The ratchets of a leaf secret, handshake first.
fn leaf_ratchets(secret: &Secret32) -> Result<[Ratchet; 2], Error> {
    Ok([Ratchet::new(secret, RatchetKind::Handshake)?, Ratchet::new(secret, RatchetKind::Application)?])
}

/// Where a leaf's keys come from right now.
enum Source<'s> {
    /// Its ratchets exist.
    Ratchets(&'s [Ratchet; 2]),
    /// An ancestor-or-self node still holds its secret.
    Node(NodeIndex, &'s Secret32),
}

impl<const MAX_LEAVES: usize, const SKIPPED: usize> Default for SenderRatchets<MAX_LEAVES, SKIPPED> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<const MAX_LEAVES: usize, const SKIPPED: usize> SenderRatchets<MAX_LEAVES, SKIPPED> {
    /// A state with no secrets (every lookup fails); `const`, for statics.
    pub const fn empty() -> Self {
        SenderRatchets {
            n_leaves: 0,
            nodes: [const { [None, None] }; MAX_LEAVES],
            ratchets: [const { None }; MAX_LEAVES],
            skipped: [const { None }; SKIPPED],
            seq: 0,
        }
    }

    /// The state of an epoch whose secret tree is rooted at
    /// `encryption_secret` over `n_leaves` leaves.
    pub fn new(encryption_secret: &Secret32, n_leaves: u32) -> Result<Self, Error> {
        let mut s = Self::empty();
        s.reset(encryption_secret, n_leaves)?;
        Ok(s)
    }

    /// Start over for a new epoch (everything of the old one is erased).
    /// `n_leaves` must be a power of two (an MLS tree is complete,
    /// [`Error::Malformed`] otherwise) of at most `MAX_LEAVES`
    /// ([`Error::Capacity`]).
    pub fn reset(&mut self, encryption_secret: &Secret32, n_leaves: u32) -> Result<(), Error> {
        if !n_leaves.is_power_of_two() {
            return Err(Error::Malformed);
        }
        if n_leaves as usize > MAX_LEAVES {
            return Err(Error::Capacity);
        }
        let root = tree_math::root(n_leaves).ok_or(Error::Capacity)?;
        self.clear();
        self.n_leaves = n_leaves;
        *self.node_mut(root).ok_or(Error::Capacity)? = Some(encryption_secret.duplicate());
        Ok(())
    }

    /// Erase everything (as [`SenderRatchets::empty`]).
    pub fn clear(&mut self) {
        self.n_leaves = 0;
        self.nodes.iter_mut().flatten().for_each(|n| *n = None);
        self.ratchets.iter_mut().for_each(|r| *r = None);
        self.skipped.iter_mut().for_each(|k| *k = None);
        self.seq = 0;
    }

    /// Make `self` a copy of `other` (for tests: two members of one epoch
    /// start from the same secret tree).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn copy_from(&mut self, other: &Self) {
        self.clear();
        self.n_leaves = other.n_leaves;
        for (d, s) in self.nodes.iter_mut().flatten().zip(other.nodes.iter().flatten()) {
            *d = s.as_ref().map(Secret32::duplicate);
        }
        for (d, s) in self.ratchets.iter_mut().zip(&other.ratchets) {
            *d = s.as_ref().map(|[h, a]| [h.duplicate(), a.duplicate()]);
        }
        for (d, s) in self.skipped.iter_mut().zip(&other.skipped) {
            *d = s.as_ref().map(|k| Skipped { key: k.key.duplicate(), ..*k });
        }
        self.seq = other.seq;
    }

    /// The number of leaves of the epoch's tree (0 when empty).
    pub fn leaf_count(&self) -> u32 {
        self.n_leaves
    }

    /// Number of skipped keys kept.
    pub fn skipped_keys(&self) -> usize {
        self.skipped.iter().flatten().count()
    }

    pub(crate) fn node(&self, x: NodeIndex) -> Option<&Secret32> {
        self.nodes.get(x as usize / 2).and_then(|p| p.get(x as usize % 2)).and_then(Option::as_ref)
    }

    pub(crate) fn node_mut(&mut self, x: NodeIndex) -> Option<&mut Option<Secret32>> {
        self.nodes.get_mut(x as usize / 2).and_then(|p| p.get_mut(x as usize % 2))
    }

    /// The path from the root down to `leaf`'s node, root first, in a
    /// fixed buffer (at most 32 nodes: depth is below 32 for u32 indices).
    fn path_down(&self, leaf: u32) -> Result<heapless::Vec<NodeIndex, 32>, Error> {
        if leaf >= self.n_leaves {
            return Err(Error::Malformed);
        }
        let target = tree_math::leaf_to_node(leaf).ok_or(Error::Malformed)?;
        let mut path = heapless::Vec::new();
        let mut x = tree_math::root(self.n_leaves).ok_or(Error::Malformed)?;
        loop {
            path.push(x).map_err(|_| Error::Capacity)?;
            if x == target {
                return Ok(path);
            }
            x = if target < x { tree_math::left(x) } else { tree_math::right(x) }.ok_or(Error::Malformed)?;
        }
    }

    fn source(&self, leaf: u32) -> Result<Source<'_>, Error> {
        if let Some(r) = self.ratchets.get(leaf as usize).and_then(Option::as_ref) {
            return Ok(Source::Ratchets(r));
        }
        let path = self.path_down(leaf)?;
        path.iter().find_map(|&x| self.node(x).map(|s| Source::Node(x, s))).ok_or(Error::Malformed)
    }

    /// The next generation of `(leaf, kind)` (0 before its first message).
    pub fn next_generation(&self, leaf: u32, kind: RatchetKind) -> Result<u32, Error> {
        match self.source(leaf)? {
            Source::Ratchets(r) => r.get(kind_index(kind)).map(Ratchet::generation).ok_or(Error::Malformed),
            Source::Node(..) => Ok(0),
        }
    }

    fn find_skipped(&self, leaf: u32, generation: u32, kind: RatchetKind) -> Option<usize> {
        self.skipped.iter().position(|k| {
            k.as_ref()
                .is_some_and(|k| k.leaf == leaf && k.kind == kind_u8(kind) && k.generation == generation)
        })
    }

    /// Whether `(leaf, generation, kind)` can be opened: a kept skipped key
    /// ([`Error::Decrypt`] if it was used, evicted or never kept) or at most
    /// [`MAX_FORWARD_DISTANCE`] ahead ([`Error::Capacity`] beyond, and for
    /// the last generation, `u32::MAX`, after which a ratchet cannot move
    /// on: refused here so that using it cannot fail half-way).
    fn check(&self, leaf: u32, generation: u32, kind: RatchetKind) -> Result<Option<usize>, Error> {
        let next = self.next_generation(leaf, kind)?;
        let Some(ahead) = generation.checked_sub(next) else {
            // Behind the ratchet: only a kept skipped key opens it.
            return self.find_skipped(leaf, generation, kind).map(Some).ok_or(Error::Decrypt);
        };
        if ahead > MAX_FORWARD_DISTANCE || generation == u32::MAX {
            return Err(Error::Capacity);
        }
        Ok(None)
    }

    /// The key and nonce of `(leaf, generation, kind)`, without using it:
    /// a kept skipped key, or derived ahead on copies.
    pub fn key_nonce(&self, leaf: u32, generation: u32, kind: RatchetKind) -> Result<KeyNonce, Error> {
        if let Some(i) = self.check(leaf, generation, kind)? {
            return self
                .skipped
                .get(i)
                .and_then(Option::as_ref)
                .map(|k| k.key.duplicate())
                .ok_or(Error::Decrypt);
        }
        let mut ratchet = match self.source(leaf)? {
            Source::Ratchets(r) => r.get(kind_index(kind)).ok_or(Error::Malformed)?.duplicate(),
            Source::Node(from, secret) => {
                let target = tree_math::leaf_to_node(leaf).ok_or(Error::Malformed)?;
                let mut x = from;
                let mut secret = secret.duplicate();
                while x != target {
                    let (l, r) = children(&secret)?;
                    (x, secret) = if target < x {
                        (tree_math::left(x).ok_or(Error::Malformed)?, l)
                    } else {
                        (tree_math::right(x).ok_or(Error::Malformed)?, r)
                    };
                }
                Ratchet::new(&secret, kind)?
            }
        };
        ratchet.advance_to(generation)?;
        ratchet.current()
    }

    /// Mark `(leaf, generation, kind)` used, after its message
    /// authenticated: the node secrets down to the leaf are replaced by
    /// their children, the key is erased, keys of the generations skipped
    /// over within [`OUT_OF_ORDER_TOLERANCE`] are kept. Fails (changing
    /// nothing) exactly when [`key_nonce`](Self::key_nonce) would.
    pub fn consume(&mut self, leaf: u32, generation: u32, kind: RatchetKind) -> Result<(), Error> {
        if let Some(i) = self.check(leaf, generation, kind)? {
            if let Some(k) = self.skipped.get_mut(i) {
                *k = None;
            }
            return Ok(());
        }
        self.materialize(leaf)?;
        let ki = kind_index(kind);
        let floor = generation.saturating_sub(OUT_OF_ORDER_TOLERANCE);
        // Keys that fall out of the window of this sender and ratchet go
        // first, so they do not push other senders' keys out of the store.
        for k in &mut self.skipped {
            if k.as_ref().is_some_and(|k| k.leaf == leaf && k.kind == kind_u8(kind) && k.generation < floor) {
                *k = None;
            }
        }
        loop {
            let r = self
                .ratchets
                .get_mut(leaf as usize)
                .and_then(Option::as_mut)
                .and_then(|r| r.get_mut(ki))
                .ok_or(Error::Malformed)?;
            let g = r.generation();
            if g >= generation {
                // Erase the key just used.
                r.advance()?;
                break;
            }
            let key = if g >= floor { Some(r.current()?) } else { None };
            r.advance()?;
            if let Some(key) = key {
                self.keep(Skipped { leaf, kind: kind_u8(kind), generation: g, seq: 0, key });
            }
        }
        Ok(())
    }

    /// Derive `leaf`'s ratchets, erasing the node secrets used on the way.
    fn materialize(&mut self, leaf: u32) -> Result<(), Error> {
        if self.ratchets.get(leaf as usize).is_some_and(Option::is_some) {
            return Ok(());
        }
        let path = self.path_down(leaf)?;
        // The path ends at the leaf's node.
        let (&leaf_node, above) = path.split_last().ok_or(Error::Malformed)?;
        let start = path.iter().position(|&x| self.node(x).is_some()).ok_or(Error::Malformed)?;
        for &x in above.get(start..).ok_or(Error::Malformed)? {
            let secret = self.node_mut(x).and_then(Option::take).ok_or(Error::Malformed)?;
            let (l, r) = children(&secret)?;
            let (lx, rx) =
                (tree_math::left(x).ok_or(Error::Malformed)?, tree_math::right(x).ok_or(Error::Malformed)?);
            *self.node_mut(lx).ok_or(Error::Capacity)? = Some(l);
            *self.node_mut(rx).ok_or(Error::Capacity)? = Some(r);
        }
        let secret = self.node_mut(leaf_node).and_then(Option::take).ok_or(Error::Malformed)?;
        *self.ratchets.get_mut(leaf as usize).ok_or(Error::Capacity)? = Some(leaf_ratchets(&secret)?);
        Ok(())
    }

    /// Store a skipped key, evicting the oldest when the store is full.
    pub(crate) fn keep(&mut self, mut k: Skipped) {
        k.seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let slot = match self.skipped.iter().position(Option::is_none) {
            Some(free) => free,
            None => self
                .skipped
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.as_ref().map_or(0, |s| s.seq))
                .map_or(0, |(i, _)| i),
        };
        if let Some(s) = self.skipped.get_mut(slot) {
            *s = Some(k);
        }
    }
}

impl<const MAX_LEAVES: usize, const SKIPPED: usize> crate::framing::SenderKeys
    for SenderRatchets<MAX_LEAVES, SKIPPED>
{
    fn key_nonce(&self, leaf: u32, generation: u32, kind: RatchetKind) -> Result<KeyNonce, Error> {
        SenderRatchets::key_nonce(self, leaf, generation, kind)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::framing::{SecretTreeKeys, SenderKeys};
    use securemesh_core::Secret;

    fn same(a: &KeyNonce, b: &KeyNonce) -> bool {
        a.key.expose() == b.key.expose() && a.nonce == b.nonce
    }

    fn secrets_held<const L: usize, const S: usize>(r: &SenderRatchets<L, S>) -> usize {
        r.nodes.iter().flatten().flatten().count()
    }

    #[test]
    fn matches_the_stateless_derivation_in_any_order_and_uses_each_key_once() {
        let secret = Secret::new([0x5au8; 32]);
        let stateless = SecretTreeKeys::new(&secret, 8, 1000);
        let mut r: SenderRatchets<8, 8> = SenderRatchets::new(&secret, 8).unwrap();
        let kind = RatchetKind::Application;
        // Generations 3, 0, 2, 1 of leaf 5.
        for g in [3u32, 0, 2, 1] {
            let k = r.key_nonce(5, g, kind).unwrap();
            assert!(same(&k, &stateless.key_nonce(5, g, kind).unwrap()), "generation {g}");
            r.consume(5, g, kind).unwrap();
            assert_eq!(r.consume(5, g, kind), Err(Error::Decrypt), "generation {g} used twice");
            assert!(r.key_nonce(5, g, kind).is_err());
        }
        assert_eq!(r.skipped_keys(), 0);
        // The other kind and every other leaf, in any order.
        for leaf in [0u32, 7, 4, 5, 1, 6, 2, 3] {
            for kind in [RatchetKind::Handshake, RatchetKind::Application] {
                let g = r.next_generation(leaf, kind).unwrap();
                let k = r.key_nonce(leaf, g, kind).unwrap();
                assert!(same(&k, &stateless.key_nonce(leaf, g, kind).unwrap()), "leaf {leaf}");
                r.consume(leaf, g, kind).unwrap();
            }
        }
        // Every node secret was used and erased; only ratchets remain.
        assert_eq!(secrets_held(&r), 0);
        assert!(r.ratchets.iter().all(Option::is_some));
        assert_eq!(r.key_nonce(8, 0, kind).err(), Some(Error::Malformed));
    }

    #[test]
    fn deletion_schedule_keeps_one_secret_per_path() {
        let mut r: SenderRatchets<8, 8> = SenderRatchets::new(&Secret::new([3u8; 32]), 8).unwrap();
        assert_eq!(secrets_held(&r), 1);
        // Leaf 0: root 7 -> 3, 11; 3 -> 1, 5; 1 -> 0, 2; leaf 0 -> ratchets.
        r.consume(0, 0, RatchetKind::Handshake).unwrap();
        let held: std::vec::Vec<u32> = (0..15).filter(|&x| r.node(x).is_some()).collect();
        assert_eq!(held, [2, 5, 11]);
        // Reading another leaf derives on copies only.
        r.key_nonce(6, 0, RatchetKind::Application).unwrap();
        assert_eq!(secrets_held(&r), 3);
    }

    #[test]
    fn a_sender_moving_on_drops_its_own_stale_keys_before_others() {
        let secret = Secret::new([2u8; 32]);
        let mut r: SenderRatchets<2, 6> = SenderRatchets::new(&secret, 2).unwrap();
        let kind = RatchetKind::Application;
        r.consume(0, 1, kind).unwrap(); // keeps sender 0's generation 0 (the oldest key)
        r.consume(1, 3, kind).unwrap(); // keeps sender 1's 0, 1, 2
        assert_eq!(r.skipped_keys(), 4);
        // Sender 1 jumps to 20: its 0..2 fall out of its window and go
        // first; its 15..19 then fit without evicting sender 0's key.
        r.consume(1, 20, kind).unwrap();
        assert!(r.key_nonce(0, 0, kind).is_ok());
        for g in 15..20 {
            assert!(r.key_nonce(1, g, kind).is_ok(), "generation {g}");
        }
        assert_eq!(r.skipped_keys(), 6);
    }

    #[test]
    fn the_last_generation_is_refused_before_anything_changes() {
        let secret = Secret::new([4u8; 32]);
        let mut r: SenderRatchets<2, 4> = SenderRatchets::new(&secret, 2).unwrap();
        let kind = RatchetKind::Handshake;
        r.consume(1, 0, kind).unwrap();
        // (Four billion steps away in practice; set directly.)
        r.ratchets[1].as_mut().unwrap()[0].generation = u32::MAX - 2;
        r.consume(1, u32::MAX - 1, kind).unwrap();
        assert_eq!(r.next_generation(1, kind), Ok(u32::MAX));
        assert_eq!(r.key_nonce(1, u32::MAX, kind).err(), Some(Error::Capacity));
        let kept = r.skipped_keys();
        assert_eq!(r.consume(1, u32::MAX, kind), Err(Error::Capacity));
        assert_eq!((r.next_generation(1, kind), r.skipped_keys()), (Ok(u32::MAX), kept));
        assert!(r.key_nonce(1, u32::MAX - 2, kind).is_ok());
        // A tree is complete: 3 leaves is not a tree.
        assert_eq!(SenderRatchets::<4, 4>::new(&secret, 3).err(), Some(Error::Malformed));
        assert_eq!(SenderRatchets::<4, 4>::new(&secret, 0).err(), Some(Error::Malformed));
    }

    #[test]
    fn window_and_forward_distance() {
        let secret = Secret::new([1u8; 32]);
        let mut r: SenderRatchets<2, 4> = SenderRatchets::new(&secret, 2).unwrap();
        let kind = RatchetKind::Handshake;
        // Generation 8 skips 0..8: keys of 3..8 are within the tolerance of 5,
        // and the store of 4 keeps the newest four of them.
        r.consume(0, 8, kind).unwrap();
        assert_eq!(r.skipped_keys(), 4);
        for g in 0..=3 {
            assert_eq!(r.key_nonce(0, g, kind).err(), Some(Error::Decrypt), "generation {g}");
        }
        for g in 4..8 {
            assert!(r.key_nonce(0, g, kind).is_ok(), "generation {g}");
        }
        // Forward distance from the next expected generation (9).
        assert!(r.key_nonce(0, 9 + MAX_FORWARD_DISTANCE, kind).is_ok());
        assert_eq!(r.key_nonce(0, 10 + MAX_FORWARD_DISTANCE, kind).err(), Some(Error::Capacity));
        assert_eq!(r.consume(0, 10 + MAX_FORWARD_DISTANCE, kind), Err(Error::Capacity));
        // Moving on to 20 drops this sender's keys older than 15.
        r.consume(0, 20, kind).unwrap();
        for g in 4..8 {
            assert!(r.key_nonce(0, g, kind).is_err(), "generation {g}");
        }
        assert!(r.key_nonce(0, 19, kind).is_ok());
        // Reading changes nothing; consuming erases.
        r.consume(0, 19, kind).unwrap();
        assert!(r.key_nonce(0, 19, kind).is_err());
        assert_eq!(r.key_nonce(2, 0, kind).err(), Some(Error::Malformed));
        assert_eq!(SenderRatchets::<2, 4>::new(&secret, 4).err(), Some(Error::Capacity));
    }
}

//! Array-based tree math (RFC 9420 §4.1 and Appendix C).
//!
//! Nodes are numbered left to right; leaves are even, parents odd. The
//! tree over `n` leaves (a power of two in MLS) has `2n - 1` nodes. All
//! functions are total: out-of-range questions return `None`.

/// A node index.
pub type NodeIndex = u32;

/// `floor(log2(x))`, 0 for 0.
pub const fn log2(x: u32) -> u32 {
    if x == 0 { 0 } else { 31 - x.leading_zeros() }
}

/// The level of node `x`: 0 for leaves, the number of trailing 1 bits otherwise.
pub const fn level(x: NodeIndex) -> u32 {
    x.trailing_ones()
}

/// Number of nodes of a tree with `n_leaves` leaves.
pub const fn node_width(n_leaves: u32) -> u32 {
    if n_leaves == 0 { 0 } else { 2 * (n_leaves - 1) + 1 }
}

/// The root of a tree with `n_leaves` leaves.
pub const fn root(n_leaves: u32) -> NodeIndex {
    let w = node_width(n_leaves);
    (1u32 << log2(w)) - 1
}

/// The left child of `x`, `None` for a leaf.
pub const fn left(x: NodeIndex) -> Option<NodeIndex> {
    let k = level(x);
    if k == 0 { None } else { Some(x ^ (1 << (k - 1))) }
}

/// The right child of `x`, `None` for a leaf.
pub const fn right(x: NodeIndex) -> Option<NodeIndex> {
    let k = level(x);
    if k == 0 { None } else { Some(x ^ (3 << (k - 1))) }
}

/// The parent of `x` in a tree of `n_leaves`, `None` for the root or a
/// node outside the tree.
pub const fn parent(x: NodeIndex, n_leaves: u32) -> Option<NodeIndex> {
    if x == root(n_leaves) || x >= node_width(n_leaves) {
        return None;
    }
    let k = level(x);
    if k >= 30 {
        return None;
    }
    let b = (x >> (k + 1)) & 1;
    Some((x | (1 << k)) ^ (b << (k + 1)))
}

/// The sibling of `x`, `None` for the root.
pub const fn sibling(x: NodeIndex, n_leaves: u32) -> Option<NodeIndex> {
    let Some(p) = parent(x, n_leaves) else { return None };
    if x < p { right(p) } else { left(p) }
}

/// The node index of leaf `leaf`.
pub const fn leaf_to_node(leaf: u32) -> NodeIndex {
    leaf * 2
}

/// The leaf index of node `x`, if it is a leaf.
pub const fn node_to_leaf(x: NodeIndex) -> Option<u32> {
    if x.is_multiple_of(2) { Some(x / 2) } else { None }
}

/// The direct path of `x` (its ancestors up to and including the root, not
/// `x` itself), as an iterator.
pub fn direct_path(x: NodeIndex, n_leaves: u32) -> impl Iterator<Item = NodeIndex> {
    core::iter::successors(parent(x, n_leaves), move |p| parent(*p, n_leaves))
}

/// The copath of `x`: the siblings of `x` and of its ancestors below the root.
pub fn copath(x: NodeIndex, n_leaves: u32) -> impl Iterator<Item = NodeIndex> {
    core::iter::once(x)
        .chain(direct_path(x, n_leaves))
        .filter(move |y| *y != root(n_leaves))
        .filter_map(move |y| sibling(y, n_leaves))
}

/// Whether `x` is in the subtree rooted at `ancestor`.
pub const fn is_in_subtree(x: NodeIndex, ancestor: NodeIndex) -> bool {
    let k = level(ancestor);
    // The subtree of `ancestor` spans [ancestor - (2^k - 1), ancestor + (2^k - 1)].
    let span = (1u32 << k) - 1;
    x + span >= ancestor && x <= ancestor + span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_examples() {
        // RFC 9420 §4.1 figure: 8 leaves, root 7.
        assert_eq!(root(8), 7);
        assert_eq!(parent(0, 8), Some(1));
        assert_eq!(parent(1, 8), Some(3));
        assert_eq!(parent(7, 8), None);
        assert_eq!(sibling(5, 8), Some(1));
        assert_eq!(direct_path(0, 8).collect::<std::vec::Vec<_>>(), [1, 3, 7]);
        assert_eq!(copath(0, 8).collect::<std::vec::Vec<_>>(), [2, 5, 11]);
        assert!(is_in_subtree(4, 3) && !is_in_subtree(8, 3));
    }
}

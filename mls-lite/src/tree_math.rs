//! Array-based tree math (RFC 9420 §4.1 and Appendix C).
//!
//! Nodes are numbered left to right; leaves are even, parents odd. The
//! tree over `n` leaves (a power of two in MLS) has `2n - 1` nodes. All
//! functions are total: no input overflows or panics, and a question
//! without an answer (a leaf's children, the root's parent, a node or tree
//! whose index does not fit a `u32`) gives `None`. The largest tree whose
//! nodes all have an index has 2^31 leaves.

/// A node index.
pub type NodeIndex = u32;

/// `floor(log2(x))`, 0 for 0.
pub const fn log2(x: u32) -> u32 {
    match x.checked_ilog2() {
        Some(k) => k,
        None => 0,
    }
}

/// `2^k - 1`, the `k` low bits set (`u32::MAX` for `k >= 32`).
const fn low_bits(k: u32) -> u32 {
    match u32::MAX.checked_shl(k) {
        Some(high) => !high,
        None => u32::MAX,
    }
}

/// `2^(k-1)` for a parent `x` of level `k`, the distance to its children;
/// `None` for a leaf. `k <= 32`, so the shift is in range.
const fn child_bit(x: NodeIndex) -> Option<u32> {
    match level(x).checked_sub(1) {
        Some(j) => 1u32.checked_shl(j),
        None => None,
    }
}

/// The level of node `x`: 0 for leaves, the number of trailing 1 bits otherwise.
pub const fn level(x: NodeIndex) -> u32 {
    x.trailing_ones()
}

/// Number of nodes of a tree with `n_leaves` leaves (`2n - 1`, 0 for 0);
/// `None` beyond 2^31 leaves, whose nodes do not all have a `u32` index.
pub const fn node_width(n_leaves: u32) -> Option<u32> {
    let Some(last) = n_leaves.checked_sub(1) else {
        return Some(0);
    };
    match last.checked_mul(2) {
        // Even, so `| 1` adds one without overflow.
        Some(w) => Some(w | 1),
        None => None,
    }
}

/// The root of a tree with `n_leaves` leaves (0 for an empty tree); `None`
/// where [`node_width`] is `None`.
pub const fn root(n_leaves: u32) -> Option<NodeIndex> {
    match node_width(n_leaves) {
        // `log2(w) <= 31`: the largest power of two `<= w`, minus one (all
        // ones below it, so no subtraction).
        Some(w) => Some(low_bits(log2(w))),
        None => None,
    }
}

/// The left child of `x`, `None` for a leaf.
pub const fn left(x: NodeIndex) -> Option<NodeIndex> {
    // `x - 2^(k-1)`: clearing bit `k - 1` of `x`, never below 0.
    match child_bit(x) {
        Some(bit) => Some(x ^ bit),
        None => None,
    }
}

/// The right child of `x`, `None` for a leaf and for `u32::MAX` (whose
/// right child has no `u32` index).
pub const fn right(x: NodeIndex) -> Option<NodeIndex> {
    // `x + 2^(k-1)` (for `k <= 31` the same as `x ^ (3 << (k - 1))`).
    match child_bit(x) {
        Some(bit) => x.checked_add(bit),
        None => None,
    }
}

/// The parent of `x` in a tree of `n_leaves`, `None` for the root or a
/// node outside the tree.
pub const fn parent(x: NodeIndex, n_leaves: u32) -> Option<NodeIndex> {
    let (Some(width), Some(root)) = (node_width(n_leaves), root(n_leaves)) else {
        return None;
    };
    if x == root || x >= width {
        return None;
    }
    // `x < width <= u32::MAX`, so `k <= 31`; a node of level 31 is the root
    // of the largest tree, so a non-root node inside the tree has `k <= 30`
    // and the shifts below stay in range.
    let k = level(x);
    if k >= 31 {
        return None;
    }
    let Some(up) = k.checked_add(1) else { return None };
    let b = (x >> up) & 1;
    Some((x | (1 << k)) ^ (b << up))
}

/// The sibling of `x`, `None` for the root.
pub const fn sibling(x: NodeIndex, n_leaves: u32) -> Option<NodeIndex> {
    let Some(p) = parent(x, n_leaves) else { return None };
    if x < p { right(p) } else { left(p) }
}

/// The node index of leaf `leaf` (`2 * leaf`), `None` for a leaf at or
/// beyond 2^31.
pub const fn leaf_to_node(leaf: u32) -> Option<NodeIndex> {
    leaf.checked_mul(2)
}

/// The leaf index of node `x`, if it is a leaf.
pub const fn node_to_leaf(x: NodeIndex) -> Option<u32> {
    if x.is_multiple_of(2) { Some(x / 2) } else { None }
}

/// The direct path of `x` (its ancestors up to and including the root, not
/// `x` itself), as an iterator; empty for the root and for a node outside
/// the tree.
pub fn direct_path(x: NodeIndex, n_leaves: u32) -> impl Iterator<Item = NodeIndex> {
    core::iter::successors(parent(x, n_leaves), move |p| parent(*p, n_leaves))
}

/// The copath of `x`: the siblings of `x` and of its ancestors below the root.
pub fn copath(x: NodeIndex, n_leaves: u32) -> impl Iterator<Item = NodeIndex> {
    let root = root(n_leaves);
    core::iter::once(x)
        .chain(direct_path(x, n_leaves))
        .filter(move |y| Some(*y) != root)
        .filter_map(move |y| sibling(y, n_leaves))
}

/// Whether `x` is in the subtree rooted at `ancestor`.
pub const fn is_in_subtree(x: NodeIndex, ancestor: NodeIndex) -> bool {
    // The subtree of `ancestor` spans [ancestor - (2^k - 1), ancestor + (2^k - 1)]:
    // `x` is at most `2^k - 1` away (`abs_diff` cannot overflow).
    x.abs_diff(ancestor) <= low_bits(level(ancestor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_examples() {
        // RFC 9420 §4.1 figure: 8 leaves, root 7.
        assert_eq!(root(8), Some(7));
        assert_eq!(node_width(8), Some(15));
        assert_eq!(leaf_to_node(3), Some(6));
        assert_eq!(parent(0, 8), Some(1));
        assert_eq!(parent(1, 8), Some(3));
        assert_eq!(parent(7, 8), None);
        assert_eq!(sibling(5, 8), Some(1));
        assert_eq!(direct_path(0, 8).collect::<std::vec::Vec<_>>(), [1, 3, 7]);
        assert_eq!(copath(0, 8).collect::<std::vec::Vec<_>>(), [2, 5, 11]);
        assert!(is_in_subtree(4, 3) && !is_in_subtree(8, 3));
    }

    #[test]
    fn large_inputs_do_not_panic() {
        // 2^31 leaves is the largest tree with u32 node indices.
        assert_eq!(node_width(1 << 31), Some(u32::MAX));
        assert_eq!(root(1 << 31), Some((1 << 31) - 1));
        for n in [u32::MAX, u32::MAX - 1, (1 << 31) + 1] {
            assert_eq!(node_width(n), None);
            assert_eq!(root(n), None);
            assert_eq!(parent(0, n), None);
            assert_eq!(sibling(0, n), None);
            assert_eq!(direct_path(0, n).count(), 0);
            assert_eq!(copath(0, n).count(), 0);
        }
        assert_eq!(leaf_to_node((1 << 31) - 1), Some(u32::MAX - 1));
        assert_eq!(leaf_to_node(1 << 31), None);
        assert_eq!(leaf_to_node(u32::MAX), None);
        assert_eq!(left(u32::MAX), Some((1 << 31) - 1));
        assert_eq!(right(u32::MAX), None);
        assert_eq!(right((1 << 31) - 1), Some(u32::MAX - (1 << 30)));
        assert_eq!(parent(u32::MAX, 1 << 31), None);
        assert_eq!(sibling(u32::MAX, 1 << 31), None);
        assert!(is_in_subtree(u32::MAX - 1, (1 << 31) - 1));
        assert!(!is_in_subtree(u32::MAX, (1 << 31) - 1));
        assert!(is_in_subtree(u32::MAX, u32::MAX));
        assert!(is_in_subtree(0, u32::MAX));
        assert!(!is_in_subtree(u32::MAX, 0));
    }

    #[test]
    fn largest_tree_has_full_direct_paths() {
        let n = 1u32 << 31;
        assert_eq!(parent((1 << 30) - 1, n), Some((1 << 31) - 1));
        assert_eq!(direct_path(0, n).count(), 31);
        assert_eq!(direct_path(u32::MAX - 1, n).last(), Some((1 << 31) - 1));
        assert_eq!(copath(0, n).count(), 31);
    }

    proptest::proptest! {
        #[test]
        fn no_function_panics(x in proptest::num::u32::ANY, n in proptest::num::u32::ANY, a in proptest::num::u32::ANY) {
            let _ = (log2(x), level(x), node_width(n), root(n), left(x), right(x));
            let _ = (parent(x, n), sibling(x, n), leaf_to_node(x), node_to_leaf(x), is_in_subtree(x, a));
            proptest::prop_assert!(direct_path(x, n).count() <= 32);
            proptest::prop_assert!(copath(x, n).count() <= 32);
        }

        #[test]
        fn complete_trees_are_consistent(k in 0u32..=31, x in proptest::num::u32::ANY) {
            // Any node of a complete tree of 2^k leaves: its parent has it as
            // a child and holds it in its subtree; the direct path ends at the root.
            let n = 1u32 << k;
            let width = node_width(n).unwrap();
            let x = x % width;
            let root = root(n).unwrap();
            proptest::prop_assert!(is_in_subtree(x, root));
            match parent(x, n) {
                None => proptest::prop_assert_eq!(x, root),
                Some(p) => {
                    proptest::prop_assert!(left(p) == Some(x) || right(p) == Some(x));
                    proptest::prop_assert!(is_in_subtree(x, p));
                    proptest::prop_assert!(sibling(x, n).is_some_and(|s| s != x && is_in_subtree(s, p)));
                    proptest::prop_assert_eq!(direct_path(x, n).last(), Some(root));
                    proptest::prop_assert_eq!(direct_path(x, n).count() as u32, k - level(x));
                }
            }
            if let Some(leaf) = node_to_leaf(x) {
                proptest::prop_assert_eq!(leaf_to_node(leaf), Some(x));
            }
        }
    }
}

//! The tree operations commit processing adds to `RatchetTree`: node-by-node
//! copy, extension by doubling, truncation, and out-of-range leaf lookups,
//! on the first tree of the mlswg `tree-validation.json` vector.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_mls_lite::Error;
use securemesh_mls_lite::tree::RatchetTree;

const VECTOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../test-vectors/mls/tree-validation.json");

fn first_tree() -> Vec<u8> {
    let text = std::fs::read_to_string(VECTOR).unwrap();
    let key = "\"tree\": \"";
    let start = text.find(key).unwrap() + key.len();
    let len = text[start..].find('"').unwrap();
    let s = &text[start..start + len];
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn encoded<const L: usize>(t: &RatchetTree<L, 384>) -> Vec<u8> {
    let mut out = vec![0u8; 64 * 1024];
    let n = t.encode(&mut out).unwrap();
    out.truncate(n);
    out
}

#[test]
fn copy_extend_truncate() {
    let bytes = first_tree();
    let mut tree: Box<RatchetTree<64, 384>> = Box::default();
    tree.decode(&bytes).unwrap();
    let width = tree.leaf_count();
    let hash = tree.tree_hash(tree.root()).unwrap();
    assert_eq!(encoded(&tree), bytes);

    let mut copy: Box<RatchetTree<64, 384>> = Box::default();
    copy.copy_from(&tree);
    assert_eq!(encoded(&copy), bytes);
    assert_eq!(copy.tree_hash(copy.root()).unwrap(), hash);

    // Out-of-range leaves are absent, not a panic.
    assert!(tree.leaf(width).is_none());
    assert!(tree.leaf(u32::MAX).is_none());

    // Doubling adds blank leaves (the encoding drops trailing blanks) and
    // truncation undoes it.
    copy.extend().unwrap();
    assert_eq!(copy.leaf_count(), 2 * width);
    assert_eq!(encoded(&copy), bytes);
    assert_ne!(copy.tree_hash(copy.root()).unwrap(), hash);
    copy.truncate();
    assert_eq!(copy.leaf_count(), width);
    assert_eq!(copy.tree_hash(copy.root()).unwrap(), hash);

    // Blanking every leaf of the right half truncates to the left half.
    if width > 1 {
        for l in width / 2..width {
            copy.set_leaf(l, None).unwrap();
        }
        copy.truncate();
        assert!(copy.leaf_count() <= width / 2);
        assert!((0..copy.leaf_count()).any(|l| copy.leaf(l).is_some()));
    }
}

#[test]
fn extend_beyond_capacity_is_an_error() {
    let bytes = first_tree();
    let mut tree: Box<RatchetTree<64, 384>> = Box::default();
    tree.decode(&bytes).unwrap();
    while tree.leaf_count() < 64 {
        tree.extend().unwrap();
    }
    assert_eq!(tree.extend(), Err(Error::Capacity));
    assert_eq!(tree.leaf_count(), 64);
    let mut empty: RatchetTree<4, 384> = RatchetTree::new();
    empty.extend().unwrap();
    assert_eq!(empty.leaf_count(), 1);
}

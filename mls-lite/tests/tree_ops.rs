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

/// One change to a tree, for the cache test below.
#[derive(Clone, Debug)]
enum Change {
    /// Put a copy of the `from`-th leaf of the vector tree at leaf `at`.
    Leaf {
        at: u32,
        from: usize,
    },
    /// Blank leaf `at`.
    BlankLeaf(u32),
    /// Give parent slot `slot` a new key (or blank it).
    Parent {
        slot: u32,
        key: Option<u8>,
    },
    Extend,
    Truncate,
}

fn change() -> impl proptest::strategy::Strategy<Value = Change> {
    use proptest::prelude::*;
    prop_oneof![
        3 => (0u32..16, 0usize..8).prop_map(|(at, from)| Change::Leaf { at, from }),
        2 => (0u32..16).prop_map(Change::BlankLeaf),
        3 => (0u32..16, proptest::option::of(any::<u8>())).prop_map(|(slot, key)| Change::Parent { slot, key }),
        1 => Just(Change::Extend),
        1 => Just(Change::Truncate),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// The cached tree hashes always equal those of a fresh decoding of
    /// the tree (which has no cache): the root's, one with a leaf
    /// excluded, and each parent hash, after every change.
    #[test]
    fn cached_tree_hashes_match_a_fresh_computation(changes in proptest::collection::vec(change(), 1..24)) {
        let mut tree: Box<RatchetTree<16, 384>> = Box::default();
        tree.decode(&first_tree()).unwrap();
        let leaves: Vec<Vec<u8>> =
            (0..tree.leaf_count()).filter_map(|i| tree.leaf(i).map(|l| l.as_bytes().to_vec())).collect();
        tree.tree_hash(tree.root()).unwrap(); // fill the cache
        for c in changes {
            let _ = match c {
                Change::Leaf { at, from } => tree.set_leaf(at, Some(&leaves[from % leaves.len()])),
                Change::BlankLeaf(at) => tree.set_leaf(at, None),
                Change::Parent { slot, key } => {
                    let parent = key.map(|k| securemesh_mls_lite::tree::Parent {
                        encryption_key: securemesh_mls_lite::crypto::suite::HpkePublicKey::from_slice(&[k; 32]).unwrap(),
                        parent_hash: heapless::Vec::new(),
                        unmerged: heapless::Vec::new(),
                    });
                    tree.set_parent(2 * slot + 1, parent)
                }
                Change::Extend => tree.extend(),
                Change::Truncate => {
                    tree.truncate();
                    Ok(())
                }
            };
            if (0..tree.leaf_count()).all(|i| tree.leaf(i).is_none()) {
                continue; // an empty tree has no encoding
            }
            let mut fresh: Box<RatchetTree<16, 384>> = Box::default();
            fresh.decode(&encoded(&tree)).unwrap();
            let root = tree.root();
            proptest::prop_assert_eq!(tree.tree_hash(root).unwrap(), fresh.tree_hash(root).unwrap());
            proptest::prop_assert_eq!(
                tree.tree_hash_excluding(root, &[1]).unwrap(),
                fresh.tree_hash_excluding(root, &[1]).unwrap()
            );
            for p in (1..tree.node_count()).step_by(2) {
                let (Some(l), Some(r)) = (securemesh_mls_lite::tree_math::left(p), securemesh_mls_lite::tree_math::right(p)) else { continue };
                if !tree.is_blank(p) {
                    proptest::prop_assert_eq!(tree.parent_hash(p, l).unwrap(), fresh.parent_hash(p, l).unwrap());
                    proptest::prop_assert_eq!(tree.parent_hash(p, r).unwrap(), fresh.parent_hash(p, r).unwrap());
                }
            }
        }
    }
}

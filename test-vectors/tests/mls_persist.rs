//! The persisted MLS group state's golden files (`state/mls-group-v1.json`
//! and `-v2.json`, read by migration, and `state/mls-group-v3.json`) and the
//! tree-operations vector: a changed byte fails its case.

use securemesh_core::envelope::Persist;
use securemesh_test_vectors::mls::{self, GroupCase, GroupGolden};
use securemesh_test_vectors::vectors_dir;

/// The cases of the golden files: (vector, entry, epochs processed before encoding).
const CASES: [(&str, usize, usize); 3] = [
    ("passive-client-handling-commit.json", 0, 0),
    ("passive-client-handling-commit.json", 6, 1),
    ("interop-passive/commit.json", 1, 0),
];

#[test]
fn group_golden_passes_and_a_changed_byte_fails() {
    for version in [2, 3] {
        let path = vectors_dir().join(format!("state/mls-group-v{version}.json"));
        let r = mls::group_state(&path, version, &vectors_dir().join("mls"));
        assert!(r.is_ok() && r.total == CASES.len(), "{}: {:?}", r.line(), r.failures);
    }
    let path = vectors_dir().join("state/mls-group-v1.json");
    let r = mls::group_state(&path, 1, &vectors_dir().join("mls"));
    assert!(r.is_ok() && r.total == CASES.len(), "{}: {:?}", r.line(), r.failures);

    let mut golden: GroupGolden = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // One nibble inside the first case's epoch secrets (near the end: the
    // init secret, so the next epoch's confirmation tag does not verify) and one in
    // the second case's envelope header (the kind).
    let s = &mut golden.cases[0].encoded;
    let at = s.len() - 3;
    let flipped = if &s[at..at + 1] == "0" { "1" } else { "0" };
    s.replace_range(at..at + 1, flipped);
    golden.cases[1].encoded.replace_range(9..10, "5");
    let dir = std::env::temp_dir().join(format!("securemesh-mls-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("mls-group-v1.json");
    std::fs::write(&bad, serde_json::to_string(&golden).unwrap()).unwrap();
    let r = mls::group_state(&bad, 1, &vectors_dir().join("mls"));
    assert_eq!((r.passed, r.total), (CASES.len() - 2, CASES.len()), "{:?}", r.failures);
    assert!(r.failures[0].starts_with("mls-group-v1[0]: epoch 0 commit"), "{:?}", r.failures);
    assert!(r.failures[1].starts_with("mls-group-v1[1]: decode"), "{:?}", r.failures);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_changed_tree_operations_byte_fails_its_vector() {
    let src = vectors_dir().join("mls/tree-operations.json");
    let dir = std::env::temp_dir().join(format!("securemesh-mls-treeops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Entries 0 (Add), 2 (Update) and 3 (Remove); fields changed near their end.
    for (entry, field) in
        [(0, "proposal"), (0, "tree_after"), (2, "tree_after"), (3, "proposal"), (3, "tree_hash_after")]
    {
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&src).unwrap()).unwrap();
        let s = v[entry][field].as_str().unwrap().to_string();
        let at = s.len() - 5;
        let flipped = if &s[at..at + 1] == "0" { "1" } else { "0" };
        v[entry][field] = serde_json::Value::String(format!("{}{flipped}{}", &s[..at], &s[at + 1..]));
        std::fs::write(dir.join("tree-operations.json"), serde_json::to_string(&v).unwrap()).unwrap();
        let reports = mls::reports(&dir);
        let r = reports.iter().find(|r| r.name == "mls tree-operations").unwrap();
        assert_eq!(r.passed + 1, r.total, "{entry} {field}: {}", r.line());
        assert!(r.failures[0].starts_with(&format!("tree-operations[{entry}]")), "{:?}", r.failures);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Writes the golden file of the current version from today's code. Run
/// once per released version (`cargo test -p securemesh-test-vectors --
/// --ignored`); it never overwrites an existing file.
#[test]
#[ignore]
fn write_mls_group_golden() {
    let version = mls::Group::VERSION;
    let path = vectors_dir().join(format!("state/mls-group-v{version}.json"));
    assert!(!path.exists(), "golden files are never rewritten");
    let mut cases = Vec::new();
    for (vector, entry, epochs_done) in CASES {
        let text = std::fs::read_to_string(vectors_dir().join("mls").join(vector)).unwrap();
        let entries: serde_json::Value = serde_json::from_str(&text).unwrap();
        let group = mls::passive_group(&entries[entry], epochs_done).unwrap();
        let mut out = vec![0u8; mls::Group::MAX_ENCODED_LEN];
        let n = group.encode_state(&mut out).unwrap();
        cases.push(GroupCase { vector: vector.into(), entry, epochs_done, encoded: hex::encode(&out[..n]) });
    }
    let golden = GroupGolden {
        source: format!(
            "securemesh-mls-lite persisted group state (Group<64, 384, 64, 256>), body version \
             {version}, after joining mlswg passive-client vector entries (see mls/README.md); written by \
             securemesh, MIT OR Apache-2.0"
        ),
        cases,
    };
    std::fs::write(&path, serde_json::to_string_pretty(&golden).unwrap() + "\n").unwrap();
}

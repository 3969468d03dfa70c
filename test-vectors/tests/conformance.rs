//! The conformance run as a test: every supported vector must pass.

use securemesh_test_vectors::{run_all, state};

#[test]
fn every_supported_vector_passes() {
    let reports = run_all();
    for r in &reports {
        assert!(r.is_ok(), "{} failed: {:?}", r.line(), r.failures);
    }
    let lines: Vec<String> = reports.iter().map(|r| r.line()).collect();
    for expected in [
        "rfc7748 x25519 4/4",
        "rfc8439 chacha20poly1305 1/1",
        "rfc5869 hkdf-sha256 3/3",
        "rfc8032 ed25519 3/3",
        "state envelope-v1 6/6",
        "state mesh-records-v1 5/5",
        "noise noise-c fallback 8/8",
        "noise securemesh hfs 19/19",
        "noise js-libp2p-noise XXhfs MLKEM768 5/5",
        "mls tree-math 10/10",
        "mls crypto-basics 1/1",
        "mls deserialization 14/14",
        "mls secret-tree 3/3",
        "mls key-schedule 1/1",
        "mls psk_secret 11/11",
        "mls tree-validation 14/14",
        "mls tree-operations 5/5",
        "mls treekem 11/11",
        "mls treekem-committer 11/11",
        "mls message-protection 1/1",
        "mls transcript-hashes 1/1",
        "mls messages 100/100",
        "mls welcome 1/1",
        "mls passive-client-welcome 8/8",
        "mls passive-client-handling-commit 13/13",
        "mls interop-passive welcome_join 8/8",
        "mls interop-passive commit 44/44",
        "mls interop-passive application 6/6",
        "mls interop-passive external_proposals 28/28",
        "mls interop-passive branch 32/32",
        "mls interop-passive reinit 48/48",
        "mls interop-passive external_join 6/6",
        "mls passive-client-random skipped 1 (ciphersuite 1: needs AES-128-GCM, not in this profile)",
        "state mls-group-v1 3/3",
        "state mls-group-v2 3/3",
        "state mls-group-v3 3/3",
        "pq ml-kem-768 keygen 1/1",
        "pq ml-kem-1024 keygen 1/1",
        "pq ml-kem-768 encaps 1/1",
        "pq ml-kem-768 decaps 1/1",
        "pq ml-kem-768 encaps valid 2/2",
        "pq ml-kem-1024 encaps valid 2/2",
        "pq ml-kem-768 decaps valid 2/2",
        "pq ml-kem-1024 decaps valid 2/2",
        "pq x-wing 3/3",
        "pq ml-dsa-65 sign 2/2",
        "pq ml-dsa-65 verify 7/7",
        "pq hybrid ed25519+ml-dsa-65 5/5",
        "mls x-wing 0x004D 7/7",
    ]
    .into_iter()
    .chain(securemesh_test_vectors::ratchet::EXPECTED_LINES)
    {
        assert!(lines.iter().any(|l| l == expected), "missing {expected}: {lines:?}");
    }
    // Every 25519 suite of Cacophony: 8 suites of 59 vectors.
    for cipher in ["ChaChaPoly", "AESGCM"] {
        for hash in ["SHA256", "SHA512", "BLAKE2s", "BLAKE2b"] {
            let expected = format!("noise cacophony 25519_{cipher}_{hash} 59/59");
            assert!(lines.contains(&expected), "missing {expected}");
        }
    }
    let skipped: usize = reports.iter().map(|r| r.skipped).sum();
    assert_eq!(skipped, 473, "only the Curve448 vectors and passive-client-random (AES-128-GCM) are skipped");
}

#[test]
fn a_changed_cacophony_byte_fails_its_vector() {
    use securemesh_test_vectors::noise::{Vector, run_vector};
    let path = securemesh_test_vectors::vectors_dir().join("noise/cacophony.txt");
    let all: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut checked = 0;
    for v in all["vectors"].as_array().unwrap() {
        let name = v["protocol_name"].as_str().unwrap();
        if !name.ends_with("25519_ChaChaPoly_SHA256") || !name.starts_with("Noise_XX") {
            continue;
        }
        let p = securemesh_noise::Protocol::parse(name).unwrap();
        for (field, i) in [("ciphertext", 1usize), ("ciphertext", 4), ("payload", 0)] {
            let mut bad: Vector = serde_json::from_value(v.clone()).unwrap();
            let s = if field == "ciphertext" {
                &mut bad.messages[i].ciphertext
            } else {
                &mut bad.messages[i].payload
            };
            let flipped = if s.ends_with('0') { '1' } else { '0' };
            s.pop();
            s.push(flipped);
            assert!(run_vector(&bad, &p).is_err(), "{name}: corrupted {field} {i} passed");
            checked += 1;
        }
        let good: Vector = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(run_vector(&good, &p), Ok(()));
    }
    assert!(checked >= 6);
}

#[test]
fn a_changed_mls_framing_byte_fails_its_vector() {
    // One byte changed in each protected message, the transcript input and
    // a messages.json field: each check must then fail.
    let src = securemesh_test_vectors::vectors_dir().join("mls");
    let dir = std::env::temp_dir().join(format!("securemesh-mls-framing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("message-protection.json", "mls message-protection", "proposal_pub"),
        ("message-protection.json", "mls message-protection", "commit_priv"),
        ("message-protection.json", "mls message-protection", "application_priv"),
        ("transcript-hashes.json", "mls transcript-hashes", "authenticated_content"),
        ("transcript-hashes.json", "mls transcript-hashes", "interim_transcript_hash_before"),
        ("messages.json", "mls messages", "mls_key_package"),
    ];
    for (file, report, field) in cases {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(src.join(file)).unwrap()).unwrap();
        let s = v[0][field].as_str().unwrap().to_string();
        // Change a nibble near the end (inside a signature, tag or ciphertext).
        let at = s.len() - 5;
        let flipped = if &s[at..at + 1] == "0" { "1" } else { "0" };
        v[0][field] = serde_json::Value::String(format!("{}{flipped}{}", &s[..at], &s[at + 1..]));
        for f in ["message-protection.json", "transcript-hashes.json", "messages.json"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        std::fs::write(dir.join(file), serde_json::to_string(&v).unwrap()).unwrap();
        let reports = securemesh_test_vectors::mls::reports(&dir);
        let r = reports.iter().find(|r| r.name == report).unwrap();
        assert_eq!(r.passed + 1, r.total, "{file} {field}: {}", r.line());
        assert!(r.failures[0].starts_with(&format!("{}[0]", &report[4..])), "{:?}", r.failures);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_changed_pq_byte_fails_its_vector() {
    // One nibble changed in an X-Wing shared secret and in an ML-KEM expanded
    // dk and implicit-rejection K: each of those vectors must then fail.
    use securemesh_test_vectors::pq;
    let src = securemesh_test_vectors::vectors_dir().join("pq");
    let dir = std::env::temp_dir().join(format!("securemesh-pq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flip = |s: &str| {
        let at = s.len() - 3;
        let c = if &s[at..at + 1] == "0" { "1" } else { "0" };
        format!("{}{c}{}", &s[..at], &s[at + 1..])
    };
    let mut x: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("x-wing-draft-10.json")).unwrap()).unwrap();
    x[1]["ss"] = flip(x[1]["ss"].as_str().unwrap()).into();
    std::fs::write(dir.join("x.json"), x.to_string()).unwrap();
    assert_eq!(pq::x_wing(&dir.join("x.json")).line(), "pq x-wing 2/3");

    let mut k: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(src.join("wycheproof-mlkem-keygen-seed.json")).unwrap(),
    )
    .unwrap();
    k["testGroups"][1]["tests"][0]["dk"] =
        flip(k["testGroups"][1]["tests"][0]["dk"].as_str().unwrap()).into();
    std::fs::write(dir.join("k.json"), k.to_string()).unwrap();
    let lines: Vec<String> = pq::ml_kem_keygen(&dir.join("k.json")).iter().map(|r| r.line()).collect();
    assert_eq!(lines, ["pq ml-kem-768 keygen 1/1", "pq ml-kem-1024 keygen 0/1"]);

    let mut d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("wycheproof-mlkem-768-decaps.json")).unwrap())
            .unwrap();
    d["testGroups"][0]["tests"][0]["K"] = flip(d["testGroups"][0]["tests"][0]["K"].as_str().unwrap()).into();
    std::fs::write(dir.join("d.json"), d.to_string()).unwrap();
    assert_eq!(pq::ml_kem_768_decaps(&dir.join("d.json")).line(), "pq ml-kem-768 decaps 0/1");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_changed_ml_kem_known_answer_byte_fails_its_case() {
    // Positive ML-KEM known answers: a changed byte of a published `c` or
    // `K` (encapsulation), or of a ciphertext or shared secret
    // (decapsulation), fails that case and only that one.
    use securemesh_test_vectors::pq;
    let src = securemesh_test_vectors::vectors_dir().join("pq");
    let dir = std::env::temp_dir().join(format!("securemesh-pq-mlkem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(src.join(name)).unwrap()).unwrap()
    };
    let flip = |v: &mut serde_json::Value| {
        let s = v.as_str().unwrap();
        let at = s.len() / 2;
        let c = if &s[at..at + 1] == "0" { "1" } else { "0" };
        *v = format!("{}{c}{}", &s[..at], &s[at + 1..]).into();
    };

    for (group, field, expected) in [
        (0, "c", ["pq ml-kem-768 encaps valid 1/2", "pq ml-kem-1024 encaps valid 2/2"]),
        (1, "K", ["pq ml-kem-768 encaps valid 2/2", "pq ml-kem-1024 encaps valid 1/2"]),
        (1, "ek", ["pq ml-kem-768 encaps valid 2/2", "pq ml-kem-1024 encaps valid 1/2"]),
    ] {
        let mut e = read("wycheproof-mlkem-encaps-valid.json");
        flip(&mut e["testGroups"][group]["tests"][1][field]);
        std::fs::write(dir.join("e.json"), e.to_string()).unwrap();
        let lines: Vec<String> =
            pq::ml_kem_encaps_valid(&dir.join("e.json")).iter().map(|r| r.line()).collect();
        assert_eq!(lines, expected, "{field}");
    }

    // A changed ciphertext takes the implicit-rejection path: another K.
    let mut d = read("wycheproof-mlkem-768-decaps-valid.json");
    flip(&mut d["tests"][1]["ciphertext"]);
    std::fs::write(dir.join("d768.json"), d.to_string()).unwrap();
    let r = pq::ml_kem_768_decaps_valid(&dir.join("d768.json"));
    assert_eq!(r.line(), "pq ml-kem-768 decaps valid 1/2");
    assert!(r.failures[0].contains("case 1"), "{:?}", r.failures);

    let mut d = read("wycheproof-mlkem-1024-decaps-valid.json");
    flip(&mut d["tests"][0]["expected_shared_secret"]);
    std::fs::write(dir.join("d1024.json"), d.to_string()).unwrap();
    assert_eq!(
        pq::ml_kem_1024_decaps_valid(&dir.join("d1024.json")).line(),
        "pq ml-kem-1024 decaps valid 1/2"
    );

    // A changed d (first half of the seed) is another key pair: K differs.
    // A changed z (second half) leaves K as published: the ciphertexts are
    // genuine encapsulations, not the implicit-rejection path.
    let mut d = read("wycheproof-mlkem-1024-decaps-valid.json");
    let seed = d["tests"][1]["private_key"].as_str().unwrap().to_string();
    let nibble = |c: &str| if c == "0" { "1" } else { "0" };
    d["tests"][1]["private_key"] = format!("{}{}", nibble(&seed[..1]), &seed[1..]).into();
    std::fs::write(dir.join("k1024.json"), d.to_string()).unwrap();
    assert_eq!(
        pq::ml_kem_1024_decaps_valid(&dir.join("k1024.json")).line(),
        "pq ml-kem-1024 decaps valid 1/2"
    );
    d["tests"][1]["private_key"] = format!("{}{}", &seed[..127], nibble(&seed[127..])).into();
    std::fs::write(dir.join("z1024.json"), d.to_string()).unwrap();
    assert_eq!(
        pq::ml_kem_1024_decaps_valid(&dir.join("z1024.json")).line(),
        "pq ml-kem-1024 decaps valid 2/2"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_changed_golden_byte_fails_the_run() {
    let path = securemesh_test_vectors::vectors_dir().join("state/envelope-v1.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut golden: state::EnvelopeGolden = serde_json::from_str(&text).unwrap();
    // Flip one nibble of the first sealed encoding and of the first plain one.
    for s in [&mut golden.sealed[0].encoded, &mut golden.plain[0].encoded] {
        let last = s.pop().unwrap();
        s.push(if last == '0' { '1' } else { '0' });
    }
    let dir = std::env::temp_dir().join(format!("securemesh-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("envelope-v1.json");
    std::fs::write(&bad, serde_json::to_string(&golden).unwrap()).unwrap();
    let r = state::envelope_v1(&bad);
    assert_eq!(r.total, golden.plain.len() + golden.sealed.len());
    assert_eq!(r.passed, r.total - 2, "{:?}", r.failures);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Writes the v1 golden file from today's code. Run once per released
/// version (`cargo test -p securemesh-test-vectors -- --ignored`); it never
/// overwrites an existing file.
#[test]
#[ignore]
fn write_envelope_v1_golden() {
    use securemesh_core::crypto::SuiteId;
    use securemesh_core::envelope::{self, Header, StateKind, StorageKey};
    let path = securemesh_test_vectors::vectors_dir().join("state/envelope-v1.json");
    assert!(!path.exists(), "golden files are never rewritten");
    let pattern =
        |n: usize, m: u8| (0..n).map(|i| (i as u8).wrapping_mul(m).wrapping_add(1)).collect::<Vec<u8>>();
    let mut plain = Vec::new();
    for (kind, version, body) in [(1u8, 1u16, Vec::new()), (2, 1, pattern(40, 3)), (4, 7, pattern(300, 11))] {
        let h = Header { kind: StateKind(kind), version, suite: SuiteId::DEFAULT };
        let mut out = vec![0u8; envelope::HEADER_LEN + body.len()];
        let n = envelope::encode(&h, &mut out, |w| w.write_bytes(&body)).unwrap();
        plain.push(state::PlainCase {
            kind,
            version,
            suite: 3,
            body: hex::encode(&body),
            encoded: hex::encode(&out[..n]),
        });
    }
    let mut sealed = Vec::new();
    for (kind, generation, body) in
        [(2u8, 0u64, Vec::new()), (3, 1, pattern(32, 5)), (1, u64::MAX - 1, pattern(100, 7))]
    {
        let h = Header { kind: StateKind(kind), version: 1, suite: SuiteId::DEFAULT };
        let key_bytes: [u8; 32] = core::array::from_fn(|i| 0x40 + i as u8);
        let nonce: Vec<u8> = (0..12).map(|i| 0xa0 + i as u8 + kind).collect();
        let key = StorageKey::new(key_bytes);
        let mut out = vec![0u8; envelope::SEAL_OVERHEAD + body.len()];
        let n = envelope::seal(&key, &h, generation, &mut state::ReplayRng::new(&nonce), &mut out, |w| {
            w.write_bytes(&body)
        })
        .unwrap();
        sealed.push(state::SealedCase {
            kind,
            version: 1,
            suite: 3,
            generation,
            storage_key: hex::encode(key_bytes),
            nonce: hex::encode(&nonce),
            body: hex::encode(&body),
            encoded: hex::encode(&out[..n]),
        });
    }
    let golden = state::EnvelopeGolden {
        source: "securemesh-core persisted-state envelope, version 1; written by securemesh, \
                 MIT OR Apache-2.0"
            .into(),
        plain,
        sealed,
    };
    std::fs::write(&path, serde_json::to_string_pretty(&golden).unwrap() + "\n").unwrap();
}

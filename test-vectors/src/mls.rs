//! MLS conformance: the MLS working group's test vectors (RFC 9420
//! interop), filtered to ciphersuite 3. Source, licence and filtering are
//! in `mls/README.md`. Each file is one report; each entry one vector.

use crate::Report;
use securemesh_core::Secret;
use securemesh_core::codec::Reader;
use securemesh_core::crypto::{Ed25519, Signature};
use securemesh_mls_lite::crypto::{self, NH};
use securemesh_mls_lite::key_schedule::{self, EpochSecrets, GroupContext, PskInput};
use securemesh_mls_lite::secret_tree::{self, Ratchet, RatchetKind};
use securemesh_mls_lite::tree::RatchetTree;
use securemesh_mls_lite::tree_math;
use securemesh_mls_lite::treekem::{UpdatePath, node_key_pair};
use serde_json::Value;
use std::path::Path;

fn h(v: &Value) -> Result<Vec<u8>, String> {
    hex::decode(v.as_str().ok_or("not a string")?).map_err(|e| e.to_string())
}

fn u(v: &Value) -> Result<u64, String> {
    v.as_u64().ok_or_else(|| "not a number".to_string())
}

fn eq(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want { Ok(()) } else { Err(format!("{what} differs")) }
}

fn load(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    v.as_array().cloned().ok_or_else(|| "not an array".into())
}

fn run(name: &str, path: &Path, check: fn(&Value) -> Result<(), String>) -> Report {
    let mut r = Report::new(format!("mls {name}"));
    match load(path) {
        Ok(entries) => {
            for (i, e) in entries.iter().enumerate() {
                if e.get("cipher_suite").and_then(Value::as_u64).is_some_and(|s| s != 3) {
                    r.skip("not ciphersuite 3");
                    continue;
                }
                r.record(&format!("{name}[{i}]"), check(e));
            }
        }
        Err(e) => r.record(name, Err(e)),
    }
    r
}

fn opt(v: &Value) -> Option<u32> {
    v.as_u64().map(|x| x as u32)
}

fn tree_math_entry(e: &Value) -> Result<(), String> {
    let n = u(&e["n_leaves"])? as u32;
    if u(&e["n_nodes"])? as u32 != tree_math::node_width(n) {
        return Err("n_nodes".into());
    }
    if u(&e["root"])? as u32 != tree_math::root(n) {
        return Err("root".into());
    }
    for (field, f) in [
        ("left", &(|x, _| tree_math::left(x)) as &dyn Fn(u32, u32) -> Option<u32>),
        ("right", &|x, _| tree_math::right(x)),
        ("parent", &tree_math::parent),
        ("sibling", &tree_math::sibling),
    ] {
        let arr = e[field].as_array().ok_or(field)?;
        for (x, want) in arr.iter().enumerate() {
            if f(x as u32, n) != opt(want) {
                return Err(format!("{field}({x})"));
            }
        }
    }
    Ok(())
}

fn crypto_basics_entry(e: &Value) -> Result<(), String> {
    let rh = &e["ref_hash"];
    let label = rh["label"].as_str().ok_or("label")?.as_bytes();
    eq("ref_hash", &crypto::ref_hash(label, &h(&rh["value"])?).map_err(|e| e.to_string())?, &h(&rh["out"])?)?;

    let x = &e["expand_with_label"];
    let mut out = vec![0u8; u(&x["length"])? as usize];
    crypto::expand_with_label(
        &h(&x["secret"])?,
        x["label"].as_str().ok_or("label")?.as_bytes(),
        &h(&x["context"])?,
        &mut out,
    )
    .map_err(|e| e.to_string())?;
    eq("expand_with_label", &out, &h(&x["out"])?)?;

    let d = &e["derive_secret"];
    let got = crypto::derive_secret(&h(&d["secret"])?, d["label"].as_str().ok_or("label")?.as_bytes())
        .map_err(|e| e.to_string())?;
    eq("derive_secret", got.expose(), &h(&d["out"])?)?;

    let t = &e["derive_tree_secret"];
    let mut out = vec![0u8; u(&t["length"])? as usize];
    crypto::derive_tree_secret(
        &h(&t["secret"])?,
        t["label"].as_str().ok_or("label")?.as_bytes(),
        u(&t["generation"])? as u32,
        &mut out,
    )
    .map_err(|e| e.to_string())?;
    eq("derive_tree_secret", &out, &h(&t["out"])?)?;

    let s = &e["sign_with_label"];
    let label = s["label"].as_str().ok_or("label")?.as_bytes();
    let content = h(&s["content"])?;
    let seed: [u8; 32] = h(&s["priv"])?.try_into().map_err(|_| "priv length")?;
    let public: [u8; 32] = h(&s["pub"])?.try_into().map_err(|_| "pub length")?;
    let sig: [u8; 64] = h(&s["signature"])?.try_into().map_err(|_| "sig length")?;
    let mut scratch = vec![0u8; content.len() + 64];
    crypto::verify_with_label(&public, label, &content, &sig, &mut scratch)
        .map_err(|e| format!("verify: {e}"))?;
    let key = Ed25519::signing_key(&Secret::new(seed));
    eq("public key", &Ed25519::verifying_key(&key), &public)?;
    // Ed25519 is deterministic: our signature must be the published one.
    let ours = crypto::sign_with_label(&key, label, &content, &mut scratch).map_err(|e| e.to_string())?;
    eq("sign_with_label", &ours, &sig)?;

    let c = &e["encrypt_with_label"];
    let label = c["label"].as_str().ok_or("label")?.as_bytes();
    let context = h(&c["context"])?;
    let ct = h(&c["ciphertext"])?;
    let (body, tag) = ct.split_at(ct.len().checked_sub(16).ok_or("ciphertext too short")?);
    let tag: [u8; 16] = tag.try_into().map_err(|_| "tag")?;
    let private = Secret::new(<[u8; 32]>::try_from(h(&c["priv"])?).map_err(|_| "priv length")?);
    let mut buf = body.to_vec();
    let mut scratch = vec![0u8; context.len() + 64];
    crypto::decrypt_with_label(
        &private,
        label,
        &context,
        &h(&c["kem_output"])?,
        &mut buf,
        &tag,
        &mut scratch,
    )
    .map_err(|e| format!("decrypt: {e}"))?;
    eq("decrypt_with_label", &buf, &h(&c["plaintext"])?)?;
    // And our own encryption to the published key opens with its private key.
    let public: [u8; 32] = h(&c["pub"])?.try_into().map_err(|_| "pub length")?;
    let mut rng = securemesh_core::testing::TestRng::new(3);
    let mut msg = h(&c["plaintext"])?;
    let (kem_output, tag) =
        crypto::encrypt_with_label(&public, label, &context, &mut msg, &mut scratch, &mut rng)
            .map_err(|e| e.to_string())?;
    crypto::decrypt_with_label(&private, label, &context, &kem_output, &mut msg, &tag, &mut scratch)
        .map_err(|e| format!("round trip: {e}"))?;
    eq("encrypt round trip", &msg, &h(&c["plaintext"])?)
}

fn key_schedule_entry(e: &Value) -> Result<(), String> {
    let group_id = h(&e["group_id"])?;
    let mut init = h(&e["initial_init_secret"])?;
    for (i, ep) in e["epochs"].as_array().ok_or("epochs")?.iter().enumerate() {
        let at = |f: &str| format!("epoch {i} {f}");
        let tree_hash = h(&ep["tree_hash"])?;
        let cth = h(&ep["confirmed_transcript_hash"])?;
        let gc = GroupContext {
            group_id: &group_id,
            epoch: i as u64,
            tree_hash: &tree_hash,
            confirmed_transcript_hash: &cth,
            extensions: &[],
        };
        let mut gcb = vec![0u8; 512];
        let n = gc.encode(&mut gcb).map_err(|e| e.to_string())?;
        let gcb = gcb.get(..n).ok_or("group context")?;
        eq(&at("group_context"), gcb, &h(&ep["group_context"])?)?;
        let s = EpochSecrets::derive(&init, &h(&ep["commit_secret"])?, &h(&ep["psk_secret"])?, gcb)
            .map_err(|e| e.to_string())?;
        for (field, got) in [
            ("joiner_secret", &s.joiner),
            ("welcome_secret", &s.welcome),
            ("sender_data_secret", &s.sender_data),
            ("encryption_secret", &s.encryption),
            ("exporter_secret", &s.exporter),
            ("external_secret", &s.external),
            ("confirmation_key", &s.confirmation_key),
            ("membership_key", &s.membership_key),
            ("resumption_psk", &s.resumption_psk),
            ("epoch_authenticator", &s.epoch_authenticator),
            ("init_secret", &s.init),
        ] {
            eq(&at(field), got.expose(), &h(&ep[field])?)?;
        }
        eq(&at("external_pub"), &s.external_public(), &h(&ep["external_pub"])?)?;
        let x = &ep["exporter"];
        let mut out = vec![0u8; u(&x["length"])? as usize];
        // The vector's exporter label is used as the bytes of its (hex) string,
        // as the implementations that produced it do; the context is binary.
        let label = x["label"].as_str().ok_or("label")?.as_bytes();
        s.export(label, &h(&x["context"])?, &mut out).map_err(|e| e.to_string())?;
        eq(&at("exporter"), &out, &h(&x["secret"])?)?;
        init = s.init.expose().to_vec();
    }
    Ok(())
}

fn psk_secret_entry(e: &Value) -> Result<(), String> {
    let psks = e["psks"].as_array().ok_or("psks")?;
    let mut ids = Vec::new();
    let mut values = Vec::new();
    for p in psks {
        let mut id = vec![0u8; 256];
        let n = key_schedule::external_psk_id(&h(&p["psk_id"])?, &h(&p["psk_nonce"])?, &mut id)
            .map_err(|e| e.to_string())?;
        id.truncate(n);
        ids.push(id);
        values.push(h(&p["psk"])?);
    }
    let inputs: Vec<PskInput<'_>> =
        ids.iter().zip(values.iter()).map(|(id, psk)| PskInput { id, psk }).collect();
    let got = key_schedule::psk_secret(&inputs).map_err(|e| e.to_string())?;
    eq("psk_secret", got.expose(), &h(&e["psk_secret"])?)
}

fn secret_tree_entry(e: &Value) -> Result<(), String> {
    let sd = &e["sender_data"];
    let sds = Secret::new(<[u8; NH]>::try_from(h(&sd["sender_data_secret"])?).map_err(|_| "length")?);
    let kn = secret_tree::sender_data_key_nonce(&sds, &h(&sd["ciphertext"])?).map_err(|e| e.to_string())?;
    eq("sender data key", kn.key.expose(), &h(&sd["key"])?)?;
    eq("sender data nonce", &kn.nonce, &h(&sd["nonce"])?)?;
    let enc = Secret::new(<[u8; NH]>::try_from(h(&e["encryption_secret"])?).map_err(|_| "length")?);
    let leaves = e["leaves"].as_array().ok_or("leaves")?;
    let n = leaves.len() as u32;
    for (leaf, gens) in leaves.iter().enumerate() {
        let ls = secret_tree::leaf_secret(&enc, leaf as u32, n).map_err(|e| e.to_string())?;
        let mut hs = Ratchet::new(&ls, RatchetKind::Handshake).map_err(|e| e.to_string())?;
        let mut app = Ratchet::new(&ls, RatchetKind::Application).map_err(|e| e.to_string())?;
        for g in gens.as_array().ok_or("generations")? {
            let gen_ = u(&g["generation"])? as u32;
            for (kind, r) in [("handshake", &mut hs), ("application", &mut app)] {
                r.advance_to(gen_).map_err(|e| e.to_string())?;
                let kn = r.current().map_err(|e| e.to_string())?;
                eq(
                    &format!("leaf {leaf} gen {gen_} {kind} key"),
                    kn.key.expose(),
                    &h(&g[format!("{kind}_key")])?,
                )?;
                eq(
                    &format!("leaf {leaf} gen {gen_} {kind} nonce"),
                    &kn.nonce,
                    &h(&g[format!("{kind}_nonce")])?,
                )?;
            }
        }
    }
    Ok(())
}

fn deserialization_entry(e: &Value) -> Result<(), String> {
    let header = h(&e["vlbytes_header"])?;
    let want = u(&e["length"])?;
    let mut r = Reader::new(&header);
    let got = r.read_varint().map_err(|e| e.to_string())?;
    r.finish().map_err(|e| e.to_string())?;
    if u64::from(got) != want {
        return Err("length differs".into());
    }
    let mut buf = [0u8; 4];
    let mut w = securemesh_core::codec::Writer::new(&mut buf);
    w.write_varint(got).map_err(|e| e.to_string())?;
    let n = w.finish().map_err(|e| e.to_string())?;
    eq("re-encoding", buf.get(..n).ok_or("length")?, &header)
}

fn tree_validation_entry(e: &Value) -> Result<(), String> {
    let bytes = h(&e["tree"])?;
    let mut tree: Box<RatchetTree<64, 384>> = Box::default();
    tree.decode(&bytes).map_err(|e| format!("decode: {e}"))?;
    let mut out = vec![0u8; bytes.len() + 16];
    let n = tree.encode(&mut out).map_err(|e| format!("encode: {e}"))?;
    eq("re-encoding", out.get(..n).ok_or("length")?, &bytes)?;
    for (x, want) in e["tree_hashes"].as_array().ok_or("tree_hashes")?.iter().enumerate() {
        let got = tree.tree_hash(x as u32).map_err(|e| e.to_string())?;
        eq(&format!("tree hash of node {x}"), &got, &h(want)?)?;
    }
    for (x, want) in e["resolutions"].as_array().ok_or("resolutions")?.iter().enumerate() {
        let mut got = Vec::new();
        tree.resolution(x as u32, &mut |n| got.push(u64::from(n)));
        let want: Vec<u64> = want.as_array().ok_or("resolution")?.iter().filter_map(Value::as_u64).collect();
        if got != want {
            return Err(format!("resolution of node {x}"));
        }
    }
    let mut scratch = vec![0u8; 4096];
    tree.validate(&h(&e["group_id"])?, &mut scratch).map_err(|e| format!("validate: {e}"))
}

fn secret32(v: &Value) -> Result<crypto::Secret32, String> {
    Ok(Secret::new(<[u8; NH]>::try_from(h(v)?).map_err(|_| "not 32 bytes")?))
}

fn treekem_entry(e: &Value) -> Result<(), String> {
    let as_u64 = |v: &Value| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).ok_or("number");
    let group_id = h(&e["group_id"])?;
    let epoch = as_u64(&e["epoch"])?;
    let cth = h(&e["confirmed_transcript_hash"])?;
    let mut tree: Box<RatchetTree<64, 384>> = Box::default();
    tree.decode(&h(&e["ratchet_tree"])?).map_err(|e| format!("decode: {e}"))?;
    let mut scratch = vec![0u8; 8192];
    tree.validate(&group_id, &mut scratch).map_err(|e| format!("tree before: {e}"))?;
    let leaves = e["leaves_private"].as_array().ok_or("leaves_private")?;
    for (u, up) in e["update_paths"].as_array().ok_or("update_paths")?.iter().enumerate() {
        let sender = as_u64(&up["sender"])? as u32;
        let bytes = h(&up["update_path"])?;
        let path = UpdatePath::from_bytes(&bytes).map_err(|e| format!("update path {u}: {e}"))?;
        let mut after: Box<RatchetTree<64, 384>> = tree.clone();
        after
            .merge_update_path(sender, &path, &group_id, &mut scratch)
            .map_err(|e| format!("merge {u}: {e}"))?;
        let tree_hash_after = after.tree_hash(after.root()).map_err(|e| e.to_string())?;
        eq(&format!("tree hash after {u}"), &tree_hash_after, &h(&up["tree_hash_after"])?)?;
        after.validate(&group_id, &mut scratch).map_err(|e| format!("tree after {u}: {e}"))?;
        let gc = GroupContext {
            group_id: &group_id,
            epoch,
            tree_hash: &tree_hash_after,
            confirmed_transcript_hash: &cth,
            extensions: &[],
        };
        let mut gcb = vec![0u8; 512];
        let n = gc.encode(&mut gcb).map_err(|e| e.to_string())?;
        let gcb = gcb.get(..n).ok_or("gc")?;
        let expected = up["path_secrets"].as_array().ok_or("path_secrets")?;
        for leaf in leaves {
            let index = as_u64(&leaf["index"])? as u32;
            if index == sender {
                continue;
            }
            let leaf_priv = secret32(&leaf["encryption_priv"])?;
            let mut parent_privs = Vec::new();
            for ps in leaf["path_secrets"].as_array().ok_or("leaf path_secrets")? {
                let node = as_u64(&ps["node"])? as u32;
                let (sk, _) = node_key_pair(&secret32(&ps["path_secret"])?).map_err(|e| e.to_string())?;
                parent_privs.push((node, sk));
            }
            let key_for = |x: u32| {
                if x == tree_math::leaf_to_node(index) {
                    Some(leaf_priv.clone())
                } else {
                    parent_privs.iter().find(|(n, _)| *n == x).map(|(_, k)| k.clone())
                }
            };
            let (node, secret) = tree
                .decrypt_path_secret(sender, index, &path, &key_for, gcb, &mut scratch)
                .map_err(|e| format!("path {u} leaf {index}: decrypt: {e}"))?;
            let want = expected.get(index as usize).ok_or("path secret index")?;
            eq(&format!("path {u} leaf {index} path secret"), secret.expose(), &h(want)?)?;
            let commit = tree.commit_secret(sender, &path, node, &secret).map_err(|e| e.to_string())?;
            eq(&format!("path {u} leaf {index} commit secret"), commit.expose(), &h(&up["commit_secret"])?)?;
        }
    }
    Ok(())
}

/// Every MLS vector file this build supports, in print order.
pub fn reports(dir: &Path) -> Vec<Report> {
    vec![
        run("tree-math", &dir.join("tree-math.json"), tree_math_entry),
        run("crypto-basics", &dir.join("crypto-basics.json"), crypto_basics_entry),
        run("deserialization", &dir.join("deserialization.json"), deserialization_entry),
        run("secret-tree", &dir.join("secret-tree.json"), secret_tree_entry),
        run("key-schedule", &dir.join("key-schedule.json"), key_schedule_entry),
        run("psk_secret", &dir.join("psk_secret.json"), psk_secret_entry),
        run("tree-validation", &dir.join("tree-validation.json"), tree_validation_entry),
        run("treekem", &dir.join("treekem.json"), treekem_entry),
    ]
}

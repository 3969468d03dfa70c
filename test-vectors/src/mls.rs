//! MLS conformance: the MLS working group's test vectors (RFC 9420
//! interop), filtered to ciphersuite 3. Source, licence and filtering are
//! in `mls/README.md`. Each file is one report; each entry one vector.

use crate::Report;
use securemesh_core::Secret;
use securemesh_core::codec::Reader;
use securemesh_core::codec::Writer;
use securemesh_core::crypto::{Ed25519, Signature};
use securemesh_core::testing::{ReplayRng, TestRng};
use securemesh_mls_lite::commit::{CommitEvent, ProposalCache, PskStore, ResumptionPsk, apply_to_tree};
use securemesh_mls_lite::crypto::{self, NH};
use securemesh_mls_lite::framing::{
    self, AuthenticatedContent, Content, ContentType, FramedContent, FramedContentAuthData, PrivateMessage,
    PublicMessage, SecretTreeKeys, Sender, SenderKeys,
};
use securemesh_mls_lite::key_schedule::{self, EpochSecrets, GroupContext, PskInput};
use securemesh_mls_lite::messages::{
    Commit, GroupSecrets, KeyPackage, Proposal, ProposalBody, Welcome, WireFormat, proposal_type,
};
use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
use securemesh_mls_lite::secret_tree::{self, Ratchet, RatchetKind};
use securemesh_mls_lite::sender_ratchets::SenderRatchets;
use securemesh_mls_lite::transcript::{self, TranscriptHashes};
use securemesh_mls_lite::tree::RatchetTree;
use securemesh_mls_lite::tree_math;
use securemesh_mls_lite::treekem::{UpdatePath, node_key_pair};
use securemesh_mls_lite::welcome::{self, ExternalPsk, JoinKeys};
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
    run_suite(name, path, 3, check)
}

/// [`run`] for the entries of ciphersuite `suite`.
fn run_suite(name: &str, path: &Path, suite: u64, check: fn(&Value) -> Result<(), String>) -> Report {
    let mut r = Report::new(format!("mls {name}"));
    match load(path) {
        Ok(entries) => {
            for (i, e) in entries.iter().enumerate() {
                if e.get("cipher_suite").and_then(Value::as_u64).is_some_and(|s| s != suite) {
                    r.skip(&format!("not ciphersuite {suite}"));
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
    if Some(u(&e["n_nodes"])? as u32) != tree_math::node_width(n) {
        return Err("n_nodes".into());
    }
    if Some(u(&e["root"])? as u32) != tree_math::root(n) {
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
    key_schedule_run(e, 3, &|s| s.external_public().to_vec())
}

/// A key-schedule vector (the mlswg format) of a suite with suite 3's KDF:
/// its GroupContext names `suite`, `external_pub` derives the suite's HPKE
/// public key from the epoch's secrets.
fn key_schedule_run(
    e: &Value,
    suite: u16,
    external_pub: &dyn Fn(&EpochSecrets) -> Vec<u8>,
) -> Result<(), String> {
    let group_id = h(&e["group_id"])?;
    let mut init = h(&e["initial_init_secret"])?;
    for (i, ep) in e["epochs"].as_array().ok_or("epochs")?.iter().enumerate() {
        let at = |f: &str| format!("epoch {i} {f}");
        let tree_hash = h(&ep["tree_hash"])?;
        let cth = h(&ep["confirmed_transcript_hash"])?;
        let gc = GroupContext {
            cipher_suite: securemesh_mls_lite::crypto::CIPHERSUITE,
            group_id: &group_id,
            epoch: i as u64,
            tree_hash: &tree_hash,
            confirmed_transcript_hash: &cth,
            extensions: &[],
        };
        let mut gcb = vec![0u8; 512];
        let n = gc.encode_for_suite(suite, &mut gcb).map_err(|e| e.to_string())?;
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
        eq(&at("external_pub"), &external_pub(&s), &h(&ep["external_pub"])?)?;
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

/// One entry of our suite-0x004D vectors (`xwing-0x004d.json`, see
/// `mls/README.md`): X-Wing's HPKE `DeriveKeyPair`, `EncryptWithLabel`
/// with a recorded `eseed` (reproduced byte for byte, then opened), the
/// external-commit `init_secret`, and a key-schedule run whose
/// GroupContext names suite 0x004D.
fn xwing_entry(e: &Value) -> Result<(), String> {
    use securemesh_mls_lite::crypto::xwing;
    match e["kind"].as_str().ok_or("kind")? {
        "derive_key_pair" => {
            let (private, public) = xwing::derive_key_pair(&h(&e["ikm"])?);
            eq("priv", private.expose(), &h(&e["priv"])?)?;
            eq("pub", &public, &h(&e["pub"])?)
        }
        "encrypt_with_label" => {
            let label = e["label"].as_str().ok_or("label")?.as_bytes();
            let (context, eseed, plaintext) = (h(&e["context"])?, h(&e["eseed"])?, h(&e["plaintext"])?);
            let mut scratch = vec![0u8; context.len() + 64];
            let mut rng = ReplayRng::new(&eseed);
            let mut buf = plaintext.clone();
            let (kem_output, tag) =
                xwing::encrypt_with_label(&h(&e["pub"])?, label, &context, &mut buf, &mut scratch, &mut rng)
                    .map_err(ctx("encrypt"))?;
            eq("eseed drawn", &rng.drawn().to_be_bytes(), &eseed.len().to_be_bytes())?;
            eq("kem_output", &kem_output, &h(&e["kem_output"])?)?;
            eq("ciphertext", &[&buf[..], &tag].concat(), &h(&e["ciphertext"])?)?;
            xwing::decrypt_with_label(
                &secret32(&e["priv"])?,
                label,
                &context,
                &kem_output,
                &mut buf,
                &tag,
                &mut scratch,
            )
            .map_err(ctx("decrypt"))?;
            eq("decrypt_with_label", &buf, &plaintext)
        }
        "external_init" => {
            let external = secret32(&e["external_secret"])?;
            let (_, external_pub) = xwing::derive_key_pair(external.expose());
            eq("external_pub", &external_pub, &h(&e["external_pub"])?)?;
            let eseed = h(&e["eseed"])?;
            let (kem_output, sent) = xwing::external_init_send(&external_pub, &mut ReplayRng::new(&eseed))
                .map_err(ctx("external_init_send"))?;
            eq("kem_output", &kem_output, &h(&e["kem_output"])?)?;
            eq("init_secret (joiner)", sent.expose(), &h(&e["init_secret"])?)?;
            let received =
                xwing::external_init_receive(&external, &kem_output).map_err(ctx("external_init_receive"))?;
            eq("init_secret (member)", received.expose(), &h(&e["init_secret"])?)
        }
        "key_schedule" => key_schedule_run(e, xwing::CIPHERSUITE, &|s| {
            xwing::derive_key_pair(s.external.expose()).1.to_vec()
        }),
        other => Err(format!("unknown kind {other}")),
    }
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
    // The group's stateful secret tree (node secrets erased as used) must
    // give the same keys, each once, with leaves visited in reverse.
    let mut state: Box<SenderRatchets<32>> =
        Box::new(SenderRatchets::new(&enc, n).map_err(|e| format!("secret tree state: {e}"))?);
    for (leaf, gens) in leaves.iter().enumerate().rev() {
        for g in gens.as_array().ok_or("generations")? {
            let gen_ = u(&g["generation"])? as u32;
            for (kind, k) in
                [("handshake", RatchetKind::Handshake), ("application", RatchetKind::Application)]
            {
                let what = format!("state: leaf {leaf} gen {gen_} {kind}");
                let kn = state.key_nonce(leaf as u32, gen_, k).map_err(|e| format!("{what}: {e}"))?;
                eq(&format!("{what} key"), kn.key.expose(), &h(&g[format!("{kind}_key")])?)?;
                eq(&format!("{what} nonce"), &kn.nonce, &h(&g[format!("{kind}_nonce")])?)?;
                state.consume(leaf as u32, gen_, k).map_err(|e| format!("{what}: {e}"))?;
                if state.key_nonce(leaf as u32, gen_, k).is_ok() {
                    return Err(format!("{what}: key still available after use"));
                }
            }
        }
    }
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
            cipher_suite: securemesh_mls_lite::crypto::CIPHERSUITE,
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
                if Some(x) == tree_math::leaf_to_node(index) {
                    Some(leaf_priv.duplicate())
                } else {
                    parent_privs.iter().find(|(n, _)| *n == x).map(|(_, k)| k.duplicate())
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

/// `treekem.json` driven as a committer: the members whose private keys
/// the entry gives are built on its tree (`testing::member_of_tree`, one
/// shared epoch), then each of them in turn commits an UpdatePath of its
/// own (random path secrets; PublicMessage and PrivateMessage in turn),
/// which every other one must process to the same epoch authenticator,
/// tree hash and exporter value. The vector's trees (blank nodes,
/// unmerged leaves, truncated widths) are not shapes our own groups make.
fn treekem_committer_entry(e: &Value) -> Result<(), String> {
    use securemesh_mls_lite::pending_commit::CommitOptions;
    use securemesh_mls_lite::testing::{TreeMember, member_of_tree};
    let as_u64 = |v: &Value| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).ok_or("number");
    let group_id = h(&e["group_id"])?;
    let epoch = as_u64(&e["epoch"])?;
    let cth = h(&e["confirmed_transcript_hash"])?;
    let tree = h(&e["ratchet_tree"])?;
    let init_secret = Secret::new([0x42; NH]);
    let mut keys = Vec::new();
    for leaf in e["leaves_private"].as_array().ok_or("leaves_private")? {
        let mut path = Vec::new();
        for ps in leaf["path_secrets"].as_array().ok_or("leaf path_secrets")? {
            path.push((as_u64(&ps["node"])? as u32, secret32(&ps["path_secret"])?));
        }
        let index = as_u64(&leaf["index"])? as u32;
        keys.push((index, secret32(&leaf["encryption_priv"])?, secret32(&leaf["signature_priv"])?, path));
    }
    let mut rng = TestRng::new(0x7e4e_3a11);
    let mut scratch = vec![0u8; 16 * 1024];
    for (round, (sender, ..)) in keys.iter().enumerate() {
        // Everyone (again) at the vector's epoch.
        let mut members: Vec<Box<Group>> = Vec::new();
        for (leaf, enc, sig, path) in &keys {
            let member = TreeMember {
                group_id: &group_id,
                epoch,
                confirmed_transcript_hash: &cth,
                tree: &tree,
                leaf: *leaf,
                encryption_priv: enc,
                signature_priv: sig,
                path_secrets: path,
            };
            let mut g: Box<Group> = Box::default();
            member_of_tree(&member, &init_secret, &mut g, &mut scratch)
                .map_err(|x| format!("leaf {leaf}: {x}"))?;
            members.push(g);
        }
        let wire_format = if round % 2 == 0 { WireFormat::PublicMessage } else { WireFormat::PrivateMessage };
        let options = CommitOptions { wire_format, update_path: true, ..CommitOptions::default() };
        let by = keys.iter().position(|k| k.0 == *sender).ok_or("sender")?;
        let mut pending: Box<Group> = Box::default();
        let mut commit = vec![0u8; 16 * 1024];
        let mut work = vec![0u8; Group::send_commit_scratch_len(0)];
        let committer = members.get_mut(by).ok_or("sender")?;
        let out = committer
            .commit(&[], &[], &options, &mut rng, &mut pending, &mut commit, &mut [], &mut work)
            .map_err(|x| format!("leaf {sender} commits: {x}"))?;
        committer.merge_pending_commit(&mut pending).map_err(|x| x.to_string())?;
        let commit = commit.get(..out.commit_len).ok_or("commit length")?;
        for (i, m) in members.iter_mut().enumerate() {
            if i == by {
                continue;
            }
            let mut cache: Box<ProposalCache> = Box::default();
            let mut spare: Box<Group> = Box::default();
            let mut work = vec![0u8; Group::commit_scratch_len(out.commit_len)];
            match m.process_commit(commit, &mut cache, &PskStore::default(), &mut spare, &mut work) {
                Ok(CommitEvent::NewEpoch { .. }) => {}
                other => return Err(format!("leaf {sender}'s commit at leaf {}: {other:?}", m.own_leaf())),
            }
        }
        let first = members.get(by).ok_or("sender")?;
        let mut want = [0u8; 32];
        first.export_secret(b"treekem", b"", &mut want).map_err(|x| x.to_string())?;
        for m in &members {
            let mut got = [0u8; 32];
            m.export_secret(b"treekem", b"", &mut got).map_err(|x| x.to_string())?;
            if m.epoch_authenticator().expose() != first.epoch_authenticator().expose()
                || m.tree_hash() != first.tree_hash()
                || got != want
            {
                return Err(format!("leaf {sender}'s commit: leaf {} disagrees", m.own_leaf()));
            }
        }
    }
    Ok(())
}

fn key_package_of(bytes: &[u8]) -> Result<KeyPackage<'_>, String> {
    match MlsMessage::from_bytes(bytes).map_err(ctx("key_package"))?.body {
        MlsMessageBody::KeyPackage(k) => Ok(k),
        _ => Err("key_package: not a KeyPackage".into()),
    }
}

fn welcome_of(bytes: &[u8]) -> Result<Welcome<'_>, String> {
    match MlsMessage::from_bytes(bytes).map_err(ctx("welcome"))?.body {
        MlsMessageBody::Welcome(w) => Ok(w),
        _ => Err("welcome: not a Welcome".into()),
    }
}

/// `welcome.json`: open our GroupSecrets with `init_priv`, the GroupInfo
/// with the welcome secret, verify its signature with `signer_pub` and its
/// confirmation tag with the key schedule run from `joiner_secret` (the
/// vector carries no ratchet tree, so this is not a full join).
fn welcome_entry(e: &Value) -> Result<(), String> {
    let kp_bytes = h(&e["key_package"])?;
    let kp = key_package_of(&kp_bytes)?;
    let w_bytes = h(&e["welcome"])?;
    let welcome = welcome_of(&w_bytes)?;
    let init_priv = secret32(&e["init_priv"])?;
    let signer: [u8; 32] = h(&e["signer_pub"])?.try_into().map_err(|_| "signer_pub length")?;
    let mut gs_buf = vec![0u8; w_bytes.len()];
    let mut gi_buf = vec![0u8; w_bytes.len()];
    let mut scratch = vec![0u8; 2 * w_bytes.len() + 256];
    let gs = welcome::open_group_secrets(&welcome, &kp, &init_priv, &mut gs_buf, &mut scratch)
        .map_err(ctx("group secrets"))?;
    let psk = welcome::psk_secret_for(&gs, &[]).map_err(ctx("psk secret"))?;
    let ws = welcome::welcome_secret(gs.joiner_secret, &psk).map_err(ctx("welcome secret"))?;
    let gi = welcome::open_group_info(&welcome, &ws, &mut gi_buf).map_err(ctx("group info"))?;
    gi.verify(&signer, &mut scratch).map_err(ctx("group info signature"))?;
    let n = gi.group_context.encode(&mut scratch).map_err(ctx("group context"))?;
    let joiner = secret32(&Value::String(hex::encode(gs.joiner_secret)))?;
    let s = EpochSecrets::from_joiner(joiner, psk.expose(), scratch.get(..n).ok_or("gc")?)
        .map_err(ctx("key schedule"))?;
    eq("welcome secret", s.welcome.expose(), ws.expose())?;
    transcript::verify_confirmation_tag(
        s.confirmation_key.expose(),
        gi.group_context.confirmed_transcript_hash,
        gi.confirmation_tag,
    )
    .map_err(ctx("confirmation tag"))
}

/// Why a passive-client entry of `file` is skipped when the profile
/// answers [`securemesh_mls_lite::Error::Unsupported`] (no entry does
/// today; the expected skip count in `tests/conformance.rs` would catch one).
fn unsupported_reason(file: &str) -> &'static str {
    match file {
        "branch" | "reinit" => "branch/reinit resumption PSKs unsupported",
        _ => "a proposal type or PSK the profile does not support",
    }
}

/// A passive-client entry (`passive-client-*.json`, `interop-passive/*.json`):
/// join from `welcome` with the KeyPackage's private keys (and
/// `ratchet_tree` when the GroupInfo lacks the extension), check
/// `initial_epoch_authenticator`, then process every epoch: each proposal
/// into the proposal cache, then the commit, and compare the epoch's
/// `epoch_authenticator`. The caller's part is played here: the resumption
/// PSK of every epoch is kept for later PreSharedKey proposals. `Ok(None)`:
/// the entry needs something this profile does not support
/// ([`securemesh_mls_lite::Error::Unsupported`]).
fn passive_entry(e: &Value) -> Result<Option<()>, String> {
    let kp_bytes = h(&e["key_package"])?;
    let w_bytes = h(&e["welcome"])?;
    let keys = JoinKeys {
        key_package: key_package_of(&kp_bytes)?,
        init_priv: &secret32(&e["init_priv"])?,
        encryption_priv: &secret32(&e["encryption_priv"])?,
        signature_priv: &secret32(&e["signature_priv"])?,
    };
    let welcome = welcome_of(&w_bytes)?;
    let tree = if e["ratchet_tree"].is_null() { None } else { Some(h(&e["ratchet_tree"])?) };
    let mut psk_bytes = Vec::new();
    for p in e["external_psks"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        psk_bytes.push((h(&p["psk_id"])?, h(&p["psk"])?));
    }
    let psks: Vec<ExternalPsk<'_>> = psk_bytes.iter().map(|(id, psk)| ExternalPsk { id, psk }).collect();
    let mut group: Box<Group> = Box::default();
    let mut spare: Box<Group> = Box::default();
    let mut cache: Box<ProposalCache> = Box::default();
    let mut scratch = vec![0u8; Group::scratch_len(w_bytes.len())];
    match group.join_into(&welcome, &keys, tree.as_deref(), &psks, &mut scratch) {
        Err(securemesh_mls_lite::Error::Unsupported) => return Ok(None),
        r => r.map_err(ctx("join"))?,
    }
    eq(
        "initial epoch authenticator",
        group.epoch_authenticator().expose(),
        &h(&e["initial_epoch_authenticator"])?,
    )?;
    let mut history: Vec<(Vec<u8>, u64, crypto::Secret32)> = Vec::new();
    for (i, epoch) in e["epochs"].as_array().map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
        for (j, p) in epoch["proposals"].as_array().map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
            let bytes = h(p)?;
            let mut scratch = vec![0u8; Group::commit_scratch_len(bytes.len())];
            match group.process_proposal(&bytes, &mut cache, &mut scratch) {
                Err(securemesh_mls_lite::Error::Unsupported) => return Ok(None),
                r => r.map_err(|x| format!("epoch {i} proposal {j}: {x}"))?,
            };
        }
        let bytes = h(&epoch["commit"])?;
        let mut scratch = vec![0u8; Group::commit_scratch_len(bytes.len())];
        let before = group.epoch();
        // Keep each epoch's resumption PSK for later PSK proposals.
        history.push((group.group_id().to_vec(), before, group.secrets().resumption_psk.duplicate()));
        let resumption: Vec<ResumptionPsk<'_>> =
            history.iter().map(|(g, ep, psk)| ResumptionPsk { group_id: g, epoch: *ep, psk }).collect();
        let store = PskStore { external: &psks, resumption: &resumption };
        match group.process_commit(&bytes, &mut cache, &store, &mut spare, &mut scratch) {
            Err(securemesh_mls_lite::Error::Unsupported) => return Ok(None),
            Ok(CommitEvent::NewEpoch { epoch }) if epoch == before + 1 => {}
            Ok(other) => return Err(format!("epoch {i} commit: {other:?}")),
            Err(x) => return Err(format!("epoch {i} commit: {x}")),
        }
        eq(
            &format!("epoch {i} epoch authenticator"),
            group.epoch_authenticator().expose(),
            &h(&epoch["epoch_authenticator"])?,
        )?;
    }
    Ok(Some(()))
}

/// Run a passive-client file: one report line, entries needing an
/// unsupported feature counted as skipped with the file's reason.
fn run_passive(name: &str, file: &str, path: &Path) -> Report {
    let mut r = Report::new(format!("mls {name}"));
    match load(path) {
        Ok(entries) => {
            for (i, e) in entries.iter().enumerate() {
                if e.get("cipher_suite").and_then(Value::as_u64).is_some_and(|s| s != 3) {
                    r.skip("not ciphersuite 3");
                    continue;
                }
                match passive_entry(e) {
                    Ok(None) => r.skip(unsupported_reason(file)),
                    Ok(Some(())) => r.record(&format!("{name}[{i}]"), Ok(())),
                    Err(x) => r.record(&format!("{name}[{i}]"), Err(x)),
                }
            }
        }
        Err(e) => r.record(name, Err(e)),
    }
    r
}

/// Parsed `bytes` must keep them (`raw`) and write them back field by field.
fn reencodes(
    what: &str,
    bytes: &[u8],
    raw: &[u8],
    write: impl FnOnce(&mut Writer<'_>) -> Result<(), securemesh_mls_lite::Error>,
) -> Result<(), String> {
    eq(&format!("{what} as_bytes"), raw, bytes)?;
    let mut out = vec![0u8; bytes.len() + 64];
    let mut w = Writer::new(&mut out);
    write(&mut w).map_err(|e| format!("{what} write: {e}"))?;
    let n = w.finish().map_err(|e| format!("{what} write: {e}"))?;
    eq(&format!("{what} re-encoding"), out.get(..n).ok_or("length")?, bytes)
}

fn ctx(what: &str) -> impl Fn(securemesh_mls_lite::Error) -> String + '_ {
    move |x| format!("{what}: {x}")
}

fn framed<'a>(group_id: &'a [u8], epoch: u64, content: Content<'a>) -> FramedContent<'a> {
    FramedContent { group_id, epoch, sender: Sender::Member(1), authenticated_data: &[], content }
}

fn mls_message<'a>(what: &str, bytes: &'a [u8], want: WireFormat) -> Result<MlsMessage<'a>, String> {
    let m = MlsMessage::from_bytes(bytes).map_err(|e| format!("{what}: {e}"))?;
    if m.wire_format() != want {
        return Err(format!("{what}: wire format {:?}", m.wire_format()));
    }
    reencodes(what, bytes, m.as_bytes(), |w| m.write_to(w))?;
    Ok(m)
}

fn public_message<'a>(what: &str, bytes: &'a [u8]) -> Result<PublicMessage<'a>, String> {
    match mls_message(what, bytes, WireFormat::PublicMessage)?.body {
        MlsMessageBody::PublicMessage(m) => Ok(m),
        _ => Err(format!("{what}: not a PublicMessage")),
    }
}

fn private_message<'a>(what: &str, bytes: &'a [u8]) -> Result<PrivateMessage<'a>, String> {
    match mls_message(what, bytes, WireFormat::PrivateMessage)?.body {
        MlsMessageBody::PrivateMessage(m) => Ok(m),
        _ => Err(format!("{what}: not a PrivateMessage")),
    }
}

fn content_bytes<'a>(c: &Content<'a>) -> &'a [u8] {
    match c {
        Content::Application(d) => d,
        Content::Proposal(p) => p.as_bytes(),
        Content::Commit(c) => c.as_bytes(),
    }
}

/// `message-protection.json`: unprotect the published PublicMessages and
/// PrivateMessages (sender leaf 1 of a 2-leaf secret tree), compare their
/// content, and protect the same content ourselves: the PublicMessages
/// come out byte-identical (Ed25519 is deterministic), and so do the
/// PrivateMessages when replayed with their reuse guard and padding; fresh
/// protections (random reuse guard, other padding) unprotect again.
fn message_protection_entry(e: &Value) -> Result<(), String> {
    let err = ctx;
    let group_id = h(&e["group_id"])?;
    let tree_hash = h(&e["tree_hash"])?;
    let cth = h(&e["confirmed_transcript_hash"])?;
    let gc = GroupContext {
        cipher_suite: securemesh_mls_lite::crypto::CIPHERSUITE,
        group_id: &group_id,
        epoch: u(&e["epoch"])?,
        tree_hash: &tree_hash,
        confirmed_transcript_hash: &cth,
        extensions: &[],
    };
    let seed: [u8; 32] = h(&e["signature_priv"])?.try_into().map_err(|_| "signature_priv length")?;
    let sig_pub: [u8; 32] = h(&e["signature_pub"])?.try_into().map_err(|_| "signature_pub length")?;
    let sig_key = Ed25519::signing_key(&Secret::new(seed));
    eq("signature_pub", &Ed25519::verifying_key(&sig_key), &sig_pub)?;
    let encryption_secret = secret32(&e["encryption_secret"])?;
    let sender_data_secret = secret32(&e["sender_data_secret"])?;
    let membership_key = secret32(&e["membership_key"])?;
    let keys = SecretTreeKeys::new(&encryption_secret, 2, 1 << 16);
    let sender = Sender::Member(1);
    let mut scratch = vec![0u8; 4096];
    let mut out = vec![0u8; 4096];

    let proposal_bytes = h(&e["proposal"])?;
    let commit_bytes = h(&e["commit"])?;
    let application = h(&e["application"])?;
    let proposal = Proposal::from_bytes(&proposal_bytes).map_err(err("proposal"))?;
    reencodes("proposal", &proposal_bytes, proposal.as_bytes(), |w| proposal.write_to(w))?;
    let commit = Commit::from_bytes(&commit_bytes).map_err(err("commit"))?;
    reencodes("commit", &commit_bytes, commit.as_bytes(), |w| commit.write_to(w))?;
    let contents = [
        ("proposal", Content::Proposal(proposal)),
        ("commit", Content::Commit(commit)),
        ("application", Content::Application(&application)),
    ];

    // PublicMessage: proposal and commit.
    let mut commit_tag: Option<Vec<u8>> = None;
    for (name, content) in contents.iter().take(2) {
        let what = format!("{name}_pub");
        let bytes = h(&e[what.as_str()])?;
        let pm = public_message(&what, &bytes)?;
        if pm.content.sender != sender {
            return Err(format!("{what}: sender {:?}", pm.content.sender));
        }
        let ac = pm.verify(&sig_pub, &gc, &membership_key, &mut scratch).map_err(err(&what))?;
        eq(&format!("{what} content"), content_bytes(&ac.content.content), content_bytes(content))?;
        if let Some(tag) = ac.auth.confirmation_tag {
            commit_tag = Some(tag.to_vec());
        }
        // A wrong membership key or signature key is rejected.
        if pm.verify(&sig_pub, &gc, &encryption_secret, &mut scratch).is_ok() {
            return Err(format!("{what}: accepted with a wrong membership key"));
        }
        if pm.verify(&[9u8; 32], &gc, &membership_key, &mut scratch).is_ok() {
            return Err(format!("{what}: accepted with a wrong signature key"));
        }
        // Our own protection of the raw content is the published message.
        let fc = framed(&group_id, gc.epoch, *content);
        let sig =
            framing::sign(WireFormat::PublicMessage, &fc, &sig_key, &gc, &mut scratch).map_err(err(&what))?;
        let ours = AuthenticatedContent {
            wire_format: WireFormat::PublicMessage,
            content: fc,
            auth: FramedContentAuthData { signature: &sig, confirmation_tag: ac.auth.confirmation_tag },
        };
        let n = framing::protect_public(&ours, &gc, &membership_key, &mut out).map_err(err(&what))?;
        eq(&format!("{what} protected by us"), out.get(..n).ok_or("length")?, &bytes)?;
        let again = public_message(&what, out.get(..n).ok_or("length")?)?;
        again.verify(&sig_pub, &gc, &membership_key, &mut scratch).map_err(err(&what))?;
    }
    // Application data may not be sent as a PublicMessage.
    {
        let fc = framed(&group_id, gc.epoch, Content::Application(&application));
        let sig = framing::sign(WireFormat::PublicMessage, &fc, &sig_key, &gc, &mut scratch)
            .map_err(err("application_pub"))?;
        let ours = AuthenticatedContent {
            wire_format: WireFormat::PublicMessage,
            content: fc,
            auth: FramedContentAuthData { signature: &sig, confirmation_tag: None },
        };
        if framing::protect_public(&ours, &gc, &membership_key, &mut out).is_ok() {
            return Err("application data protected as a PublicMessage".into());
        }
    }

    // PrivateMessage: proposal, commit and application.
    for (name, content) in &contents {
        let what = format!("{name}_priv");
        let bytes = h(&e[what.as_str()])?;
        let pm = private_message(&what, &bytes)?;
        let mut plaintext = vec![0u8; pm.ciphertext.len()];
        let opened = pm.open(&sender_data_secret, &keys, &mut plaintext).map_err(err(&what))?;
        let sd = opened.sender_data();
        if sd.leaf_index != 1 {
            return Err(format!("{what}: sender data names leaf {}", sd.leaf_index));
        }
        let padding = opened.padding_len();
        let ac = opened.verify(&sig_pub, &gc, &mut scratch).map_err(err(&what))?;
        eq(&format!("{what} content"), content_bytes(&ac.content.content), content_bytes(content))?;
        if content.content_type() == ContentType::Commit
            && ac.auth.confirmation_tag.map(<[u8]>::to_vec) != commit_tag
        {
            return Err(format!("{what}: confirmation tag differs from commit_pub's"));
        }
        // A wrong sender data secret does not open it.
        let mut junk = vec![0u8; pm.ciphertext.len()];
        if pm.open(&encryption_secret, &keys, &mut junk).is_ok() {
            return Err(format!("{what}: opened with a wrong sender data secret"));
        }

        // Sign and protect the raw content ourselves.
        let fc = framed(&group_id, gc.epoch, *content);
        let sig = framing::sign(WireFormat::PrivateMessage, &fc, &sig_key, &gc, &mut scratch)
            .map_err(err(&what))?;
        let ours = AuthenticatedContent {
            wire_format: WireFormat::PrivateMessage,
            content: fc,
            auth: FramedContentAuthData { signature: &sig, confirmation_tag: ac.auth.confirmation_tag },
        };
        let kind = content.content_type().ratchet_kind();
        let kn = keys.key_nonce(1, sd.generation, kind).map_err(err(&what))?;
        // With the published reuse guard and padding: the published bytes.
        let mut rng = ReplayRng::new(&sd.reuse_guard);
        let n = framing::protect_private(
            &ours,
            &sender_data_secret,
            &kn,
            sd.generation,
            padding,
            &mut rng,
            &mut out,
        )
        .map_err(err(&what))?;
        eq(&format!("{what} protected by us"), out.get(..n).ok_or("length")?, &bytes)?;
        // With a fresh reuse guard, another generation and padding: unprotects.
        let generation = sd.generation + 3;
        let kn = keys.key_nonce(1, generation, kind).map_err(err(&what))?;
        let mut rng = TestRng::new(u64::from(generation));
        let n = framing::protect_private(&ours, &sender_data_secret, &kn, generation, 17, &mut rng, &mut out)
            .map_err(err(&what))?;
        let fresh = out.get(..n).ok_or("length")?.to_vec();
        let pm = private_message(&what, &fresh)?;
        let mut plaintext = vec![0u8; pm.ciphertext.len()];
        let (sd2, ac2) = pm
            .unprotect(
                &sender_data_secret,
                &keys,
                |l| (l == 1).then_some(sig_pub),
                &gc,
                &mut plaintext,
                &mut scratch,
            )
            .map_err(err(&what))?;
        if sd2.leaf_index != 1 || sd2.generation != generation {
            return Err(format!("{what}: own message's sender data"));
        }
        eq(&format!("{what} own content"), content_bytes(&ac2.content.content), content_bytes(content))?;
    }
    Ok(())
}

/// `transcript-hashes.json`: both transcript hashes after the commit in
/// `authenticated_content`, and its confirmation tag.
fn transcript_hashes_entry(e: &Value) -> Result<(), String> {
    let bytes = h(&e["authenticated_content"])?;
    let ac = AuthenticatedContent::from_bytes(&bytes).map_err(|e| format!("authenticated_content: {e}"))?;
    let mut out = vec![0u8; bytes.len()];
    let mut w = Writer::new(&mut out);
    ac.write_to(&mut w).map_err(|e| e.to_string())?;
    let n = w.finish().map_err(|e| e.to_string())?;
    eq("authenticated_content re-encoding", out.get(..n).ok_or("length")?, &bytes)?;
    let th = TranscriptHashes::after_commit(&h(&e["interim_transcript_hash_before"])?, &ac)
        .map_err(|e| e.to_string())?;
    eq("confirmed_transcript_hash_after", &th.confirmed, &h(&e["confirmed_transcript_hash_after"])?)?;
    eq("interim_transcript_hash_after", &th.interim, &h(&e["interim_transcript_hash_after"])?)?;
    let key = h(&e["confirmation_key"])?;
    let tag = ac.auth.confirmation_tag.ok_or("no confirmation tag")?;
    transcript::verify_confirmation_tag(&key, &th.confirmed, tag)
        .map_err(|e| format!("confirmation tag: {e}"))?;
    let mut wrong = th.confirmed;
    wrong[0] ^= 1;
    if transcript::verify_confirmation_tag(&key, &wrong, tag).is_ok() {
        return Err("confirmation tag accepted for another transcript".into());
    }
    Ok(())
}

/// `messages.json`: every field decodes with its structure and re-encodes
/// byte-exactly, both as the kept bytes and written field by field.
fn messages_entry(e: &Value) -> Result<(), String> {
    let field = |name: &str| h(&e[name]).map_err(|x| format!("{name}: {x}"));
    let err = ctx;

    let bytes = field("mls_welcome")?;
    let m = mls_message("mls_welcome", &bytes, WireFormat::Welcome)?;
    let MlsMessageBody::Welcome(welcome) = m.body else { return Err("mls_welcome".into()) };
    for s in welcome.secrets() {
        let s = s.map_err(err("welcome secrets"))?;
        if welcome.secrets_for(s.new_member).map_err(err("welcome"))? != Some(s) {
            return Err("welcome: secrets_for".into());
        }
    }

    let bytes = field("mls_group_info")?;
    let m = mls_message("mls_group_info", &bytes, WireFormat::GroupInfo)?;
    let MlsMessageBody::GroupInfo(gi) = m.body else { return Err("mls_group_info".into()) };
    let mut gcb = vec![0u8; bytes.len()];
    let n = gi.group_context.encode(&mut gcb).map_err(err("group context"))?;
    if !gi.as_bytes().starts_with(gcb.get(..n).ok_or("length")?) {
        return Err("group_info: GroupContext re-encoding".into());
    }

    let bytes = field("mls_key_package")?;
    let m = mls_message("mls_key_package", &bytes, WireFormat::KeyPackage)?;
    let MlsMessageBody::KeyPackage(kp) = m.body else { return Err("mls_key_package".into()) };
    let mut scratch = vec![0u8; 2 * bytes.len() + 256];
    kp.verify(&mut scratch).map_err(err("key package signature"))?;

    let bytes = field("ratchet_tree")?;
    let mut tree: Box<RatchetTree<64, 1024>> = Box::default();
    tree.decode(&bytes).map_err(err("ratchet_tree decode"))?;
    let mut out = vec![0u8; bytes.len() + 16];
    let n = tree.encode(&mut out).map_err(err("ratchet_tree encode"))?;
    eq("ratchet_tree re-encoding", out.get(..n).ok_or("length")?, &bytes)?;

    // The GroupInfo is signed by a leaf of this entry's tree.
    let signer = tree.leaf(gi.signer).ok_or("group_info signer is not in ratchet_tree")?;
    let mut scratch = vec![0u8; gi.as_bytes().len() + 64];
    gi.verify(signer.signature_key, &mut scratch).map_err(err("group_info signature"))?;

    let bytes = field("group_secrets")?;
    let gs = GroupSecrets::from_bytes(&bytes).map_err(err("group_secrets"))?;
    reencodes("group_secrets", &bytes, gs.as_bytes(), |w| gs.write_to(w))?;

    for (name, ty) in [
        ("add_proposal", proposal_type::ADD),
        ("update_proposal", proposal_type::UPDATE),
        ("remove_proposal", proposal_type::REMOVE),
        ("pre_shared_key_proposal", proposal_type::PSK),
        ("re_init_proposal", proposal_type::REINIT),
        ("external_init_proposal", proposal_type::EXTERNAL_INIT),
        ("group_context_extensions_proposal", proposal_type::GROUP_CONTEXT_EXTENSIONS),
    ] {
        let bytes = field(name)?;
        let body = ProposalBody::from_bytes(ty, &bytes).map_err(err(name))?;
        let mut out = vec![0u8; bytes.len() + 16];
        let mut w = Writer::new(&mut out);
        body.write_to(&mut w).map_err(err(name))?;
        let n = w.finish().map_err(|x| format!("{name}: {x}"))?;
        eq(&format!("{name} re-encoding"), out.get(..n).ok_or("length")?, &bytes)?;
        // As a whole Proposal (type prefix added), too.
        let mut whole = ty.to_be_bytes().to_vec();
        whole.extend_from_slice(&bytes);
        let p = Proposal::from_bytes(&whole).map_err(err(name))?;
        reencodes(name, &whole, p.as_bytes(), |w| p.write_to(w))?;
    }

    let bytes = field("commit")?;
    let c = Commit::from_bytes(&bytes).map_err(err("commit"))?;
    reencodes("commit", &bytes, c.as_bytes(), |w| c.write_to(w))?;

    for (name, ct) in [
        ("public_message_application", ContentType::Application),
        ("public_message_proposal", ContentType::Proposal),
        ("public_message_commit", ContentType::Commit),
    ] {
        let bytes = field(name)?;
        let pm = public_message(name, &bytes)?;
        if pm.content.content_type() != ct {
            return Err(format!("{name}: content type {:?}", pm.content.content_type()));
        }
    }
    let bytes = field("private_message")?;
    private_message("private_message", &bytes)?;
    Ok(())
}

/// `tree-operations.json`: apply `proposal` (Add, Update or Remove, from
/// `proposal_sender`) to `tree_before` with the tree operations of commit
/// processing ([`apply_to_tree`]) and compare the result's encoding with
/// `tree_after` and its tree hash with `tree_hash_after`.
///
/// The file exists only for ciphersuite 1, which differs from suite 3 only
/// in the AEAD; this check uses none (SHA-256 tree hashes, Ed25519
/// signatures), so it runs with our suite-3 code. The leaves'
/// capabilities list suite 1 and are not checked against the group suite.
/// An Add's KeyPackage names suite 1, which our KeyPackage view refuses:
/// its signature is verified on the published bytes, then the suite field
/// is read as 3 to parse it (the leaf node, the only part that goes into
/// the tree, does not contain the suite). An Update's leaf signature covers
/// the group id, which the file does not carry, so it is not verified.
fn tree_operations_entry(e: &Value) -> Result<(), String> {
    let err = ctx;
    let before = h(&e["tree_before"])?;
    let mut tree: Box<RatchetTree<64, 1024>> = Box::default();
    tree.decode(&before).map_err(err("tree_before"))?;
    let mut out = vec![0u8; before.len() + 4096];
    let n = tree.encode(&mut out).map_err(err("tree_before encode"))?;
    eq("tree_before re-encoding", out.get(..n).ok_or("length")?, &before)?;
    let hash = tree.tree_hash(tree.root()).map_err(err("tree hash"))?;
    eq("tree_hash_before", &hash, &h(&e["tree_hash_before"])?)?;

    let published = h(&e["proposal"])?;
    let mut bytes = published.clone();
    if published.get(..2) == Some(&proposal_type::ADD.to_be_bytes()[..]) {
        // Proposal { type u16 = 1, KeyPackage { version u16, cipher_suite u16, ... } }.
        let suite = bytes.get_mut(4..6).ok_or("add proposal too short")?;
        if suite != [0, 1] && suite != [0, 3] {
            return Err("add proposal: not ciphersuite 1 or 3".into());
        }
        suite.copy_from_slice(&3u16.to_be_bytes());
    }
    let proposal = Proposal::from_bytes(&bytes).map_err(err("proposal"))?;
    if let ProposalBody::Add(kp) = proposal.body {
        let mut scratch = vec![0u8; 2 * bytes.len() + 256];
        kp.leaf_node.verify(&[], 0, &mut scratch).map_err(err("add: leaf node signature"))?;
        let sig: [u8; 64] = kp.signature.try_into().map_err(|_| "add: signature length")?;
        // KeyPackageTBS: the published KeyPackage up to its signature<V>.
        let tbs = published.get(2..2 + kp.as_bytes().len() - 2 - sig.len()).ok_or("add: length")?;
        crypto::verify_with_label(kp.leaf_node.signature_key, b"KeyPackageTBS", tbs, &sig, &mut scratch)
            .map_err(err("add: KeyPackage signature"))?;
    }
    let sender = u(&e["proposal_sender"])? as u32;
    apply_to_tree(&mut tree, &proposal, sender).map_err(err("apply"))?;
    let n = tree.encode(&mut out).map_err(err("tree_after encode"))?;
    eq("tree_after", out.get(..n).ok_or("length")?, &h(&e["tree_after"])?)?;
    let hash = tree.tree_hash(tree.root()).map_err(err("tree hash"))?;
    eq("tree_hash_after", &hash, &h(&e["tree_hash_after"])?)
}

/// `tree-operations.json` runs ciphersuite 1 entries (see
/// [`tree_operations_entry`]); other suites but 3 are skipped.
fn run_tree_operations(path: &Path) -> Report {
    let mut r = Report::new("mls tree-operations");
    match load(path) {
        Ok(entries) => {
            for (i, e) in entries.iter().enumerate() {
                if e.get("cipher_suite").and_then(Value::as_u64).is_some_and(|s| s != 1 && s != 3) {
                    r.skip("not ciphersuite 1 or 3");
                    continue;
                }
                r.record(&format!("tree-operations[{i}]"), tree_operations_entry(e));
            }
        }
        Err(e) => r.record("tree-operations", Err(e)),
    }
    r
}

/// `suite1-only/passive-client-random.json`: ciphersuite 1 only, and its
/// Welcome and every UpdatePath use HPKE with AES-128-GCM, which this
/// profile does not implement. Each entry is reported as skipped.
fn skip_passive_client_random(path: &Path) -> Report {
    let mut r = Report::new("mls passive-client-random");
    match load(path) {
        Ok(entries) => {
            for e in &entries {
                match e.get("cipher_suite").and_then(Value::as_u64) {
                    Some(1) => r.skip("ciphersuite 1: needs AES-128-GCM, not in this profile"),
                    Some(s) => r.record("passive-client-random", Err(format!("unexpected ciphersuite {s}"))),
                    None => r.record("passive-client-random", Err("no cipher_suite".into())),
                }
            }
        }
        Err(e) => r.record("passive-client-random", Err(e)),
    }
    r
}

/// The group state of the passive-client runs, with the default capacities.
pub type Group = securemesh_mls_lite::DefaultGroup;

/// Join as passive-client entry `e` and process its first `epochs` epochs
/// (each checked against its `epoch_authenticator`).
pub fn passive_group(e: &Value, epochs: usize) -> Result<Box<Group>, String> {
    let kp_bytes = h(&e["key_package"])?;
    let w_bytes = h(&e["welcome"])?;
    let keys = JoinKeys {
        key_package: key_package_of(&kp_bytes)?,
        init_priv: &secret32(&e["init_priv"])?,
        encryption_priv: &secret32(&e["encryption_priv"])?,
        signature_priv: &secret32(&e["signature_priv"])?,
    };
    let tree = if e["ratchet_tree"].is_null() { None } else { Some(h(&e["ratchet_tree"])?) };
    let psk_bytes = external_psks(e)?;
    let psks: Vec<ExternalPsk<'_>> = psk_bytes.iter().map(|(id, psk)| ExternalPsk { id, psk }).collect();
    let mut group: Box<Group> = Box::default();
    let mut scratch = vec![0u8; Group::scratch_len(w_bytes.len())];
    group
        .join_into(&welcome_of(&w_bytes)?, &keys, tree.as_deref(), &psks, &mut scratch)
        .map_err(ctx("join"))?;
    eq(
        "initial epoch authenticator",
        group.epoch_authenticator().expose(),
        &h(&e["initial_epoch_authenticator"])?,
    )?;
    continue_passive(&mut group, e, 0, Some(epochs))?;
    Ok(group)
}

/// External PSKs of a passive-client entry: `(psk_id, psk)`.
type PskList = Vec<(Vec<u8>, Vec<u8>)>;

fn external_psks(e: &Value) -> Result<PskList, String> {
    let mut out = Vec::new();
    for p in e["external_psks"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        out.push((h(&p["psk_id"])?, h(&p["psk"])?));
    }
    Ok(out)
}

/// Process the epochs of passive-client entry `e` from index `from` (all
/// remaining ones, or `count`), each checked against its
/// `epoch_authenticator`. Resumption PSKs are kept from `from` on.
pub fn continue_passive(
    group: &mut Group,
    e: &Value,
    from: usize,
    count: Option<usize>,
) -> Result<(), String> {
    let psk_bytes = external_psks(e)?;
    let psks: Vec<ExternalPsk<'_>> = psk_bytes.iter().map(|(id, psk)| ExternalPsk { id, psk }).collect();
    let mut spare: Box<Group> = Box::default();
    let mut cache: Box<ProposalCache> = Box::default();
    let mut history: Vec<(Vec<u8>, u64, crypto::Secret32)> = Vec::new();
    let epochs = e["epochs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let to = count.map_or(epochs.len(), |c| from.saturating_add(c));
    if to > epochs.len() {
        return Err(format!("the vector has {} epochs, not {to}", epochs.len()));
    }
    for (i, epoch) in epochs.iter().enumerate().take(to).skip(from) {
        for (j, p) in epoch["proposals"].as_array().map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
            let bytes = h(p)?;
            let mut scratch = vec![0u8; Group::commit_scratch_len(bytes.len())];
            group
                .process_proposal(&bytes, &mut cache, &mut scratch)
                .map_err(|x| format!("epoch {i} proposal {j}: {x}"))?;
        }
        let bytes = h(&epoch["commit"])?;
        let mut scratch = vec![0u8; Group::commit_scratch_len(bytes.len())];
        let before = group.epoch();
        history.push((group.group_id().to_vec(), before, group.secrets().resumption_psk.duplicate()));
        let resumption: Vec<ResumptionPsk<'_>> =
            history.iter().map(|(g, ep, psk)| ResumptionPsk { group_id: g, epoch: *ep, psk }).collect();
        let store = PskStore { external: &psks, resumption: &resumption };
        match group.process_commit(&bytes, &mut cache, &store, &mut spare, &mut scratch) {
            Ok(CommitEvent::NewEpoch { epoch }) if epoch == before + 1 => {}
            Ok(other) => return Err(format!("epoch {i} commit: {other:?}")),
            Err(x) => return Err(format!("epoch {i} commit: {x}")),
        }
        eq(
            &format!("epoch {i} epoch authenticator"),
            group.epoch_authenticator().expose(),
            &h(&epoch["epoch_authenticator"])?,
        )?;
    }
    Ok(())
}

/// A golden file of the persisted MLS group state
/// (`state/mls-group-v<N>.json`): groups encoded by the code of version N
/// after joining a passive-client vector entry (and processing some of its
/// epochs).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct GroupGolden {
    /// Where the file comes from.
    pub source: String,
    /// The encoded groups.
    pub cases: Vec<GroupCase>,
}

/// One encoded group of [`GroupGolden`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct GroupCase {
    /// Vector file under `mls/`.
    pub vector: String,
    /// Entry index in that file.
    pub entry: usize,
    /// Epochs of the entry processed before encoding.
    pub epochs_done: usize,
    /// The plain envelope (`Persist::encode_state`), hex.
    pub encoded: String,
}

fn check_group_case(c: &GroupCase, version: u16, mls_dir: &Path) -> Result<(), String> {
    use securemesh_core::envelope::Persist;
    let encoded = h(&Value::String(c.encoded.clone()))?;
    let mut group: Box<Group> = Box::default();
    group.decode_state_into(&encoded).map_err(|x| format!("decode: {x}"))?;
    let mut out = vec![0u8; Group::MAX_ENCODED_LEN];
    let n = group.encode_state(&mut out).map_err(|x| format!("encode: {x}"))?;
    let again = out.get(..n).ok_or("length")?;
    if version == Group::VERSION {
        eq("re-encoding", again, &encoded)?;
    } else {
        // An older version is migrated: it re-encodes as the current one,
        // which decodes and re-encodes byte-identically.
        let mut current: Box<Group> = Box::default();
        current.decode_state_into(again).map_err(|x| format!("decode migrated: {x}"))?;
        let mut out2 = vec![0u8; Group::MAX_ENCODED_LEN];
        let n2 = current.encode_state(&mut out2).map_err(|x| format!("encode migrated: {x}"))?;
        eq("migrated re-encoding", out2.get(..n2).ok_or("length")?, again)?;
    }
    let entries = load(&mls_dir.join(&c.vector))?;
    let e = entries.get(c.entry).ok_or("no such vector entry")?;
    continue_passive(&mut group, e, c.epochs_done, None)
}

/// Check an MLS group state golden file of body `version`
/// (`state/mls-group-v{version}.json`): each case decodes, re-encodes
/// (byte-identically for the current version; migrated, then stable, for
/// older ones) and continues its vector's remaining epochs.
pub fn group_state(golden: &Path, version: u16, mls_dir: &Path) -> Report {
    let mut r = Report::new(format!("state mls-group-v{version}"));
    let parsed: Result<GroupGolden, String> = std::fs::read_to_string(golden)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()));
    match parsed {
        Ok(g) => {
            for (i, c) in g.cases.iter().enumerate() {
                r.record(&format!("mls-group-v{version}[{i}]"), check_group_case(c, version, mls_dir));
            }
        }
        Err(e) => r.record(&golden.display().to_string(), Err(e)),
    }
    r
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
        run_tree_operations(&dir.join("tree-operations.json")),
        run("treekem", &dir.join("treekem.json"), treekem_entry),
        run("treekem-committer", &dir.join("treekem.json"), treekem_committer_entry),
        run("message-protection", &dir.join("message-protection.json"), message_protection_entry),
        run("transcript-hashes", &dir.join("transcript-hashes.json"), transcript_hashes_entry),
        run("messages", &dir.join("messages.json"), messages_entry),
        run("welcome", &dir.join("welcome.json"), welcome_entry),
        run_passive(
            "passive-client-welcome",
            "passive-client-welcome",
            &dir.join("passive-client-welcome.json"),
        ),
        run_passive(
            "passive-client-handling-commit",
            "passive-client-handling-commit",
            &dir.join("passive-client-handling-commit.json"),
        ),
        run_passive(
            "interop-passive welcome_join",
            "welcome_join",
            &dir.join("interop-passive/welcome_join.json"),
        ),
        run_passive("interop-passive commit", "commit", &dir.join("interop-passive/commit.json")),
        run_passive(
            "interop-passive application",
            "application",
            &dir.join("interop-passive/application.json"),
        ),
        run_passive(
            "interop-passive external_proposals",
            "external_proposals",
            &dir.join("interop-passive/external_proposals.json"),
        ),
        run_passive("interop-passive branch", "branch", &dir.join("interop-passive/branch.json")),
        run_passive("interop-passive reinit", "reinit", &dir.join("interop-passive/reinit.json")),
        run_passive(
            "interop-passive external_join",
            "external_join",
            &dir.join("interop-passive/external_join.json"),
        ),
        skip_passive_client_random(&dir.join("suite1-only/passive-client-random.json")),
        run_suite("x-wing 0x004D", &dir.join("xwing-0x004d.json"), 0x4D, xwing_entry),
        // The persisted group state's golden file lives beside the vectors
        // (`state/`), and is checked against them.
        group_state(&dir.parent().unwrap_or(dir).join("state/mls-group-v1.json"), 1, dir),
        group_state(&dir.parent().unwrap_or(dir).join("state/mls-group-v2.json"), 2, dir),
        group_state(&dir.parent().unwrap_or(dir).join("state/mls-group-v3.json"), 3, dir),
    ]
}

#[cfg(test)]
mod xwing_vectors {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use securemesh_mls_lite::crypto::xwing;
    use serde_json::json;

    fn draw(rng: &mut TestRng, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        rand_core::Rng::fill_bytes(rng, &mut v);
        v
    }

    /// Writes `mls/xwing-0x004d.json` from today's code, inputs drawn from
    /// `TestRng::new(0x004d_5eed)`. Run once
    /// (`cargo test -p securemesh-test-vectors -- --ignored write_xwing`);
    /// it never overwrites the file.
    #[test]
    #[ignore]
    fn write_xwing_vectors() {
        let path = crate::vectors_dir().join("mls/xwing-0x004d.json");
        assert!(!path.exists(), "{} exists", path.display());
        let mut rng = TestRng::new(0x004d_5eed);
        let mut out = Vec::new();
        for ikm in [draw(&mut rng, 32), Vec::new(), draw(&mut rng, 64)] {
            let (private, public) = xwing::derive_key_pair(&ikm);
            out.push(json!({"cipher_suite": 77, "kind": "derive_key_pair", "ikm": hex::encode(&ikm),
                "priv": hex::encode(private.expose()), "pub": hex::encode(public)}));
        }
        for (label, context_len, plaintext_len) in [("UpdatePathNode", 83, 32), ("Welcome", 32, 70)] {
            let (private, public) = xwing::derive_key_pair(&draw(&mut rng, 32));
            let (context, plaintext, eseed) =
                (draw(&mut rng, context_len), draw(&mut rng, plaintext_len), draw(&mut rng, 64));
            let mut buf = plaintext.clone();
            let mut scratch = vec![0u8; context_len + 64];
            let (kem_output, tag) = xwing::encrypt_with_label(
                &public,
                label.as_bytes(),
                &context,
                &mut buf,
                &mut scratch,
                &mut ReplayRng::new(&eseed),
            )
            .unwrap();
            out.push(json!({"cipher_suite": 77, "kind": "encrypt_with_label", "priv": hex::encode(private.expose()),
                "pub": hex::encode(public), "label": label, "context": hex::encode(&context),
                "plaintext": hex::encode(&plaintext), "eseed": hex::encode(&eseed),
                "kem_output": hex::encode(kem_output), "ciphertext": hex::encode([&buf[..], &tag].concat())}));
        }
        let external = draw(&mut rng, 32);
        let (_, external_pub) = xwing::derive_key_pair(&external);
        let eseed = draw(&mut rng, 64);
        let (kem_output, init) =
            xwing::external_init_send(&external_pub, &mut ReplayRng::new(&eseed)).unwrap();
        out.push(
            json!({"cipher_suite": 77, "kind": "external_init", "external_secret": hex::encode(&external),
            "external_pub": hex::encode(external_pub), "eseed": hex::encode(&eseed),
            "kem_output": hex::encode(kem_output), "init_secret": hex::encode(init.expose())}),
        );

        let group_id = draw(&mut rng, 16);
        let initial = draw(&mut rng, 32);
        let mut init = initial.clone();
        let mut epochs = Vec::new();
        for epoch in 0..3u64 {
            let (tree_hash, commit_secret, psk_secret, cth) =
                (draw(&mut rng, 32), draw(&mut rng, 32), draw(&mut rng, 32), draw(&mut rng, 32));
            let gc = GroupContext {
                cipher_suite: securemesh_mls_lite::crypto::CIPHERSUITE,
                group_id: &group_id,
                epoch,
                tree_hash: &tree_hash,
                confirmed_transcript_hash: &cth,
                extensions: &[],
            };
            let mut gcb = vec![0u8; 512];
            let n = gc.encode_for_suite(xwing::CIPHERSUITE, &mut gcb).unwrap();
            gcb.truncate(n);
            let s = EpochSecrets::derive(&init, &commit_secret, &psk_secret, &gcb).unwrap();
            let (label, context) = (hex::encode(draw(&mut rng, 8)), draw(&mut rng, 32));
            let mut exported = [0u8; 32];
            s.export(label.as_bytes(), &context, &mut exported).unwrap();
            let x = |v: &crypto::Secret32| hex::encode(v.expose());
            epochs.push(json!({"tree_hash": hex::encode(&tree_hash), "commit_secret": hex::encode(&commit_secret),
                "psk_secret": hex::encode(&psk_secret), "confirmed_transcript_hash": hex::encode(&cth),
                "group_context": hex::encode(&gcb), "joiner_secret": x(&s.joiner), "welcome_secret": x(&s.welcome),
                "init_secret": x(&s.init), "sender_data_secret": x(&s.sender_data),
                "encryption_secret": x(&s.encryption), "exporter_secret": x(&s.exporter),
                "epoch_authenticator": x(&s.epoch_authenticator), "external_secret": x(&s.external),
                "confirmation_key": x(&s.confirmation_key), "membership_key": x(&s.membership_key),
                "resumption_psk": x(&s.resumption_psk),
                "external_pub": hex::encode(xwing::derive_key_pair(s.external.expose()).1),
                "exporter": {"label": label, "context": hex::encode(&context), "length": 32,
                    "secret": hex::encode(exported)}}));
            init = s.init.expose().to_vec();
        }
        out.push(json!({"cipher_suite": 77, "kind": "key_schedule", "group_id": hex::encode(&group_id),
            "initial_init_secret": hex::encode(&initial), "epochs": epochs}));
        std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap() + "\n").unwrap();
    }

    #[test]
    fn xwing_vectors_pass_and_a_changed_byte_fails() {
        let src = crate::vectors_dir().join("mls/xwing-0x004d.json");
        let r = run_suite("x-wing 0x004D", &src, 0x4D, xwing_entry);
        assert!(r.is_ok() && r.total == 7, "{} {:?}", r.line(), r.failures);
        let entries = load(&src).unwrap();
        let flip = |s: &str| {
            let at = s.len() - 3;
            let c = if &s[at..at + 1] == "0" { "1" } else { "0" };
            format!("{}{c}{}", &s[..at], &s[at + 1..])
        };
        for (i, field) in [(0, "pub"), (3, "ciphertext"), (4, "kem_output"), (5, "init_secret")] {
            let mut e = entries[i].clone();
            e[field] = flip(e[field].as_str().unwrap()).into();
            assert!(xwing_entry(&e).is_err(), "{i} {field}");
        }
        let mut e = entries[6].clone();
        e["epochs"][2]["external_pub"] = flip(e["epochs"][2]["external_pub"].as_str().unwrap()).into();
        assert_eq!(xwing_entry(&e).err().as_deref(), Some("epoch 2 external_pub differs"));
    }
}

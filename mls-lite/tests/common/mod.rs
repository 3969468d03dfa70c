//! Helpers shared by the MLS integration tests: a small JSON reader for the
//! mlswg vector files (this crate has no serde) and vector accessors.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_core::Secret;
use securemesh_mls_lite::crypto::Secret32;
use securemesh_mls_lite::messages::{KeyPackage, Welcome};
use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
use securemesh_mls_lite::welcome::{ExternalPsk, JoinKeys};

pub type Group = securemesh_mls_lite::DefaultGroup;

pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../test-vectors/mls/");

// ---------------------------------------------------------------------------
// The vector files, read with serde_json into a small accessor enum.

#[derive(Debug)]
pub enum Json {
    Null,
    Bool,
    Num,
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v).unwrap_or(&Json::Null),
            _ => &Json::Null,
        }
    }
    pub fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => &[],
        }
    }
    pub fn hex(&self) -> Vec<u8> {
        match self {
            Json::Str(s) => {
                (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
            }
            other => panic!("not a string: {other:?}"),
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }
}

pub fn parse(text: &str) -> Json {
    fn conv(v: serde_json::Value) -> Json {
        match v {
            serde_json::Value::Null => Json::Null,
            serde_json::Value::Bool(_) => Json::Bool,
            serde_json::Value::Number(_) => Json::Num,
            serde_json::Value::String(s) => Json::Str(s),
            serde_json::Value::Array(a) => Json::Arr(a.into_iter().map(conv).collect()),
            serde_json::Value::Object(o) => Json::Obj(o.into_iter().map(|(k, v)| (k, conv(v))).collect()),
        }
    }
    conv(serde_json::from_str(text).expect("vector file is JSON"))
}

// ---------------------------------------------------------------------------

pub fn secret(bytes: &[u8]) -> Secret32 {
    Secret::new(bytes.try_into().unwrap())
}

pub fn key_package(bytes: &[u8]) -> KeyPackage<'_> {
    match MlsMessage::from_bytes(bytes).unwrap().body {
        MlsMessageBody::KeyPackage(k) => k,
        _ => panic!("not a KeyPackage"),
    }
}

pub fn welcome(bytes: &[u8]) -> Welcome<'_> {
    match MlsMessage::from_bytes(bytes).unwrap().body {
        MlsMessageBody::Welcome(w) => w,
        _ => panic!("not a Welcome"),
    }
}

/// The external PSKs of a passive-client entry, as (id, value) pairs.
pub fn external_psks(e: &Json) -> Vec<(Vec<u8>, Vec<u8>)> {
    e.get("external_psks").arr().iter().map(|p| (p.get("psk_id").hex(), p.get("psk").hex())).collect()
}

/// Borrow `external_psks` output as the join and commit APIs take it.
pub fn psk_refs(bytes: &[(Vec<u8>, Vec<u8>)]) -> Vec<ExternalPsk<'_>> {
    bytes.iter().map(|(id, psk)| ExternalPsk { id, psk }).collect()
}

/// Join as passive-client entry `e` (its key package, private keys,
/// optional ratchet tree and the given external PSKs) and check the
/// initial epoch authenticator.
pub fn join(e: &Json, psks: &[(Vec<u8>, Vec<u8>)]) -> Box<Group> {
    let kp = e.get("key_package").hex();
    let w = e.get("welcome").hex();
    let init = secret(&e.get("init_priv").hex());
    let enc = secret(&e.get("encryption_priv").hex());
    let sig = secret(&e.get("signature_priv").hex());
    let keys = JoinKeys {
        key_package: key_package(&kp),
        init_priv: &init,
        encryption_priv: &enc,
        signature_priv: &sig,
    };
    let tree = if e.get("ratchet_tree").is_null() { None } else { Some(e.get("ratchet_tree").hex()) };
    let mut group: Box<Group> = Box::default();
    let mut scratch = vec![0u8; Group::scratch_len(w.len())];
    group.join_into(&welcome(&w), &keys, tree.as_deref(), &psk_refs(psks), &mut scratch).unwrap();
    assert_eq!(group.epoch_authenticator().expose()[..], e.get("initial_epoch_authenticator").hex()[..]);
    group
}

// ---------------------------------------------------------------------------
// Group drivers shared by the active-member tests of both suites.

/// `g` processes `commit` with an empty proposal cache and no PSKs.
pub fn process_commit<const L: usize, const B: usize, const G: usize, const E: usize>(
    g: &mut securemesh_mls_lite::Group<L, B, G, E>,
    commit: &[u8],
) -> Result<securemesh_mls_lite::CommitEvent, securemesh_mls_lite::Error> {
    let mut cache: Box<securemesh_mls_lite::ProposalCache> = Box::default();
    let mut spare: Box<securemesh_mls_lite::Group<L, B, G, E>> = Box::default();
    let mut scratch = vec![0u8; securemesh_mls_lite::Group::<L, B, G, E>::commit_scratch_len(commit.len())];
    g.process_commit(commit, &mut cache, &securemesh_mls_lite::PskStore::default(), &mut spare, &mut scratch)
}

/// Every member is in the same epoch with the same authenticator,
/// exporter value, tree hash and member count.
pub fn assert_agree<const L: usize, const B: usize, const G: usize, const E: usize>(
    members: &[&securemesh_mls_lite::Group<L, B, G, E>],
) {
    let first = members[0];
    let mut want = [0u8; 32];
    first.export_secret(b"test", b"ctx", &mut want).unwrap();
    for m in members {
        assert_eq!(m.epoch(), first.epoch());
        assert_eq!(m.epoch_authenticator().expose(), first.epoch_authenticator().expose());
        assert_eq!(m.tree_hash(), first.tree_hash());
        assert_eq!(m.members().count(), members.len());
        let mut got = [0u8; 32];
        m.export_secret(b"test", b"ctx", &mut got).unwrap();
        assert_eq!(got, want);
    }
}

/// `from` seals application data; each of `to` opens it.
pub fn talk<const L: usize, const B: usize, const G: usize, const E: usize>(
    from: &mut securemesh_mls_lite::Group<L, B, G, E>,
    to: &mut [&mut securemesh_mls_lite::Group<L, B, G, E>],
    data: &[u8],
    rng: &mut securemesh_core::testing::TestRng,
) {
    type Slot<const L: usize, const B: usize, const G: usize, const E: usize> =
        securemesh_mls_lite::Group<L, B, G, E>;
    let mut out = vec![0u8; data.len() + 256];
    let mut scratch = vec![0u8; Slot::<L, B, G, E>::seal_scratch_len(data.len(), 0)];
    let n = from.seal_application(data, &[], 0, rng, &mut out, &mut scratch).unwrap();
    for g in to.iter_mut() {
        let mut scratch = vec![0u8; Slot::<L, B, G, E>::application_scratch_len(n)];
        let m = g.open_application(&out[..n], &mut scratch).unwrap();
        assert_eq!(m.data, data);
        assert_eq!(m.sender, from.own_leaf());
    }
}

//! Post-quantum KEM known-answer tests (issue #12): published vectors for
//! ML-KEM-768 and ML-KEM-1024 (FIPS 203, from Wycheproof) and X-Wing
//! (draft-connolly-cfrg-xwing-kem-10, Appendix C), run through
//! `securemesh-core`'s `Kem` suites and their `dangerous_*` deterministic
//! entries. The files in `pq/` are subsets of the published ones; see
//! `pq/README.md` for their sources (and why the NIST ACVP files the index
//! holds are not used).
//!
//! - `wycheproof-mlkem-keygen-seed.json`: the 64-byte seed `d || z` gives
//!   `ek` and the FIPS 203 expanded `dk`.
//! - `wycheproof-mlkem-768-encaps.json`: an encapsulation key with a
//!   coefficient `>= q` is refused (FIPS 203 §7.2 modulus check).
//! - `wycheproof-mlkem-768-decaps.json`: a key pair from its seed
//!   decapsulates a ciphertext that must take the implicit-rejection path
//!   to the published `K`.
//! - `wycheproof-mlkem-encaps-valid.json`: positive known answers for
//!   ML-KEM-768 and ML-KEM-1024, encapsulation to `ek` with a fixed `m`
//!   gives the published `c` and `K`.
//! - `wycheproof-mlkem-{768,1024}-decaps-valid.json`: positive known
//!   answers for decapsulation, the seed `d || z` decapsulates a genuine
//!   ciphertext to the published shared secret, through the seed entry
//!   (`Kem::decapsulate`), the expanded key (`expand` +
//!   `decapsulate_expanded`) and its FIPS 203 `dk` encoding loaded back
//!   (`MlKem*ExpandedKey::from_bytes`); and (our check) the same secret
//!   with `z` changed, which shows the non-rejection path was taken.
//! - `x-wing-draft-10.json`: `seed` gives `sk` and `pk`, `eseed` gives `ct`
//!   and `ss`, and `sk` decapsulates `ct` to `ss`.
//!
//! ML-DSA-65 (FIPS 204) and our hybrid Ed25519 + ML-DSA-65 signature
//! (`securemesh_core::crypto::{MlDsa65, HybridEd25519MlDsa65}`):
//!
//! - `wycheproof-mldsa-65-sign-seed.json`: the group's `privateSeed` gives
//!   its `publicKey` (`ML-DSA.KeyGen_internal`), and the deterministic
//!   `ML-DSA.Sign` of each case's `msg` under its `ctx` gives its `sig`,
//!   which then verifies (and, our own check, fails with one bit flipped);
//! - `wycheproof-mldsa-65-verify.json`: `ML-DSA.Verify` of each case's
//!   `sig` under the group's `publicKey` gives the case's `result`;
//! - `hybrid-ed25519-mldsa65.json` (ours, spec §3.1 of the ratchet): from
//!   the two seeds, the hybrid public key, `M'` and the hybrid signature
//!   (deterministic ML-DSA half) of each case; and version-3 bundles that
//!   `Bundle::decode` accepts, with mutations it must refuse with the
//!   listed error.

use crate::Report;
use securemesh_core::crypto::{
    HybridEd25519MlDsa65, HybridSigningKey, Kem, MlDsa65, MlKem768, MlKem768ExpandedKey, MlKem1024,
    MlKem1024ExpandedKey, XWing,
};
use securemesh_core::{Error, Secret};
use serde_json::Value;
use std::path::Path;

/// One FIPS 203 parameter set as the vectors use it (byte vectors in and out).
trait ParameterSet {
    /// `parameterSet` in the files, e.g. `ML-KEM-768`.
    const FILE_NAME: &'static str;
    /// Name in the report lines, e.g. `ml-kem-768`.
    const LINE_NAME: &'static str;
    /// `ML-KEM.KeyGen_internal(d, z)` of the seed `d || z`: `ek` and the expanded `dk`.
    fn keygen(seed: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String>;
    /// `ML-KEM.Encaps_internal(ek, m)` after the key check: `c` and `k`.
    fn encaps(ek: &[u8], m: &[u8; 32]) -> Result<(Vec<u8>, [u8; 32]), securemesh_core::Error>;
    /// `ML-KEM.Decaps` with the key of `seed`.
    fn decaps(seed: &[u8], c: &[u8]) -> Result<[u8; 32], String>;
    /// `ML-KEM.Decaps` with the seed's key expanded once (`expand` then
    /// `decapsulate_expanded`), and with that key's FIPS 203 `dk` encoding
    /// loaded back through the checked `from_bytes`: both secrets.
    fn decaps_expanded(seed: &[u8], c: &[u8]) -> Result<([u8; 32], [u8; 32]), String>;
}

macro_rules! parameter_set {
    ($t:ty, $x:ty, $file:literal, $line:literal) => {
        impl ParameterSet for $t {
            const FILE_NAME: &'static str = $file;
            const LINE_NAME: &'static str = $line;

            fn keygen(seed: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
                let seed: [u8; 64] = seed.try_into().map_err(|_| format!("seed of {} bytes", seed.len()))?;
                let (dk, ek) = <$t>::dangerous_keygen_from_seed(seed);
                let expanded = <$t>::dangerous_expanded_decapsulation_key(&dk);
                Ok((ek.to_vec(), expanded.expose().to_vec()))
            }

            fn encaps(ek: &[u8], m: &[u8; 32]) -> Result<(Vec<u8>, [u8; 32]), securemesh_core::Error> {
                let ek = ek.try_into().map_err(|_| securemesh_core::Error::InvalidKey)?;
                let (c, k) = <$t>::dangerous_encapsulate_deterministic(ek, m)?;
                Ok((c.to_vec(), *k.expose()))
            }

            fn decaps(seed: &[u8], c: &[u8]) -> Result<[u8; 32], String> {
                let seed: [u8; 64] = seed.try_into().map_err(|_| format!("seed of {} bytes", seed.len()))?;
                let dk = securemesh_core::Secret::new(seed);
                let k = <$t>::decapsulate_slice(&dk, c).map_err(|e| e.to_string())?;
                Ok(*k.expose())
            }

            fn decaps_expanded(seed: &[u8], c: &[u8]) -> Result<([u8; 32], [u8; 32]), String> {
                let seed: [u8; 64] = seed.try_into().map_err(|_| format!("seed of {} bytes", seed.len()))?;
                let key = <$t>::expand(&securemesh_core::Secret::new(seed));
                let k = <$t>::decapsulate_expanded_slice(&key, c).map_err(|e| e.to_string())?;
                let loaded = <$x>::from_bytes(key.to_bytes().expose()).map_err(|e| e.to_string())?;
                let k2 = <$t>::decapsulate_expanded_slice(&loaded, c).map_err(|e| e.to_string())?;
                Ok((*k.expose(), *k2.expose()))
            }
        }
    };
}

parameter_set!(MlKem768, MlKem768ExpandedKey, "ML-KEM-768", "ml-kem-768");
parameter_set!(MlKem1024, MlKem1024ExpandedKey, "ML-KEM-1024", "ml-kem-1024");

fn field(v: &Value, name: &str) -> Result<Vec<u8>, String> {
    let s = v.get(name).and_then(Value::as_str).ok_or_else(|| format!("no field {name}"))?;
    hex::decode(s).map_err(|e| format!("{name}: bad hex: {e}"))
}

fn field32(v: &Value, name: &str) -> Result<[u8; 32], String> {
    let b = field(v, name)?;
    b.as_slice().try_into().map_err(|_| format!("{name}: {} bytes, not 32", b.len()))
}

fn same(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want { Ok(()) } else { Err(format!("{what} differs")) }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The test cases of every group of `parameter_set` in a Wycheproof file.
fn cases<'a>(doc: &'a Value, parameter_set: &str) -> Vec<&'a Value> {
    let groups = doc.get("testGroups").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    groups
        .iter()
        .filter(|g| g.get("parameterSet").and_then(Value::as_str) == Some(parameter_set))
        .flat_map(|g| g.get("tests").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]))
        .collect()
}

fn tc_id(t: &Value) -> String {
    format!("tcId {}", t.get("tcId").and_then(Value::as_u64).unwrap_or(0))
}

fn valid(t: &Value) -> Result<bool, String> {
    match t.get("result").and_then(Value::as_str) {
        Some("valid") => Ok(true),
        Some("invalid") => Ok(false),
        other => Err(format!("result {other:?} not supported")),
    }
}

fn keygen_case<P: ParameterSet>(t: &Value) -> Result<(), String> {
    if !valid(t)? {
        return Err("only valid key generation cases are supported".into());
    }
    let (ek, dk) = P::keygen(&field(t, "seed")?)?;
    same("ek", &ek, &field(t, "ek")?)?;
    same("dk", &dk, &field(t, "dk")?)
}

fn encaps_case<P: ParameterSet>(t: &Value) -> Result<(), String> {
    // Wycheproof's `m` is 64 bytes for the encapsulation tests; ML-KEM uses its first 32.
    let m = field(t, "m")?;
    let m: [u8; 32] = m.get(..32).and_then(|m| m.try_into().ok()).ok_or("m shorter than 32 bytes")?;
    match (valid(t)?, P::encaps(&field(t, "ek")?, &m)) {
        (true, Ok((c, k))) => {
            same("c", &c, &field(t, "c")?)?;
            same("K", &k, &field(t, "K")?)
        }
        (true, Err(e)) => Err(format!("refused a valid key: {e}")),
        (false, Err(securemesh_core::Error::InvalidKey)) => Ok(()),
        (false, Err(e)) => Err(format!("refused with {e}, not InvalidKey")),
        (false, Ok(_)) => Err("accepted an invalid encapsulation key".into()),
    }
}

fn decaps_case<P: ParameterSet>(t: &Value) -> Result<(), String> {
    if !valid(t)? {
        return Err("only valid decapsulation cases are supported".into());
    }
    let seed = field(t, "seed")?;
    let (ek, _) = P::keygen(&seed)?;
    same("ek", &ek, &field(t, "ek")?)?;
    same("K", &P::decaps(&seed, &field(t, "c")?)?, &field(t, "K")?)
}

fn report<P: ParameterSet>(path: &Path, what: &str, check: fn(&Value) -> Result<(), String>) -> Report {
    let mut r = Report::new(format!("pq {} {what}", P::LINE_NAME));
    match read_json(path) {
        Ok(doc) => {
            for t in cases(&doc, P::FILE_NAME) {
                r.record(&tc_id(t), check(t));
            }
        }
        Err(e) => r.record("file", Err(e)),
    }
    r
}

/// `pq ml-kem-768 keygen` and `pq ml-kem-1024 keygen` from a Wycheproof
/// `mlkem_*_keygen_seed_test` file.
pub fn ml_kem_keygen(path: &Path) -> Vec<Report> {
    vec![
        report::<MlKem768>(path, "keygen", keygen_case::<MlKem768>),
        report::<MlKem1024>(path, "keygen", keygen_case::<MlKem1024>),
    ]
}

/// `pq ml-kem-768 encaps` from a Wycheproof `mlkem_768_encaps_test` file.
pub fn ml_kem_768_encaps(path: &Path) -> Report {
    report::<MlKem768>(path, "encaps", encaps_case::<MlKem768>)
}

/// `pq ml-kem-768 decaps` from a Wycheproof `mlkem_768_test` file.
pub fn ml_kem_768_decaps(path: &Path) -> Report {
    report::<MlKem768>(path, "decaps", decaps_case::<MlKem768>)
}

/// `pq ml-kem-768 encaps valid` and `pq ml-kem-1024 encaps valid`: the
/// valid cases of Wycheproof's `mlkem_*_encaps_test` files (encapsulation
/// with a fixed `m` gives the published `c` and `K`).
pub fn ml_kem_encaps_valid(path: &Path) -> Vec<Report> {
    vec![
        report::<MlKem768>(path, "encaps valid", encaps_case::<MlKem768>),
        report::<MlKem1024>(path, "encaps valid", encaps_case::<MlKem1024>),
    ]
}

/// One case of a Wycheproof `decaps*ml-kem` file: `private_key` (the seed
/// `d || z`), `ciphertext`, `expected_shared_secret`, `expected_result`.
fn decaps_seed_case<P: ParameterSet>(t: &Value) -> Result<(), String> {
    if t.get("expected_result").and_then(Value::as_str) != Some("pass") {
        return Err("only passing decapsulation cases are supported".into());
    }
    let seed = field(t, "private_key")?;
    let c = field(t, "ciphertext")?;
    let k = field(t, "expected_shared_secret")?;
    same("K from the seed", &P::decaps(&seed, &c)?, &k)?;
    let (from_expanded, from_encoding) = P::decaps_expanded(&seed, &c)?;
    same("K from the expanded key", &from_expanded, &k)?;
    same("K from the loaded dk encoding", &from_encoding, &k)?;
    // Our check that `c` is a genuine encapsulation (not the implicit
    // rejection path): K does not depend on z, the seed's second half.
    let mut other_z = seed;
    let last = other_z.last_mut().ok_or("empty private_key")?;
    *last ^= 1;
    same("K with another z (a valid ciphertext ignores z)", &P::decaps(&other_z, &c)?, &k)
}

fn decaps_seed_report<P: ParameterSet>(path: &Path) -> Report {
    let mut r = Report::new(format!("pq {} decaps valid", P::LINE_NAME));
    match read_json(path) {
        Ok(doc) => {
            for t in doc.get("tests").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
                r.record(
                    &format!("case {}", t.get("index").and_then(Value::as_u64).unwrap_or(0)),
                    decaps_seed_case::<P>(t),
                );
            }
        }
        Err(e) => r.record("file", Err(e)),
    }
    r
}

/// `pq ml-kem-768 decaps valid` from Wycheproof's `decaps768ml-kem` cases.
pub fn ml_kem_768_decaps_valid(path: &Path) -> Report {
    decaps_seed_report::<MlKem768>(path)
}

/// `pq ml-kem-1024 decaps valid` from Wycheproof's `decaps1024ml-kem` cases.
pub fn ml_kem_1024_decaps_valid(path: &Path) -> Report {
    decaps_seed_report::<MlKem1024>(path)
}

fn x_wing_case(v: &Value) -> Result<(), String> {
    let seed = field32(v, "seed")?;
    let (sk, pk) = XWing::dangerous_keygen_from_seed(seed);
    same("sk", sk.expose(), &field(v, "sk")?)?;
    same("pk", &pk, &field(v, "pk")?)?;
    let eseed: [u8; 64] = field(v, "eseed")?.try_into().map_err(|_| "eseed: not 64 bytes".to_string())?;
    let (ct, ss) = XWing::dangerous_encapsulate_deterministic(&pk, &eseed).map_err(|e| e.to_string())?;
    same("ct", &ct, &field(v, "ct")?)?;
    same("ss", ss.expose(), &field(v, "ss")?)?;
    let got = XWing::decapsulate(&sk, &ct).map_err(|e| e.to_string())?;
    same("decapsulated ss", got.expose(), ss.expose())
}

/// `pq x-wing`: the test vectors of draft-connolly-cfrg-xwing-kem-10.
pub fn x_wing(path: &Path) -> Report {
    let mut r = Report::new("pq x-wing");
    match read_json(path) {
        Ok(Value::Array(vectors)) => {
            for (i, v) in vectors.iter().enumerate() {
                r.record(&format!("vector {i}"), x_wing_case(v));
            }
        }
        Ok(_) => r.record("file", Err("not a JSON array".into())),
        Err(e) => r.record("file", Err(e)),
    }
    r
}

// ---- ML-DSA-65 (FIPS 204) and the hybrid signature ----

/// The `(group, case)` pairs of a Wycheproof file without parameter sets.
fn group_cases(doc: &Value) -> Vec<(&Value, &Value)> {
    let groups = doc.get("testGroups").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    groups
        .iter()
        .flat_map(|g| {
            g.get("tests")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .map(move |t| (g, t))
        })
        .collect()
}

/// A case's `ctx` (absent means empty, as in FIPS 204's default).
fn ctx(t: &Value) -> Result<Vec<u8>, String> {
    if t.get("ctx").is_some() { field(t, "ctx") } else { Ok(Vec::new()) }
}

fn ml_dsa_sign_case(g: &Value, t: &Value) -> Result<(), String> {
    if !valid(t)? {
        return Err("only valid signing cases are supported".into());
    }
    let seed = field32(g, "privateSeed")?;
    let (seed, public) = MlDsa65::dangerous_keygen_from_seed(seed);
    same("publicKey", &public, &field(g, "publicKey")?)?;
    let (msg, ctx) = (field(t, "msg")?, ctx(t)?);
    let sig = MlDsa65::dangerous_sign_deterministic(&seed, &msg, &ctx).map_err(|e| e.to_string())?;
    same("sig", &sig, &field(t, "sig")?)?;
    MlDsa65::verify(&public, &msg, &ctx, &sig).map_err(|e| format!("own signature refused: {e}"))?;
    let mut flipped = sig;
    if let Some(b) = flipped.last_mut() {
        *b ^= 1;
    }
    match MlDsa65::verify(&public, &msg, &ctx, &flipped) {
        Err(Error::BadSignature) => Ok(()),
        other => Err(format!("a flipped signature gave {other:?}")),
    }
}

fn ml_dsa_verify_case(g: &Value, t: &Value) -> Result<(), String> {
    let got = MlDsa65::verify_slice(&field(g, "publicKey")?, &field(t, "msg")?, &ctx(t)?, &field(t, "sig")?);
    match (valid(t)?, got) {
        (true, Ok(())) | (false, Err(_)) => Ok(()),
        (true, Err(e)) => Err(format!("refused a valid signature: {e}")),
        (false, Ok(())) => Err("accepted an invalid signature".into()),
    }
}

fn wycheproof_report(path: &Path, name: &str, check: fn(&Value, &Value) -> Result<(), String>) -> Report {
    let mut r = Report::new(name);
    match read_json(path) {
        Ok(doc) => {
            for (g, t) in group_cases(&doc) {
                r.record(&tc_id(t), check(g, t));
            }
        }
        Err(e) => r.record("file", Err(e)),
    }
    r
}

/// `pq ml-dsa-65 sign` from a Wycheproof `mldsa_65_sign_seed_test` file.
pub fn ml_dsa_65_sign(path: &Path) -> Report {
    wycheproof_report(path, "pq ml-dsa-65 sign", ml_dsa_sign_case)
}

/// `pq ml-dsa-65 verify` from a Wycheproof `mldsa_65_verify_test` file.
pub fn ml_dsa_65_verify(path: &Path) -> Report {
    wycheproof_report(path, "pq ml-dsa-65 verify", ml_dsa_verify_case)
}

fn hybrid_signature_case(v: &Value) -> Result<(), String> {
    let key = HybridSigningKey::new(
        &Secret::new(field32(v, "ed25519_seed")?),
        &Secret::new(field32(v, "ml_dsa_seed")?),
    );
    let public = *key.public();
    same("public_key", &public.to_bytes(), &field(v, "public_key")?)?;
    let (ctx, msg) = (field(v, "ctx")?, field(v, "msg")?);
    let m = HybridEd25519MlDsa65::signed_message(&public, &ctx, &msg).map_err(|e| e.to_string())?;
    same("signed_message", &m, &field(v, "signed_message")?)?;
    let sig =
        HybridEd25519MlDsa65::dangerous_sign_deterministic(&key, &ctx, &msg).map_err(|e| e.to_string())?;
    let want = field(v, "signature")?;
    same("signature", &sig.to_bytes(), &want)?;
    HybridEd25519MlDsa65::verify_slice(&public, &ctx, &msg, &want).map_err(|e| format!("refused: {e}"))?;
    // Without its ML-DSA half the signature is refused.
    match HybridEd25519MlDsa65::verify_slice(&public, &ctx, &msg, want.get(..64).unwrap_or(&[])) {
        Err(Error::Truncated) => Ok(()),
        other => Err(format!("the Ed25519 half alone gave {other:?}")),
    }
}

/// `Bundle::decode` of a version-3 bundle: its error's name, or `"valid"`
/// (then the bundle must re-encode to its bytes and carry `pq_public`).
fn decode_bundle(bytes: &[u8], pq_public: &[u8]) -> Result<String, String> {
    use securemesh_ratchet::{Bundle, MAX_HYBRID_BUNDLE_LEN};
    let b = match Bundle::decode(bytes) {
        Ok(b) => b,
        Err(e) => return Ok(format!("{e:?}")),
    };
    let pq = b.pq().ok_or("decoded without its ML-DSA section")?;
    same("pq_public", pq.public(), pq_public)?;
    let mut out = vec![0u8; MAX_HYBRID_BUNDLE_LEN];
    let n = b.encode(&mut out).map_err(|e| e.to_string())?;
    same("re-encoding", out.get(..n).unwrap_or(&[]), bytes)?;
    Ok("valid".into())
}

fn hybrid_bundle_case(v: &Value) -> Result<(), String> {
    let bundle = field(v, "bundle")?;
    let pq_public = field(v, "pq_public")?;
    let got = decode_bundle(&bundle, &pq_public)?;
    if got != "valid" {
        return Err(format!("the genuine bundle gave {got}"));
    }
    let mutations = v.get("mutations").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    for m in mutations {
        let mut bad = bundle.clone();
        let at = m.get("offset").and_then(Value::as_u64).ok_or("mutation without offset")? as usize;
        let xor = m.get("xor").and_then(Value::as_u64).ok_or("mutation without xor")? as u8;
        *bad.get_mut(at).ok_or("offset beyond the bundle")? ^= xor;
        if let Some(len) = m.get("truncate").and_then(Value::as_u64) {
            bad.truncate(len as usize);
        }
        let want = m.get("result").and_then(Value::as_str).ok_or("mutation without result")?;
        let got = decode_bundle(&bad, &pq_public)?;
        if got != want {
            return Err(format!("mutation at {at}: {got}, not {want}"));
        }
    }
    Ok(())
}

/// `pq hybrid ed25519+ml-dsa-65`: our vectors of the hybrid signature and
/// of version-3 bundles (one line, every case and every bundle mutation).
pub fn hybrid(path: &Path) -> Report {
    let mut r = Report::new("pq hybrid ed25519+ml-dsa-65");
    match read_json(path) {
        Ok(doc) => {
            let list = |k: &str| doc.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
            for (i, v) in list("signatures").iter().enumerate() {
                r.record(&format!("signature {i}"), hybrid_signature_case(v));
            }
            for (i, v) in list("bundles").iter().enumerate() {
                r.record(&format!("bundle {i}"), hybrid_bundle_case(v));
            }
        }
        Err(e) => r.record("file", Err(e)),
    }
    r
}

/// The content of `hybrid-ed25519-mldsa65.json`, computed: fixed seeds
/// and inputs, the deterministic hybrid signatures, and Bob's version-3
/// bundles from a deterministic pool (hedged ML-DSA halves drawn from a
/// fixed `TestRng`, so the file is reproducible; a verifier needs only the
/// bytes). Written by the ignored test `write_hybrid_vectors`.
pub fn hybrid_vectors() -> Result<Value, String> {
    use securemesh_core::testing::TestRng;
    use securemesh_ratchet::{BundlePqStorage, Identity, KemPrekey, PqIdentity, PrekeyConfig, PrekeyPool};
    use serde_json::json;
    let mut signatures = Vec::new();
    let long_ctx = [0x41u8; 255];
    let long_msg: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let cases: [(u8, u8, &[u8], &[u8]); 3] = [
        (0x01, 0x02, b"", b"abc"),
        (0x11, 0x22, b"securemesh-bundle-v2", b"securemesh-spk-v1 and 36 bytes of prekey"),
        (0xa5, 0x5a, &long_ctx, &long_msg),
    ];
    for (ed, pq, ctx, msg) in cases {
        let key = HybridSigningKey::new(&Secret::new([ed; 32]), &Secret::new([pq; 32]));
        let m = HybridEd25519MlDsa65::signed_message(key.public(), ctx, msg).map_err(|e| e.to_string())?;
        let sig =
            HybridEd25519MlDsa65::dangerous_sign_deterministic(&key, ctx, msg).map_err(|e| e.to_string())?;
        signatures.push(json!({
            "ed25519_seed": hex::encode([ed; 32]),
            "ml_dsa_seed": hex::encode([pq; 32]),
            "ctx": hex::encode(ctx),
            "msg": hex::encode(msg),
            "public_key": hex::encode(key.public().to_bytes()),
            "signed_message": hex::encode(m),
            "signature": hex::encode(sig.to_bytes()),
        }));
    }
    let mut rng = TestRng::new(0x6879_6272_7665_6301);
    let bob = Identity::generate(&mut rng);
    let bob_pq = PqIdentity::generate(&bob, &mut rng);
    let pool: PrekeyPool<4> =
        PrekeyPool::new(&bob, &mut rng, securemesh_core::UnixTime(1_700_000_000), PrekeyConfig::default());
    let kem_pub = [0x42u8; 1184];
    let kem = KemPrekey::sign(&bob, 77, 1, &kem_pub).map_err(|e| e.to_string())?;
    let mut bundles = Vec::new();
    for with_kem in [false, true] {
        let mut b = pool.bundle(pool.one_time_ids().next());
        if with_kem {
            b = b.with_kem(kem).map_err(|e| e.to_string())?;
        }
        let mut storage = BundlePqStorage::new();
        let b = b.sign_pq(&bob_pq, &mut rng, &mut storage).map_err(|e| e.to_string())?;
        let mut out = vec![0u8; securemesh_ratchet::MAX_HYBRID_BUNDLE_LEN];
        let n = b.encode(&mut out).map_err(|e| e.to_string())?;
        out.truncate(n);
        // Offsets: 267 bytes of classical bundle (+ the KEM slot), then pq_pub, spk_pq_sig, kem_pq_sig.
        let pq_at = n - 1952 - if with_kem { 2 * 3373 } else { 3373 };
        let spk_sig = pq_at + 1952;
        let mut mutations = vec![
            json!({"what": "version 2", "offset": 0, "xor": 1, "result": "UnknownVersion"}),
            json!({"what": "classical spk_sig", "offset": 165, "xor": 1, "result": "BadSignature"}),
            json!({"what": "pq_pub", "offset": pq_at, "xor": 1, "result": "BadSignature"}),
            json!({"what": "spk_pq_sig, Ed25519 half", "offset": spk_sig, "xor": 1, "result": "BadSignature"}),
            json!({"what": "spk_pq_sig, ML-DSA half", "offset": spk_sig + 64, "xor": 1, "result": "BadSignature"}),
            json!({"what": "spk_pq_sig, last byte", "offset": spk_sig + 3372, "xor": 1, "result": "BadSignature"}),
            json!({"what": "section cut short", "offset": 0, "xor": 0, "truncate": n - 1, "result": "Malformed"}),
            json!({"what": "no section", "offset": 0, "xor": 0, "truncate": pq_at, "result": "Malformed"}),
        ];
        if with_kem {
            let kem_sig = spk_sig + 3373;
            mutations.push(json!({"what": "kem_pq_sig, Ed25519 half", "offset": kem_sig + 1, "xor": 0x80, "result": "BadSignature"}));
            mutations.push(json!({"what": "kem_pq_sig, ML-DSA half", "offset": kem_sig + 2000, "xor": 4, "result": "BadSignature"}));
        }
        bundles.push(json!({
            "comment": if with_kem { "one-time prekey and KEM prekey" } else { "one-time prekey, no KEM prekey" },
            "pq_public": hex::encode(bob_pq.public()),
            "bundle": hex::encode(&out),
            "mutations": mutations,
        }));
    }
    Ok(json!({
        "description": "securemesh hybrid Ed25519 + ML-DSA-65 signatures (securemesh_core::crypto::HybridEd25519MlDsa65) and version-3 prekey bundles (ratchet spec §3.1)",
        "label": String::from_utf8_lossy(HybridEd25519MlDsa65::LABEL),
        "bundle_context": String::from_utf8_lossy(securemesh_ratchet::HYBRID_BUNDLE_CONTEXT),
        "signatures": signatures,
        "bundles": bundles,
    }))
}

/// Every PQ report, reading the files of `dir` (the `pq` folder).
pub fn reports(dir: &Path) -> Vec<Report> {
    let mut out = ml_kem_keygen(&dir.join("wycheproof-mlkem-keygen-seed.json"));
    out.push(ml_kem_768_encaps(&dir.join("wycheproof-mlkem-768-encaps.json")));
    out.push(ml_kem_768_decaps(&dir.join("wycheproof-mlkem-768-decaps.json")));
    out.extend(ml_kem_encaps_valid(&dir.join("wycheproof-mlkem-encaps-valid.json")));
    out.push(ml_kem_768_decaps_valid(&dir.join("wycheproof-mlkem-768-decaps-valid.json")));
    out.push(ml_kem_1024_decaps_valid(&dir.join("wycheproof-mlkem-1024-decaps-valid.json")));
    out.push(x_wing(&dir.join("x-wing-draft-10.json")));
    out.push(ml_dsa_65_sign(&dir.join("wycheproof-mldsa-65-sign-seed.json")));
    out.push(ml_dsa_65_verify(&dir.join("wycheproof-mldsa-65-verify.json")));
    out.push(hybrid(&dir.join("hybrid-ed25519-mldsa65.json")));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// Writes `pq/hybrid-ed25519-mldsa65.json` (run once, with `--ignored`).
    #[test]
    #[ignore]
    fn write_hybrid_vectors() {
        let path = crate::vectors_dir().join("pq").join("hybrid-ed25519-mldsa65.json");
        std::fs::write(&path, serde_json::to_string_pretty(&hybrid_vectors().unwrap()).unwrap() + "\n")
            .unwrap();
    }

    /// A changed byte of a published ML-DSA vector, or a changed expected
    /// result, fails that case.
    #[test]
    fn changed_ml_dsa_vectors_fail() {
        let dir = std::env::temp_dir().join(format!("securemesh-pq-mldsa-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = crate::vectors_dir().join("pq");
        let mut sign = read_json(&src.join("wycheproof-mldsa-65-sign-seed.json")).unwrap();
        let sig = sign["testGroups"][0]["tests"][0]["sig"].as_str().unwrap().to_string();
        sign["testGroups"][0]["tests"][0]["sig"] = Value::from(format!("00{}", &sig[2..]));
        std::fs::write(dir.join("s.json"), sign.to_string()).unwrap();
        assert_eq!(ml_dsa_65_sign(&dir.join("s.json")).line(), "pq ml-dsa-65 sign 1/2");
        let mut verify = read_json(&src.join("wycheproof-mldsa-65-verify.json")).unwrap();
        verify["testGroups"][0]["tests"][0]["result"] = Value::from("invalid");
        verify["testGroups"][0]["tests"][2]["result"] = Value::from("valid");
        std::fs::write(dir.join("v.json"), verify.to_string()).unwrap();
        assert_eq!(ml_dsa_65_verify(&dir.join("v.json")).line(), "pq ml-dsa-65 verify 5/7");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The published file is what the code computes today.
    #[test]
    fn hybrid_vectors_are_current() {
        let path = crate::vectors_dir().join("pq").join("hybrid-ed25519-mldsa65.json");
        assert_eq!(read_json(&path).unwrap(), hybrid_vectors().unwrap());
        let r = hybrid(&path);
        assert!(r.is_ok(), "{:?}", r.failures);
    }
}

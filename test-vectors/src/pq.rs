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
//! - `x-wing-draft-10.json`: `seed` gives `sk` and `pk`, `eseed` gives `ct`
//!   and `ss`, and `sk` decapsulates `ct` to `ss`.

use crate::Report;
use securemesh_core::crypto::{Kem, MlKem768, MlKem1024, XWing};
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
}

macro_rules! parameter_set {
    ($t:ty, $file:literal, $line:literal) => {
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
        }
    };
}

parameter_set!(MlKem768, "ML-KEM-768", "ml-kem-768");
parameter_set!(MlKem1024, "ML-KEM-1024", "ml-kem-1024");

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

/// Every PQ report, reading the files of `dir` (the `pq` folder).
pub fn reports(dir: &Path) -> Vec<Report> {
    let mut out = ml_kem_keygen(&dir.join("wycheproof-mlkem-keygen-seed.json"));
    out.push(ml_kem_768_encaps(&dir.join("wycheproof-mlkem-768-encaps.json")));
    out.push(ml_kem_768_decaps(&dir.join("wycheproof-mlkem-768-decaps.json")));
    out.push(x_wing(&dir.join("x-wing-draft-10.json")));
    out
}

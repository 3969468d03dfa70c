//! Noise conformance: the Cacophony vectors (`noise/cacophony.txt`, see
//! `noise/README.md` for source and licence), run through our handshake and
//! transport with the vectors' fixed ephemeral keys. Every ciphertext must
//! match byte for byte, decrypt back to its payload, and both sides must end
//! with the published handshake hash.
//!
//! The `hfs` (hybrid forward secrecy) vectors go through the same runner
//! ([`hfs`]): our own `noise/securemesh-hfs.json` (Cacophony format plus the
//! KEM randomness of each side) and the five published
//! `Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256` vectors of js-libp2p-noise
//! (`noise/js-libp2p-noise-xxhfs-mlkem768.json`). They need
//! securemesh-noise's feature `hfs`; without it they are reported skipped.

use crate::Report;
use securemesh_core::Secret;
use securemesh_core::crypto::{Aead, ChaChaPoly};
use securemesh_core::testing::ReplayRng;
use securemesh_noise::{Builder, Error, NameError, Protocol, Role};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One Cacophony vector.
#[derive(Debug, Deserialize)]
pub struct Vector {
    /// Full protocol name.
    pub protocol_name: String,
    /// Initiator prologue.
    pub init_prologue: String,
    /// Initiator PSKs, in the order the psk tokens appear.
    #[serde(default)]
    pub init_psks: Vec<String>,
    /// Initiator static private key.
    pub init_static: Option<String>,
    /// Initiator ephemeral private key.
    pub init_ephemeral: String,
    /// Responder static public key known to the initiator.
    pub init_remote_static: Option<String>,
    /// Responder prologue.
    pub resp_prologue: String,
    /// Responder PSKs.
    #[serde(default)]
    pub resp_psks: Vec<String>,
    /// Responder static private key.
    pub resp_static: Option<String>,
    /// Responder ephemeral private key (absent for one-way patterns).
    pub resp_ephemeral: Option<String>,
    /// `hfs` only: the initiator's KEM randomness (ML-KEM `d || z`, the
    /// seed its `e1` key pair is generated from).
    #[serde(default)]
    pub init_kem_ephemeral: Option<String>,
    /// `hfs` only: the responder's KEM randomness (ML-KEM `m`, for the
    /// encapsulation of `ekem1`).
    #[serde(default)]
    pub resp_kem_randomness: Option<String>,
    /// Initiator static public key known to the responder.
    pub resp_remote_static: Option<String>,
    /// Final handshake hash.
    pub handshake_hash: String,
    /// Handshake then transport messages.
    pub messages: Vec<Message>,
}

/// One message of a vector.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// Plaintext payload, hex.
    pub payload: String,
    /// Wire bytes, hex.
    pub ciphertext: String,
}

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

fn h(s: &str) -> Result<Vec<u8>, String> {
    hex::decode(s).map_err(|e| format!("hex: {e}"))
}

/// A JSON vector file.
fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
}

fn key(s: &str) -> Result<[u8; 32], String> {
    h(s)?.try_into().map_err(|_| "key is not 32 bytes".to_string())
}

fn builder<'a>(
    p: &Protocol,
    prologue: &'a [u8],
    psks: &[String],
    s: Option<&String>,
    e: Option<&String>,
    rs: Option<&String>,
) -> Result<Builder<'a>, String> {
    let mut b = Builder::new(p).prologue(prologue);
    if let Some(s) = s {
        b = b.local_static(Secret::new(key(s)?));
    }
    if let Some(e) = e {
        b = b.dangerous_with_ephemeral(Secret::new(key(e)?));
    }
    if let Some(rs) = rs {
        b = b.remote_static(key(rs)?);
    }
    // PSKs come in the order of the psk tokens, i.e. of the modifiers.
    let mut given = psks.iter();
    for n in 0..5u8 {
        if p.has_psk(n) {
            let psk = given.next().ok_or("missing psk")?;
            b = b.psk(n, Secret::new(key(psk)?));
        }
    }
    Ok(b)
}

/// Run one vector; `Err` says where it diverged.
pub fn run_vector(v: &Vector, p: &Protocol) -> Result<(), String> {
    let ip = h(&v.init_prologue)?;
    let rp = h(&v.resp_prologue)?;
    let mut init = builder(
        p,
        &ip,
        &v.init_psks,
        v.init_static.as_ref(),
        Some(&v.init_ephemeral),
        v.init_remote_static.as_ref(),
    )?
    .build(Role::Initiator)
    .map_err(|e| format!("initiator: {e}"))?;
    let mut resp = builder(
        p,
        &rp,
        &v.resp_psks,
        v.resp_static.as_ref(),
        v.resp_ephemeral.as_ref(),
        v.resp_remote_static.as_ref(),
    )?
    .build(Role::Responder)
    .map_err(|e| format!("responder: {e}"))?;

    // The fixed ephemerals leave only the KEM randomness of hfs vectors to
    // draw: each side replays exactly its bytes (none for Cacophony).
    let init_kem = v.init_kem_ephemeral.as_deref().map(h).transpose()?.unwrap_or_default();
    let resp_kem = v.resp_kem_randomness.as_deref().map(h).transpose()?.unwrap_or_default();
    let (mut irng, mut rrng) = (ReplayRng::new(&init_kem), ReplayRng::new(&resp_kem));
    let (mut wire, mut out) = (vec![0u8; 65535], vec![0u8; 65535]);
    let k = p.pattern().messages().len();
    let one_way = p.pattern().is_one_way();
    let mut msgs = v.messages.iter().enumerate();
    for (i, m) in msgs.by_ref().take(k) {
        let payload = h(&m.payload)?;
        let expected = h(&m.ciphertext)?;
        let (w, r, rng) =
            if i % 2 == 0 { (&mut init, &mut resp, &mut irng) } else { (&mut resp, &mut init, &mut rrng) };
        let n = w.write_message(&payload, &mut wire, rng).map_err(|e| format!("write {i}: {e}"))?;
        if wire.get(..n) != Some(&expected[..]) {
            return Err(format!("handshake message {i}: ciphertext differs"));
        }
        let got = r.read_message(&expected, &mut out).map_err(|e| format!("read {i}: {e}"))?;
        if out.get(..got) != Some(&payload[..]) {
            return Err(format!("handshake message {i}: payload differs"));
        }
        if r.remote_static_pending() {
            r.accept_remote_static();
        }
    }
    if (irng.drawn(), rrng.drawn()) != (init_kem.len(), resp_kem.len()) {
        return Err("randomness drawn differs from the vector's".into());
    }
    let hh = h(&v.handshake_hash)?;
    if init.handshake_hash() != hh || resp.handshake_hash() != hh {
        return Err("handshake hash differs".into());
    }
    let mut ti = init.finish().map_err(|e| format!("initiator finish: {e}"))?;
    let mut tr = resp.finish().map_err(|e| format!("responder finish: {e}"))?;
    for (i, m) in msgs {
        let payload = h(&m.payload)?;
        let expected = h(&m.ciphertext)?;
        let from_initiator = one_way || i % 2 == 0;
        let (w, r) = if from_initiator { (&mut ti, &mut tr) } else { (&mut tr, &mut ti) };
        let n = w.write_message(&payload, &mut wire).map_err(|e| format!("transport write {i}: {e}"))?;
        if wire.get(..n) != Some(&expected[..]) {
            return Err(format!("transport message {i}: ciphertext differs"));
        }
        let got = r.read_message(&expected, &mut out).map_err(|e| format!("transport read {i}: {e}"))?;
        if out.get(..got) != Some(&payload[..]) {
            return Err(format!("transport message {i}: payload differs"));
        }
    }
    Ok(())
}

/// Run the Cacophony file: one report per cipher suite (`25519_ChaChaPoly_SHA256`, ...).
/// Suites we do not implement (Curve448) are reported as skipped with the reason.
pub fn cacophony(path: &Path) -> Vec<Report> {
    let file: File = match load(path) {
        Ok(f) => f,
        Err(e) => {
            let mut r = Report::new("noise cacophony");
            r.record(&path.display().to_string(), Err(e));
            return vec![r];
        }
    };
    let mut suites: BTreeMap<String, Report> = BTreeMap::new();
    for v in &file.vectors {
        let suite = v.protocol_name.splitn(3, '_').nth(2).unwrap_or("?").to_string();
        let report =
            suites.entry(suite.clone()).or_insert_with(|| Report::new(format!("noise cacophony {suite}")));
        match Protocol::parse(&v.protocol_name) {
            Ok(p) => report.record(&v.protocol_name, run_vector(v, &p)),
            Err(NameError::UnknownDh) => report.skip("Curve448 is not implemented"),
            Err(e) => report.record(&v.protocol_name, Err(format!("name refused: {e:?}"))),
        }
    }
    suites.into_values().collect()
}

/// The noise-c fallback file (`noise/noise-c-fallback.json`).
#[derive(Debug, Deserialize)]
pub struct FallbackFile {
    /// Prologue (both sides).
    pub prologue: String,
    /// Alice's static private key.
    pub init_static: String,
    /// Alice's ephemeral private key (IK, then the fallback pre-message).
    pub init_ephemeral: String,
    /// Alice's stale copy of Bob's static public key.
    pub init_remote_static: String,
    /// Bob's static private key.
    pub resp_static: String,
    /// Bob's ephemeral private key in XXfallback.
    pub resp_ephemeral: String,
    /// The six payloads.
    pub payloads: Vec<String>,
    /// One entry per cipher suite.
    pub vectors: Vec<FallbackVector>,
}

/// One Noise Pipes fallback vector.
#[derive(Debug, Deserialize)]
pub struct FallbackVector {
    /// The fallback protocol name (`Noise_XXfallback_...`).
    pub protocol_name: String,
    /// IK message 1, XXfallback messages 1 and 2, three transport messages.
    pub ciphertexts: Vec<String>,
    /// Final handshake hash.
    pub handshake_hash: String,
}

/// Run one Noise Pipes vector through the real `fallback()` path.
pub fn run_fallback(f: &FallbackFile, v: &FallbackVector) -> Result<(), String> {
    let fb = Protocol::parse(&v.protocol_name).map_err(|e| format!("{e:?}"))?;
    let ik = Protocol::parse(&v.protocol_name.replace("XXfallback", "IK")).map_err(|e| format!("{e:?}"))?;
    let prologue = h(&f.prologue)?;
    let ct: Vec<Vec<u8>> = v.ciphertexts.iter().map(|c| h(c)).collect::<Result<_, _>>()?;
    let pl: Vec<Vec<u8>> = f.payloads.iter().map(|p| h(p)).collect::<Result<_, _>>()?;
    let (Some(ct0), Some(ct1), Some(ct2)) = (ct.first(), ct.get(1), ct.get(2)) else {
        return Err("needs six ciphertexts".into());
    };
    let payload = |i: usize| pl.get(i).ok_or_else(|| format!("payload {i}"));
    let (mut msg, mut out) = (vec![0u8; 1024], vec![0u8; 1024]);
    let mut none = ReplayRng::new(&[]);
    let e = |r: Result<usize, Error>, what: &str| r.map_err(|e| format!("{what}: {e}"));

    let mut alice = Builder::new(&ik)
        .prologue(&prologue)
        .local_static(Secret::new(key(&f.init_static)?))
        .remote_static(key(&f.init_remote_static)?)
        .dangerous_with_ephemeral(Secret::new(key(&f.init_ephemeral)?))
        .build_initiator()
        .map_err(|e| e.to_string())?;
    let mut bob = Builder::new(&ik)
        .prologue(&prologue)
        .local_static(Secret::new(key(&f.resp_static)?))
        .build_responder()
        .map_err(|e| e.to_string())?;
    let n = e(alice.write_message(payload(0)?, &mut msg, &mut none), "IK write")?;
    if msg.get(..n) != Some(&ct0[..]) {
        return Err("IK message 1 differs".into());
    }
    if bob.read_message(ct0, &mut out) != Err(Error::Decrypt) {
        return Err("the stale IK message must fail at the responder".into());
    }
    let mut bob = bob.fallback(&fb, &prologue).map_err(|e| e.to_string())?;
    let re = key(&f.resp_ephemeral)?;
    let n = e(bob.write_message(payload(1)?, &mut msg, &mut ReplayRng::new(&re)), "fallback write 1")?;
    if msg.get(..n) != Some(&ct1[..]) {
        return Err("XXfallback message 1 differs".into());
    }
    if alice.read_message(ct1, &mut out) != Err(Error::Decrypt) {
        return Err("Alice's IK read of the fallback message must fail".into());
    }
    let mut alice = alice.fallback(&fb, &prologue).map_err(|e| e.to_string())?;
    let k = e(alice.read_message(ct1, &mut out), "fallback read 1")?;
    if out.get(..k) != Some(&payload(1)?[..]) {
        return Err("payload 1 differs".into());
    }
    alice.accept_remote_static();
    let n = e(alice.write_message(payload(2)?, &mut msg, &mut none), "fallback write 2")?;
    if msg.get(..n) != Some(&ct2[..]) {
        return Err("XXfallback message 2 differs".into());
    }
    let k = e(bob.read_message(ct2, &mut out), "fallback read 2")?;
    if out.get(..k) != Some(&payload(2)?[..]) {
        return Err("payload 2 differs".into());
    }
    bob.accept_remote_static();
    let hh = h(&v.handshake_hash)?;
    if alice.handshake_hash() != hh || bob.handshake_hash() != hh {
        return Err("handshake hash differs".into());
    }
    let (mut ta, mut tb) =
        (alice.finish().map_err(|e| e.to_string())?, bob.finish().map_err(|e| e.to_string())?);
    for (i, c) in ct.iter().enumerate().skip(3) {
        let (w, r) = if i % 2 == 1 { (&mut tb, &mut ta) } else { (&mut ta, &mut tb) };
        let n = e(w.write_message(payload(i)?, &mut msg), "transport write")?;
        if msg.get(..n) != Some(&c[..]) {
            return Err(format!("transport message {i} differs"));
        }
        let k = e(r.read_message(c, &mut out), "transport read")?;
        if out.get(..k) != Some(&payload(i)?[..]) {
            return Err(format!("transport payload {i} differs"));
        }
    }
    Ok(())
}

/// The noise-c Noise Pipes fallback vectors.
pub fn noise_c_fallback(path: &Path) -> Report {
    let mut r = Report::new("noise noise-c fallback");
    let file: FallbackFile = match load(path) {
        Ok(f) => f,
        Err(e) => {
            r.record(&path.display().to_string(), Err(e));
            return r;
        }
    };
    for v in &file.vectors {
        r.record(&v.protocol_name, run_fallback(&file, v));
    }
    r
}

/// Why an `hfs` name does not parse in this build, or `None` if it does.
fn hfs_unsupported(name: &str) -> Result<Option<&'static str>, String> {
    match Protocol::parse(name) {
        Ok(_) => Ok(None),
        Err(NameError::FeatureDisabled { .. }) => Ok(Some("securemesh-noise feature `hfs` is off")),
        Err(e) => Err(format!("name refused: {e:?}")),
    }
}

/// Our hfs vectors (`securemesh-hfs.json`, Cacophony format) and the
/// published js-libp2p-noise XXhfs ML-KEM-768 vectors, from `dir`
/// (`test-vectors/noise`).
pub fn hfs(dir: &Path) -> Vec<Report> {
    let mut ours = Report::new("noise securemesh hfs");
    match load::<File>(&dir.join("securemesh-hfs.json")) {
        Ok(file) => {
            for v in &file.vectors {
                match hfs_unsupported(&v.protocol_name) {
                    Ok(None) => {
                        let p = Protocol::parse(&v.protocol_name).map_err(|e| format!("{e:?}"));
                        ours.record(&v.protocol_name, p.and_then(|p| run_vector(v, &p)));
                    }
                    Ok(Some(why)) => ours.skip(why),
                    Err(e) => ours.record(&v.protocol_name, Err(e)),
                }
            }
        }
        Err(e) => ours.record("securemesh-hfs.json", Err(e)),
    }
    vec![ours, libp2p_xxhfs(&dir.join("js-libp2p-noise-xxhfs-mlkem768.json"))]
}

/// The published js-libp2p-noise file (trimmed copy, see `noise/README.md`).
#[derive(Debug, Deserialize)]
pub struct Libp2pHfsFile {
    /// The protocol name of every vector.
    pub protocol: String,
    /// The five vectors.
    pub vectors: Vec<Libp2pHfsVector>,
}

/// One published XXhfs vector: fixed keys, the three message lengths, the
/// third message, the handshake hash and the two transport keys.
#[derive(Debug, Deserialize)]
pub struct Libp2pHfsVector {
    /// 1 to 5.
    pub vector_index: u32,
    /// Initiator static private key.
    pub static_i_private: String,
    /// Its public key.
    pub static_i_public: String,
    /// Responder static private key.
    pub static_r_private: String,
    /// Its public key.
    pub static_r_public: String,
    /// Initiator ephemeral private key.
    pub ephemeral_dh_i_private: String,
    /// Responder ephemeral private key.
    pub ephemeral_dh_r_private: String,
    /// ML-KEM `d || z` of the initiator's `e1` key (added by us: the file
    /// publishes the expanded key, whose `z` part it is).
    pub kem_seed_d_z: String,
    /// ML-KEM encapsulation randomness `m` of the responder.
    pub encap_seed_hex: String,
    /// Prologue (empty).
    pub prologue: String,
    /// Message 3 (`-> s, se`), hex.
    pub msg_c: String,
    /// Length of message 1.
    pub msg_a_bytes: usize,
    /// Length of message 2.
    pub msg_b_bytes: usize,
    /// Length of message 3.
    pub msg_c_bytes: usize,
    /// Final handshake hash.
    pub handshake_hash: String,
    /// Initiator-to-responder transport key (`Split()`'s first key).
    pub cs1_k: String,
    /// Responder-to-initiator transport key.
    pub cs2_k: String,
}

/// Run one published XXhfs vector: the handshake with its keys and KEM
/// randomness, empty payloads; message lengths, message 3 and `h` must be
/// the published ones, and each transport must encrypt as ChaCha20-Poly1305
/// under the published key (nonce 0, no associated data).
pub fn run_libp2p_xxhfs(p: &Protocol, v: &Libp2pHfsVector) -> Result<(), String> {
    let prologue = h(&v.prologue)?;
    let e = |r: Result<usize, Error>, what: &str| r.map_err(|e| format!("{what}: {e}"));
    let mut init = Builder::new(p)
        .prologue(&prologue)
        .local_static(Secret::new(key(&v.static_i_private)?))
        .dangerous_with_ephemeral(Secret::new(key(&v.ephemeral_dh_i_private)?))
        .build_initiator()
        .map_err(|e| e.to_string())?;
    let mut resp = Builder::new(p)
        .prologue(&prologue)
        .local_static(Secret::new(key(&v.static_r_private)?))
        .dangerous_with_ephemeral(Secret::new(key(&v.ephemeral_dh_r_private)?))
        .build_responder()
        .map_err(|e| e.to_string())?;
    let (seed, m) = (h(&v.kem_seed_d_z)?, h(&v.encap_seed_hex)?);
    let (mut irng, mut rrng) = (ReplayRng::new(&seed), ReplayRng::new(&m));
    let (mut wire, mut out) = (vec![0u8; 4096], vec![0u8; 4096]);
    let mut lens = Vec::new();
    for i in 0..3 {
        let (w, r, rng) =
            if i % 2 == 0 { (&mut init, &mut resp, &mut irng) } else { (&mut resp, &mut init, &mut rrng) };
        let n = e(w.write_message(b"", &mut wire, rng), "write")?;
        let got = e(r.read_message(wire.get(..n).ok_or("length")?, &mut out), "read")?;
        if got != 0 {
            return Err(format!("message {i}: payload not empty"));
        }
        if r.remote_static_pending() {
            let expected = key(if i == 1 { &v.static_r_public } else { &v.static_i_public })?;
            if r.remote_static() != Some(&expected) {
                return Err(format!("message {i}: static key differs"));
            }
            r.accept_remote_static();
        }
        lens.push(n);
    }
    if lens != [v.msg_a_bytes, v.msg_b_bytes, v.msg_c_bytes] {
        return Err(format!("message lengths {lens:?}"));
    }
    if wire.get(..v.msg_c_bytes) != Some(&h(&v.msg_c)?[..]) {
        return Err("message 3 differs".into());
    }
    if (irng.drawn(), rrng.drawn()) != (seed.len(), m.len()) {
        return Err("KEM randomness drawn differs".into());
    }
    let hh = h(&v.handshake_hash)?;
    if init.handshake_hash() != hh || resp.handshake_hash() != hh {
        return Err("handshake hash differs".into());
    }
    let mut ti = init.finish().map_err(|e| e.to_string())?;
    let mut tr = resp.finish().map_err(|e| e.to_string())?;
    for (t, k, what) in [(&mut ti, &v.cs1_k, "cs1_k"), (&mut tr, &v.cs2_k, "cs2_k")] {
        let text = b"securemesh";
        let n = t.write_message(text, &mut wire).map_err(|e| e.to_string())?;
        let mut expected = text.to_vec();
        let tag = ChaChaPoly::seal_detached(&Secret::new(key(k)?), &[0; 12], &[], &mut expected)
            .map_err(|e| e.to_string())?;
        expected.extend_from_slice(&tag);
        if wire.get(..n) != Some(&expected[..]) {
            return Err(format!("transport key differs from {what}"));
        }
    }
    Ok(())
}

/// The js-libp2p-noise vectors file.
pub fn libp2p_xxhfs(path: &Path) -> Report {
    let mut r = Report::new("noise js-libp2p-noise XXhfs MLKEM768");
    let file: Libp2pHfsFile = match load(path) {
        Ok(f) => f,
        Err(e) => {
            r.record(&path.display().to_string(), Err(e));
            return r;
        }
    };
    match hfs_unsupported(&file.protocol) {
        Ok(None) => {}
        Ok(Some(why)) => {
            file.vectors.iter().for_each(|_| r.skip(why));
            return r;
        }
        Err(e) => {
            r.record(&file.protocol, Err(e));
            return r;
        }
    }
    for v in &file.vectors {
        let id = format!("vector {}", v.vector_index);
        let outcome = Protocol::parse(&file.protocol)
            .map_err(|e| format!("{e:?}"))
            .and_then(|p| run_libp2p_xxhfs(&p, v));
        r.record(&id, outcome);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hfs_on() -> bool {
        Protocol::parse("Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256").is_ok()
    }

    /// All 19 of ours and the 5 published vectors pass with the feature
    /// `hfs`; without it they are skipped, not failed.
    #[test]
    fn hfs_vectors() {
        let reports = hfs(&crate::vectors_dir().join("noise"));
        let counts: Vec<_> = reports.iter().map(|r| (r.passed, r.total, r.skipped)).collect();
        if hfs_on() {
            assert_eq!(counts, [(19, 19, 0), (5, 5, 0)], "{reports:?}");
        } else {
            assert_eq!(counts, [(0, 0, 19), (0, 0, 5)], "{reports:?}");
        }
    }

    /// A changed byte of a vector's expected output fails it.
    #[test]
    fn changed_hfs_vector_fails() {
        if !hfs_on() {
            return;
        }
        let dir = crate::vectors_dir().join("noise");
        let text = std::fs::read_to_string(dir.join("securemesh-hfs.json")).unwrap();
        let mut file: File = serde_json::from_str(&text).unwrap();
        let v = &mut file.vectors[5];
        let p = Protocol::parse(&v.protocol_name).unwrap();
        assert_eq!(run_vector(v, &p), Ok(()));
        let ct = &mut v.messages[1].ciphertext;
        let flipped = if ct.ends_with('0') { '1' } else { '0' };
        ct.pop();
        ct.push(flipped);
        assert!(run_vector(v, &p).is_err());

        let text = std::fs::read_to_string(dir.join("js-libp2p-noise-xxhfs-mlkem768.json")).unwrap();
        let mut file: Libp2pHfsFile = serde_json::from_str(&text).unwrap();
        let p = Protocol::parse(&file.protocol).unwrap();
        let v = &mut file.vectors[0];
        assert_eq!(run_libp2p_xxhfs(&p, v), Ok(()));
        v.cs2_k.replace_range(0..2, if v.cs2_k.starts_with("00") { "01" } else { "00" });
        assert!(run_libp2p_xxhfs(&p, v).is_err());
    }
}

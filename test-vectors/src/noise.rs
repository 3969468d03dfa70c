//! Noise conformance: the Cacophony vectors (`noise/cacophony.txt`, see
//! `noise/README.md` for source and licence), run through our handshake and
//! transport with the vectors' fixed ephemeral keys. Every ciphertext must
//! match byte for byte, decrypt back to its payload, and both sides must end
//! with the published handshake hash.

use crate::Report;
use securemesh_core::Secret;
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

    // The fixed ephemerals make the RNG unused; a zero RNG proves it.
    let mut rng = ZeroRng;
    let (mut wire, mut out) = (vec![0u8; 65535], vec![0u8; 65535]);
    let k = p.pattern().messages().len();
    let one_way = p.pattern().is_one_way();
    let mut msgs = v.messages.iter().enumerate();
    for (i, m) in msgs.by_ref().take(k) {
        let payload = h(&m.payload)?;
        let expected = h(&m.ciphertext)?;
        let (w, r) = if i % 2 == 0 { (&mut init, &mut resp) } else { (&mut resp, &mut init) };
        let n = w.write_message(&payload, &mut wire, &mut rng).map_err(|e| format!("write {i}: {e}"))?;
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

/// An RNG that yields zeros: vectors fix every ephemeral key, so a handshake
/// that drew from it would produce the wrong bytes and fail.
struct ZeroRng;
impl rand_core::TryRng for ZeroRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(0)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(0)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        dst.fill(0);
        Ok(())
    }
}
impl rand_core::TryCryptoRng for ZeroRng {}

/// Run the Cacophony file: one report per cipher suite (`25519_ChaChaPoly_SHA256`, ...).
/// Suites we do not implement (Curve448) are reported as skipped with the reason.
pub fn cacophony(path: &Path) -> Vec<Report> {
    let file: File = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
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
    let file: FallbackFile = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
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

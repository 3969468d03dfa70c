//! Golden files of the persisted-state envelope.
//!
//! Each released envelope version has a JSON file of plain and sealed
//! encodings, written once by the code of that version and never changed.
//! The checks prove that today's code still writes the same bytes and reads
//! every released version.

use crate::Report;
use securemesh_core::Error;
use securemesh_core::crypto::SuiteId;
use securemesh_core::envelope::{self, Header, StateKind, StorageKey};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A golden file of the envelope.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnvelopeGolden {
    /// Where the file comes from.
    pub source: String,
    /// Plain envelopes.
    pub plain: Vec<PlainCase>,
    /// Sealed envelopes.
    pub sealed: Vec<SealedCase>,
}

/// A plain envelope case.
#[derive(Debug, Serialize, Deserialize)]
pub struct PlainCase {
    /// State kind.
    pub kind: u8,
    /// Body version.
    pub version: u16,
    /// Suite id.
    pub suite: u16,
    /// Body, hex.
    pub body: String,
    /// Whole envelope, hex.
    pub encoded: String,
}

/// A sealed envelope case.
#[derive(Debug, Serialize, Deserialize)]
pub struct SealedCase {
    /// State kind.
    pub kind: u8,
    /// Body version.
    pub version: u16,
    /// Suite id.
    pub suite: u16,
    /// Generation.
    pub generation: u64,
    /// Storage key, hex.
    pub storage_key: String,
    /// The 12 bytes the RNG supplied as nonce, hex.
    pub nonce: String,
    /// Body, hex.
    pub body: String,
    /// Whole sealed envelope, hex.
    pub encoded: String,
}

pub use securemesh_core::testing::ReplayRng;

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    hex::decode(s).map_err(|e| format!("bad hex: {e}"))
}

fn header(kind: u8, version: u16, suite: u16) -> Header {
    Header { kind: StateKind(kind), version, suite: SuiteId(suite) }
}

fn check_plain(c: &PlainCase) -> Result<(), String> {
    let body = unhex(&c.body)?;
    let expected = unhex(&c.encoded)?;
    let h = header(c.kind, c.version, c.suite);
    let mut out = vec![0u8; envelope::HEADER_LEN + body.len()];
    let n = envelope::encode(&h, &mut out, |w| w.write_bytes(&body)).map_err(|e| e.to_string())?;
    if out.get(..n) != Some(&expected[..]) {
        return Err("encode differs from golden bytes".into());
    }
    let (h2, b2) = envelope::decode(&expected).map_err(|e| e.to_string())?;
    if h2 != h || b2 != &body[..] {
        return Err("decode differs from golden header/body".into());
    }
    Ok(())
}

fn check_sealed(c: &SealedCase) -> Result<(), String> {
    let body = unhex(&c.body)?;
    let expected = unhex(&c.encoded)?;
    let nonce = unhex(&c.nonce)?;
    let key = StorageKey::from_slice(&unhex(&c.storage_key)?).ok_or("storage key is not 32 bytes")?;
    let h = header(c.kind, c.version, c.suite);
    let mut out = vec![0u8; envelope::SEAL_OVERHEAD + body.len()];
    let n = envelope::seal(&key, &h, c.generation, &mut ReplayRng::new(&nonce), &mut out, |w| {
        w.write_bytes(&body)
    })
    .map_err(|e| e.to_string())?;
    if out.get(..n) != Some(&expected[..]) {
        return Err("seal differs from golden bytes".into());
    }
    let mut scratch = vec![0u8; body.len()];
    let opened = envelope::open(&key, &expected, c.generation, &mut scratch).map_err(|e| e.to_string())?;
    if opened.header != h || opened.generation != c.generation || opened.body != &body[..] {
        return Err("open differs from golden header/generation/body".into());
    }
    match envelope::open(&key, &expected, c.generation + 1, &mut scratch) {
        Err(Error::Rollback { .. }) => Ok(()),
        other => Err(format!("rollback not detected: {other:?}")),
    }
}

/// Check the envelope v1 golden file.
pub fn envelope_v1(path: &Path) -> Report {
    let mut r = Report::new("state envelope-v1");
    let golden: EnvelopeGolden = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(g) => g,
        Err(e) => {
            r.record(&path.display().to_string(), Err(e));
            return r;
        }
    };
    for (i, c) in golden.plain.iter().enumerate() {
        r.record(&format!("plain[{i}]"), check_plain(c));
    }
    for (i, c) in golden.sealed.iter().enumerate() {
        r.record(&format!("sealed[{i}]"), check_sealed(c));
    }
    r
}

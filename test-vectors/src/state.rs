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

/// The golden file of the mesh agent's sealed records
/// (`state/mesh-records-v1.json`): an agent record and session records
/// of one agent, sealed under a fixed storage key, and the next message of
/// each recorded session.
#[derive(Debug, Serialize, Deserialize)]
pub struct MeshRecordsGolden {
    /// Where the file comes from (names the storage key and the seeds).
    pub source: String,
    /// The storage key, hex.
    pub storage_key: String,
    /// The agent's peer id, hex.
    pub owner: String,
    /// The sealed records: the agent record first, then session records.
    pub records: Vec<MeshRecord>,
    /// Envelopes the restored agent must deliver.
    pub next: Vec<MeshNext>,
}

/// One sealed record.
#[derive(Debug, Serialize, Deserialize)]
pub struct MeshRecord {
    /// `agent` or `session N`.
    pub record: String,
    /// Its generation.
    pub generation: u64,
    /// The sealed blob, hex.
    pub sealed: String,
}

/// A message the restored agent must deliver.
#[derive(Debug, Serialize, Deserialize)]
pub struct MeshNext {
    /// The session record it continues (`session N`): the agent is
    /// restored from the agent record and that one.
    pub record: String,
    /// The sender's peer id, hex.
    pub from: String,
    /// The envelope, hex.
    pub envelope: String,
    /// The message kind.
    pub kind: u8,
    /// The payload, hex.
    pub payload: String,
}

fn record_id(s: &str) -> Result<securemesh::RecordId, String> {
    match s {
        "agent" => return Ok(securemesh::RecordId::Agent),
        "key packages" => return Ok(securemesh::RecordId::KeyPackages),
        _ => {}
    }
    let number = |prefix: &str| s.strip_prefix(prefix).and_then(|n| n.parse().ok());
    number("session ")
        .map(securemesh::RecordId::Session)
        .or_else(|| number("group ").map(securemesh::RecordId::Group))
        .ok_or_else(|| format!("unknown record {s}"))
}

/// The name of a record id in the golden file.
pub fn record_name(id: securemesh::RecordId) -> String {
    match id {
        securemesh::RecordId::Agent => "agent".into(),
        securemesh::RecordId::Session(n) => format!("session {n}"),
        securemesh::RecordId::Group(n) => format!("group {n}"),
        securemesh::RecordId::KeyPackages => "key packages".into(),
    }
}

struct MeshInput {
    key: [u8; 32],
    owner: [u8; 32],
    /// (id, generation, sealed)
    records: Vec<(securemesh::RecordId, u64, Vec<u8>)>,
}

fn mesh_input(g: &MeshRecordsGolden) -> Result<MeshInput, String> {
    let key: [u8; 32] = unhex(&g.storage_key)?.try_into().map_err(|_| "storage key is not 32 bytes")?;
    let owner: [u8; 32] = unhex(&g.owner)?.try_into().map_err(|_| "owner is not 32 bytes")?;
    let records = g
        .records
        .iter()
        .map(|r| Ok((record_id(&r.record)?, r.generation, unhex(&r.sealed)?)))
        .collect::<Result<Vec<_>, String>>()?;
    Ok(MeshInput { key, owner, records })
}

type MeshAgent = securemesh::DefaultAgent;

/// Restore the agent record, and the session records for which `with`
/// holds.
fn mesh_restore(
    m: &MeshInput,
    with: impl Fn(securemesh::RecordId) -> bool,
) -> Result<Box<MeshAgent>, String> {
    let mut scratch = vec![0u8; MeshAgent::MAX_RECORD_LEN];
    let (id, g, blob) = m.records.first().ok_or("no records")?;
    if *id != securemesh::RecordId::Agent {
        return Err("the first record is not the agent record".into());
    }
    let mut a = Box::new(
        MeshAgent::restore(StorageKey::new(m.key), securemesh::Config::default(), blob, *g, &mut scratch)
            .map_err(|e| format!("restore: {e}"))?,
    );
    if a.peer_id().0 != m.owner {
        return Err("restored agent has another peer id".into());
    }
    for (id, g, blob) in m.records.get(1..).unwrap_or_default() {
        if with(*id) {
            let got = a.restore_record(blob, *g, &mut scratch).map_err(|e| format!("restore_record: {e}"))?;
            if got != *id {
                return Err(format!("restore_record gave {got:?}"));
            }
        }
    }
    Ok(a)
}

/// The body of a sealed record.
fn mesh_body(key: &[u8; 32], blob: &[u8]) -> Result<Vec<u8>, String> {
    let mut scratch = vec![0u8; blob.len()];
    let o = envelope::open(&StorageKey::new(*key), blob, 0, &mut scratch).map_err(|e| e.to_string())?;
    if o.header.kind != StateKind::MESH_ROUTER || o.header.version != 1 {
        return Err(format!("header {:?}", o.header));
    }
    Ok(o.body.to_vec())
}

/// The record `id` of `a`, handed out again: persistence re-enabled marks
/// the agent record and every ratchet session's record.
fn mesh_repersist(a: &mut MeshAgent, key: &[u8; 32], id: securemesh::RecordId) -> Result<Vec<u8>, String> {
    a.enable_persistence(StorageKey::new(*key));
    let mut buf = vec![0u8; MeshAgent::MAX_RECORD_LEN];
    let mut rng = securemesh_core::testing::TestRng::new(0);
    while let Some(r) = a.poll_persist(&mut buf, &mut rng).map_err(|e| e.to_string())? {
        if r.id == id {
            return mesh_body(key, buf.get(..r.len).unwrap_or_default());
        }
    }
    Err(format!("{id:?} not handed out again"))
}

fn check_mesh_record(m: &MeshInput, i: usize) -> Result<(), String> {
    let (id, g, blob) = m.records.get(i).ok_or("no such record")?;
    let mut a = mesh_restore(m, |r| r == *id)?;
    // The same body re-encodes, byte for byte.
    let golden = mesh_body(&m.key, blob)?;
    if mesh_repersist(&mut a, &m.key, *id)? != golden {
        return Err("re-encoded body differs from the golden record".into());
    }
    // An older generation than the host recorded is refused.
    let mut scratch = vec![0u8; MeshAgent::MAX_RECORD_LEN];
    let refused = match id {
        securemesh::RecordId::Agent => MeshAgent::restore(
            StorageKey::new(m.key),
            securemesh::Config::default(),
            blob,
            g + 1,
            &mut scratch,
        )
        .err(),
        securemesh::RecordId::Session(_)
        | securemesh::RecordId::Group(_)
        | securemesh::RecordId::KeyPackages => {
            mesh_restore(m, |_| false)?.restore_record(blob, g + 1, &mut scratch).err()
        }
    };
    match refused {
        Some(securemesh::Error::Storage(Error::Rollback { .. })) => Ok(()),
        other => Err(format!("rollback not detected: {other:?}")),
    }
}

fn check_mesh_next(m: &MeshInput, n: &MeshNext) -> Result<(), String> {
    let session = record_id(&n.record)?;
    let mut a = mesh_restore(m, |r| r == session)?;
    let env = unhex(&n.envelope)?;
    let mut out = vec![0u8; env.len()];
    let mut rng = securemesh_core::testing::TestRng::new(0);
    let r = a
        .handle_input(&env, &mut out, securemesh_core::Instant(1_000), &mut rng)
        .map_err(|e| format!("handle_input: {e}"))?
        .ok_or("nothing delivered")?;
    if r.from.0[..] != unhex(&n.from)?[..]
        || r.kind.0 != n.kind
        || out.get(..r.len) != Some(&unhex(&n.payload)?[..])
    {
        return Err(format!("delivered {r:?} differs"));
    }
    Ok(())
}

/// Check the mesh records v1 golden file: every record restores (the
/// agent record with `restore`, each session record with `restore_record`
/// after it), re-encodes to the same body and refuses an older generation;
/// each `next` envelope is delivered by the agent restored from the agent
/// record and the session record it names.
pub fn mesh_records_v1(path: &Path) -> Report {
    let mut r = Report::new("state mesh-records-v1");
    let golden: MeshRecordsGolden = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(g) => g,
        Err(e) => {
            r.record(&path.display().to_string(), Err(e));
            return r;
        }
    };
    let m = match mesh_input(&golden) {
        Ok(m) => m,
        Err(e) => {
            r.record(&path.display().to_string(), Err(e));
            return r;
        }
    };
    for (i, rec) in golden.records.iter().enumerate() {
        r.record(&format!("mesh-records-v1 {}", rec.record), check_mesh_record(&m, i));
    }
    for (i, n) in golden.next.iter().enumerate() {
        r.record(&format!("mesh-records-v1 next[{i}]"), check_mesh_next(&m, n));
    }
    r
}

//! Where the agent's sealed records live between runs.
//!
//! The agent hands out every durable change as a sealed blob with a
//! generation ([`Agent::poll_persist`](securemesh::Agent::poll_persist));
//! the host **must** store it before it sends what the call produced.
//! A [`StateStore`] keeps the newest blob of each record and, apart from
//! it, the newest generation it ever stored: on restore the agent
//! refuses a blob older than that generation as a rollback.
//!
//! [`FileStore`] keeps one file per record in a directory
//! (`agent.rec`, `session-N.rec`, ...: [`record_name`]) and the
//! generations in a ledger file (`NAME GENERATION` per line). Each write goes to a temporary file
//! that is fsynced, renamed over the old one and followed by an fsync of
//! the directory, so a crash leaves either the old or the new file,
//! never a torn one. The record is written before the ledger: a crash
//! between the two leaves a record newer than the ledger, which restore
//! accepts; the other order would leave an older record than the ledger
//! says, refused as a rollback, i.e. a lost state. (A crash between the
//! first file of a new record and its ledger line leaves a file the
//! ledger does not list: refused, naming it, since its generation cannot
//! be checked.)
//!
//! The ledger detects a record file replaced by an older copy. Whoever
//! can roll back the ledger too can roll back everything: keep it on
//! storage they cannot (`generation_file` in the configuration).

use securemesh::RecordId;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One stored record and the newest generation recorded for it (what
/// [`Agent::restore`](securemesh::Agent::restore) takes as `newest_seen`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// Which record, by its [`record_name`]. The agent itself tells the
    /// kinds of the other records apart from their sealed bodies.
    pub name: String,
    /// The newest generation the store recorded for it.
    pub newest_seen: u64,
    /// The sealed blob.
    pub blob: Vec<u8>,
}

/// Why the store failed.
#[derive(Debug)]
pub enum StoreError {
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The ledger is not in its format.
    BadLedger {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
    },
    /// Record files exist but the ledger does not: their generations
    /// cannot be checked.
    LedgerMissing(PathBuf),
    /// The ledger names a record whose file is gone.
    RecordMissing(PathBuf),
    /// The outbox file is not in its format.
    BadOutbox(PathBuf),
    /// The outbox holds its maximum of envelopes.
    OutboxFull(PathBuf),
    /// A record file the ledger does not list: its generation cannot be
    /// checked (a file copied in, or a save that crashed between the
    /// record and the ledger; move the file away to start without it).
    Unlisted(PathBuf),
    /// A generation not above the one already stored for the record.
    NotNewer {
        /// Which record.
        name: String,
        /// The stored generation.
        stored: u64,
        /// The one offered.
        offered: u64,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, error } => write!(f, "state file {}: {error}", path.display()),
            StoreError::BadLedger { path, line } => {
                write!(f, "generation ledger {} is malformed at line {line}", path.display())
            }
            StoreError::LedgerMissing(p) => write!(
                f,
                "state records exist but the generation ledger {} is missing: refusing to restore unchecked state",
                p.display()
            ),
            StoreError::RecordMissing(p) => {
                write!(f, "the generation ledger names {}, which is missing", p.display())
            }
            StoreError::BadOutbox(p) => write!(f, "outbox {} is malformed", p.display()),
            StoreError::OutboxFull(p) => write!(f, "outbox {} is full", p.display()),
            StoreError::Unlisted(p) => write!(
                f,
                "state record {} is not listed in the generation ledger: refusing to restore it unchecked",
                p.display()
            ),
            StoreError::NotNewer { name, stored, offered } => {
                write!(f, "record {name}: generation {offered} is not newer than the stored {stored}")
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// A back end for the agent's sealed records.
pub trait StateStore: Send {
    /// Store `blob` as the newest state of record `id` at `generation`
    /// (strictly above any stored before for `id`). When this returns
    /// `Ok`, blob and generation survive a crash.
    fn save(&mut self, id: RecordId, generation: u64, blob: &[u8]) -> Result<(), StoreError>;

    /// Every stored record with its newest recorded generation (empty for
    /// a new agent).
    fn load(&self) -> Result<Vec<StoredRecord>, StoreError>;
}

/// The file back end: `agent.rec`, `session-N.rec` and a ledger.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    ledger: PathBuf,
    generations: BTreeMap<String, u64>,
}

/// The name of a record in a store: `agent`, `session-N`, and for the
/// records the mesh adds (groups, key packages) their lower-cased
/// variant name and number (`group-N`, `keypackages`).
pub fn record_name(id: RecordId) -> String {
    // The wildcard covers record kinds of newer mesh versions.
    #[allow(unreachable_patterns)]
    match id {
        RecordId::Agent => AGENT.into(),
        RecordId::Session(n) => format!("session-{n}"),
        other => format!("{other:?}")
            .chars()
            .filter_map(|c| match c {
                '(' => Some('-'),
                c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
    }
}

/// The agent record's name.
pub const AGENT: &str = "agent";

/// A record name from a file name (`NAME.rec`), if it is one.
fn parse_name(file: &str) -> Option<&str> {
    let name = file.strip_suffix(".rec")?;
    let ok =
        !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    ok.then_some(name)
}

/// Write `bytes` to `path` through `path.tmp`: write, fsync, rename, fsync
/// the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |error| StoreError::Io { path: p, error }
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl FileStore {
    /// The store in `dir` (created if needed) with its ledger at `ledger`
    /// (default `dir/generations`).
    pub fn open(dir: &Path, ledger: Option<&Path>) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(|error| StoreError::Io { path: dir.into(), error })?;
        let ledger = ledger.map_or_else(|| dir.join("generations"), Path::to_path_buf);
        let generations = match fs::read_to_string(&ledger) {
            Ok(text) => parse_ledger(&text, &ledger)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(error) => return Err(StoreError::Io { path: ledger, error }),
        };
        Ok(FileStore { dir: dir.into(), ledger, generations })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of record `id`'s file.
    pub fn path_of(&self, id: RecordId) -> PathBuf {
        self.file(&record_name(id))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.rec"))
    }

    fn write_ledger(&self) -> Result<(), StoreError> {
        let mut text = String::new();
        for (name, g) in &self.generations {
            text.push_str(&format!("{name} {g}\n"));
        }
        write_atomic(&self.ledger, text.as_bytes())
    }
}

fn parse_ledger(text: &str, path: &Path) -> Result<BTreeMap<String, u64>, StoreError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let bad = || StoreError::BadLedger { path: path.into(), line: i.saturating_add(1) };
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let [name, g] = words.as_slice() else { return Err(bad()) };
        let name = parse_name(&format!("{name}.rec")).ok_or_else(bad)?.to_string();
        let g: u64 = g.parse().map_err(|_| bad())?;
        if out.insert(name, g).is_some() {
            return Err(bad());
        }
    }
    Ok(out)
}

impl StateStore for FileStore {
    fn save(&mut self, id: RecordId, generation: u64, blob: &[u8]) -> Result<(), StoreError> {
        let name = record_name(id);
        if let Some(stored) = self.generations.get(&name).copied().filter(|s| *s >= generation) {
            return Err(StoreError::NotNewer { name, stored, offered: generation });
        }
        write_atomic(&self.file(&name), blob)?;
        self.generations.insert(name, generation);
        self.write_ledger()
    }

    fn load(&self) -> Result<Vec<StoredRecord>, StoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| StoreError::Io { path, error }
        };
        let mut present = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            if let Some(name) = entry.file_name().to_str().and_then(parse_name) {
                present.push(name.to_string());
            }
        }
        if self.generations.is_empty() && !present.is_empty() && !self.ledger.exists() {
            return Err(StoreError::LedgerMissing(self.ledger.clone()));
        }
        let mut out = Vec::new();
        for (name, g) in &self.generations {
            let path = self.file(name);
            let blob = match fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StoreError::RecordMissing(path));
                }
                Err(error) => return Err(StoreError::Io { path, error }),
            };
            out.push(StoredRecord { name: name.clone(), newest_seen: *g, blob });
        }
        // A record file the ledger does not list has no generation to
        // check it against (a copy dropped in, or a save that crashed
        // before its ledger update): refused, whatever the ledger holds.
        present.sort();
        if self.ledger.exists()
            && let Some(name) = present.iter().find(|n| !self.generations.contains_key(*n))
        {
            return Err(StoreError::Unlisted(self.file(name)));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

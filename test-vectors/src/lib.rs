//! # securemesh-test-vectors
//!
//! The conformance run of securemesh: every published vector we support
//! (RFC known-answer tests today; Cacophony for Noise and the mlswg files
//! for MLS as those crates land) and our own golden files for the persisted
//! state formats. `cargo run --release -p securemesh-test-vectors` prints one
//! line per vector file or suite with a `passed/total` token and exits
//! non-zero if any supported vector fails; `cargo test` runs the same checks.
//!
//! ```no_run
//! let reports = securemesh_test_vectors::run_all();
//! assert!(reports.iter().all(|r| r.is_ok()));
//! ```

pub mod state;

use std::path::PathBuf;

/// The outcome of one vector file or suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Name printed in the conformance run, e.g. `rfc7748 x25519`.
    pub name: String,
    /// Vectors that passed.
    pub passed: usize,
    /// Vectors run.
    pub total: usize,
    /// One line per failing vector (empty when all pass).
    pub failures: Vec<String>,
}

impl Report {
    /// A report with no vectors run yet.
    pub fn new(name: impl Into<String>) -> Self {
        Report { name: name.into(), passed: 0, total: 0, failures: Vec::new() }
    }

    /// Record one vector: `Ok` passes, `Err(why)` fails with a reason.
    pub fn record(&mut self, id: &str, outcome: Result<(), String>) {
        self.total += 1;
        match outcome {
            Ok(()) => self.passed += 1,
            Err(why) => self.failures.push(format!("{id}: {why}")),
        }
    }

    /// Whether at least one vector ran and all passed.
    pub fn is_ok(&self) -> bool {
        self.total > 0 && self.passed == self.total
    }

    /// The conformance line, e.g. `rfc7748 x25519 4/4`.
    pub fn line(&self) -> String {
        format!("{} {}/{}", self.name, self.passed, self.total)
    }
}

/// Directory of this crate, where the vector files live.
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The RFC known-answer tests of `securemesh-core`'s default suite.
pub fn kat_reports() -> Vec<Report> {
    securemesh_core::kat::all()
        .iter()
        .map(|k| {
            let mut failures = Vec::new();
            if !k.is_ok() {
                failures.push(format!("{} of {} vectors failed", k.total - k.passed, k.total));
            }
            Report { name: k.name.to_string(), passed: k.passed as usize, total: k.total as usize, failures }
        })
        .collect()
}

/// Every suite of the conformance run, in print order.
pub fn run_all() -> Vec<Report> {
    let mut out = kat_reports();
    out.push(state::envelope_v1(&vectors_dir().join("state/envelope-v1.json")));
    out
}

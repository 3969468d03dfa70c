//! # securemesh-test-vectors
//!
//! The conformance run of securemesh: every published vector we support
//! (RFC known-answer tests today; Cacophony for Noise and the mlswg files
//! for MLS as those crates land) and our own golden files for the persisted
//! state formats. `cargo run --release -p securemesh-test-vectors` prints one
//! line per vector file or suite with a `passed/total` token, then the
//! passed, failed and skipped suite counts ([`Summary`]), and exits
//! non-zero if any supported vector fails; `cargo test` runs the same checks.
//!
//! ```no_run
//! let reports = securemesh_test_vectors::run_all();
//! assert!(reports.iter().all(|r| r.is_ok()));
//! ```

pub mod mls;
pub mod noise;
pub mod pq;
pub mod ratchet;
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
    /// Vectors not run, and why (one reason per report).
    pub skipped: usize,
    /// Why vectors were skipped.
    pub skip_reason: Option<String>,
}

impl Report {
    /// A report with no vectors run yet.
    pub fn new(name: impl Into<String>) -> Self {
        Report { name: name.into(), passed: 0, total: 0, failures: Vec::new(), skipped: 0, skip_reason: None }
    }

    /// Record a vector this build does not support.
    pub fn skip(&mut self, reason: &str) {
        self.skipped += 1;
        self.skip_reason = Some(reason.to_string());
    }

    /// Record one vector: `Ok` passes, `Err(why)` fails with a reason.
    pub fn record(&mut self, id: &str, outcome: Result<(), String>) {
        self.total += 1;
        match outcome {
            Ok(()) => self.passed += 1,
            Err(why) => self.failures.push(format!("{id}: {why}")),
        }
    }

    /// Whether every vector run passed, and something ran or was skipped
    /// with a reason.
    pub fn is_ok(&self) -> bool {
        self.passed == self.total && (self.total > 0 || self.skipped > 0)
    }

    /// The conformance line, e.g. `rfc7748 x25519 4/4`, or
    /// `noise cacophony 448_AESGCM_SHA256 skipped 59 (Curve448 is not implemented)`.
    pub fn line(&self) -> String {
        match (&self.skip_reason, self.total) {
            (Some(why), 0) => format!("{} skipped {} ({why})", self.name, self.skipped),
            (Some(why), _) => {
                format!("{} {}/{} (skipped {}: {why})", self.name, self.passed, self.total, self.skipped)
            }
            (None, _) => format!("{} {}/{}", self.name, self.passed, self.total),
        }
    }
}

/// The suite counts of a conformance run. A suite *passed* when it ran at
/// least one vector and all it ran passed (some may have been skipped), is
/// *skipped* when it ran none and skipped some with a reason, and *failed*
/// otherwise (a failing vector, or nothing run or skipped at all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Suites that ran vectors, all passing.
    pub passed: usize,
    /// Suites with a failing vector or with nothing run.
    pub failed: usize,
    /// Suites whose every vector was skipped.
    pub skipped: usize,
}

impl Summary {
    /// Count `reports`.
    pub fn of(reports: &[Report]) -> Self {
        let mut s = Summary::default();
        for r in reports {
            match (r.is_ok(), r.total) {
                (false, _) => s.failed += 1,
                (true, 0) => s.skipped += 1,
                (true, _) => s.passed += 1,
            }
        }
        s
    }

    /// Whether no suite failed (the run's exit status).
    pub fn is_ok(&self) -> bool {
        self.failed == 0
    }

    /// The last line of the run, e.g.
    /// `conformance: 49 suites passed, 0 suites failed, 1 suites skipped`.
    pub fn line(&self) -> String {
        format!(
            "conformance: {} suites passed, {} suites failed, {} suites skipped",
            self.passed, self.failed, self.skipped
        )
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
            Report {
                name: k.name.to_string(),
                passed: k.passed as usize,
                total: k.total as usize,
                failures,
                skipped: 0,
                skip_reason: None,
            }
        })
        .collect()
}

/// Every suite of the conformance run, in print order.
pub fn run_all() -> Vec<Report> {
    let mut out = kat_reports();
    out.extend(noise::cacophony(&vectors_dir().join("noise/cacophony.txt")));
    out.push(noise::noise_c_fallback(&vectors_dir().join("noise/noise-c-fallback.json")));
    out.extend(noise::hfs(&vectors_dir().join("noise")));
    out.extend(mls::reports(&vectors_dir().join("mls")));
    out.extend(ratchet::reports(&vectors_dir().join("ratchet")));
    out.push(state::envelope_v1(&vectors_dir().join("state/envelope-v1.json")));
    out.push(state::mesh_records_v1(&vectors_dir().join("state/mesh-records-v1.json")));
    out.extend(pq::reports(&vectors_dir().join("pq")));
    out
}

#[cfg(test)]
mod tests {
    use super::{Report, Summary};

    fn report(name: &str, passed: usize, failed: usize, skipped: usize) -> Report {
        let mut r = Report::new(name);
        (0..passed).for_each(|i| r.record(&i.to_string(), Ok(())));
        (0..failed).for_each(|i| r.record(&i.to_string(), Err("wrong".into())));
        (0..skipped).for_each(|_| r.skip("not in this profile"));
        r
    }

    #[test]
    fn skipped_suites_are_counted_apart_from_passed_ones() {
        let reports = [
            report("all pass", 3, 0, 0),
            report("pass, some skipped", 2, 0, 1),
            report("all skipped", 0, 0, 4),
            report("one fails", 2, 1, 0),
            report("fails, some skipped", 0, 1, 2),
            report("nothing ran", 0, 0, 0),
        ];
        let s = Summary::of(&reports);
        assert_eq!(s, Summary { passed: 2, failed: 3, skipped: 1 });
        assert_eq!(s.line(), "conformance: 2 suites passed, 3 suites failed, 1 suites skipped");
        assert!(!s.is_ok());
        let ok = Summary::of(&reports[..3]);
        assert_eq!(ok.line(), "conformance: 2 suites passed, 0 suites failed, 1 suites skipped");
        assert!(ok.is_ok());
        // The per-suite lines are unchanged.
        assert_eq!(reports[0].line(), "all pass 3/3");
        assert_eq!(reports[1].line(), "pass, some skipped 2/2 (skipped 1: not in this profile)");
        assert_eq!(reports[2].line(), "all skipped skipped 4 (not in this profile)");
    }
}

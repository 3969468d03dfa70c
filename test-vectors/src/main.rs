//! Conformance run: one line per vector file or suite, `passed/total`, a
//! last line with the passed, failed and skipped suite counts, and a
//! non-zero exit status if any supported vector fails.

use std::process::ExitCode;

fn main() -> ExitCode {
    let reports = securemesh_test_vectors::run_all();
    for r in &reports {
        println!("{}", r.line());
        for f in &r.failures {
            println!("  FAIL {f}");
        }
    }
    let summary = securemesh_test_vectors::Summary::of(&reports);
    println!("{}", summary.line());
    if summary.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

//! Conformance run: one line per vector file or suite, `passed/total`, and a
//! non-zero exit status if any supported vector fails.

use std::process::ExitCode;

fn main() -> ExitCode {
    let reports = securemesh_test_vectors::run_all();
    let mut failed = 0;
    for r in &reports {
        println!("{}", r.line());
        for f in &r.failures {
            println!("  FAIL {f}");
        }
        if !r.is_ok() {
            failed += 1;
        }
    }
    println!("conformance: {} suites passed, {failed} suites failed", reports.len() - failed);
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

//! [`Checks`]: the pass/fail tally of one family of checks (the mesh
//! firmware's; `mls_active` keeps its own copy: moving it here changes how
//! LTO inlines the main firmware and so its figures).

use crate::family::Family;
use cortex_m_semihosting::hprintln;

/// Pass/fail tally of a family; prints every failure.
pub struct Checks {
    name: &'static str,
    passed: u32,
    total: u32,
}

impl Checks {
    /// No check run yet for the family `name`.
    pub const fn new(name: &'static str) -> Self {
        Checks { name, passed: 0, total: 0 }
    }

    /// Count one check; print it if it failed. Returns `ok`.
    pub fn check(&mut self, what: &str, ok: bool) -> bool {
        self.total += 1;
        if ok {
            self.passed += 1;
        } else {
            hprintln!("{}: check FAILED: {}", self.name, what);
        }
        ok
    }

    /// Check that `r` is `Ok`, printing the error otherwise.
    pub fn ok<T, E: core::fmt::Display>(&mut self, what: &str, r: &Result<T, E>) -> bool {
        if let Err(e) = r {
            hprintln!("{}: {}: {}", self.name, what, e);
        }
        self.check(what, r.is_ok())
    }

    /// The family's verdict.
    pub fn family(&self) -> Family {
        Family { name: self.name, passed: self.passed, total: self.total }
    }
}

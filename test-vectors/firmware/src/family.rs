//! [`Family`]: the verdict of one family of checks.

/// Verdict of one family of checks (one line `<name> <passed>/<total>`,
/// one count in the `firmware:` line).
#[derive(Clone, Copy, Debug)]
pub struct Family {
    /// `noise xx`, `noise ik`, ...
    pub name: &'static str,
    /// Checks passed.
    pub passed: u32,
    /// Checks run.
    pub total: u32,
}

impl Family {
    /// Whether every check passed (and at least one ran).
    pub fn is_ok(&self) -> bool {
        self.total > 0 && self.passed == self.total
    }
}

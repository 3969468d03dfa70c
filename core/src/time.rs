//! Caller-supplied time. No securemesh crate reads a clock: the caller passes
//! `now` into every call that needs it.

use core::time::Duration;

/// A monotonic instant in milliseconds from an origin the caller chooses
/// (boot time on an MCU, process start on a host). Monotonic by contract.
///
/// ```
/// use core::time::Duration;
/// use securemesh_core::Instant;
/// let t0 = Instant::from_millis(1_000);
/// let t1 = t0 + Duration::from_secs(2);
/// assert_eq!(t1.as_millis(), 3_000);
/// assert_eq!(t1.saturating_duration_since(t0), Duration::from_secs(2));
/// assert_eq!(t0.saturating_duration_since(t1), Duration::ZERO);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(0);
    /// The latest representable instant; used as "never" for deadlines.
    pub const MAX: Instant = Instant(u64::MAX);

    /// An instant `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms)
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(ms))
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl core::ops::Add<Duration> for Instant {
    type Output = Instant;
    /// Saturating addition (never panics).
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

/// Wall-clock time in seconds since the Unix epoch, for protocols that need
/// it (MLS lifetimes, prekey age). Supplied by the caller.
///
/// ```
/// use securemesh_core::UnixTime;
/// let t = UnixTime::from_secs(1_700_000_000);
/// assert!(t.saturating_secs_since(UnixTime::from_secs(1_699_999_000)) == 1_000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// `secs` seconds after 1970-01-01T00:00:00Z.
    pub const fn from_secs(secs: u64) -> Self {
        UnixTime(secs)
    }

    /// Seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// Seconds from `earlier` to `self`, zero if `earlier` is later.
    pub const fn saturating_secs_since(self, earlier: UnixTime) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

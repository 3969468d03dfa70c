//! The frame of a firmware whose run is families of measured checks:
//! SysTick started and calibrated, the run, one line per family, the
//! run's stack peak, the counted line `<name>: N passed, M failed` that
//! `run.sh` adds up, and the exit status.
//!
//! Shared by `#[path]` with the mesh firmware (`mesh/src/main.rs`) and the
//! post-quantum one (`pq/src/main.rs`); the main firmware has its own
//! frame (it also runs the scratch probe).

use crate::family::Family;
use crate::measure::{self, Meter, MeterError};
use crate::rt;
use cortex_m::peripheral::Peripherals;
use cortex_m_semihosting::hprintln;

/// Run `body` (it measures, prints its figures and returns its families)
/// and report as above; exit through semihosting with status 0 only if
/// every family passed and nothing failed to measure.
pub fn run<const N: usize>(
    name: &str,
    body: impl FnOnce(&mut Meter, &mut usize) -> Result<[Family; N], MeterError>,
) -> ! {
    let ok = match families(name, body) {
        Ok(ok) => ok,
        Err(e) => {
            hprintln!("{}: measurement error: {}", name, e);
            false
        }
    };
    rt::exit(ok)
}

/// Everything but the exit; `Ok(true)` if every family passed.
fn families<const N: usize>(
    name: &str,
    body: impl FnOnce(&mut Meter, &mut usize) -> Result<[Family; N], MeterError>,
) -> Result<bool, MeterError> {
    let Some(p) = Peripherals::take() else {
        hprintln!("{}: peripherals already taken", name);
        return Ok(false);
    };
    let mut meter = Meter::new(p.SYST)?;
    hprintln!(
        "ops: Cortex-M4F, instructions counted by SysTick under QEMU -icount shift=0 (resolution {})",
        meter.instructions_per_tick()
    );
    let mut peak = 0usize;
    let families = body(&mut meter, &mut peak)?;
    let mut failed = 0usize;
    for f in &families {
        let verdict = if f.is_ok() { "" } else { " FAILED" };
        hprintln!("{} {}/{}{}", f.name, f.passed, f.total, verdict);
        failed += usize::from(!f.is_ok());
    }
    hprintln!(
        "{} stack: peak {} B of {} B reserved (deepest measured call chain)",
        name,
        peak,
        measure::stack_reserved()
    );
    hprintln!("{}: {} passed, {} failed", name, N - failed, failed);
    Ok(failed == 0)
}

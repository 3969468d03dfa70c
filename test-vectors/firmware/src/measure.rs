//! Instructions and peak stack of one operation.
//!
//! Instructions: SysTick clocked from the core clock. Under QEMU with
//! `-icount shift=0` every instruction advances virtual time by 1 ns, so
//! SysTick advances a fixed number of instructions per tick (the CPU clock
//! period in ns; measured at start-up against a loop of known length).
//! QEMU does not model the DWT cycle counter, so these are instruction
//! counts, not cycles: compare them only within one profile and target.
//!
//! Stack: everything below the caller's frame is painted with a pattern
//! before the operation and scanned after it; the lowest overwritten word
//! is the high-water mark.

use core::hint::black_box;
use cortex_m::asm;
use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::register::msp;

/// Stack paint pattern.
const PAINT: u32 = 0xC0DE_5AFE;
/// Bytes left unpainted just below the painter's own stack pointer.
const PAINT_GUARD: usize = 64;
/// Less free stack than this after an operation fails the run: the reserved
/// budget is (nearly) exhausted. (A real overflow runs off the bottom of RAM
/// and locks the core up; run.sh's timeout catches that.)
const STACK_MARGIN: usize = 256;
/// SysTick is a 24-bit down counter.
const RELOAD: u32 = 0x00FF_FFFF;

// Stack bounds set by memory.x (the linker symbols cortex-m-rt also uses).
// Only their addresses are taken, never their values.
#[allow(unsafe_code)] // SAFETY: declaring linker symbols is `unsafe extern` in Rust 2024; nothing is read through them.
unsafe extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
}

/// Lowest stack address (the stack grows down towards it).
pub fn stack_bottom() -> usize {
    (&raw const _stack_end) as usize
}

/// Initial stack pointer: the top of the stack.
pub fn stack_top() -> usize {
    (&raw const _stack_start) as usize
}

/// Bytes reserved for the stack by memory.x.
pub fn stack_reserved() -> usize {
    stack_top().saturating_sub(stack_bottom())
}

/// Paint the free stack: from the bottom up to just below this function's
/// own frame. A leaf loop: it uses no stack below its own stack pointer.
#[inline(never)]
fn paint() {
    let end = (msp::read() as usize).saturating_sub(PAINT_GUARD);
    let mut p = stack_bottom() as *mut u32;
    while (p as usize) < end {
        // SAFETY: `p` is word-aligned and lies between the bottom of the
        // stack reserved in memory.x and below the live stack pointer: RAM
        // that no live frame uses (no interrupt is enabled).
        #[allow(unsafe_code)]
        unsafe {
            p.write_volatile(PAINT);
            p = p.add(1);
        }
    }
}

/// Lowest stack address that no longer holds the paint.
fn lowest_touched() -> usize {
    let top = stack_top();
    let mut p = stack_bottom() as *const u32;
    while (p as usize) < top {
        // SAFETY: word-aligned reads inside the stack region of memory.x.
        #[allow(unsafe_code)]
        let word = unsafe { p.read_volatile() };
        if word != PAINT {
            break;
        }
        // SAFETY: stays within (or one past) the stack region checked above.
        #[allow(unsafe_code)]
        unsafe {
            p = p.add(1);
        }
    }
    p as usize
}

/// Run `f` in its own frame, below the measuring frame.
#[inline(never)]
fn call<T>(f: impl FnOnce() -> T) -> T {
    black_box(f())
}

/// What one operation cost.
#[derive(Clone, Copy, Debug)]
pub struct Cost {
    /// Instructions executed (measurement overhead subtracted).
    pub instructions: u32,
    /// Peak stack of the operation, in bytes below the measuring frame.
    pub stack: usize,
    /// Peak stack depth from the top of the stack (whole call chain).
    pub depth: usize,
}

/// The SysTick-based instruction meter.
pub struct Meter {
    syst: SYST,
    per_tick: u32,
    overhead_ticks: u32,
}

/// Why a measurement cannot be trusted.
#[derive(Clone, Copy, Debug)]
pub enum MeterError {
    /// SysTick never started counting.
    NotCounting,
    /// The operation took more than one SysTick period (2^24 ticks).
    Wrapped,
    /// The operation left less than `STACK_MARGIN` bytes of the reserved stack.
    StackExhausted {
        /// Peak stack depth from the top of the stack.
        depth: usize,
    },
    /// The calibration loop gave no whole number of instructions per tick.
    Calibration {
        /// Instructions of the calibration loop.
        instructions: u32,
        /// SysTick ticks it took.
        ticks: u32,
    },
}

impl core::fmt::Display for MeterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MeterError::NotCounting => f.write_str("SysTick does not count"),
            MeterError::Wrapped => f.write_str("operation longer than one SysTick period (2^24 ticks)"),
            MeterError::StackExhausted { depth } => {
                write!(f, "stack budget exhausted: {depth} B of {} B used", stack_reserved())
            }
            MeterError::Calibration { instructions, ticks } => {
                write!(f, "calibration: {instructions} instructions took {ticks} SysTick ticks")
            }
        }
    }
}

impl Meter {
    /// Start SysTick from the core clock and calibrate it.
    pub fn new(mut syst: SYST) -> Result<Self, MeterError> {
        syst.disable_interrupt();
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_counter();
        let mut meter = Meter { syst, per_tick: 1, overhead_ticks: 0 };
        meter.restart()?;
        meter.overhead_ticks = meter.ticks(|| ())?.1;
        // `asm::delay(n)` runs n + 1 iterations of `subs; bne`.
        const LOOPS: u32 = 200_000;
        let instructions = 2 * (LOOPS + 1);
        let ticks = meter.ticks(|| asm::delay(black_box(LOOPS)))?.1.saturating_sub(meter.overhead_ticks);
        // Accept only a whole ratio (within the few set-up instructions of
        // the loop): QEMU -icount gives exactly CPU-period-in-ns per tick.
        let per_tick = (instructions + ticks / 2).checked_div(ticks).unwrap_or(0);
        let error = instructions.abs_diff(per_tick.saturating_mul(ticks));
        if per_tick == 0 || error > per_tick.saturating_add(16) {
            return Err(MeterError::Calibration { instructions, ticks });
        }
        meter.per_tick = per_tick;
        Ok(meter)
    }

    /// Instructions per SysTick tick (the resolution of every figure).
    pub fn instructions_per_tick(&self) -> u32 {
        self.per_tick
    }

    /// Reload SysTick to its full period and clear COUNTFLAG.
    fn restart(&mut self) -> Result<(), MeterError> {
        self.syst.clear_current();
        // QEMU reads VAL as 0 until the counter has reloaded: wait for it.
        let mut spins = 0u32;
        while SYST::get_current() == 0 {
            spins += 1;
            if spins > 1_000_000 {
                return Err(MeterError::NotCounting);
            }
        }
        let _ = self.syst.has_wrapped(); // reading COUNTFLAG clears it
        Ok(())
    }

    /// SysTick ticks spent in `f` (not corrected for overhead).
    #[inline(always)]
    fn ticks<T>(&mut self, f: impl FnOnce() -> T) -> Result<(T, u32), MeterError> {
        self.restart()?;
        let start = SYST::get_current();
        let out = call(f);
        let end = SYST::get_current();
        if self.syst.has_wrapped() {
            return Err(MeterError::Wrapped);
        }
        Ok((out, start.wrapping_sub(end) & RELOAD))
    }

    /// Run `f` with the SysTick exception raised about every
    /// `every_instructions` instructions (its handler samples the buffer
    /// [`crate::scratch_probe`] watches); nothing is measured. SysTick runs
    /// free again afterwards, as [`measure`](Self::measure) needs it.
    #[inline(never)]
    pub fn with_tick_interrupt<T>(&mut self, every_instructions: u32, f: impl FnOnce() -> T) -> T {
        let period = (every_instructions / self.per_tick.max(1)).clamp(1, RELOAD);
        self.syst.set_reload(period);
        self.syst.clear_current();
        self.syst.enable_interrupt();
        let out = call(f);
        self.syst.disable_interrupt();
        self.syst.set_reload(RELOAD);
        self.syst.clear_current();
        out
    }

    /// Run `f` once and measure its instructions and peak stack.
    #[inline(never)]
    pub fn measure<T>(&mut self, f: impl FnOnce() -> T) -> Result<(T, Cost), MeterError> {
        paint();
        let base = msp::read() as usize;
        let (out, ticks) = self.ticks(f)?;
        let low = lowest_touched();
        if low < stack_bottom().saturating_add(STACK_MARGIN) {
            return Err(MeterError::StackExhausted { depth: stack_top().saturating_sub(low) });
        }
        let instructions = ticks.saturating_sub(self.overhead_ticks).saturating_mul(self.per_tick);
        let cost =
            Cost { instructions, stack: base.saturating_sub(low), depth: stack_top().saturating_sub(low) };
        Ok((out, cost))
    }
}

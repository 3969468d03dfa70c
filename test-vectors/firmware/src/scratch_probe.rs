//! How much of a caller-lent scratch buffer a call really writes.
//!
//! Painting the buffer and scanning it afterwards (as [`crate::measure`]
//! does for the stack) does not work for `Group::commit`: it wipes the
//! whole scratch (`scratch.fill(0)`) before it returns, so afterwards every
//! byte looks written. Instead the buffer is painted with [`PAINT_BYTE`]
//! and, while the call runs, the SysTick exception samples it every few
//! thousand instructions ([`crate::measure::Meter::with_tick_interrupt`]):
//! each sample records the highest byte that holds neither the paint nor
//! zero. The final wipe writes zeros, which samples ignore, so what is
//! recorded is the highest byte the call itself wrote, to within: zero
//! bytes or paint-valued bytes written at the very top; a write above
//! everything else that misses the one word probed in its [`STRIDE`]-byte
//! block; and a write whose data is wiped before the next sample (samples
//! are about 50,000 instructions apart, the wipe ascends from the bottom).
//!
//! The sampling costs instructions, so a call is probed in a dry run of
//! its own, never inside a measurement.

use core::sync::atomic::{AtomicUsize, Ordering};
use cortex_m_rt::exception;

/// Paint of the probed buffer.
pub const PAINT_BYTE: u8 = 0xA5;
const PAINT_WORD: u32 = u32::from_ne_bytes([PAINT_BYTE; 4]);
/// Distance in bytes between the words a sample reads first (then it
/// refines byte by byte): keeps a sample of a 45 KB buffer near 8,000
/// instructions.
pub const STRIDE: usize = 32;

/// The probed buffer (address, length; length 0: none) and the highest
/// written offset + 1 seen so far. Written by the main thread only while
/// SysTick's exception is off, except `HIGH` and `SAMPLES`, which only the
/// exception writes while the probe runs.
static START: AtomicUsize = AtomicUsize::new(0);
static LEN: AtomicUsize = AtomicUsize::new(0);
static HIGH: AtomicUsize = AtomicUsize::new(0);
static SAMPLES: AtomicUsize = AtomicUsize::new(0);

/// Start probing `region` (already painted with [`PAINT_BYTE`]).
pub fn watch(region: &[u8]) {
    LEN.store(0, Ordering::SeqCst);
    HIGH.store(0, Ordering::SeqCst);
    SAMPLES.store(0, Ordering::SeqCst);
    START.store(region.as_ptr() as usize, Ordering::SeqCst);
    LEN.store(region.len(), Ordering::SeqCst);
}

/// Stop probing: (highest byte written + 1, samples taken).
pub fn finish() -> (usize, usize) {
    LEN.store(0, Ordering::SeqCst);
    (HIGH.load(Ordering::SeqCst), SAMPLES.load(Ordering::SeqCst))
}

fn written(b: u8) -> bool {
    b != PAINT_BYTE && b != 0
}

/// The word at `addr`, read behind the compiler's back.
fn read_word(addr: usize) -> u32 {
    // SAFETY: `addr` is word-aligned and inside the buffer given to
    // `watch`, a static that outlives the probe. The main thread holds a
    // `&mut` to it during the call; this exception handler only reads it
    // (volatile, so nothing is assumed about its contents), on a single
    // core, and uses the value as a measurement only.
    #[allow(unsafe_code)]
    unsafe {
        (addr as *const u32).read_volatile()
    }
}

/// The byte at `addr` (same conditions as [`read_word`]).
fn read_byte(addr: usize) -> u8 {
    // SAFETY: as for `read_word`; a byte needs no alignment.
    #[allow(unsafe_code)]
    unsafe {
        (addr as *const u8).read_volatile()
    }
}

/// Highest written byte of `[lo, hi)` + 1: from the top down, in blocks of
/// `step` bytes, each probed at its highest aligned word and, if that word
/// was written, scanned byte by byte.
fn highest(lo: usize, hi: usize, step: usize) -> Option<usize> {
    let mut top = hi;
    while top > lo {
        let block_lo = top.saturating_sub(step).max(lo);
        let w = top.saturating_sub(4) & !3;
        let hit = if w >= block_lo && w + 4 <= top {
            let word = read_word(w);
            word != PAINT_WORD && word != 0
        } else {
            true // a block too small to hold a whole word: scan it
        };
        if hit {
            let mut b = top;
            while b > block_lo {
                b -= 1;
                if written(read_byte(b)) {
                    return Some(b + 1);
                }
            }
        }
        top = block_lo;
    }
    None
}

/// One sample: raise `HIGH` to the highest written byte above it.
fn sample() {
    let len = LEN.load(Ordering::SeqCst);
    if len == 0 {
        return;
    }
    SAMPLES.fetch_add(1, Ordering::Relaxed);
    let start = START.load(Ordering::SeqCst);
    let high = HIGH.load(Ordering::Relaxed);
    if let Some(top) = highest(start.saturating_add(high), start.saturating_add(len), STRIDE) {
        HIGH.store(top.saturating_sub(start), Ordering::Relaxed);
    }
}

/// Raised only inside `Meter::with_tick_interrupt`.
#[exception]
fn SysTick() {
    sample();
}

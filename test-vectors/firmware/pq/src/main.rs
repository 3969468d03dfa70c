//! securemesh post-quantum firmware for Cortex-M4F (`thumbv7em-none-eabihf`),
//! run under QEMU (`-M mps2-an386`): ML-KEM-768 and X-Wing
//! ([`kem`]) and Noise XXhfs handshakes ([`hfs`]) on the device.
//!
//! - Links `securemesh-core` (features `ml-kem`, `x-wing`, `testing`; no
//!   `fast` tables) and `securemesh-noise` (feature `hfs`) with **no global
//!   allocator**: if `ml-kem`, `x-wing` or anything they pull uses `alloc`,
//!   this binary does not link.
//! - Measures ML-KEM-768 key generation, encapsulation and decapsulation
//!   (instructions and peak stack), and X-Wing's, checks that
//!   decapsulation gives the encapsulated secret and that a changed
//!   ciphertext does not, and checks known answers of `test-vectors/pq`
//!   (Wycheproof, the X-Wing draft).
//! - Runs `Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256` and, as the
//!   classical reference of the same run, `Noise_XX_25519_ChaChaPoly_SHA256`
//!   between two parties on the device; prints their costs and the
//!   hybrid / classical ratio.
//! - Prints one `<family> <passed>/<total>` line per family and the counted
//!   line `firmware-pq: N passed, M failed`, which `run.sh` adds to the
//!   main firmware's `firmware:` count.
//! - A firmware of its own, in its own cargo workspace (as `../mesh`):
//!   `ml-kem`, `x-wing` and `hfs` would unify features into the crates the
//!   main firmware uses and move its figures through LTO. The measuring
//!   harness is the main firmware's (`../../src`), shared through `#[path]`.
//! - Exits through semihosting: status 0 only if every check passed.
#![no_std]
#![no_main]

// The harness modules are the main firmware's files (../src), shared, not copied.
#[path = "../../src/checks.rs"]
mod checks;
#[path = "../../src/family.rs"]
mod family;
// `Meter::with_tick_interrupt` serves the main firmware's scratch probe only.
#[allow(dead_code)]
#[path = "../../src/measure.rs"]
mod measure;
#[path = "../../src/rt.rs"]
mod rt;
#[path = "../../src/test_rng.rs"]
mod test_rng;

#[path = "../../src/entry.rs"]
mod entry;
mod hfs;
mod kem;

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use measure::Cost;

#[entry]
fn main() -> ! {
    entry::run("firmware-pq", |meter, peak| {
        let ([ml_kem, x_wing], ml_kem_ops) = kem::run_all(meter, peak)?;
        let [xx, xxhfs] = hfs::run_all(meter, ml_kem_ops, peak)?;
        Ok([ml_kem, x_wing, xx, xxhfs])
    })
}

/// Print one measured operation and keep the run's peak stack depth.
pub fn report(name: core::fmt::Arguments, cost: &Cost, peak: &mut usize) {
    hprintln!("op pq-{}: {} instructions, {} B stack", name, cost.instructions, cost.stack);
    *peak = (*peak).max(cost.depth);
}

//! securemesh mesh firmware for Cortex-M4F (`thumbv7em-none-eabihf`), run
//! under QEMU (`-M mps2-an386`): the `securemesh` agent check ([`mesh`],
//! `../src/mesh.rs`).
//!
//! - Links `securemesh` (the mesh, `default-features = false`) and through
//!   it `securemesh-core`, `-noise` and `-ratchet` with **no global
//!   allocator**: if any of them uses `alloc`, this binary does not link.
//! - Runs one agent that routes to a Noise peer and to a ratchet peer,
//!   both agents of this firmware, with a policy denial and a restart from
//!   its persisted records; prints `op mesh-<name>: <instructions>
//!   instructions, <bytes> B stack` per step, `mesh agent <passed>/<total>`
//!   and the counted line `firmware-mesh: N passed, M failed`, which
//!   `run.sh` adds to the main firmware's `firmware:` count.
//! - A firmware of its own (the main firmware is `../src/main.rs`), in its
//!   own cargo workspace: linked into the main firmware, the mesh changes
//!   how LTO inlines the code both share, and its dependencies (it takes
//!   `securemesh-ratchet` with its default features, `pq`, which pulls
//!   ML-KEM) unify features into the crates both use; either moves the
//!   main firmware's figures. It also needs an 80 KiB stack (`memory.x`
//!   here) where the main firmware reserves 24 KiB.
//! - Exits through semihosting: status 0 only if every check passed.
#![no_std]
#![no_main]

// The modules are the main firmware's files (../src), shared, not copied.
#[path = "../../src/checks.rs"]
mod checks;
#[path = "../../src/entry.rs"]
mod entry;
#[path = "../../src/family.rs"]
mod family;
// `Meter::with_tick_interrupt` serves the main firmware's scratch probe only.
#[allow(dead_code)]
#[path = "../../src/measure.rs"]
mod measure;
#[path = "../../src/mesh.rs"]
mod mesh;
#[path = "../../src/rt.rs"]
mod rt;
#[path = "../../src/slot.rs"]
mod slot;
#[path = "../../src/test_rng.rs"]
mod test_rng;

use cortex_m_rt::entry;

#[entry]
fn main() -> ! {
    entry::run("firmware-mesh", |meter, peak| Ok([mesh::run_all(meter, peak)?]))
}

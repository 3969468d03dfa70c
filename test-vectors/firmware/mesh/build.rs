//! Put `memory.x` (this firmware's layout: an 80 KiB stack) on the linker
//! search path; cortex-m-rt's `link.x` includes it.

#[path = "../memory_x.rs"]
mod memory_x;

use std::{env, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    memory_x::put_memory_x(&out);
    println!("cargo::rerun-if-changed=../memory_x.rs");
}

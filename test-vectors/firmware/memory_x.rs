//! `memory.x` onto the linker search path (cortex-m-rt's `link.x` includes
//! it): the part of the build script that the main firmware (`build.rs`)
//! and the mesh firmware (`mesh/build.rs`) share.

use std::{fs, path::Path};

/// Copy `memory.x` of the package's directory into `out` and put `out` on
/// the linker search path; `false` (with a cargo error) if it cannot.
pub fn put_memory_x(out: &Path) -> bool {
    if let Err(e) = fs::copy("memory.x", out.join("memory.x")) {
        println!("cargo::error=cannot copy memory.x: {e}");
        return false;
    }
    println!("cargo::rustc-link-search={}", out.display());
    println!("cargo::rerun-if-changed=memory.x");
    println!("cargo::rerun-if-changed=build.rs");
    true
}

//! The table of the benchmark (`benches/mls.rs`) from criterion's output:
//! for each operation and N, the mean time of ours, OpenMLS and mls-rs,
//! ours/mls-rs and ours/openmls; then t(128)/t(8) per implementation; then
//! the goals of issue #8, met or missed.
//!
//! `cargo run --manifest-path interop/mls/Cargo.toml --example ratios [CRITERION_DIR]`
//! (default: `target/criterion` of this crate, or of `CARGO_TARGET_DIR`).
//! Prints Markdown.

use std::path::{Path, PathBuf};

const OPS: [(&str, &str); 5] = [
    ("update_commit", "create update commit (path)"),
    ("process_update", "process update commit"),
    ("add_commit", "create add commit (1 KeyPackage, no path)"),
    ("process_add", "process add commit"),
    ("app_message_1k", "1 KiB application message (seal + open)"),
];
const KINDS: [&str; 3] = ["ours", "openmls", "mls-rs"];
const SIZES: [usize; 4] = [2, 8, 32, 128];

/// Mean time in ns of `op/kind/n`, from `new/estimates.json`.
fn mean(dir: &Path, op: &str, kind: &str, n: usize) -> Option<f64> {
    let path = dir.join(op).join(kind).join(n.to_string()).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn time(ns: Option<f64>) -> String {
    match ns {
        None => "–".into(),
        Some(ns) if ns >= 1e6 => format!("{:.2} ms", ns / 1e6),
        Some(ns) => format!("{:.1} µs", ns / 1e3),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

fn main() {
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        target.join("criterion")
    });
    let m = |op: &str, kind: &str, n: usize| mean(&dir, op, kind, n);

    println!("| operation | N | ours | OpenMLS | mls-rs | ours/mls-rs | ours/openmls |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (op, what) in OPS {
        for n in SIZES {
            let (o, p, r) = (m(op, "ours", n), m(op, "openmls", n), m(op, "mls-rs", n));
            println!(
                "| {what} | {n} | {} | {} | {} | {} | {} |",
                time(o),
                time(p),
                time(r),
                ratio(o, r),
                ratio(o, p)
            );
        }
    }

    println!();
    println!("t(128)/t(8):");
    println!();
    println!("| operation | ours | OpenMLS | mls-rs |");
    println!("|---|---:|---:|---:|");
    for (op, what) in OPS {
        let cells: Vec<String> = KINDS.iter().map(|k| ratio(m(op, k, 128), m(op, k, 8))).collect();
        println!("| {what} | {} |", cells.join(" | "));
    }

    println!();
    println!("Goals (issue #8), at N = 128 unless said:");
    println!();
    let goal = |what: &str, value: Option<f64>, limit: f64| match value {
        Some(v) => {
            println!("- {what}: {v:.2} (goal <= {limit}): {}", if v <= limit { "met" } else { "missed" })
        }
        None => println!("- {what}: no data"),
    };
    let over = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    goal(
        "process update commit, ours/mls-rs",
        over(m("process_update", "ours", 128), m("process_update", "mls-rs", 128)),
        1.0,
    );
    goal(
        "create update commit, ours/mls-rs",
        over(m("update_commit", "ours", 128), m("update_commit", "mls-rs", 128)),
        0.9,
    );
    for (op, what) in [("update_commit", "create update commit"), ("process_update", "process update commit")]
    {
        goal(&format!("{what}, ours t(128)/t(8)"), over(m(op, "ours", 128), m(op, "ours", 8)), 2.3);
    }
    for n in SIZES {
        goal(
            &format!("application message, ours/mls-rs at N = {n}"),
            over(m("app_message_1k", "ours", n), m("app_message_1k", "mls-rs", n)),
            1.2,
        );
    }
}

//! The demo's scenarios on loopback sockets: every check must hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_host::demo::{DemoOptions, run};

#[test]
fn every_demo_check_holds() {
    let dir = std::env::temp_dir().join(format!("securemesh-host-demo-{}", std::process::id()));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let summary = rt.block_on(run(DemoOptions { dir: dir.clone(), progress: false, nats: None })).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    print!("{}", summary.to_text());
    assert!(summary.passed(), "{}", summary.to_text());
    assert!(summary.checks.len() >= 24, "{} checks", summary.checks.len());
    assert_eq!(summary.agents.len(), 12);
    let json = summary.to_json();
    assert!(json.starts_with("{\"passed\":true,"), "{json}");
    assert!(summary.not_yet.is_empty());
}

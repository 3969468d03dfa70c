//! The `securemesh` binary: keygen, bundle, and a bad configuration file
//! refused with a non-zero exit and the line in the message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::process::Command;

fn securemesh(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_securemesh")).args(args).output().unwrap()
}

#[test]
fn keygen_bundle_and_a_bad_file() {
    let dir = std::env::temp_dir().join(format!("securemesh-host-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("k.key");
    let out = securemesh(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&key).unwrap();
    assert_eq!(text.trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let again = securemesh(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(!again.status.success(), "an existing key file is never overwritten");

    let config = dir.join("a.yaml");
    std::fs::write(
        &config,
        format!(
            "agent:\n  name: a\n  state_dir: {}\nkey_lifecycle:\n  state_persistence:\n    key_file: {}\n",
            dir.join("state").display(),
            key.display()
        ),
    )
    .unwrap();
    let out = securemesh(&["bundle", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let identity = stdout.lines().find_map(|l| l.strip_prefix("identity: ")).unwrap();
    assert_eq!(identity.len(), 256);

    std::fs::write(&config, "agent:\n  name: a\n  state_dir: /tmp/x\n  colour: blue\n").unwrap();
    let out = securemesh(&["agent", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("line 4") && stderr.contains("colour"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

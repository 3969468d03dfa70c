//! The configuration file: the shipped template parses, and bad files
//! are refused with the key and the line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_host::config::{AgentFile, ConfigError};

const TEMPLATE: &str = include_str!("../examples/agent.yaml");

#[test]
fn the_template_parses() {
    let c = AgentFile::parse(TEMPLATE).unwrap();
    assert_eq!(c.agent.name, "alice");
    assert_eq!(c.key_lifecycle.prekey_refresh_threshold.0, 70);
    assert_eq!(c.key_lifecycle.rotation_interval.0.as_secs(), 720 * 3600);
    let p = c.key_lifecycle.state_persistence.as_ref().unwrap();
    assert!(p.key_file.is_some());
    let mesh = c.agent_config();
    assert_eq!(mesh.handshake_timeout_ms, 10_000);
    assert_eq!(mesh.prekeys.refill_threshold_percent, 70);
    assert_eq!(mesh.ratchet.heartbeat_ms, 3_600_000);
    assert_eq!(c.delivery.kind, securemesh_host::config::DeliveryKind::Embedded);
    let nats = AgentFile::parse(&TEMPLATE.replace("kind: embedded", "kind: nats")).unwrap();
    assert_eq!(nats.delivery.kind, securemesh_host::config::DeliveryKind::Nats);
    let opts = securemesh_host::app::nats_options(&nats).unwrap();
    assert_eq!(
        (opts.url.as_str(), opts.max_mailbox, opts.token.is_none()),
        ("nats://127.0.0.1:4222", 4096, true)
    );
    // Secrets come from the environment variables the file names; a
    // missing one is named, and a user needs its password variable.
    let with = |extra: &str| {
        AgentFile::parse(&TEMPLATE.replace("  max_mailbox: 4096", &format!("  max_mailbox: 4096\n{extra}")))
            .unwrap()
    };
    let e =
        securemesh_host::app::nats_options(&with("  token_env: SECUREMESH_TEST_UNSET_TOKEN")).unwrap_err();
    assert!(e.to_string().contains("SECUREMESH_TEST_UNSET_TOKEN"), "{e}");
    let e = securemesh_host::app::nats_options(&with("  user: mesh")).unwrap_err();
    assert!(e.to_string().contains("password_env"), "{e}");
    let path = with("  token_env: PATH");
    assert!(securemesh_host::app::nats_options(&path).unwrap().token.is_some());
}

/// The template with line `line` (1-based) replaced by `with`.
fn edit(line: usize, with: &str) -> String {
    TEMPLATE
        .lines()
        .enumerate()
        .map(|(i, l)| if i + 1 == line { with.to_string() } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

fn line_of(needle: &str) -> usize {
    TEMPLATE.lines().position(|l| l.contains(needle)).unwrap() + 1
}

fn refused(text: &str) -> String {
    match AgentFile::parse(text) {
        Err(ConfigError::Invalid(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The message names `key` (serde-saphyr quotes the offending line
/// under its `line L column C` header) and `line`.
#[track_caller]
fn names(msg: &str, key: &str, line: usize) {
    assert!(msg.contains(key), "`{key}` not named in: {msg}");
    assert!(msg.contains(&format!("line {line}")), "line {line} not named in: {msg}");
}

#[test]
fn bad_files_name_the_key_and_the_line() {
    // An unknown key.
    let l = line_of("prekey_refresh_threshold:");
    let m = refused(&edit(l, "  prekey_refresh_treshold: 70"));
    names(&m, "prekey_refresh_treshold", l);

    // A value out of range.
    let m = refused(&edit(l, "  prekey_refresh_threshold: 250"));
    names(&m, "250", l);
    names(&m, "prekey_refresh_threshold", l);

    // A bad duration.
    let r = line_of("rotation_interval:");
    let m = refused(&edit(r, "  rotation_interval: 30 fortnights"));
    names(&m, "fortnights", r);
    names(&m, "rotation_interval", r);

    // An algorithm this build does not run.
    let a = line_of("aead:");
    let m = refused(&edit(a, "    aead: aes256gcm"));
    names(&m, "aes256gcm", a);
    names(&m, "aead:", a);

    // The wrong pool size.
    let p = line_of("prekey_pool_size:");
    let m = refused(&edit(p, "  prekey_pool_size: 100"));
    names(&m, "16", p);
    names(&m, "prekey_pool_size", p);

    // MLS asked for before the mesh has groups.
    let g = TEMPLATE.lines().position(|l| l.contains("enabled: false")).unwrap() + 1;
    let m = refused(&edit(g, "    enabled: true"));
    names(&m, "MLS", g);
    names(&m, "enabled: true", g);

    // A role beyond the policy's table, a message kind beyond 64.
    let r = line_of("- role: 0");
    let m = refused(&edit(r, "  - role: 40"));
    names(&m, "role: 40", r);
    let k = line_of("kinds: [1, 3]");
    let m = refused(&edit(k, "    kinds: [1, 64]"));
    names(&m, "64 is not a message kind", k);

    // A peer whose identity is not one.
    let p = line_of("peers: []");
    let bad_peer = edit(p, &format!("peers:\n  - name: x\n    identity: {}", "00".repeat(128)));
    let m = refused(&bad_peer);
    names(&m, "identity", p + 2);

    // The delivery service: a kind it does not know, a URL that is not a
    // NATS server's, an unknown key, an empty mailbox.
    let d = line_of("kind: embedded");
    let m = refused(&edit(d, "  kind: kafka"));
    names(&m, "kafka", d);
    let u = line_of("url: nats://");
    let m = refused(&edit(u, "  url: http://127.0.0.1:4222"));
    names(&m, "not a NATS server URL", u);
    let m = refused(&edit(u, "  uri: nats://127.0.0.1:4222"));
    names(&m, "uri", u);
    let x = line_of("max_mailbox:");
    let m = refused(&edit(x, "  max_mailbox: 0"));
    names(&m, "max_mailbox", x);

    // A wrong type.
    let h = line_of("header_encryption:");
    let m = refused(&edit(h, "    header_encryption: maybe"));
    names(&m, "maybe", h);
    names(&m, "header_encryption", h);
}

#[test]
fn missing_required_keys_and_broken_yaml_are_refused() {
    let m = refused("agent:\n  name: a\n");
    assert!(m.contains("state_dir"), "{m}");
    let m = refused("agent:\n  name: [a\n");
    assert!(m.contains("line"), "{m}");
    let missing = AgentFile::load(std::path::Path::new("/nonexistent/securemesh.yaml")).unwrap_err();
    assert!(matches!(missing, ConfigError::Io { .. }));
}

/// `agent.pq` (the template says `prefer`, the default) reaches the
/// runtime's options; an unknown mode is refused with the key and the
/// line, and `require` only in a build with the feature `pq`.
#[test]
fn the_post_quantum_mode_comes_from_the_file() {
    use securemesh::PqMode;
    let file = AgentFile::parse(TEMPLATE).unwrap();
    assert_eq!(file.agent.pq, PqMode::Prefer);
    assert_eq!(securemesh_host::app::options(&file).pq, PqMode::Prefer);
    let bare = AgentFile::parse("agent:\n  name: a\n  state_dir: /tmp/a\n").unwrap();
    assert_eq!(bare.agent.pq, securemesh_host::config::DEFAULT_PQ);
    let l = line_of("pq: prefer");
    let off = AgentFile::parse(&edit(l, "  pq: off")).unwrap();
    assert_eq!(securemesh_host::app::options(&off).pq, PqMode::Off);
    let require = AgentFile::parse(&edit(l, "  pq: require"));
    if cfg!(feature = "pq") {
        assert_eq!(require.unwrap().agent.pq, PqMode::Require);
    } else {
        names(&refused(&edit(l, "  pq: require")), "feature `pq`", l);
    }
    let m = refused(&edit(l, "  pq: hybrid"));
    names(&m, "not a post-quantum mode", l);
    names(&m, "pq: hybrid", l);
}

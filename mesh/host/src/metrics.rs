//! Prometheus text exposition of the agents' metrics, served over HTTP
//! (`GET /metrics`).
//!
//! Written by hand rather than with `prometheus-client`: the mesh's
//! metrics are a plain struct the agent keeps ([`securemesh::Metrics`]),
//! read at scrape time, so there is no registry of live metric objects
//! to keep in step; the text format is a few lines per metric, and a
//! small HTTP/1.0 responder on Tokio avoids an HTTP stack (hyper) for
//! one read-only endpoint.
//!
//! The product's four metrics: `securemesh_handshake_latency_seconds`
//! (last and max), `securemesh_ratchet_state_age_seconds`,
//! `securemesh_prekey_utilization_ratio`, `securemesh_post_quantum`
//! (1 when the channel's key agreement is hybrid, i.e. every live channel
//! of that kind is), with the live channels by status in
//! `securemesh_channels{kind,pq}`; then counters; then what the sockets
//! refused and queued ([`crate::net::NetStats`], as of the agent's last
//! step): `securemesh_connections_refused_total`,
//! `securemesh_connections_refused_per_address_total`,
//! `securemesh_connections_closed_total{reason}`,
//! `securemesh_datagrams_dropped_total{reason}` and the gauges
//! `securemesh_inbound_connections`, `securemesh_net_queue_entries`,
//! `securemesh_net_queue_peak`, `securemesh_net_queue_capacity`.

use crate::net::NetStats;
use crate::runtime::Status;
use securemesh::PqStatus;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Escape a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn secs(ms: u64) -> f64 {
    // Exact for every latency or age below 2^53 ms.
    #[allow(clippy::cast_precision_loss)]
    let s = ms as f64 / 1000.0;
    s
}

/// The exposition text of `agents`.
pub fn render(agents: &[Status]) -> String {
    let mut out = String::new();
    let mut family =
        |name: &str, kind: &str, help: &str, rows: &mut dyn Iterator<Item = (String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
    let a = |s: &Status| format!("agent=\"{}\"", label(&s.name));
    family(
        "securemesh_handshake_latency_seconds",
        "gauge",
        "Noise handshake duration, first message to completion (which=last|max).",
        &mut agents.iter().flat_map(|s| {
            let mut v = Vec::new();
            if let Some(last) = s.metrics.handshake_latency_last_ms {
                v.push((format!("{},which=\"last\"", a(s)), secs(last).to_string()));
            }
            v.push((format!("{},which=\"max\"", a(s)), secs(s.metrics.handshake_latency_max_ms).to_string()));
            v
        }),
    );
    family(
        "securemesh_ratchet_state_age_seconds",
        "gauge",
        "Longest time since a ratchet session's last DH step.",
        &mut agents
            .iter()
            .filter_map(|s| s.metrics.ratchet_state_age_max_ms.map(|ms| (a(s), secs(ms).to_string()))),
    );
    family(
        "securemesh_prekey_utilization_ratio",
        "gauge",
        "Share of the one-time prekey pool in use (1 - available / capacity).",
        &mut agents.iter().map(|s| {
            let cap = f64::from(s.metrics.prekeys_capacity.max(1));
            let used = f64::from(s.metrics.prekeys_capacity.saturating_sub(s.metrics.prekeys_available));
            (a(s), (used / cap).to_string())
        }),
    );
    let pq = |p: PqStatus| if p == PqStatus::Hybrid { "1" } else { "0" };
    family(
        "securemesh_post_quantum",
        "gauge",
        "1 when the channel's key agreement is a post-quantum hybrid, 0 when classical.",
        &mut agents.iter().flat_map(|s| {
            [
                (format!("{},channel=\"noise\"", a(s)), pq(s.metrics.noise_pq).to_string()),
                (format!("{},channel=\"ratchet\"", a(s)), pq(s.metrics.ratchet_pq).to_string()),
            ]
        }),
    );
    family(
        "securemesh_channels",
        "gauge",
        "Live channels by kind (noise transports, ratchet sessions) and post-quantum status (classical, hybrid).",
        &mut agents.iter().flat_map(|s| {
            let m = &s.metrics;
            [("noise", m.noise_channels), ("ratchet", m.ratchet_channels)].into_iter().flat_map(
                move |(kind, c)| {
                    [(PqStatus::Classical, c.classical), (PqStatus::Hybrid, c.hybrid)].map(|(pq, n)| {
                        (format!("{},kind=\"{kind}\",pq=\"{}\"", a(s), pq.as_str()), n.to_string())
                    })
                },
            )
        }),
    );
    type Field = fn(&securemesh::ChannelMetrics) -> u64;
    let per_channel: [(&str, &str, Field); 4] = [
        ("securemesh_messages_sent_total", "Application messages encrypted and queued.", |c| c.sent),
        ("securemesh_messages_received_total", "Application messages delivered.", |c| c.received),
        (
            "securemesh_failures_total",
            "Inputs refused (decryption, unknown session, failed handshakes).",
            |c| c.failures,
        ),
        ("securemesh_denied_total", "Messages and sessions refused by the policy.", |c| c.denied),
    ];
    for (name, help, field) in per_channel {
        family(
            name,
            "counter",
            help,
            &mut agents.iter().flat_map(|s| {
                [
                    (format!("{},channel=\"noise\"", a(s)), field(&s.metrics.noise).to_string()),
                    (format!("{},channel=\"ratchet\"", a(s)), field(&s.metrics.ratchet).to_string()),
                ]
            }),
        );
    }
    type Count = fn(&Status) -> u64;
    let counters: [(&str, &str, Count); 9] = [
        ("securemesh_handshakes_completed_total", "Noise handshakes completed.", |s| {
            s.metrics.handshakes_completed
        }),
        ("securemesh_ratchet_steps_total", "DH ratchet steps.", |s| s.metrics.ratchet_steps),
        ("securemesh_prekey_refills_total", "Prekey pool refills.", |s| s.metrics.prekey_refills),
        ("securemesh_records_stored_total", "Sealed state records stored.", |s| s.records_stored),
        ("securemesh_mailbox_acked_total", "Mailbox messages handled and acknowledged.", |s| s.mail_acked),
        ("securemesh_inputs_refused_total", "Envelopes refused as malformed or unauthenticated.", |s| {
            s.refused_inputs
        }),
        ("securemesh_hybrid_handshakes_total", "Noise handshakes completed as hfs (hybrid).", |s| {
            s.metrics.hybrid_handshakes
        }),
        ("securemesh_pqxdh_sessions_total", "Ratchet sessions opened with PQXDH.", |s| {
            s.metrics.pqxdh_sessions
        }),
        (
            "securemesh_pq_refused_total",
            "Channels refused for their post-quantum status (classical under Require, hybrid not run, downgrades).",
            |s| s.metrics.pq_refused,
        ),
    ];
    for (name, help, f) in counters {
        family(name, "counter", help, &mut agents.iter().map(|s| (a(s), f(s).to_string())));
    }
    family(
        "securemesh_connections_refused_total",
        "counter",
        "Inbound TCP connections closed as soon as accepted: the connection cap was reached.",
        &mut agents.iter().map(|s| (a(s), s.net.connections_refused.to_string())),
    );
    family(
        "securemesh_connections_refused_per_address_total",
        "counter",
        "Inbound TCP connections closed as soon as accepted: their IP address had max_connections_per_address open.",
        &mut agents.iter().map(|s| (a(s), s.net.connections_refused_address.to_string())),
    );
    family(
        "securemesh_connections_closed_total",
        "counter",
        "Connections closed by the agent: garbage (too many refused envelopes, no authenticated peer), unbound (no authenticated peer in time), oversized_frame (a length beyond an envelope).",
        &mut agents.iter().flat_map(|s| {
            let n = &s.net;
            [
                ("garbage", n.connections_closed_garbage),
                ("unbound", n.connections_closed_unbound),
                ("oversized_frame", n.frames_oversized),
            ]
            .map(|(reason, v)| (format!("{},reason=\"{reason}\"", a(s)), v.to_string()))
        }),
    );
    family(
        "securemesh_datagrams_dropped_total",
        "counter",
        "Datagrams dropped: queue_full (received while the queue to the agent was full), loss_injected (outgoing telemetry dropped on purpose, udp_loss_percent).",
        &mut agents.iter().flat_map(|s| {
            [("queue_full", s.net.datagrams_dropped_full), ("loss_injected", s.datagrams_dropped)]
                .map(|(reason, v)| (format!("{},reason=\"{reason}\"", a(s)), v.to_string()))
        }),
    );
    type Gauge = fn(&NetStats) -> usize;
    let gauges: [(&str, &str, Gauge); 4] = [
        ("securemesh_inbound_connections", "Inbound TCP connections open.", |n| n.inbound_connections),
        ("securemesh_net_queue_entries", "Entries in the queue from the sockets to the agent.", |n| n.queued),
        ("securemesh_net_queue_peak", "The most entries that queue held at once.", |n| n.queue_peak),
        ("securemesh_net_queue_capacity", "That queue's capacity.", |n| n.queue_capacity),
    ];
    for (name, help, f) in gauges {
        family(name, "gauge", help, &mut agents.iter().map(|s| (a(s), f(&s.net).to_string())));
    }
    out
}

/// Serve `GET /metrics` on `listener` for the agents whose status cells
/// are `cells`, until the task is dropped.
pub async fn serve(listener: TcpListener, cells: Arc<Mutex<Vec<Arc<Mutex<Status>>>>>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let cells = Arc::clone(&cells);
        tokio::spawn(async move {
            let mut req = [0u8; 1024];
            let n = stream.read(&mut req).await.unwrap_or(0);
            let head = req.get(..n).unwrap_or(&[]);
            let ok = head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics\r");
            let response = if ok {
                let statuses: Vec<Status> = cells
                    .lock()
                    .map(|c| c.iter().filter_map(|s| s.lock().ok().map(|s| s.clone())).collect())
                    .unwrap_or_default();
                let body = render(&statuses);
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// `GET /metrics` from `addr` (for tests and the demo's check).
pub async fn scrape(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await?;
    let mut text = String::new();
    s.read_to_string(&mut text).await?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn value(text: &str, series: &str) -> Option<String> {
        text.lines().find_map(|l| l.strip_prefix(series).map(|v| v.trim().to_string()))
    }

    #[test]
    fn the_exposition_reads_the_struct() {
        let mut s = Status { name: "a\"b".into(), records_stored: 7, ..Status::default() };
        s.metrics.handshake_latency_last_ms = Some(1_500);
        s.metrics.handshake_latency_max_ms = 2_250;
        s.metrics.ratchet_state_age_max_ms = Some(60_000);
        s.metrics.prekeys_capacity = 16;
        s.metrics.prekeys_available = 12;
        s.metrics.ratchet_pq = PqStatus::Hybrid;
        s.metrics.noise.received = 3;
        s.metrics.noise_channels = securemesh::PqCounts { classical: 2, hybrid: 1 };
        s.metrics.ratchet_channels = securemesh::PqCounts { classical: 0, hybrid: 4 };
        s.metrics.pq_refused = 5;
        s.datagrams_dropped = 6;
        s.net = NetStats {
            inbound_connections: 3,
            connections_refused: 8,
            connections_refused_address: 12,
            frames_oversized: 2,
            connections_closed_garbage: 1,
            connections_closed_unbound: 4,
            datagrams_dropped_full: 9,
            queued: 7,
            queue_peak: 11,
            queue_capacity: 256,
        };
        let text = render(&[s]);
        let a = "agent=\"a\\\"b\"";
        let get = |name: &str, extra: &str| value(&text, &format!("{name}{{{a}{extra}}}"));
        assert_eq!(get("securemesh_handshake_latency_seconds", ",which=\"last\"").as_deref(), Some("1.5"));
        assert_eq!(get("securemesh_handshake_latency_seconds", ",which=\"max\"").as_deref(), Some("2.25"));
        assert_eq!(get("securemesh_ratchet_state_age_seconds", "").as_deref(), Some("60"));
        assert_eq!(get("securemesh_prekey_utilization_ratio", "").as_deref(), Some("0.25"));
        assert_eq!(get("securemesh_post_quantum", ",channel=\"noise\"").as_deref(), Some("0"));
        assert_eq!(get("securemesh_post_quantum", ",channel=\"ratchet\"").as_deref(), Some("1"));
        assert_eq!(get("securemesh_messages_received_total", ",channel=\"noise\"").as_deref(), Some("3"));
        assert_eq!(get("securemesh_records_stored_total", "").as_deref(), Some("7"));
        let channels =
            |kind: &str, pq: &str| get("securemesh_channels", &format!(",kind=\"{kind}\",pq=\"{pq}\""));
        assert_eq!(channels("noise", "classical").as_deref(), Some("2"));
        assert_eq!(channels("noise", "hybrid").as_deref(), Some("1"));
        assert_eq!(channels("ratchet", "classical").as_deref(), Some("0"));
        assert_eq!(channels("ratchet", "hybrid").as_deref(), Some("4"));
        assert_eq!(get("securemesh_pq_refused_total", "").as_deref(), Some("5"));
        assert_eq!(get("securemesh_connections_refused_total", "").as_deref(), Some("8"));
        assert_eq!(get("securemesh_connections_refused_per_address_total", "").as_deref(), Some("12"));
        let closed = |r: &str| get("securemesh_connections_closed_total", &format!(",reason=\"{r}\""));
        assert_eq!(closed("garbage").as_deref(), Some("1"));
        assert_eq!(closed("unbound").as_deref(), Some("4"));
        assert_eq!(closed("oversized_frame").as_deref(), Some("2"));
        let dropped = |r: &str| get("securemesh_datagrams_dropped_total", &format!(",reason=\"{r}\""));
        assert_eq!(dropped("queue_full").as_deref(), Some("9"));
        assert_eq!(dropped("loss_injected").as_deref(), Some("6"));
        assert_eq!(get("securemesh_inbound_connections", "").as_deref(), Some("3"));
        assert_eq!(get("securemesh_net_queue_entries", "").as_deref(), Some("7"));
        assert_eq!(get("securemesh_net_queue_peak", "").as_deref(), Some("11"));
        assert_eq!(get("securemesh_net_queue_capacity", "").as_deref(), Some("256"));
        // Every family has its HELP and TYPE lines, once.
        for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let name = family.split(' ').next().unwrap();
            assert_eq!(text.matches(&format!("# HELP {name} ")).count(), 1, "{name}");
        }
    }
}

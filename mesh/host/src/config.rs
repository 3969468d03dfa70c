//! The agent's configuration file: the product's YAML template, parsed
//! with serde ([`serde_saphyr`]).
//!
//! Every key is known: an unknown key, a missing required key, a value of
//! the wrong type or out of range is refused with an error that names the
//! key and the line and column where it stands ([`ConfigError`]). The
//! template, with every key and its meaning, is
//! `mesh/host/examples/agent.yaml`.
//!
//! ```
//! let yaml = "agent:\n  name: a\n  state_dir: /tmp/a\n";
//! let config = securemesh_host::config::AgentFile::parse(yaml)?;
//! assert_eq!(config.key_lifecycle.prekey_refresh_threshold.0, 70);
//! # Ok::<(), securemesh_host::config::ConfigError>(())
//! ```

use core::fmt;
use core::time::Duration;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::net::SocketAddr;
use std::path::PathBuf;

/// One-time prekeys in the pool of the host's agent type
/// ([`crate::HostAgent`]); `key_lifecycle.prekey_pool_size` must say so.
pub const PREKEY_POOL_SIZE: u32 = 16;

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// Who the agent is and where it keeps its state.
    pub agent: AgentSection,
    /// The cryptographic algorithms.
    #[serde(default)]
    pub crypto: Crypto,
    /// Prekeys, signed prekey rotation, persistence.
    #[serde(default)]
    pub key_lifecycle: KeyLifecycle,
    /// Noise, Signal (X3DH + Double Ratchet), MLS.
    #[serde(default)]
    pub protocols: Protocols,
    /// Logs and metrics.
    #[serde(default)]
    pub observability: Observability,
    /// The delivery service (mailboxes, bundles, group order).
    #[serde(default)]
    pub delivery: DeliverySection,
    /// Roles and the message kinds each permits.
    #[serde(default)]
    pub roles: Vec<RoleEntry>,
    /// Peers known from the start.
    #[serde(default)]
    pub peers: Vec<PeerEntry>,
}

/// `roles:`: one role of the policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleEntry {
    /// The role's number (0..32).
    #[serde(deserialize_with = "role_number")]
    pub role: u8,
    /// The message kinds (0..64) it permits.
    #[serde(deserialize_with = "message_kinds")]
    pub kinds: Vec<u8>,
}

fn role_number<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let v = u64::deserialize(d)?;
    u8::try_from(v)
        .ok()
        .filter(|r| usize::from(*r) < securemesh::policy::MAX_ROLES)
        .ok_or_else(|| de::Error::custom(format_args!("{v} is not a role number (0..32)")))
}

fn role_numbers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let v = Vec::<u64>::deserialize(d)?;
    v.iter()
        .map(|r| {
            u8::try_from(*r)
                .ok()
                .filter(|r| usize::from(*r) < securemesh::policy::MAX_ROLES)
                .ok_or_else(|| de::Error::custom(format_args!("{r} is not a role number (0..32)")))
        })
        .collect()
}

fn message_kinds<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let v = Vec::<u64>::deserialize(d)?;
    v.iter()
        .map(|k| {
            u8::try_from(*k)
                .ok()
                .filter(|k| securemesh::MessageKind(*k).is_valid())
                .ok_or_else(|| de::Error::custom(format_args!("{k} is not a message kind (0..64)")))
        })
        .collect()
}

/// `agent:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// A name for logs and metrics labels.
    pub name: String,
    /// Where the Noise stream listener binds (TCP); default 127.0.0.1:0.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The directory of the state files.
    pub state_dir: PathBuf,
    /// Inbound TCP connections open at once (1..=65536, default 64); a
    /// connection beyond it is closed when accepted, and counted.
    #[serde(default = "default_max_connections", deserialize_with = "bound")]
    pub max_connections: usize,
    /// Inbound TCP connections open at once from one IP address (an
    /// IPv6 /64) (1..=65536; by default half of `max_connections`, at
    /// least 1: agents sharing a host or a NAT need room): one flooding
    /// host cannot hold every slot.
    #[serde(default, deserialize_with = "bound_some")]
    pub max_connections_per_address: Option<usize>,
    /// Entries of the queue from the sockets to the agent (1..=65536,
    /// default 256; each at most an envelope, 64 KiB): when it is full a
    /// TCP connection waits, a UDP datagram is dropped and counted.
    #[serde(default = "default_queue_capacity", deserialize_with = "bound")]
    pub queue_capacity: usize,
    /// How long an inbound connection may stay without an authenticated
    /// peer (no message delivered from it, no handshake completed on it)
    /// before it is closed (`30s`).
    #[serde(default = "default_unbound_timeout")]
    pub unbound_timeout: Span,
    /// Hybrid post-quantum channels ([`securemesh::pq`]): `off`,
    /// `prefer` (the default: PQXDH bundle, `hfs` handshakes with peers
    /// known to run them, classical with the others) or `require` (every
    /// classical channel refused; refused in a build without the
    /// feature `pq`).
    #[serde(default = "default_pq", deserialize_with = "pq_mode")]
    pub pq: securemesh::PqMode,
}

impl AgentSection {
    /// The socket bounds the section sets.
    pub fn limits(&self) -> crate::net::NetLimits {
        crate::net::NetLimits {
            max_connections: self.max_connections,
            max_connections_per_address: self
                .max_connections_per_address
                .unwrap_or(crate::net::NetLimits::half(self.max_connections)),
            queue_capacity: self.queue_capacity,
            unbound_timeout: self.unbound_timeout.0,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
fn default_max_connections() -> usize {
    crate::net::DEFAULT_MAX_CONNECTIONS
}
fn default_queue_capacity() -> usize {
    crate::net::DEFAULT_QUEUE_CAPACITY
}
fn default_unbound_timeout() -> Span {
    Span(crate::net::DEFAULT_UNBOUND_TIMEOUT)
}

/// `agent.pq` when the file does not say: `prefer`.
pub const DEFAULT_PQ: securemesh::PqMode = securemesh::PqMode::Prefer;

fn default_pq() -> securemesh::PqMode {
    DEFAULT_PQ
}

fn pq_mode<'de, D: Deserializer<'de>>(d: D) -> Result<securemesh::PqMode, D::Error> {
    use securemesh::PqMode;
    let s = String::deserialize(d)?;
    match s.as_str() {
        "off" => Ok(PqMode::Off),
        "prefer" => Ok(PqMode::Prefer),
        "require" if cfg!(feature = "pq") => Ok(PqMode::Require),
        "require" => Err(de::Error::custom(
            "`require`: this build has no post-quantum channels (feature `pq`) and would refuse every channel",
        )),
        _ => Err(de::Error::custom(format_args!("`{s}` is not a post-quantum mode: off, prefer or require"))),
    }
}

/// A count of 1..=65536 (connections, queue entries).
fn bound_some<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    bound(d).map(Some)
}

fn bound<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = u64::deserialize(d)?;
    usize::try_from(v)
        .ok()
        .filter(|n| (1..=65_536).contains(n))
        .ok_or_else(|| de::Error::custom(format_args!("{v} is out of range (1..=65536)")))
}

/// `crypto:`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crypto {
    /// The suite.
    #[serde(default)]
    pub algorithms: Algorithms,
}

/// `crypto.algorithms:`: the suite this build implements. Each key takes
/// the one value the mesh runs today, so a file that asks for something
/// else is refused rather than silently ignored.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Algorithms {
    /// `x25519`.
    #[serde(default)]
    pub key_exchange: KeyExchange,
    /// `ed25519`.
    #[serde(default)]
    pub signature: SignatureAlg,
    /// `chacha20poly1305`.
    #[serde(default)]
    pub aead: AeadAlg,
    /// `sha256`.
    #[serde(default)]
    pub hash: HashAlg,
    /// `none`: the suite above is classical. The hybrid post-quantum
    /// channels (ML-KEM-768 next to X25519) are switched by `agent.pq`.
    #[serde(default)]
    pub post_quantum: PostQuantum,
}

/// Key agreement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyExchange {
    /// X25519.
    #[default]
    X25519,
}

/// Signatures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureAlg {
    /// Ed25519.
    #[default]
    Ed25519,
}

/// AEAD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AeadAlg {
    /// ChaCha20-Poly1305.
    #[default]
    Chacha20poly1305,
}

/// Hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashAlg {
    /// SHA-256.
    #[default]
    Sha256,
}

/// Post-quantum key agreement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PostQuantum {
    /// Classical only.
    #[default]
    None,
}

/// `key_lifecycle:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLifecycle {
    /// Signed prekey rotation interval (`720h`).
    #[serde(default = "default_rotation")]
    pub rotation_interval: Span,
    /// One-time prekeys in the pool: must be [`PREKEY_POOL_SIZE`] (the
    /// pool is a fixed capacity of the agent type).
    #[serde(default = "default_pool")]
    pub prekey_pool_size: PoolSize,
    /// Refill once this percentage of the pool was used (1..=100).
    #[serde(default = "default_threshold")]
    pub prekey_refresh_threshold: Percent,
    /// How the state is kept.
    pub state_persistence: Option<StatePersistence>,
}

impl Default for KeyLifecycle {
    fn default() -> Self {
        KeyLifecycle {
            rotation_interval: default_rotation(),
            prekey_pool_size: default_pool(),
            prekey_refresh_threshold: default_threshold(),
            state_persistence: None,
        }
    }
}

fn default_rotation() -> Span {
    Span(Duration::from_secs(720 * 3600))
}
fn default_pool() -> PoolSize {
    PoolSize(PREKEY_POOL_SIZE)
}
fn default_threshold() -> Percent {
    Percent(70)
}

/// `key_lifecycle.state_persistence:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatePersistence {
    /// `file` (the only back end of this crate).
    #[serde(default)]
    pub backend: Backend,
    /// A file holding the 32-byte storage key as 64 hex digits.
    pub key_file: Option<PathBuf>,
    /// An environment variable holding the key as 64 hex digits (used when
    /// `key_file` is absent).
    pub key_env: Option<String>,
    /// Where the generation ledger is kept (default: `generations` in the
    /// state directory). Put it on storage an attacker who can restore
    /// old state files cannot roll back.
    pub generation_file: Option<PathBuf>,
}

/// State store back ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// [`crate::store::FileStore`].
    #[default]
    File,
}

/// `protocols:`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    /// Noise.
    #[serde(default)]
    pub noise: Noise,
    /// X3DH + Double Ratchet.
    #[serde(default)]
    pub signal: Signal,
    /// MLS groups.
    #[serde(default)]
    pub mls: Mls,
}

/// `protocols.noise:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noise {
    /// `IK` (XX is the fallback when a static key is unknown) or `XX`.
    #[serde(default)]
    pub pattern: NoisePattern,
    /// `ChaChaPoly`.
    #[serde(default)]
    pub cipher: NoiseCipher,
    /// `tcp`: the stream transport (telemetry datagrams always go over
    /// UDP on the listener's port number).
    #[serde(default)]
    pub transport: NoiseTransport,
    /// Handshake deadline (`10s`).
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: Span,
}

impl Default for Noise {
    fn default() -> Self {
        Noise {
            pattern: NoisePattern::default(),
            cipher: NoiseCipher::default(),
            transport: NoiseTransport::default(),
            handshake_timeout: default_handshake_timeout(),
        }
    }
}

fn default_handshake_timeout() -> Span {
    Span(Duration::from_secs(10))
}

/// Noise handshake patterns the router uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum NoisePattern {
    /// IK when the peer's static key is known, XX otherwise (the matrix).
    #[default]
    IK,
    /// XX.
    XX,
}

/// Noise ciphers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum NoiseCipher {
    /// ChaCha20-Poly1305.
    #[default]
    ChaChaPoly,
}

/// Noise transports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseTransport {
    /// Length-framed stream over TCP.
    #[default]
    Tcp,
}

/// `protocols.signal:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    /// Asynchronous sessions through the mailbox (default on).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Encrypt ratchet headers.
    #[serde(default)]
    pub header_encryption: bool,
    /// Idle time after which a session sends a heartbeat (`1h`).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval: Span,
}

impl Default for Signal {
    fn default() -> Self {
        Signal { enabled: true, header_encryption: false, heartbeat_interval: default_heartbeat() }
    }
}

fn yes() -> bool {
    true
}
fn default_heartbeat() -> Span {
    Span(Duration::from_secs(3600))
}

/// `protocols.mls:`. Must stay `enabled: false` until the mesh drives
/// groups.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mls {
    /// Groups (refused when `true` in this version).
    #[serde(default, deserialize_with = "mls_enabled")]
    pub enabled: bool,
}

fn mls_enabled<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = bool::deserialize(d)?;
    if v {
        return Err(de::Error::custom("MLS groups are not driven by the mesh yet: set `enabled: false`"));
    }
    Ok(v)
}

/// `observability:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observability {
    /// Serve Prometheus text on `metrics_listen`.
    #[serde(default = "yes")]
    pub metrics: bool,
    /// The metrics endpoint (`GET /metrics`).
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: SocketAddr,
    /// `text` or `json` log lines.
    #[serde(default)]
    pub log_format: LogFormat,
    /// A `tracing` filter (`info`, `securemesh_host=debug`).
    #[serde(default = "default_log_level")]
    pub log_level: String,
}

impl Default for Observability {
    fn default() -> Self {
        Observability {
            metrics: true,
            metrics_listen: default_metrics_listen(),
            log_format: LogFormat::default(),
            log_level: default_log_level(),
        }
    }
}

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9400))
}
fn default_log_level() -> String {
    "info".into()
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Text,
    /// Human-readable without colours (for files).
    Plain,
}

/// `delivery:`: the delivery service the agent uses for offline peers,
/// the bundle directory and the group order.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySection {
    /// `embedded` (in this process: agents of one host) or `nats` (a NATS
    /// JetStream server shared by hosts).
    #[serde(default)]
    pub kind: DeliveryKind,
    /// The NATS server (`kind: nats`), `nats://host:port`.
    #[serde(default = "default_nats_url")]
    pub url: NatsUrl,
    /// An environment variable holding the server's token, if it wants
    /// one (a token is never written in the file).
    pub token_env: Option<String>,
    /// A user name, if the server wants user and password.
    pub user: Option<String>,
    /// An environment variable holding that user's password.
    pub password_env: Option<String>,
    /// Unacknowledged messages a mailbox holds before deposits are
    /// refused (1 or more).
    #[serde(default = "default_max_mailbox", deserialize_with = "positive")]
    pub max_mailbox: usize,
}

impl Default for DeliverySection {
    fn default() -> Self {
        DeliverySection {
            kind: DeliveryKind::default(),
            url: default_nats_url(),
            token_env: None,
            user: None,
            password_env: None,
            max_mailbox: default_max_mailbox(),
        }
    }
}

fn default_nats_url() -> NatsUrl {
    NatsUrl("nats://127.0.0.1:4222".into())
}
fn default_max_mailbox() -> usize {
    4096
}

fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = u64::deserialize(d)?;
    usize::try_from(v)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| de::Error::custom(format_args!("{v}: must be at least 1")))
}

/// Delivery service back ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryKind {
    /// [`crate::delivery::InProcess`].
    #[default]
    Embedded,
    /// [`crate::delivery::nats::JetStream`].
    Nats,
}

/// A NATS server URL: `nats://host:port` (checked when read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsUrl(pub String);

impl NatsUrl {
    /// `text` if it is `nats://` followed by a host and a port.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("nats://")?;
        let (host, port) = rest.rsplit_once(':')?;
        let host_ok = !host.is_empty() && !host.contains(['/', '@', ' ']);
        (host_ok && port.parse::<u16>().is_ok_and(|p| p != 0)).then(|| NatsUrl(text.to_string()))
    }
}

impl<'de> Deserialize<'de> for NatsUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NatsUrl::parse(&s).ok_or_else(|| {
            de::Error::custom(format_args!("`{s}` is not a NATS server URL: nats://host:port"))
        })
    }
}

/// `peers:`: one known peer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    /// A name for logs.
    pub name: String,
    /// Its public identity, 128 bytes as 256 hex digits (printed by
    /// `securemesh bundle`).
    #[serde(deserialize_with = "public_identity")]
    pub identity: securemesh_ratchet::PublicIdentity,
    /// Where its Noise listener is (absent: offline, reached through
    /// the mailbox).
    pub address: Option<SocketAddr>,
    /// The roles granted to it (numbers 0..32).
    #[serde(default, deserialize_with = "role_numbers")]
    pub roles: Vec<u8>,
}

fn public_identity<'de, D: Deserializer<'de>>(d: D) -> Result<securemesh_ratchet::PublicIdentity, D::Error> {
    let s = String::deserialize(d)?;
    let bytes =
        crate::keys::from_hex(&s).ok_or_else(|| de::Error::custom("a public identity is 256 hex digits"))?;
    let arr: &[u8; securemesh_ratchet::PublicIdentity::LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| de::Error::custom("a public identity is 256 hex digits (128 bytes)"))?;
    securemesh_ratchet::PublicIdentity::from_bytes(arr)
        .map_err(|_| de::Error::custom("not a public identity: its binding signature does not verify"))
}

/// A duration written as a number and a unit: `500ms`, `10s`, `5m`,
/// `1h`, `30d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub Duration);

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_span(&s).map(Span).ok_or_else(|| {
            de::Error::custom(format_args!(
                "`{s}` is not a duration: a whole number and a unit (ms, s, m, h, d), e.g. `720h`"
            ))
        })
    }
}

fn parse_span(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    if n == 0 {
        return None;
    }
    Some(Duration::from_millis(n.checked_mul(ms)?))
}

/// A percentage in 1..=100.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percent(pub u8);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        match u8::try_from(v) {
            Ok(p @ 1..=100) => Ok(Percent(p)),
            _ => Err(de::Error::custom(format_args!("{v} is not a percentage in 1..=100"))),
        }
    }
}

/// The prekey pool size, which must be the compiled [`PREKEY_POOL_SIZE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSize(pub u32);

impl<'de> Deserialize<'de> for PoolSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if v != u64::from(PREKEY_POOL_SIZE) {
            return Err(de::Error::custom(format_args!(
                "{v}: this build's prekey pool holds {PREKEY_POOL_SIZE} one-time prekeys (a fixed capacity of the agent)"
            )));
        }
        Ok(PoolSize(PREKEY_POOL_SIZE))
    }
}

/// A refused configuration file.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The YAML is malformed, or a key is unknown, missing or has a bad
    /// value: the message names the key, the line and the column.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            ConfigError::Invalid(m) => write!(f, "invalid configuration: {m}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl AgentFile {
    /// Parse a configuration from YAML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// Read and parse a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::Io { path: path.to_path_buf(), error })?;
        Self::parse(&text)
    }

    /// The mesh agent's configuration this file describes.
    // `..base` keeps fields the mesh may add later at their defaults.
    #[allow(clippy::needless_update)]
    pub fn agent_config(&self) -> securemesh::Config {
        let ms = |s: Span| u64::try_from(s.0.as_millis()).unwrap_or(u64::MAX);
        let base = securemesh::Config::default();
        securemesh::Config {
            handshake_timeout_ms: ms(self.protocols.noise.handshake_timeout),
            ratchet: securemesh_ratchet::SessionConfig {
                header_encryption: self.protocols.signal.header_encryption,
                heartbeat_ms: ms(self.protocols.signal.heartbeat_interval),
                ..base.ratchet
            },
            prekeys: securemesh_ratchet::PrekeyConfig {
                refill_threshold_percent: self.key_lifecycle.prekey_refresh_threshold.0,
                rotation_interval_secs: self.key_lifecycle.rotation_interval.0.as_secs(),
                ..base.prekeys
            },
            ..base
        }
    }
}

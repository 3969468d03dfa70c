//! The commands `agent --config FILE` and `bundle --config FILE`.

use crate::config::{AgentFile, DeliveryKind, LogFormat};
use crate::delivery::nats::{JetStream, NatsOptions};
use crate::delivery::{DeliveryService, InProcess};
use crate::error::HostError;
use crate::keys::{self, KeyError};
use crate::rng::OsRng;
use crate::runtime::{AddressBook, AgentOptions, bundles, open, spawn};
use securemesh::{MessageKind, Permissions, Role, Roles};
use securemesh_core::envelope::StorageKey;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// The storage key the file names (`key_file`, else `key_env`).
pub fn storage_key(file: &AgentFile) -> Result<StorageKey, HostError> {
    let p = file.key_lifecycle.state_persistence.as_ref().ok_or(KeyError::NotConfigured)?;
    match (&p.key_file, &p.key_env) {
        (Some(path), _) => Ok(keys::read_key_file(path)?),
        (None, Some(var)) => Ok(keys::read_key_env(var)?),
        (None, None) => Err(KeyError::NotConfigured.into()),
    }
}

/// The runtime options the file describes.
pub fn options(file: &AgentFile) -> AgentOptions {
    AgentOptions {
        name: file.agent.name.clone(),
        config: file.agent_config(),
        state_dir: file.agent.state_dir.clone(),
        ledger: file.key_lifecycle.state_persistence.as_ref().and_then(|p| p.generation_file.clone()),
        listen: file.agent.listen,
        mailbox_poll: Duration::from_millis(50),
        udp_loss_percent: 0,
        limits: file.agent.limits(),
        pq: file.agent.pq,
    }
}

/// Start `tracing` output at the file's level and format (colours only
/// for `text` on a terminal).
pub fn init_logs(file: &AgentFile) {
    let filter = tracing_subscriber::EnvFilter::try_new(&file.observability.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(file.observability.log_format == LogFormat::Text && std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// What `securemesh bundle` prints: the agent's peer id, public identity
/// and last-resort bundle (no one-time prekey: those are handed out by
/// the delivery service, once each), as hex. The agent is created and
/// stored if its state directory is empty.
pub fn bundle_text(file: &AgentFile) -> Result<String, HostError> {
    let key = storage_key(file)?;
    let mut rng = OsRng::new()?;
    let (agent, _, restored) = open(&options(file), key, &mut rng)?;
    let b = bundles(&agent)?;
    Ok(format!(
        "name: {}\nrestored: {restored}\npeer_id: {}\nidentity: {}\nbundle: {}\n",
        file.agent.name,
        keys::to_hex(&agent.peer_id().0),
        keys::to_hex(&agent.public_identity().to_bytes()),
        keys::to_hex(&b.last_resort),
    ))
}

/// How to reach the NATS server of the file's `delivery:` section (the
/// token and password read from the environment variables it names).
pub fn nats_options(file: &AgentFile) -> Result<NatsOptions, HostError> {
    let d = &file.delivery;
    let env = |var: &String, key: &str| {
        std::env::var(var)
            .map_err(|_| HostError::NotFound(format!("environment variable {var} (delivery.{key})")))
    };
    let token = d.token_env.as_ref().map(|v| env(v, "token_env")).transpose()?;
    let user_password = match (&d.user, &d.password_env) {
        (Some(u), Some(p)) => Some((u.clone(), env(p, "password_env")?)),
        (Some(_), None) | (None, Some(_)) => {
            return Err(HostError::NotFound("delivery.user and delivery.password_env go together".into()));
        }
        (None, None) => None,
    };
    Ok(NatsOptions { url: d.url.0.clone(), token, user_password, max_mailbox: d.max_mailbox })
}

/// Run the agent the file describes until `stop` resolves (Ctrl-C for
/// the command), then store its state and return. Its delivery service
/// is the file's: embedded, or the NATS server (which must answer at
/// start; later outages are retried).
///
/// With `control`, it also takes commands from its input and writes the
/// replies and the delivered messages to its output
/// ([`crate::control`]).
pub async fn run_agent(
    file: &AgentFile,
    stop: impl std::future::Future<Output = ()>,
    control: Option<ControlIo>,
) -> Result<(), HostError> {
    match file.delivery.kind {
        DeliveryKind::Embedded => {
            run_on(file, Arc::new(InProcess::new(file.delivery.max_mailbox)), stop, control).await
        }
        DeliveryKind::Nats => {
            let js = JetStream::connect(nats_options(file)?).await?;
            tracing::info!(server = %js.url(), "delivery service: NATS JetStream");
            run_on(file, Arc::new(js), stop, control).await
        }
    }
}

/// Where an agent's control lines come from and where its replies go.
pub struct ControlIo {
    /// One command per line.
    pub input: Box<dyn tokio::io::AsyncBufRead + Unpin + Send>,
    /// Replies and delivered messages, one per line.
    pub output: Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
}

impl ControlIo {
    /// The process's stdin and stdout (`securemesh agent --stdio`).
    ///
    /// ```no_run
    /// let control = securemesh_host::app::ControlIo::stdio();
    /// ```
    pub fn stdio() -> Self {
        ControlIo {
            input: Box::new(tokio::io::BufReader::new(tokio::io::stdin())),
            output: Box::new(tokio::io::stdout()),
        }
    }
}

/// The next control line (or why it is refused), or never: no control,
/// or its input ended.
async fn next_line(lines: &mut Option<crate::control::LineReader>) -> Result<String, String> {
    if let Some(l) = lines {
        if let Some(line) = l.next().await {
            return line;
        }
        *lines = None;
    }
    std::future::pending().await
}

async fn write_line(out: &mut Option<Box<dyn tokio::io::AsyncWrite + Unpin + Send>>, text: &str) {
    if let Some(o) = out {
        let line = format!("{text}\n");
        if o.write_all(line.as_bytes()).await.and(o.flush().await).is_err() {
            tracing::warn!("control output closed");
            *out = None;
        }
    }
}

async fn run_on<D: DeliveryService>(
    file: &AgentFile,
    delivery: Arc<D>,
    stop: impl std::future::Future<Output = ()>,
    control: Option<ControlIo>,
) -> Result<(), HostError> {
    let (mut lines, mut out) = match control {
        Some(c) => (Some(crate::control::LineReader::new(c.input)), Some(c.output)),
        None => (None, None),
    };
    let key = storage_key(file)?;
    let book = AddressBook::default();
    let (app_tx, mut app_rx) = mpsc::unbounded_channel();
    let handle = spawn(options(file), key, Arc::clone(&delivery), Arc::clone(&book), app_tx).await?;
    // Roles and peers of the file.
    let roles: Vec<(Role, Permissions)> = file
        .roles
        .iter()
        .map(|r| {
            let kinds: Vec<MessageKind> = r.kinds.iter().map(|k| MessageKind(*k)).collect();
            (Role(r.role), Permissions::of(&kinds))
        })
        .collect();
    let mut peers = Vec::new();
    for p in &file.peers {
        let id = securemesh::PeerId::of(&p.identity);
        if let (Some(addr), Ok(mut b)) = (p.address, book.lock()) {
            b.insert(id, addr);
        }
        let granted: Vec<Role> = p.roles.iter().map(|r| Role(*r)).collect();
        peers.push((p.identity, p.address.is_some(), Roles::of(&granted)));
    }
    // Whatever fails from here, the agent's state is stored before return.
    let mut metrics = None;
    let ran = async {
    handle
        .with(move |agent, _, _| -> Result<(), securemesh::Error> {
            for (role, permits) in roles {
                agent.policy_mut().define_role(role, permits)?;
            }
            for (identity, reachable, roles) in peers {
                let id = agent.add_peer_identity(&identity)?;
                agent.set_reachable(&id, reachable)?;
                agent.policy_mut().grant(id, roles)?;
            }
            Ok(())
        })
        .await??;
    if file.observability.metrics {
        let listener = tokio::net::TcpListener::bind(file.observability.metrics_listen).await?;
        tracing::info!(addr = %listener.local_addr()?, "metrics at /metrics");
        let cells = Arc::new(Mutex::new(vec![handle.status_cell()]));
        metrics = Some(tokio::spawn(crate::metrics::serve(listener, cells)));
    }
    tracing::info!(
        agent = %handle.name,
        peer_id = %keys::to_hex(&handle.peer_id.0),
        listen = %handle.addr,
        "running; Ctrl-C stops and stores the state"
    );
    write_line(&mut out, &format!("ready peer={} listen={}", keys::to_hex(&handle.peer_id.0), handle.addr))
        .await;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(d) = app_rx.recv() => {
                tracing::info!(from = %crate::runtime::short(&d.from), kind = d.kind.0, bytes = d.payload.len(), channel = ?d.channel, "message delivered");
                write_line(&mut out, &crate::control::delivered_line(&d)).await;
            }
            line = next_line(&mut lines) => {
                let reply = match line.as_deref().map(str::trim) {
                    Ok(l) if l.is_empty() || l.starts_with('#') => continue,
                    Ok(l) => match crate::control::Command::parse(l) {
                        Ok(cmd) => crate::control::execute(cmd, &handle, delivery.as_ref())
                            .await
                            .unwrap_or_else(|e| format!("err {}", crate::control::one_line(&e.to_string()))),
                        Err(e) => format!("err {}", crate::control::one_line(&e)),
                    },
                    Err(e) => format!("err {e}"),
                };
                write_line(&mut out, &reply).await;
            }
        }
    }
    Ok::<(), HostError>(())
    }
    .await;
    if let Some(m) = metrics {
        m.abort();
    }
    let stored = handle.shutdown().await;
    ran.and(stored)
}

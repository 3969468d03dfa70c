//! `securemesh`: the hosted agent's command line.
//!
//! - `keygen --out FILE`: a new storage key (64 hex digits, mode 0600).
//! - `bundle --config FILE`: the agent's peer id, public identity and
//!   prekey bundle (the agent is created on first use).
//! - `agent --config FILE [--stdio]`: run one agent until Ctrl-C (with
//!   `--stdio`, driven by command lines on stdin: see
//!   `securemesh_host::control`).
//! - `demo [--json] [--delivery nats://HOST:PORT]`: the live mesh demo
//!   (on the embedded delivery service, or on a NATS JetStream server).

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "securemesh", version, about = "securemesh: end-to-end encrypted agent-to-agent messaging")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new random storage key (64 hex digits) to a file that must not exist.
    Keygen {
        /// The key file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the agent's peer id, public identity and last-resort bundle (creating the agent on first use).
    Bundle {
        /// The agent's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run one agent until Ctrl-C, then store its state.
    Agent {
        /// The agent's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Take commands on stdin (send, offline, key-package, group-…), one per line; replies and delivered messages on stdout.
        #[arg(long)]
        stdio: bool,
    },
    /// Run the live mesh demo: agents on loopback TCP, every scenario checked.
    Demo {
        /// Print the summary as JSON on stdout (the progress stays on stderr).
        #[arg(long)]
        json: bool,
        /// Where the agents keep their state (emptied first).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// No progress table.
        #[arg(long)]
        quiet: bool,
        /// Run on a NATS JetStream server (nats://host:port, nats-server -js) instead of the embedded delivery service.
        #[arg(long, value_name = "URL")]
        delivery: Option<String>,
    },
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

fn agent(config: &std::path::Path, stdio: bool) -> Result<(), Box<dyn std::error::Error>> {
    let file = securemesh_host::config::AgentFile::load(config)?;
    securemesh_host::app::init_logs(&file);
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let rt = runtime()?;
    let ran = rt.block_on(securemesh_host::app::run_agent(
        &file,
        stop,
        stdio.then(securemesh_host::app::ControlIo::stdio),
    ));
    // The state is stored by now. A read of stdin blocks its thread until
    // a line comes, so the runtime does not wait for it.
    rt.shutdown_background();
    ran?;
    Ok(())
}

fn demo(
    json: bool,
    dir: Option<PathBuf>,
    quiet: bool,
    delivery: Option<String>,
) -> Result<bool, Box<dyn std::error::Error>> {
    let nats = match delivery {
        None => None,
        Some(url) => Some(
            securemesh_host::config::NatsUrl::parse(&url)
                .ok_or_else(|| format!("--delivery {url}: not a NATS server URL (nats://host:port)"))?
                .0,
        ),
    };
    init_logs("warn");
    let dir =
        dir.unwrap_or_else(|| std::env::temp_dir().join(format!("securemesh-demo-{}", std::process::id())));
    let opts = securemesh_host::demo::DemoOptions { dir: dir.clone(), progress: !quiet, nats };
    let summary = runtime()?.block_on(securemesh_host::demo::run(opts))?;
    if json {
        println!("{}", summary.to_json());
    } else {
        print!("{}", summary.to_text());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(summary.passed())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Keygen { out } => securemesh_host::keys::write_new_key(&out)
            .map(|()| println!("storage key written to {}", out.display()))
            .map_err(Into::into),
        Command::Bundle { config } => securemesh_host::config::AgentFile::load(&config)
            .map_err(Into::into)
            .and_then(|f| securemesh_host::app::bundle_text(&f).map_err(Into::into))
            .map(|t| print!("{t}")),
        Command::Agent { config, stdio } => agent(&config, stdio),
        Command::Demo { json, dir, quiet, delivery } => match demo(json, dir, quiet, delivery) {
            Ok(true) => Ok(()),
            Ok(false) => Err("some checks did not hold".into()),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("securemesh: {e}");
            ExitCode::FAILURE
        }
    }
}

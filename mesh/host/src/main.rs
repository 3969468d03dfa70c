//! `securemesh`: the hosted agent's command line.
//!
//! - `keygen --out FILE`: a new storage key (64 hex digits, mode 0600).
//! - `bundle --config FILE`: the agent's peer id, public identity and
//!   prekey bundle (the agent is created on first use).
//! - `agent --config FILE`: run one agent until Ctrl-C.
//! - `demo [--json]`: the live mesh demo.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Keygen { out } => securemesh_host::keys::write_new_key(&out)
            .map(|()| println!("storage key written to {}", out.display()))
            .map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("securemesh: {e}");
            ExitCode::FAILURE
        }
    }
}

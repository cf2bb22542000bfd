//! tcmud: serves Linux TCMU (target_core_user) devices from thin pools.
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tcmud::offline::{self, PoolCommand, VolumeCommand};

#[derive(Debug, Parser)]
#[command(name = "tcmud", version, about = "TCMU daemon and thin-pool tools")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pool commands (offline: on a pool no daemon holds).
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Volume commands (offline: on a pool no daemon holds).
    #[command(subcommand)]
    Volume(VolumeCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    match cli.command {
        Some(Command::Pool(c)) => offline::exit_code(offline::run_pool(&c, &mut out)),
        Some(Command::Volume(c)) => offline::exit_code(offline::run_volume(&c, &mut out)),
        None => {
            eprintln!("tcmud: the daemon is not built yet");
            ExitCode::FAILURE
        }
    }
}

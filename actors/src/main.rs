//! tcmud: serves Linux TCMU (target_core_user) devices from thin pools.
use anyhow::Context;
use clap::Parser;
use std::process::ExitCode;
use tcmud::cli::{Cli, Command, RunArgs};
use tcmud::supervisor::{run_daemon, ReloadSource};
use tcmud::{config, logging, offline};

fn main() -> ExitCode {
    // Pools, their metadata (sled's files included) and images hold other systems'
    // disks: owner-only whatever the caller's umask (dirs 0700, files 0600).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.run),
        Some(Command::Run(args)) => run(args),
        Some(Command::Pool(c)) => {
            return offline::exit_code(offline::run_pool(&c, &mut std::io::stdout().lock()))
        }
        Some(Command::Volume(c)) => {
            return offline::exit_code(offline::run_volume(&c, &mut std::io::stdout().lock()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tcmud: {}", error_text(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping causes whose text the
/// message already quotes (our error types print their source themselves).
fn error_text(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

/// Runs the daemon: config file + overrides -> logging -> supervisor.
fn run(args: RunArgs) -> anyhow::Result<()> {
    let overrides = args.overrides();
    let cfg = config::load(args.config.as_deref())
        .and_then(|c| config::apply_overrides(c, &overrides))?;
    let log = logging::init(&cfg.log_level, cfg.log_format).context("cannot start logging")?;
    match tcmud::fd_limit::raise_open_file_limit() {
        Ok(n) => tracing::debug!(open_files = n, "open-file limit"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit; about 500 devices at most")
        }
    }
    let reload = ReloadSource {
        config_path: args.config,
        overrides,
    };
    run_daemon(cfg, reload, Some(log))?;
    Ok(())
}

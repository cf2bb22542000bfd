//! tcmud: serves Linux TCMU (target_core_user) devices from thin pools.

use anyhow::Context;
use clap::Parser;
use std::process::ExitCode;
use tcmud::cli::{Cli, Command, RunArgs};
use tcmud::control::commands;
use tcmud::supervisor::{run_daemon, ReloadSource};
use tcmud::{config, logging};

fn main() -> ExitCode {
    // Pools, their metadata (sled's files included) and images hold other systems'
    // disks: owner-only whatever the caller's umask (dirs 0700, files 0600).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.run),
        Some(Command::Run(args)) => run(args),
        Some(Command::Pool(a)) => return commands::pool(a),
        Some(Command::Volume(a)) => return commands::volume(a),
        Some(Command::Status { json, via }) => return commands::status(json, &via),
        Some(Command::LogLevel { filter, via }) => return commands::log_level(filter, &via),
        Some(Command::ManPages { dir }) => tcmud::manpages::write_all(&dir)
            .map(|files| {
                for f in files {
                    tracing::debug!(file = %f.display(), "manual page written");
                }
            })
            .with_context(|| format!("writing manual pages into {}", dir.display())),
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
    // Before any thread starts or sled allocates: sparse memory stays 4 KiB pages.
    let thp = tcmud::hugepages::disable();
    // Before any thread allocates: one malloc arena per core, not eight.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let arenas = tcmud::heap::limit_arenas(cores);
    let overrides = args.overrides();
    let cfg = config::load(args.config.as_deref())
        .and_then(|c| config::apply_overrides(c, &overrides))?;
    // Before any thread starts: every thread made later takes this priority.
    let nice = tcmud::priority::apply(cfg.nice);
    let log = logging::init(&cfg.log_level, cfg.log_format).context("cannot start logging")?;
    match nice {
        None => tracing::debug!("CPU priority left as started (daemon.nice = 0)"),
        Some(Ok(_)) => tracing::debug!(nice = cfg.nice, "CPU priority of the daemon's threads"),
        Some(Err(e)) => tracing::warn!(
            error = %e,
            "the daemon's threads keep their CPU priority and share the CPU with the initiators' as equals"
        ),
    }
    match tcmud::fd_limit::raise_open_file_limit() {
        Ok(n) => tracing::debug!(open_files = n, "open-file limit"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit; about 500 devices at most")
        }
    }
    match thp {
        Ok(()) => tracing::debug!("transparent huge pages off for the daemon"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot turn transparent huge pages off; sparse memory may cost 2 MiB pages")
        }
    }
    if arenas {
        tracing::debug!(arenas = cores, "malloc arenas capped at the core count");
    } else {
        tracing::debug!("malloc arenas left at the C library's default");
    }
    let reload = ReloadSource {
        config_path: args.config,
        overrides,
    };
    run_daemon(cfg, reload, Some(log))?;
    Ok(())
}

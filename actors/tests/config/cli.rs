//! The command line: `tcmud [run] [OPTIONS]` and its overrides.

use clap::Parser;
use tcmud::cli::{Cli, Command};
use tcmud::config::{LogFormat, RecoveryPolicy};

#[test]
fn run_is_the_default_and_explicit() {
    let c =
        Cli::try_parse_from(["tcmud", "--config", "/etc/x.toml", "--log-format", "json"]).unwrap();
    assert!(c.command.is_none());
    assert_eq!(
        c.run.config.as_deref(),
        Some(std::path::Path::new("/etc/x.toml"))
    );
    assert_eq!(c.run.overrides().log_format, Some(LogFormat::Json));

    let c = Cli::try_parse_from([
        "tcmud",
        "run",
        "--recovery",
        "replay",
        "--netlink-replies",
        "true",
        "--sys-root",
        "/s",
    ])
    .unwrap();
    let Some(Command::Run(r)) = c.command else {
        panic!("not run")
    };
    let o = r.overrides();
    assert_eq!(o.recovery, Some(RecoveryPolicy::Replay));
    assert_eq!(o.netlink_replies, Some(true));
    assert_eq!(o.sys_root.as_deref(), Some(std::path::Path::new("/s")));
}

#[test]
fn bad_values_are_rejected() {
    assert!(Cli::try_parse_from(["tcmud", "--recovery", "sometimes"]).is_err());
    assert!(Cli::try_parse_from(["tcmud", "--netlink-replies", "perhaps"]).is_err());
    assert!(Cli::try_parse_from(["tcmud", "--bogus"]).is_err());
}

#[test]
fn pool_and_volume_subcommands_are_dispatched_offline() {
    let c = Cli::try_parse_from(["tcmud", "pool", "info", "/p", "--json"]).unwrap();
    assert!(matches!(c.command, Some(Command::Pool(_))));
    let c =
        Cli::try_parse_from(["tcmud", "volume", "create", "/p", "v", "--size", "64MiB"]).unwrap();
    assert!(matches!(c.command, Some(Command::Volume(_))));
    // Daemon options do not mix with offline subcommands.
    assert!(Cli::try_parse_from(["tcmud", "--log-level", "debug", "pool", "info", "/p"]).is_err());
}

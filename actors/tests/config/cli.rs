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

#[test]
fn metadata_cache_option_of_pool_and_volume_commands() {
    let c =
        Cli::try_parse_from(["tcmud", "pool", "check", "/p", "--metadata-cache", "8MiB"]).unwrap();
    let Some(Command::Pool(p)) = c.command else {
        panic!("not pool")
    };
    assert_eq!(p.pool_options().metadata_cache, 8 << 20);
    let c =
        Cli::try_parse_from(["tcmud", "volume", "--metadata-cache", "2MiB", "list", "/p"]).unwrap();
    let Some(Command::Volume(v)) = c.command else {
        panic!("not volume")
    };
    assert_eq!(v.pool_options().metadata_cache, 2 << 20);
    let c = Cli::try_parse_from(["tcmud", "pool", "create", "/p"]).unwrap();
    let Some(Command::Pool(p)) = c.command else {
        panic!("not pool")
    };
    assert_eq!(p.pool_options().metadata_cache, 64 << 20, "the default");
    for (bad, why) in [("4KiB", "4096 bytes: must be at least 1MiB"), ("lots", "")] {
        let err = Cli::try_parse_from(["tcmud", "pool", "create", "/p", "--metadata-cache", bad])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--metadata-cache") && err.contains(bad) && err.contains(why),
            "{err}"
        );
    }
}

//! Manual pages generated from what the program already says about itself:
//! `tcmud(8)` and one page per subcommand from the clap definitions
//! (clap_mangen), `tcmud.toml(5)` from the annotated default configuration
//! (`examples/tcmud.toml`, whose comments are the reference of every key).
//! `tcmud man-pages DIR` writes them; `dist/install.sh` installs them.

use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use roff::{bold, italic, roman, Roff};

/// The shipped default configuration, with its comments.
pub const DEFAULT_CONFIG: &str = include_str!("../../examples/tcmud.toml");

/// Writes `tcmud.8`, `tcmud-<sub>.8` (nested subcommands joined by `-`) and
/// `tcmud.toml.5` into `dir` (created if missing); returns the files written.
pub fn write_all(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let root = crate::cli::Cli::command().name("tcmud");
    pages(&root, "tcmud", dir, &mut written)?;
    let conf = dir.join("tcmud.toml.5");
    std::fs::write(&conf, config_page())?;
    written.push(conf);
    Ok(written)
}

fn pages(cmd: &clap::Command, name: &str, dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    if cmd.is_hide_set() {
        return Ok(());
    }
    let page = cmd
        .clone()
        .name(name.to_owned())
        .bin_name(name.replace('-', " "));
    let mut buf = Vec::new();
    clap_mangen::Man::new(page)
        .section("8")
        .manual("System Administration")
        .source(format!("tcmud {}", env!("CARGO_PKG_VERSION")))
        .render(&mut buf)?;
    let path = dir.join(format!("{name}.8"));
    std::fs::write(&path, buf)?;
    out.push(path);
    for sub in cmd.get_subcommands() {
        pages(sub, &format!("{name}-{}", sub.get_name()), dir, out)?;
    }
    Ok(())
}

/// `tcmud.toml(5)`: the default configuration with its comments, which
/// document every key and its default.
pub fn config_page() -> String {
    let mut r = Roff::new();
    r.control(
        "TH",
        [
            "TCMUD.TOML",
            "5",
            "",
            &format!("tcmud {}", env!("CARGO_PKG_VERSION")),
            "File Formats",
        ],
    );
    r.control("SH", ["NAME"]);
    r.text([roman("tcmud.toml - configuration of the tcmud TCMU daemon")]);
    r.control("SH", ["SYNOPSIS"]);
    r.text([bold("/etc/tcmud/tcmud.toml")]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([
        roman("tcmud(8) reads its configuration from the file named by "),
        bold("--config"),
        roman(" (or "),
        italic("$TCMUD_CONFIG"),
        roman("), else "),
        bold("/etc/tcmud/tcmud.toml"),
        roman(" when it exists, else built-in defaults. The file is TOML: a "),
        bold("[daemon]"),
        roman(" table, an optional "),
        bold("[daemon.subtypes]"),
        roman(" table and one "),
        bold("[[pool]]"),
        roman(" table per thin pool. Every bad value is reported with its line and column, and the daemon does not start. SIGHUP re-reads the file (log level, new pools, file roots)."),
    ]);
    r.control("SH", ["DEFAULTS AND KEYS"]);
    r.text([roman(
        "The default configuration, identical to the built-in defaults; the comment beside \
         each key says what it does:",
    )]);
    r.control("PP", [] as [&str; 0]);
    r.control("nf", [] as [&str; 0]);
    for line in DEFAULT_CONFIG.lines() {
        r.text([roman(line)]);
    }
    r.control("fi", [] as [&str; 0]);
    r.control("SH", ["SEE ALSO"]);
    r.text([roman("tcmud(8), targetcli(8), systemd.service(5)")]);
    r.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_for_the_command_its_subcommands_and_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_all(dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "tcmud.8",
            "tcmud-pool.8",
            "tcmud-volume-snapshot.8",
            "tcmud-status.8",
            "tcmud.toml.5",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        assert!(
            !names.iter().any(|n| n.contains("man-pages")),
            "hidden command documented"
        );
        let snap = std::fs::read_to_string(dir.path().join("tcmud-volume-snapshot.8")).unwrap();
        assert!(snap.contains(".TH tcmud-volume-snapshot 8"), "{snap}");
        let conf = std::fs::read_to_string(dir.path().join("tcmud.toml.5")).unwrap();
        assert!(conf.contains(".TH TCMUD.TOML 5"), "{conf}");
        assert!(
            conf.contains("drain_timeout = 30"),
            "the keys are in the page"
        );
    }
}

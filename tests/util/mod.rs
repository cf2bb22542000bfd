//! Helpers shared by the test modules: SCSI commands through a `Lun`
//! (`scsi`), fetching from the ring (`ring`), the ring and backends of the zero-copy tests (`zero_copy`),
//! explicit narrowing of test values (`narrow`), and running a test alone in
//! a child process (here).

pub mod narrow;
pub mod ring;
pub mod scsi;
pub mod zero_copy;

use std::process::Command;

/// The libtest name of test function `$f` of the calling module (its module
/// path without the crate's name: `pool::kill9::acknowledged_fua_...`), for
/// running that test alone in a child process ([`rerun`]). Checked at
/// compile time: a renamed or moved test still gets its own name.
macro_rules! test_name {
    ($f:ident) => {{
        let _: fn() = $f;
        $crate::util::libtest_name(module_path!(), stringify!($f))
    }};
}
pub(crate) use test_name;

/// `module::f` without the leading crate name (what `--exact` matches).
pub fn libtest_name(module_path: &str, f: &str) -> String {
    match module_path.split_once("::") {
        Some((_crate, path)) => format!("{path}::{f}"),
        None => f.to_owned(),
    }
}

/// A command running test `name` (from [`test_name!`]) alone in a child
/// process of this test binary, its output not captured by libtest: for a
/// test that needs a process of its own (one to kill, or a process-wide
/// setting such as the environment or the umask). One test thread: libtest
/// prints `test NAME ... ` before the test runs, so the child's first line
/// of output starts after it (match with `ends_with`).
pub fn rerun(name: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut c = Command::new(exe);
    c.args(["--exact", name, "--nocapture", "--test-threads=1"]);
    c
}

//! Helpers shared by the test modules: the device harness (`device`), the
//! supervisor's fakes (`supervisor`), the RBD test cluster (`rbd`), and
//! running a test alone in a child process (here).

pub mod device;
#[cfg(feature = "rbd")]
pub mod rbd;
pub mod supervisor;

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

/// Set in the child started by [`own_process`]: the test it runs.
const OWN_PROCESS_ENV: &str = "TCMUD_TEST_OWN_PROCESS";

/// For a test that changes a process-wide setting (an environment variable,
/// the umask) the other tests of this binary would see, running at the same
/// time. In the test binary: runs test `name` ([`test_name!`]) again alone
/// in a child process, fails if it fails there, and returns false (the
/// caller returns). In that child: true (the caller changes the setting and
/// does its work).
pub fn own_process(name: &str) -> bool {
    if std::env::var_os(OWN_PROCESS_ENV).is_some_and(|n| n == name) {
        return true;
    }
    let out = rerun(name)
        .env(OWN_PROCESS_ENV, name)
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{name} failed in its own process:\n{report}"
    );
    // A name that matched nothing would pass too: the test must have run.
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{name} did not run in its own process:\n{report}"
    );
    false
}

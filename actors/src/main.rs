//! tcmud: serves Linux TCMU (target_core_user) devices from thin pools.
use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("tcmud: the daemon is not built yet");
    ExitCode::FAILURE
}

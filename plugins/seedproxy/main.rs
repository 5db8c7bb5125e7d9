//! `kubectl-kkp-seedproxy`: not implemented yet; see the project's issues.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("error: kubectl kkp seedproxy is not implemented yet");
    ExitCode::from(2)
}

//! `kubectl-kkp-retarget`: not implemented yet; see the project's issues.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("error: kubectl kkp retarget is not implemented yet");
    ExitCode::from(2)
}

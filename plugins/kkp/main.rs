//! `kubectl-kkp`: `kubectl kkp mirror|retarget|seedproxy …` runs the sibling `kubectl-kkp-<tool>`;
//! `version`, `completion` and help are answered here. The logic is in `kubectl_kkp::dispatch`.

use std::process::ExitCode;

fn main() -> ExitCode {
    kubectl_kkp::init_logging(0);
    kubectl_kkp::dispatch::main(std::env::args_os().skip(1).collect())
}

//! `kubectl-kkp-retarget`: parse, run, map to an exit code. Everything else is in `kkp_shared::retarget`.

use std::process::ExitCode;

use clap::Parser;
use kkp_shared::retarget::RetargetArgs;

/// Point a KubermaticConfiguration and Helm values at the private registry, in place, keeping comments
/// and layout, and check that no rendered image is left outside it.
#[derive(Parser)]
#[command(name = "kubectl-kkp-retarget", bin_name = "kubectl kkp retarget", version)]
struct Cli {
    #[command(flatten)]
    args: RetargetArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(kkp_shared::cli::rewrite_legacy_args(std::env::args_os()));
    kubectl_kkp::init_logging(cli.args.verbose);
    match kkp_shared::retarget::run(&cli.args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => kubectl_kkp::report(&e, e.exit_code(cli.args.diff_mode())),
    }
}

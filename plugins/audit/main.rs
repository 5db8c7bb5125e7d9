//! `kubectl-kkp-audit`: parse, run, map to an exit code. Everything else is in `kkp_shared::audit`.

use std::process::ExitCode;

use clap::Parser;
use kkp_shared::audit::AuditArgs;

/// Prove a running KKP install is offline: every image on every cluster comes from the private registry,
/// and the mirror holds it. Read-only. Exit 0 clean, 1 when anything leaks or is missing, >1 on error.
#[derive(Parser)]
#[command(name = "kubectl-kkp-audit", bin_name = "kubectl kkp audit", version)]
struct Cli {
    #[command(flatten)]
    args: AuditArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    kubectl_kkp::init_logging(cli.args.verbose);
    match kkp_shared::audit::run(&cli.args).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => kubectl_kkp::report(&e, e.exit_code()),
    }
}

//! `kubectl-kkp-seedproxy`: parse, run, map to an exit code. Everything else is in `kkp_shared::seedproxy`.

use std::process::ExitCode;

use clap::Parser;
use kkp_shared::seedproxy::SeedproxyArgs;

/// Show or change the node proxy and registry settings of KKP Seeds (spec.datacenters.<dc>.node).
#[derive(Parser)]
#[command(name = "kubectl-kkp-seedproxy", bin_name = "kubectl kkp seedproxy", version)]
struct Cli {
    #[command(flatten)]
    args: SeedproxyArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    kubectl_kkp::init_logging(cli.args.common.verbose);
    match kkp_shared::seedproxy::run(&cli.args).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => kubectl_kkp::report(&e, e.exit_code()),
    }
}

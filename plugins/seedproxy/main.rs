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
    init_logging(cli.args.common.verbose);
    match kkp_shared::seedproxy::run(&cli.args).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => kubectl_kkp::report(&e, e.exit_code()),
    }
}

/// kube-client logs every failed request at ERROR before we report it once, kubectl-style; keep it
/// quiet unless asked for (`-vv`, or `RUST_LOG`).
fn init_logging(verbose: u8) {
    if verbose >= 2 || std::env::var_os("RUST_LOG").is_some() {
        return kubectl_kkp::init_logging(verbose);
    }
    let level = if verbose == 1 { "info" } else { "warn" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "{level},kube_client=off"
        )))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

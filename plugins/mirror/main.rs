//! `kubectl-kkp-mirror`: parse, run, map to an exit code. Everything else is in `kkp_shared::mirror`.

use std::process::ExitCode;

use clap::Parser;
use kkp_shared::mirror::MirrorArgs;

/// Find every image a KKP install needs and mirror it to a private registry or an archive.
#[derive(Parser)]
#[command(name = "kubectl-kkp-mirror", bin_name = "kubectl kkp mirror", version)]
struct Cli {
    #[command(flatten)]
    args: MirrorArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(kkp_shared::cli::rewrite_legacy_args(std::env::args_os()));
    kubectl_kkp::init_logging(cli.args.common.verbose);
    match kkp_shared::mirror::run(&cli.args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => kubectl_kkp::report(&e, e.exit_code()),
    }
}

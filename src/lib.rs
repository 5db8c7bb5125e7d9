//! Helpers the plugin binaries share: logging set-up and error reporting. No command logic lives here.

use std::process::ExitCode;

/// Sends `tracing` output to stderr; `-v` raises the level, `RUST_LOG` overrides it.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Prints `error: <message>` (with its causes) on one line of stderr and returns `code`.
pub fn report(err: &dyn std::error::Error, code: u8) -> ExitCode {
    let mut msg = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !msg.contains(&s) {
            msg.push_str(": ");
            msg.push_str(&s);
        }
        cause = c.source();
    }
    eprintln!("error: {msg}");
    ExitCode::from(code)
}

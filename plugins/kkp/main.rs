//! `kubectl-kkp`: dispatches `kubectl kkp mirror|retarget|seedproxy` to the sibling binaries.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(sub) = args.next() else {
        eprintln!("usage: kubectl kkp mirror|retarget|seedproxy [flags]");
        return ExitCode::from(2);
    };
    let sub = sub.to_string_lossy().into_owned();
    if !["mirror", "retarget", "seedproxy"].contains(&sub.as_str()) {
        eprintln!("error: unknown command {sub:?}; expected mirror, retarget or seedproxy");
        return ExitCode::from(2);
    }
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(format!("kubectl-kkp-{sub}"))));
    let exe = exe
        .filter(|p| p.exists())
        .unwrap_or_else(|| format!("kubectl-kkp-{sub}").into());
    match Command::new(&exe).args(args).status() {
        Ok(s) => ExitCode::from(s.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("error: running {}: {e}", exe.display());
            ExitCode::from(1)
        }
    }
}

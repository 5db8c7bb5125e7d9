//! Helpers the plugin binaries share: logging set-up and error reporting. No command logic lives here.

use std::process::ExitCode;

/// Sends `tracing` output to stderr; `-v` raises the level, `RUST_LOG` overrides it.
///
/// kube-client logs every failed request at ERROR before we report it once, kubectl-style; it is kept
/// quiet below `-vv`.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn,kube_client=off",
        1 => "info,kube_client=off",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Prints `error: <message>: <cause>: …` on stderr (each cause by its first line) and returns `code`.
pub fn report(err: &dyn std::error::Error, code: u8) -> ExitCode {
    // Causes that render a multi-line snippet (YAML parsers) contribute their first line; the message
    // itself is ours and may list several items on purpose.
    let first_line = |s: String| s.lines().next().unwrap_or_default().trim_end().to_string();
    let mut msg = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let s = first_line(c.to_string());
        if !s.is_empty() && !msg.contains(&s) {
            msg.push_str(": ");
            msg.push_str(&s);
        }
        cause = c.source();
    }
    eprintln!("error: {msg}");
    ExitCode::from(code)
}

/// The `kubectl-kkp` dispatcher: which tools exist, where their binaries are, help and completion.
///
/// The dispatcher never parses a tool's flags: `kubectl kkp mirror …` hands everything after `mirror`
/// verbatim to `kubectl-kkp-mirror`, so the tool alone decides what its arguments mean.
pub mod dispatch {
    use std::ffi::{OsStr, OsString};
    use std::io;
    use std::path::{Path, PathBuf};
    use std::process::{Command, ExitCode};

    use clap::{Arg, ArgAction, Args, ValueHint};

    /// The tools `kubectl kkp <tool>` runs, with their one-line descriptions.
    pub const TOOLS: &[(&str, &str)] = &[
        (
            "mirror",
            "Find every image a KKP install needs and mirror it to a private registry or an archive",
        ),
        (
            "retarget",
            "Point a KKP install at the private registry the images were mirrored to",
        ),
        ("seedproxy", "Give seed clusters a proxy to the private registry"),
        (
            "audit",
            "Prove a running install is offline: every image comes from the mirror and is there",
        ),
    ];

    /// `kubectl-kkp v<version>`: what `kubectl kkp version` prints.
    pub fn version_line() -> String {
        format!("kubectl-kkp v{}", env!("CARGO_PKG_VERSION"))
    }

    /// True when Helm runs us as the `helm kkp` plugin (Helm sets `HELM_PLUGIN_NAME`).
    pub fn in_helm() -> bool {
        std::env::var_os("HELM_PLUGIN_NAME").is_some()
    }

    /// The command tree for help: tools take any arguments, which are passed on untouched.
    /// `bin_name` is how the user invoked us (`kubectl kkp` or `helm kkp`).
    pub fn command(bin_name: &str) -> clap::Command {
        let mut cmd = base(bin_name);
        for (name, about) in TOOLS {
            cmd = cmd.subcommand(
                clap::Command::new(*name)
                    .about(*about)
                    .disable_help_flag(true)
                    .disable_version_flag(true)
                    .arg(
                        Arg::new("args")
                            .num_args(0..)
                            .trailing_var_arg(true)
                            .allow_hyphen_values(true)
                            .value_parser(clap::value_parser!(OsString))
                            .help("Passed unchanged to the tool; see `--help` of the tool"),
                    ),
            );
        }
        cmd
    }

    /// The command tree for shell completion: like [`command`], but each tool with its real flags.
    pub fn completion_command() -> clap::Command {
        let mut cmd = base("kubectl-kkp");
        for (name, about) in TOOLS {
            let tool = clap::Command::new(*name);
            let tool = match *name {
                "mirror" => kkp_shared::mirror::MirrorArgs::augment_args(tool),
                "audit" => kkp_shared::audit::AuditArgs::augment_args(tool),
                _ => tool,
            };
            cmd = cmd.subcommand(tool.about(*about));
        }
        cmd
    }

    fn base(bin_name: &str) -> clap::Command {
        clap::Command::new("kubectl-kkp")
            .bin_name(bin_name.to_string())
            .display_name("kubectl-kkp")
            .version(concat!("v", env!("CARGO_PKG_VERSION")))
            .about("Take a Kubermatic Kubernetes Platform (KKP) install fully offline")
            .subcommand_required(true)
            .arg_required_else_help(true)
            .subcommand(clap::Command::new("version").about("Print the version of kubectl-kkp"))
            .subcommand(
                clap::Command::new("completion")
                    .about("Print a completion script for kubectl-kkp (bash, zsh or fish)")
                    .arg(
                        Arg::new("shell")
                            .required(true)
                            .value_parser(["bash", "zsh", "fish"]),
                    ),
            )
            .subcommand(
                clap::Command::new("__complete")
                    .hide(true)
                    .about("Completion candidates for `kubectl kkp WORDS…` (kubectl's plugin protocol)")
                    .arg(
                        Arg::new("words")
                            .num_args(0..)
                            .trailing_var_arg(true)
                            .allow_hyphen_values(true)
                            .action(ArgAction::Append),
                    ),
            )
    }

    /// Where the binary of `tool` is: next to the running `kubectl-kkp` (symlinks resolved, so a
    /// krew link finds its store directory), else whatever `kubectl-kkp-<tool>` resolves to on PATH.
    pub fn locate_tool(tool: &str) -> PathBuf {
        let file = format!("kubectl-kkp-{tool}{}", std::env::consts::EXE_SUFFIX);
        let sibling = std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .ok()
            .and_then(|p| p.parent().map(|d| d.join(&file)))
            .filter(|p| p.is_file());
        sibling.unwrap_or_else(|| PathBuf::from(file))
    }

    /// Flags Helm took away from a `helm kkp <tool>` call, rebuilt from the variables Helm sets:
    /// `HELM_NAMESPACE` → `--namespace`, `HELM_KUBECONTEXT` → `--context`, a single-path
    /// `KUBECONFIG` → `--kubeconfig` (a path list stays in the environment, where the tool reads it).
    /// A flag the user passed anyway is not added twice.
    pub fn helm_flags(args: &[OsString], env: impl Fn(&str) -> Option<OsString>) -> Vec<OsString> {
        let given = |long: &str, short: Option<&str>| {
            args.iter().filter_map(|a| a.to_str()).any(|a| {
                a == long
                    || a.strip_prefix(long).is_some_and(|rest| rest.starts_with('='))
                    || short.is_some_and(|s| a.starts_with(s))
            })
        };
        let set = |name: &str| env(name).filter(|v| !v.is_empty());
        let mut out = Vec::new();
        if let Some(ns) = set("HELM_NAMESPACE").filter(|_| !given("--namespace", Some("-n"))) {
            out.push("--namespace".into());
            out.push(ns);
        }
        if let Some(ctx) = set("HELM_KUBECONTEXT").filter(|_| !given("--context", None)) {
            out.push("--context".into());
            out.push(ctx);
        }
        if let Some(kc) = set("KUBECONFIG").filter(|_| !given("--kubeconfig", None))
            && std::env::split_paths(&kc).count() == 1
        {
            out.push("--kubeconfig".into());
            out.push(kc);
        }
        out
    }

    /// Runs `tool` with `args` and returns its exit code (on Unix the process is replaced).
    pub fn run_tool(tool: &str, args: &[OsString]) -> ExitCode {
        let exe = locate_tool(tool);
        let mut full: Vec<OsString> = Vec::new();
        if in_helm() {
            full.extend(helm_flags(args, |k| std::env::var_os(k)));
        }
        full.extend(args.iter().cloned());
        tracing::debug!(
            "running {} {}",
            exe.display(),
            full.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut cmd = Command::new(&exe);
        cmd.args(&full);
        match exec(cmd) {
            Ok(code) => ExitCode::from(code),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                eprintln!(
                    "error: {} was found neither next to kubectl-kkp nor on PATH; install the whole kubectl-kkp archive",
                    file_name(&exe).to_string_lossy()
                );
                ExitCode::from(127)
            }
            Err(e) => {
                eprintln!("error: running {}: {e}", exe.display());
                ExitCode::from(126)
            }
        }
    }

    fn file_name(p: &Path) -> &OsStr {
        p.file_name().unwrap_or(p.as_os_str())
    }

    #[cfg(unix)]
    fn exec(mut cmd: Command) -> io::Result<u8> {
        use std::os::unix::process::CommandExt;
        Err(cmd.exec())
    }

    #[cfg(not(unix))]
    fn exec(mut cmd: Command) -> io::Result<u8> {
        let status = cmd.status()?;
        Ok(status.code().unwrap_or(1).clamp(0, 255) as u8)
    }

    /// What a shell should do besides offering the candidates (cobra's `ShellCompDirective`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Directive {
        /// Offer the candidates and fall back to file names.
        Files = 0,
        /// Offer only the candidates.
        NoFiles = 4,
    }

    /// Completion candidates (`name` or `name\tdescription`) for `kubectl kkp <words>`, the last word
    /// being the one under the cursor (empty when the cursor follows a space).
    pub fn complete(words: &[String]) -> (Vec<String>, Directive) {
        let mut root = completion_command();
        root.build();
        let (current, done) = match words.split_last() {
            Some((c, d)) => (c.as_str(), d),
            None => ("", &[][..]),
        };
        let mut cmd = &root;
        let mut pending: Option<&Arg> = None;
        for w in done {
            if pending.take().is_some() {
                continue;
            }
            if let Some(long) = w.strip_prefix("--") {
                if !long.contains('=') {
                    pending = find_long(cmd, long).filter(|a| takes_value(a));
                }
            } else if let Some(shorts) = w.strip_prefix('-').filter(|s| !s.is_empty()) {
                let last = shorts.chars().last();
                pending = cmd
                    .get_arguments()
                    .find(|a| a.get_short().is_some() && a.get_short() == last)
                    .filter(|a| takes_value(a) && shorts.len() == 1);
            } else if let Some(sub) = cmd.find_subcommand(w) {
                cmd = sub;
            }
        }
        if let Some(arg) = pending {
            return values(arg, current, "");
        }
        if let Some(long) = current.strip_prefix("--")
            && let Some((name, value)) = long.split_once('=')
        {
            return match find_long(cmd, name) {
                Some(arg) => values(arg, value, &format!("--{name}=")),
                None => (Vec::new(), Directive::NoFiles),
            };
        }
        if current.starts_with('-') {
            let mut out: Vec<String> = cmd
                .get_arguments()
                .filter(|a| !a.is_hide_set())
                .filter_map(|a| {
                    let long = a.get_long()?;
                    Some(describe(&format!("--{long}"), a.get_help()))
                })
                .filter(|c| c.starts_with(current))
                .collect();
            out.sort();
            return (out, Directive::NoFiles);
        }
        let subs: Vec<String> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            .filter(|s| s.get_name().starts_with(current))
            .map(|s| describe(s.get_name(), s.get_about()))
            .collect();
        if cmd.has_subcommands() {
            return (subs, Directive::NoFiles);
        }
        match cmd.get_positionals().next() {
            Some(p) => values(p, current, ""),
            None => (Vec::new(), Directive::NoFiles),
        }
    }

    fn find_long<'a>(cmd: &'a clap::Command, long: &str) -> Option<&'a Arg> {
        cmd.get_arguments().find(|a| a.get_long() == Some(long))
    }

    fn takes_value(arg: &Arg) -> bool {
        arg.get_num_args().is_some_and(|n| n.takes_values())
    }

    fn values(arg: &Arg, current: &str, prefix: &str) -> (Vec<String>, Directive) {
        let possible = arg.get_possible_values();
        if !possible.is_empty() {
            let out = possible
                .iter()
                .filter(|v| !v.is_hide_set() && v.get_name().starts_with(current))
                .map(|v| describe(&format!("{prefix}{}", v.get_name()), v.get_help()))
                .collect();
            return (out, Directive::NoFiles);
        }
        let file_like = matches!(
            arg.get_value_hint(),
            ValueHint::AnyPath | ValueHint::FilePath | ValueHint::DirPath | ValueHint::ExecutablePath
        ) || arg.get_value_names().is_some_and(|names| {
            names
                .iter()
                .any(|n| matches!(n.as_str(), "FILE" | "DIR" | "PATH"))
        });
        let directive = if file_like {
            Directive::Files
        } else {
            Directive::NoFiles
        };
        (Vec::new(), directive)
    }

    fn describe(name: &str, help: Option<&clap::builder::StyledStr>) -> String {
        match help.map(|h| h.to_string()) {
            Some(h) if !h.is_empty() => {
                let first = h.lines().next().unwrap_or_default().trim_end_matches('.');
                format!("{name}\t{first}")
            }
            _ => name.to_string(),
        }
    }

    /// Writes a completion script for `kubectl-kkp` in `shell` (`bash`, `zsh`, `fish`).
    pub fn write_completion(shell: &str, out: &mut dyn io::Write) -> Result<(), String> {
        use clap_complete::Shell;
        let shell = match shell {
            "bash" => Shell::Bash,
            "zsh" => Shell::Zsh,
            "fish" => Shell::Fish,
            other => return Err(format!("unsupported shell {other:?}; use bash, zsh or fish")),
        };
        let mut cmd = completion_command();
        clap_complete::generate(shell, &mut cmd, "kubectl-kkp", out);
        Ok(())
    }

    /// The whole of `kubectl-kkp`: dispatch `args` (without the program name) and return the exit code.
    pub fn main(args: Vec<OsString>) -> ExitCode {
        if let Some(first) = args.first().and_then(|a| a.to_str())
            && TOOLS.iter().any(|(name, _)| *name == first)
        {
            return run_tool(first, &args[1..]);
        }
        let bin_name = if in_helm() { "helm kkp" } else { "kubectl kkp" };
        let argv = std::iter::once(OsString::from(bin_name)).chain(args);
        let matches = match command(bin_name).try_get_matches_from(argv) {
            Ok(m) => m,
            Err(e) => {
                let _ = e.print();
                return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
            }
        };
        match matches.subcommand() {
            Some(("version", _)) => {
                println!("{}", version_line());
                ExitCode::SUCCESS
            }
            Some(("completion", m)) => {
                let shell = m.get_one::<String>("shell").map_or("", String::as_str);
                let mut stdout = io::stdout().lock();
                match write_completion(shell, &mut stdout) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::from(2)
                    }
                }
            }
            Some(("__complete", m)) => {
                let words: Vec<String> = m
                    .get_many::<String>("words")
                    .map(|w| w.cloned().collect())
                    .unwrap_or_default();
                let (candidates, directive) = complete(&words);
                for c in candidates {
                    println!("{c}");
                }
                println!(":{}", directive as u8);
                ExitCode::SUCCESS
            }
            Some((tool, m)) => {
                let rest: Vec<OsString> = m
                    .get_many::<OsString>("args")
                    .map(|a| a.cloned().collect())
                    .unwrap_or_default();
                run_tool(tool, &rest)
            }
            None => ExitCode::from(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::ffi::OsString;

    use super::dispatch::{Directive, complete, helm_flags};

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn helm(args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
        let env: HashMap<String, OsString> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        helm_flags(&os(args), |k| env.get(k).cloned())
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn helm_variables_become_kubectl_flags() {
        let env = [
            ("HELM_NAMESPACE", "kubermatic"),
            ("HELM_KUBECONTEXT", "seed-1"),
            ("KUBECONFIG", "/tmp/kc.yaml"),
        ];
        assert_eq!(
            helm(&["--dry-run"], &env),
            [
                "--namespace",
                "kubermatic",
                "--context",
                "seed-1",
                "--kubeconfig",
                "/tmp/kc.yaml"
            ]
        );
    }

    #[test]
    fn helm_flags_the_user_gave_are_not_doubled() {
        let env = [
            ("HELM_NAMESPACE", "a"),
            ("HELM_KUBECONTEXT", "b"),
            ("KUBECONFIG", "/c"),
        ];
        assert!(helm(&["-nx", "--context=y", "--kubeconfig", "z"], &env).is_empty());
        assert_eq!(helm(&["--namespace", "x"], &env)[..2], ["--context", "b"]);
    }

    #[test]
    fn helm_empty_variables_and_kubeconfig_lists_are_left_alone() {
        let list = std::env::join_paths(["/a", "/b"]).unwrap();
        let list = list.to_str().unwrap();
        let env = [
            ("HELM_NAMESPACE", ""),
            ("HELM_KUBECONTEXT", ""),
            ("KUBECONFIG", list),
        ];
        assert!(helm(&[], &env).is_empty());
    }

    fn names(words: &[&str]) -> (Vec<String>, Directive) {
        let words: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        let (c, d) = complete(&words);
        (
            c.into_iter()
                .map(|c| c.split('\t').next().unwrap().to_string())
                .collect(),
            d,
        )
    }

    #[test]
    fn completes_commands_flags_and_values() {
        assert_eq!(
            names(&[""]),
            (
                vec![
                    "version".into(),
                    "completion".into(),
                    "mirror".into(),
                    "retarget".into(),
                    "seedproxy".into(),
                    "audit".into()
                ],
                Directive::NoFiles
            )
        );
        assert_eq!(names(&["se"]).0, ["seedproxy"]);
        assert_eq!(names(&["audit", "--user-"]).0, ["--user-clusters"]);
        assert_eq!(names(&["completion", ""]).0, ["bash", "zsh", "fish"]);
        assert_eq!(names(&["mirror", "--con"]).0, ["--config", "--context"]);
        assert_eq!(names(&["mirror", "-o", "j"]).0, ["json"]);
        assert_eq!(names(&["mirror", "--output", "y"]).0, ["yaml"]);
        assert_eq!(
            names(&["mirror", "--output=t"]).0,
            ["--output=table", "--output=text"]
        );
        // A file-valued flag lets the shell complete file names.
        assert_eq!(names(&["mirror", "--config", ""]), (vec![], Directive::Files));
        // Values already given do not confuse the walk.
        assert_eq!(names(&["mirror", "-n", "ns", "--dry-r"]).0, ["--dry-run"]);
        assert!(names(&["mirror", "--"]).0.iter().all(|f| f.starts_with("--")));
        assert!(
            !names(&["mirror", "--"]).0.contains(&"--registry".to_string()),
            "hidden flags stay hidden"
        );
    }
}

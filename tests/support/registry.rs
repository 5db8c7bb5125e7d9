//! A real registry for tests: Debian's `docker-registry` (CNCF distribution 2.8) on 127.0.0.1, with a
//! temporary storage directory, optionally TLS (a CA and server certificate made with `openssl`) and
//! htpasswd basic auth (`htpasswd -Bbn`). Killed when dropped. Also: an independent look at what the
//! registry holds, through `skopeo` and through its storage directory.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// How to start the registry.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Serve HTTPS with a certificate signed by a fresh CA.
    pub tls: bool,
    /// Require basic auth for this user and password.
    pub htpasswd: Option<(String, String)>,
}

/// A running registry.
pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub host: String,
    /// Temp dir with config, storage, certificates.
    pub dir: TempDir,
    /// The CA certificate (PEM) when TLS is on.
    pub ca: Option<PathBuf>,
    /// The user and password when auth is on.
    pub creds: Option<(String, String)>,
    child: Child,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = dir.join("ca.key");
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir).unwrap();
    let ca = ca_dir.join("ca.crt");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let crt = dir.join("server.crt");
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_string();
    run_ok(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=kkp-test-ca",
        "-keyout",
        &p(&ca_key),
        "-out",
        &p(&ca),
    ]));
    run_ok(Command::new("openssl").args([
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p(&key),
        "-out",
        &p(&csr),
    ]));
    run_ok(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(&ca),
        "-CAkey",
        &p(&ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p(&ext),
        "-out",
        &p(&crt),
    ]));
    (ca, crt, key)
}

impl Registry {
    /// A plain-HTTP registry without auth.
    pub fn start() -> Registry {
        Registry::start_with(Options::default())
    }

    /// A registry with the given options.
    pub fn start_with(opts: Options) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("kkp-registry-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: kkp-test-secret\n",
            storage.display()
        );
        let mut ca = None;
        if opts.tls {
            let (ca_crt, crt, key) = make_certs(dir.path());
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                crt.display(),
                key.display()
            ));
            ca = Some(ca_crt);
        }
        if let Some((user, pass)) = &opts.htpasswd {
            let line = run_ok(Command::new("htpasswd").args(["-Bbn", user, pass]));
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, line).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kkp-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry is installed (apt-get install docker-registry)");
        let mut reg = Registry {
            host,
            dir,
            ca,
            creds: opts.htpasswd,
            child,
        };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}): {}", self.log());
            }
            if TcpStream::connect(&self.host).is_ok() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "registry did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Flags skopeo needs to talk to this registry.
    pub fn skopeo_flags(&self) -> Vec<String> {
        let mut f = Vec::new();
        match &self.ca {
            Some(ca) => f.push(format!("--cert-dir={}", ca.parent().unwrap().display())),
            None => f.push("--tls-verify=false".into()),
        }
        if let Some((u, p)) = &self.creds {
            f.push(format!("--creds={u}:{p}"));
        }
        f
    }

    /// The raw manifest bytes of `repo:reference` as `skopeo inspect --raw` reads them, or `None`.
    pub fn skopeo_raw(&self, repo: &str, reference: &str) -> Option<Vec<u8>> {
        let sep = if reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        let out = Command::new("skopeo")
            .arg("inspect")
            .arg("--raw")
            .args(self.skopeo_flags())
            .arg(format!("docker://{}/{repo}{sep}{reference}", self.host))
            .output()
            .expect("skopeo is installed");
        out.status.success().then_some(out.stdout)
    }

    /// The digest of `repo:reference` as skopeo sees it (sha256 of the raw manifest), or `None`.
    pub fn skopeo_digest(&self, repo: &str, reference: &str) -> Option<String> {
        self.skopeo_raw(repo, reference)
            .map(|raw| format!("sha256:{}", hex::encode(Sha256::digest(&raw))))
    }

    /// True when the storage holds the blob's data (independent of any client).
    pub fn has_blob(&self, digest: &str) -> bool {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
            .is_file()
    }

    /// Number of blob data files in the storage.
    pub fn blob_count(&self) -> usize {
        let root = self.dir.path().join("storage/docker/registry/v2/blobs/sha256");
        let Ok(prefixes) = std::fs::read_dir(root) else {
            return 0;
        };
        prefixes
            .flatten()
            .flat_map(|p| std::fs::read_dir(p.path()).into_iter().flatten().flatten())
            .filter(|d| d.path().join("data").is_file())
            .count()
    }

    /// The digest the tag points to, read from the storage (independent of any client).
    pub fn tag_link(&self, repo: &str, tag: &str) -> Option<String> {
        let p = self
            .dir
            .path()
            .join("storage/docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/tags")
            .join(tag)
            .join("current/link");
        std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

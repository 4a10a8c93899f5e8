//! The release images on the test node, pulled for real: `images/build.sh` builds the
//! webhook image (from the release binary) and the default workspace image (cached
//! outside the repository by their inputs, in `~/.cache/devenv-release-images/KEY`; a
//! cold build is a minute or two), [`Registry`] runs Debian's `docker-registry` on
//! `127.0.0.1` (a free port, storage in a temporary directory), `images/build.sh push`
//! copies both there with `skopeo`, and `node.sh registry` lets the node's containerd
//! pull from it, for the registry's own names (`127.0.0.1:PORT/devenv-io/...`) and for
//! the release's names (`ghcr.io/devenv-io/...`), which it serves from the loopback
//! registry too: nothing is ever pulled from the internet.
//!
//! Nothing here depends on the cache: without it, everything is built.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::node::{node_script, Node};
use crate::webhook::{free_port, spawn_watchdog, target_dir};

/// The repository root (`tests/..`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The registry host whose names the node serves from the loopback registry: the one
/// the release images are published under (`devenv_shared::build::images::REGISTRY`).
pub const RELEASE_REGISTRY_HOST: &str = "ghcr.io";

/// What `images/build.sh` built (its `images.env`).
#[derive(Debug, Clone)]
pub struct ReleaseImages {
    /// The build's output directory (OCI and docker archives, `images.env`).
    pub dir: PathBuf,
    pub version: String,
    /// `ghcr.io/devenv-io/devenv-webhook:VERSION`, as built.
    pub webhook: String,
    /// `ghcr.io/devenv-io/workspace:VERSION`, as built.
    pub workspace: String,
    pub webhook_digest: String,
    pub workspace_digest: String,
    /// Compressed (registry) size of the webhook image: config and layers.
    pub webhook_bytes: u64,
    pub workspace_bytes: u64,
}

/// `cargo build --release -p devenv-webhook` (nothing to do when it is fresh), then
/// `images/build.sh --webhook-binary target/release/devenv-webhook` (reused from the
/// cache when its inputs are unchanged).
pub fn build_images() -> Result<ReleaseImages> {
    let t0 = Instant::now();
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    without_cargo_test_env(&mut cargo);
    let out = cargo
        .args(["build", "--release", "-p", "devenv-webhook"])
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .context("running cargo build --release -p devenv-webhook")?;
    if !out.status.success() {
        bail!(
            "cargo build --release -p devenv-webhook failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let binary = target_dir().join("release/devenv-webhook");
    let out = Command::new("bash")
        .arg(repo_root().join("images/build.sh"))
        .arg("--webhook-binary")
        .arg(&binary)
        .stdin(Stdio::null())
        .output()
        .context("running images/build.sh")?;
    if !out.status.success() {
        bail!(
            "images/build.sh failed ({}): run images/install-deps.sh (CI's .ci/run does)\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = PathBuf::from(
        stdout
            .lines()
            .last()
            .context("images/build.sh printed nothing")?,
    );
    let env_file = dir.join("images.env");
    let env = std::fs::read_to_string(&env_file)
        .with_context(|| format!("reading {}", env_file.display()))?;
    let get = |key: &str| -> Result<String> {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .with_context(|| format!("{} has no {key}", env_file.display()))
    };
    let bytes = |key: &str| -> Result<u64> {
        get(key)?
            .parse()
            .with_context(|| format!("{key} in {}", env_file.display()))
    };
    let images = ReleaseImages {
        version: get("VERSION")?,
        webhook: get("WEBHOOK_IMAGE")?,
        workspace: get("WORKSPACE_IMAGE")?,
        webhook_digest: get("WEBHOOK_DIGEST")?,
        workspace_digest: get("WORKSPACE_DIGEST")?,
        webhook_bytes: bytes("WEBHOOK_COMPRESSED_BYTES")?,
        workspace_bytes: bytes("WORKSPACE_COMPRESSED_BYTES")?,
        dir,
    };
    eprintln!(
        "devenv-e2e: release images in {:.1}s: {} ({} B), {} ({} B)",
        t0.elapsed().as_secs_f64(),
        images.webhook,
        images.webhook_bytes,
        images.workspace,
        images.workspace_bytes
    );
    Ok(images)
}

/// Removes from `cmd`'s environment what `cargo test` sets for this test binary
/// (CARGO_MANIFEST_DIR=tests, ...): build scripts that watch those (ring's does) would
/// otherwise make every release build from a test, and every one from a shell after it,
/// a full rebuild.
fn without_cargo_test_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if let Some(k) = key.to_str() {
            if (k.starts_with("CARGO_") && k != "CARGO_HOME" && k != "CARGO_TARGET_DIR")
                || k == "OUT_DIR"
            {
                cmd.env_remove(k);
            }
        }
    }
}

/// Removes every name the node's containerd (`k8s.io` namespace, the CRI's) keeps for
/// the image whose manifest digest is `digest`, so the next pod using it pulls it again
/// (the CRI plugin sees the deletions as image events). Returns how many names went.
pub fn forget_image(node: &Node, digest: &str) -> Result<usize> {
    let ctr = |args: &[&str]| -> Result<String> {
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&node.containerd_socket)
            .args(["-n", "k8s.io"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running ctr (tests/cluster/node/install-deps.sh installs it)")?;
        if !out.status.success() {
            bail!(
                "ctr {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // REF TYPE DIGEST SIZE PLATFORMS LABELS
    let listing = ctr(&["images", "ls"])?;
    let names: Vec<&str> = listing
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == digest).then_some(f[0])
        })
        .collect();
    if !names.is_empty() {
        let mut args = vec!["images", "rm", "--sync"];
        args.extend(names.iter().copied());
        ctr(&args)?;
    }
    Ok(names.len())
}

/// Debian's `docker-registry` (the CNCF distribution registry) on `127.0.0.1:PORT`,
/// plain HTTP, storage in a temporary directory. Dropping it stops it; a watchdog
/// stops it when the test process is gone.
#[derive(Debug)]
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    child: Child,
    _watchdog: Option<Child>,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts it and waits until `/v2/` answers.
    pub fn start() -> Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("devenv-registry-")
            .tempdir()
            .context("creating the registry's directory")?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("storage").display()
            ),
        )
        .context("writing the registry's config")?;
        let log = std::fs::File::create(dir.path().join("registry.log"))
            .context("creating the registry's log")?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("the registry's log")?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry (run images/install-deps.sh)")?;
        let watchdog = spawn_watchdog("devenv-registry-watchdog", child.id(), &config);
        let mut registry = Registry {
            addr,
            child,
            _watchdog: watchdog,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if registry.answers() {
                break;
            }
            if let Ok(Some(status)) = registry.child.try_wait() {
                bail!("docker-registry exited ({status}):\n{}", registry.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "docker-registry did not answer on {} in 20s:\n{}",
                    registry.addr,
                    registry.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(registry)
    }

    /// `GET /v2/` answers 200.
    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = TcpStream::connect(&self.addr) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        s.read(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200")
    }

    /// Where the registry keeps blob `sha256:HEX` on disk (to damage it on purpose).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(hex.get(..2).unwrap_or_default())
            .join(hex)
            .join("data")
    }

    /// The registry's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `./release.sh 127.0.0.1:PORT/PREFIX --tls-verify=false` with `DIST=dist`, as a
    /// platform team cuts a release: the krew archives this machine can build and their
    /// manifest in `dist`, both images pushed as
    /// `127.0.0.1:PORT/PREFIX/{devenv-webhook,workspace}:VERSION`, `dist/images.env`.
    /// Returns the registry prefix and the script's output (its exit status is 1 when a
    /// cross platform could not be built: the caller judges that).
    pub fn release(&self, prefix: &str, dist: &Path) -> Result<(String, std::process::Output)> {
        let target = format!("{}/{prefix}", self.addr);
        let mut cmd = Command::new("bash");
        without_cargo_test_env(&mut cmd);
        let out = cmd
            .arg(repo_root().join("release.sh"))
            .arg(&target)
            .arg("--tls-verify=false")
            .env("DIST", dist)
            .stdin(Stdio::null())
            .output()
            .context("running ./release.sh")?;
        Ok((target, out))
    }

    /// `node.sh registry DIR 127.0.0.1:PORT ghcr.io`: the node pulls from here, both
    /// this registry's names and the release registry's.
    pub fn serve_node(&self, node: &Node) -> Result<()> {
        let out = Command::new("bash")
            .arg(node_script())
            .arg("registry")
            .arg(&node.dir)
            .arg(&self.addr)
            .arg(RELEASE_REGISTRY_HOST)
            .stdin(Stdio::null())
            .output()
            .context("running node.sh registry")?;
        if !out.status.success() {
            bail!(
                "node.sh registry failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

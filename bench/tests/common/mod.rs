//! Shared helpers of the fault tests: certificates, a `devenv-webhook` child process, load.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use devenv_bench::{tls, Fixture, LoadConfig, Target};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};

/// Serialises the tests of one binary: each starts a webhook and drives load, and
/// on 2 cores timing assertions need the machine to themselves.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The `devenv-webhook` binary: `$DEVENV_WEBHOOK_BIN`, else
/// `target/<profile>/devenv-webhook`, (re)built first with `cargo build -p devenv-webhook`
/// so that the tests never run a stale binary.
pub fn webhook_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("DEVENV_WEBHOOK_BIN") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/faults-<hash>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "devenv-webhook", "--bin", "devenv-webhook"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "cargo build -p devenv-webhook failed");
        let bin = profile_dir.join("devenv-webhook");
        assert!(bin.exists(), "{} missing", bin.display());
        bin
    })
    .clone()
}

/// A CA that signs serving certificates.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A serving certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub serial: u64,
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A serving certificate for 127.0.0.1 with this serial number.
    pub fn leaf(&self, serial: u64) -> Leaf {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "devenv-webhook");
        params.serial_number = Some(SerialNumber::from(serial));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial,
        }
    }
}

/// Writes `tls.crt` and `tls.key` in place, one after the other (not atomically).
pub fn write_in_place(dir: &Path, leaf: &Leaf) {
    std::fs::write(dir.join("tls.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &leaf.key_pem).unwrap();
}

/// Updates the directory the way the kubelet updates a mounted Secret: the files are
/// symlinks through `..data`, which is swapped atomically to a new timestamped directory.
pub fn write_like_kubelet(dir: &Path, leaf: &Leaf, generation: u32) {
    use std::os::unix::fs::symlink;
    let ts = format!("..gen_{generation}");
    let ts_dir = dir.join(&ts);
    std::fs::create_dir_all(&ts_dir).unwrap();
    std::fs::write(ts_dir.join("tls.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(ts_dir.join("tls.key"), &leaf.key_pem).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&ts, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        let link = dir.join(f);
        if std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            continue;
        }
        let _ = std::fs::remove_file(&link);
        symlink(Path::new("..data").join(f), &link).unwrap();
    }
}

/// A free port on 127.0.0.1.
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A running `devenv-webhook serve`, its output collected.
pub struct Webhook {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: Arc<Mutex<String>>,
    pub stdout: Arc<Mutex<String>>,
}

fn collect(stream: impl std::io::Read + Send + 'static, sink: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
            s.push_str(&line);
            s.push('\n');
        }
    });
}

impl Webhook {
    /// Starts the webhook on a free port and waits until it answers over TLS.
    pub async fn start(cert_dir: &Path, ca_pem: &str, extra: &[&str]) -> Webhook {
        let addr = free_addr();
        let mut child = Command::new(webhook_bin())
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--cert-dir")
            .arg(cert_dir)
            .args(["--kube", "off"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        collect(child.stderr.take().unwrap(), stderr.clone());
        collect(child.stdout.take().unwrap(), stdout.clone());
        let mut hook = Webhook {
            child,
            addr,
            stderr,
            stdout,
        };
        let config = tls::client_config_from_pems(&[ca_pem]).unwrap();
        let target = hook.target();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = hook.child.try_wait() {
                panic!("webhook exited early: {status}\n{}", hook.logs());
            }
            if tls::served_certificate(target.addr, &target.server_name, &config)
                .await
                .is_ok()
            {
                return hook;
            }
            assert!(
                Instant::now() < deadline,
                "webhook not serving after 20 s\n{}",
                hook.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn target(&self) -> Target {
        Target::parse(&format!("https://{}", self.addr)).unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn logs(&self) -> String {
        format!(
            "--- webhook stderr ---\n{}--- webhook stdout ---\n{}",
            self.stderr(),
            self.stdout.lock().unwrap_or_else(|p| p.into_inner())
        )
    }

    /// Waits up to `timeout` for `needle` in the webhook's stderr; panics otherwise,
    /// saying whether it went to stdout instead.
    pub async fn wait_for_stderr(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let on_stdout = self
            .stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(needle);
        panic!(
            "{needle:?} not logged to the webhook's stderr within {timeout:?}{}\n{}",
            if on_stdout {
                " (it was logged to stdout: logs must go to stderr)"
            } else {
                ""
            },
            self.logs()
        );
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls fresh handshakes until the served leaf has `der`, or panics after `timeout`.
    pub async fn wait_for_cert(
        &self,
        config: &Arc<rustls::ClientConfig>,
        der: &[u8],
        timeout: Duration,
    ) -> Duration {
        let target = self.target();
        let start = Instant::now();
        let want = tls::fingerprint(der);
        let mut last = String::new();
        while start.elapsed() < timeout {
            match tls::served_certificate(target.addr, &target.server_name, config).await {
                Ok(got) if tls::fingerprint(&got) == want => return start.elapsed(),
                Ok(got) => last = format!("still serving {}", tls::fingerprint(&got)),
                Err(e) => last = format!("handshake failed: {e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the new certificate {want} was not served within {timeout:?} ({last})\n{}",
            self.logs()
        );
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A load configuration against `hook` for `fixture` on `endpoint`.
pub fn load(hook: &Webhook, ca_pems: &[&str], endpoint: &str, fixture: &str) -> LoadConfig {
    let config = tls::client_config_from_pems(ca_pems).unwrap();
    let mut cfg = LoadConfig::new(
        hook.target(),
        config,
        endpoint,
        Fixture::load(fixture).unwrap(),
    );
    cfg.warmup = Duration::ZERO;
    cfg.request_timeout = Duration::from_secs(5);
    cfg
}

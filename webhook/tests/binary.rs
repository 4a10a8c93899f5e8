//! The `devenv-webhook` binary: signals, exit codes and `gen-certs`.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_devenv-webhook");

/// Kills the child if a test fails half-way.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` with JSON logs (on stderr) and waits for its "listening" line; returns the address
/// and a channel with the remaining log lines.
fn start_binary(
    cert_dir: &std::path::Path,
    extra: &[&str],
) -> (Proc, std::net::SocketAddr, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--kube",
            "off",
        ])
        .arg("--cert-dir")
        .arg(cert_dir)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn devenv-webhook");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("a 'listening' log line");
        let json: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        if json["message"] == "listening" {
            let addr = json["addr"]
                .as_str()
                .expect("addr field")
                .parse()
                .expect("addr");
            return (proc, addr, rx);
        }
    }
}

fn kill_term(proc: &Proc) {
    let status = Command::new("kill")
        .args(["-TERM", &proc.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// Waits without blocking the test's runtime, so that client connections keep answering
/// (an HTTP/2 graceful shutdown waits for the client's PING acknowledgement).
async fn wait_exit(proc: &mut Proc, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = proc.0.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_request_and_exits_0() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let (mut proc, addr, logs) = start_binary(dir.path(), &[]);

    // A slow request: headers and half the body now, the rest after SIGTERM.
    let body = review("uid-term", plain_pod());
    let stream = tls_connect(addr, client_config(&certs.ca_cert_pem, &[b"http/1.1"]))
        .await
        .expect("connect");
    let (mut rd, mut wr) = tokio::io::split(stream);
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    wr.write_all(head.as_bytes()).await.expect("head");
    let half = body.len() / 2;
    wr.write_all(&body[..half]).await.expect("half");
    wr.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(300)).await;

    kill_term(&proc);
    // Wait for the process to acknowledge the signal.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = logs.recv_timeout(left).expect("a shutdown log line");
        if line.contains("shutting down") {
            break;
        }
    }
    assert!(
        proc.0.try_wait().expect("try_wait").is_none(),
        "exited with a request in flight"
    );
    assert!(
        tls_connect(addr, client_config(&certs.ca_cert_pem, &[b"http/1.1"]))
            .await
            .is_err(),
        "still accepting connections after SIGTERM"
    );

    wr.write_all(&body[half..]).await.expect("rest");
    wr.flush().await.expect("flush");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut answer))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("uid-term"), "{text}");
    assert!(text.contains("connection: close"), "{text}");

    let status = wait_exit(&mut proc, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[tokio::test]
async fn sigterm_when_idle_exits_0_quickly() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let (mut proc, addr, _logs) = start_binary(dir.path(), &[]);
    let reply = send(addr, &certs.ca_cert_pem, "GET", "/healthz", Vec::new())
        .await
        .expect("healthz");
    assert_eq!(reply.status, 200);
    let started = Instant::now();
    kill_term(&proc);
    let status = wait_exit(&mut proc, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn bad_policy_file_refuses_to_start_with_the_field_in_the_error() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let policy = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(policy.path(), "defaultTier: huge\n").expect("write");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--kube", "off"])
        .arg("--cert-dir")
        .arg(dir.path())
        .arg("--policy")
        .arg(policy.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("defaultTier"), "{stderr}");
}

#[test]
fn gen_certs_writes_a_usable_pair() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args([
            "gen-certs",
            "--san",
            "localhost",
            "--san",
            "127.0.0.1",
            "--out",
        ])
        .arg(out_dir.path())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ca = std::fs::read_to_string(out_dir.path().join("ca.crt")).expect("ca.crt");
    let crt = std::fs::read_to_string(out_dir.path().join("tls.crt")).expect("tls.crt");
    let key = std::fs::read_to_string(out_dir.path().join("tls.key")).expect("tls.key");
    assert!(ca.contains("BEGIN CERTIFICATE"));
    assert!(key.contains("PRIVATE KEY"));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(out_dir.path().join("tls.key"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "tls.key readable by others: {mode:o}");
    // The pair verifies for both SANs against the CA.
    verify_server_cert(&ca, &crt, "localhost");
    verify_server_cert(&ca, &crt, "127.0.0.1");
}

#[test]
fn gen_certs_without_san_fails() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["gen-certs", "--out"])
        .arg(out_dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
}

fn verify_server_cert(ca_pem: &str, cert_pem: &str, name: &str) {
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("ca"))
        .expect("root");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider,
    )
    .build()
    .expect("verifier");
    let leaf = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("leaf");
    let server_name = ServerName::try_from(name.to_owned()).expect("name");
    verifier
        .verify_server_cert(&leaf, &[], &server_name, &[], UnixTime::now())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    // And not for a name it does not carry.
    let other = ServerName::try_from("example.com").expect("name");
    assert!(verifier
        .verify_server_cert(&leaf, &[], &other, &[], UnixTime::now())
        .is_err());
}

//! A fake Kubernetes API server on 127.0.0.1 (plain HTTP/1.1, std only) that
//! records every request and answers from a function, and a kubeconfig
//! pointing at it, so the real plugin binary can be run against it and the
//! exact requests it sends asserted. Nothing leaves the loopback interface.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// `METHOD /path` with the decoded query (`?k=v&...`) when there is one.
    pub fn line(&self) -> String {
        if self.query.is_empty() {
            format!("{} {}", self.method, self.path)
        } else {
            let q: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{} {}?{}", self.method, self.path, q.join("&"))
        }
    }

    /// The body as JSON (`Null` when empty).
    pub fn json(&self) -> Value {
        if self.body.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} sent a body that is not JSON: {e}", self.line()))
    }
}

type Responder = dyn Fn(&Request) -> (u16, Value) + Send + Sync;

/// The running server; it lives as long as the test process.
pub struct FakeApi {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    dir: tempfile::TempDir,
}

impl FakeApi {
    /// Starts a server answering every request with `respond(request)`:
    /// a status code and a JSON body.
    pub fn start(respond: impl Fn(&Request) -> (u16, Value) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Responder> = Arc::new(respond);
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, respond) = (log.clone(), respond.clone());
                std::thread::spawn(move || serve(stream, &log, respond.as_ref()));
            }
        });
        let dir = tempfile::tempdir().expect("temp dir");
        Self { url, requests, dir }
    }

    /// Every request so far, in the order they arrived.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("request log").clone()
    }

    /// A kubeconfig whose current context is this server, namespace `namespace`.
    pub fn kubeconfig(&self, namespace: &str) -> PathBuf {
        let path = self.dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
                 contexts:\n- name: fake\n  context: {{cluster: fake, user: fake, namespace: {namespace}}}\n\
                 clusters:\n- name: fake\n  cluster: {{server: \"{}\"}}\n\
                 users:\n- name: fake\n  user: {{token: fake-token}}\n",
                self.url
            ),
        )
        .expect("write kubeconfig");
        path
    }

    /// Runs the plugin binary against this server (context namespace
    /// `namespace`), stdin not a terminal, no proxy.
    pub fn run(&self, namespace: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(super::binary());
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig(namespace))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("DEVENV_INSTALL_NAMESPACE")
            .stdin(Stdio::null());
        for proxy in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
        ] {
            cmd.env_remove(proxy);
        }
        cmd.output().expect("the plugin binary runs")
    }
}

/// A `Status` body as the API server sends it.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": if code < 400 { "Success" } else { "Failure" },
        "reason": reason,
        "message": message,
        "code": code,
    })
}

fn serve(stream: TcpStream, log: &Mutex<Vec<Request>>, respond: &Responder) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    // HTTP/1.1 keep-alive: requests one after the other until the client closes.
    while let Some(request) = read_request(&mut reader) {
        log.lock().expect("request log").push(request.clone());
        let (code, body) = respond(&request);
        let body = body.to_string();
        let head = format!(
            "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            if code < 400 { "OK" } else { "Error" },
            body.len()
        );
        if writer.write_all(head.as_bytes()).is_err()
            || writer.write_all(body.as_bytes()).is_err()
            || writer.flush().is_err()
        {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
            assert!(
                !name.eq_ignore_ascii_case("transfer-encoding"),
                "the fake API server reads Content-Length bodies only"
            );
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q),
        None => (target.clone(), ""),
    };
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Some(Request {
        method,
        path,
        query,
        body,
    })
}

/// `a%2Fb+c` → `a/b c` (form encoding, as kube writes queries).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

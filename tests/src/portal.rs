//! The portal, `kubectl devenv ui --no-browser`, as a process, and the HTTP a browser
//! would send it: plain HTTP/1.1 on loopback, written here so every header (Host, Origin,
//! the token) is exactly what the test says, and its event stream read line by line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::plugin::devenv_command;
use crate::webhook::{kill_with_watchdog, spawn_watchdog};

/// A running `kubectl devenv ui`; killed when dropped (and by a watchdog if the test
/// process dies first).
pub struct Portal {
    child: Child,
    watchdog: Option<Child>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// This run's token, from the URL it printed.
    pub token: String,
    /// The URL it printed.
    pub url: String,
}

impl Portal {
    /// Starts `kubectl devenv --kubeconfig KUBECONFIG GLOBAL.. ui --no-browser --port 0
    /// UI..` and reads the URL it prints.
    pub fn start(kubeconfig: &Path, global: &[&str], ui: &[&str]) -> Portal {
        let mut cmd = devenv_command(kubeconfig);
        cmd.args(global)
            .args(["ui", "--no-browser", "--port", "0"])
            .args(ui)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start kubectl devenv ui");
        // kubectl execs the plugin in its own process: this pid is the portal's.
        let watchdog = spawn_watchdog("devenv-portal-watchdog", child.id(), kubeconfig);
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end, even once the URL was taken: the portal prints what the
            // commands it runs print (`delete --purge`), and a closed pipe would fail it.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut printed = Vec::new();
        let url = loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    if let Some(url) = line.trim().strip_prefix("http://") {
                        break format!("http://{url}");
                    }
                    printed.push(line);
                }
                Err(e) => {
                    let _ = child.kill();
                    panic!("kubectl devenv ui printed no URL ({e}); it printed: {printed:?}");
                }
            }
        };
        assert!(
            printed.iter().any(|l| l.contains("127.0.0.1 only")),
            "the portal says where it listens: {printed:?}"
        );
        let rest = url
            .strip_prefix("http://127.0.0.1:")
            .unwrap_or_else(|| panic!("the URL is on 127.0.0.1: {url}"));
        let (port, token) = rest
            .split_once("/?token=")
            .unwrap_or_else(|| panic!("the URL carries a token: {url}"));
        let port = port.parse().expect("a port in the URL");
        let token = token.to_owned();
        Portal {
            child,
            watchdog,
            port,
            token,
            url,
        }
    }

    /// `Host: 127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`, the portal's own Origin.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One request with exactly `headers` (plus `Connection: close`); returns the status
    /// and the body.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        self.request_with_body(method, path, headers, "")
    }

    /// POST `path` with a JSON body, as the page's create form does.
    pub fn post_json(&self, path: &str, body: &str) -> (u16, String) {
        self.request_with_body(
            "POST",
            path,
            &[
                ("Host", &self.host()),
                ("Origin", &self.origin()),
                ("X-Devenv-Token", &self.token),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    }

    fn request_with_body(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the portal");
        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
        let mut req = format!("{method} {path} HTTP/1.1\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        s.write_all(req.as_bytes()).expect("send the request");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read the response");
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let status = raw
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("an HTTP status line: {raw}"));
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// GET `path` as the page does: its Host, its token in a header.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.request(
            "GET",
            path,
            &[("Host", &self.host()), ("X-Devenv-Token", &self.token)],
        )
    }

    /// POST `path` as the page's fetch does: its Host, its Origin, its token.
    pub fn post(&self, path: &str) -> (u16, String) {
        self.request(
            "POST",
            path,
            &[
                ("Host", &self.host()),
                ("Origin", &self.origin()),
                ("X-Devenv-Token", &self.token),
            ],
        )
    }

    /// The page's event stream (`EventSource`: the token in the query).
    pub fn events(&self) -> Events {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the portal");
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let req = format!(
            "GET /api/events?token={} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            self.token,
            self.host()
        );
        s.write_all(req.as_bytes()).expect("send the request");
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).expect("a status line");
        assert!(status.contains(" 200 "), "the event stream opens: {status}");
        Events { reader }
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        kill_with_watchdog(&mut self.child, &mut self.watchdog);
    }
}

/// The portal's server-sent events, as the page receives them.
pub struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    /// The next `workspaces` event's document, or `None` when none came by `deadline`.
    /// The body is chunked (HTTP/1.1): chunk-size lines are skipped, event lines kept.
    fn next(&mut self, deadline: Instant) -> Option<Value> {
        let mut name = String::new();
        let mut data = String::new();
        while Instant::now() < deadline {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => panic!("reading the event stream: {e}"),
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            } else if line.is_empty() && !data.is_empty() {
                if name == "workspaces" {
                    return Some(serde_json::from_str(&data).expect("an event's JSON"));
                }
                name.clear();
                data.clear();
            }
        }
        None
    }

    /// Reads events until one's document satisfies `want`; panics naming `what` (and the
    /// last document) after `timeout`.
    pub fn until(&mut self, what: &str, timeout: Duration, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while let Some(doc) = self.next(deadline) {
            if want(&doc) {
                return doc;
            }
            last = doc;
        }
        panic!("no portal event showed {what} within {timeout:?}; the last one: {last}");
    }
}

/// The row of workspace `name` in a portal document.
pub fn row<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc["workspaces"]
        .as_array()?
        .iter()
        .find(|w| w["name"] == name)
}

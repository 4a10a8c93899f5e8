//! A real headless browser for the portal suite: Debian's `chromium`, driven over the
//! Chrome DevTools Protocol on loopback (its `--remote-debugging-port`, a WebSocket), the
//! protocol WebDriver BiDi and Playwright speak to it too. The page is then exactly what a
//! user's browser runs: its script, its event stream, its clicks, its screenshots.
//!
//! `DEVENV_CHROMIUM` names another binary. Without one the suite fails saying so
//! (`tests/cluster/node/install-deps.sh` installs it); it never skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::webhook::{kill_with_watchdog, spawn_watchdog, target_dir};

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// A running headless Chromium with one page; killed (with its helper processes) when
/// dropped, and by a watchdog if the test process dies first.
pub struct Browser {
    child: Child,
    watchdog: Option<Child>,
    socket: Socket,
    next_id: u64,
    _profile: tempfile::TempDir,
}

fn chromium_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("DEVENV_CHROMIUM") {
        return Ok(PathBuf::from(p));
    }
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).is_file() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!(
        "no chromium: the portal suite drives a real headless browser; install Debian's \
         chromium (tests/cluster/node/install-deps.sh does) or set DEVENV_CHROMIUM"
    )
}

/// Where a suite's screenshots go: `DEVENV_SCREENSHOTS` (the README's come from the portal
/// suites with it set to `docs/`), else `target/portal-screenshots/`.
pub fn screenshot_path(name: &str) -> PathBuf {
    std::env::var_os("DEVENV_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("portal-screenshots"))
        .join(name)
}

/// Plain HTTP GET on loopback (the DevTools endpoint's JSON), without a client crate. The
/// endpoint keeps the connection open: the body is read by its Content-Length.
fn http_get(port: u16, path: &str) -> Result<String> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut reader = BufReader::new(s);
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("the DevTools endpoint closed before its headers ended");
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let length = length.ok_or_else(|| anyhow!("no Content-Length from the DevTools endpoint"))?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

impl Browser {
    /// Starts Chromium headless, with a fresh profile, at 1280×800.
    pub fn start() -> Result<Browser> {
        Browser::start_with(&[])
    }

    /// [`Browser::start`] with more flags (`--host-resolver-rules=MAP NAME 127.0.0.1`: a
    /// name that resolves to loopback, as a DNS-rebinding attacker's would).
    pub fn start_with(extra: &[&str]) -> Result<Browser> {
        let binary = chromium_binary()?;
        let profile = tempfile::Builder::new()
            .prefix("devenv-chromium-")
            .tempdir()
            .context("a profile directory")?;
        let profile_arg = format!("--user-data-dir={}", profile.path().display());
        let mut cmd = Command::new(&binary);
        cmd.args([
            "--headless=new",
            // Run as root in CI, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1280,800",
        ])
        .arg(&profile_arg)
        .args(extra)
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // Its own process group, so its renderers and helpers die with it.
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let watchdog = spawn_watchdog(
            "devenv-chromium-watchdog",
            child.id(),
            Path::new(&profile_arg),
        );
        let socket = match Self::connect(profile.path()) {
            Ok(s) => s,
            Err(e) => {
                let (mut child, mut watchdog) = (child, watchdog);
                kill_group(&mut child, &mut watchdog);
                return Err(e);
            }
        };
        let mut browser = Browser {
            child,
            watchdog: None,
            socket,
            next_id: 0,
            _profile: profile,
        };
        browser.watchdog = watchdog;
        browser.call("Page.enable", json!({}))?;
        browser.call("Runtime.enable", json!({}))?;
        Ok(browser)
    }

    /// Waits for Chromium's `DevToolsActivePort` file, then connects to its page.
    fn connect(profile: &Path) -> Result<Socket> {
        let file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let port: u16 = loop {
            if let Some(port) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
            {
                break port;
            }
            if Instant::now() > deadline {
                bail!("chromium wrote no {} within 60s", file.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let targets: Value = loop {
            let list: Value = serde_json::from_str(&http_get(port, "/json/list")?)
                .context("the DevTools target list")?;
            if list
                .as_array()
                .is_some_and(|l| l.iter().any(|t| t["type"] == "page"))
            {
                break list;
            }
            if Instant::now() > deadline {
                bail!("chromium has no page target: {list}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let url = targets
            .as_array()
            .and_then(|l| l.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .ok_or_else(|| anyhow!("no page WebSocket in {targets}"))?;
        let (socket, _) = tungstenite::connect(url).context("the DevTools WebSocket")?;
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
        }
        Ok(socket)
    }

    /// One DevTools call; its `result` (events that arrive meanwhile are dropped).
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(tungstenite::Message::text(message.to_string()))
            .with_context(|| format!("sending {method}"))?;
        loop {
            let reply = self
                .socket
                .read()
                .with_context(|| format!("the reply to {method}"))?;
            let tungstenite::Message::Text(text) = reply else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str())?;
            if v["id"] != id {
                continue;
            }
            if let Some(e) = v.get("error") {
                bail!("{method}: {e}");
            }
            return Ok(v["result"].clone());
        }
    }

    /// Opens `url` in the page.
    pub fn navigate(&mut self, url: &str) -> Result<()> {
        let r = self.call("Page.navigate", json!({ "url": url }))?;
        if let Some(e) = r["errorText"].as_str() {
            bail!("navigating to the portal: {e}");
        }
        Ok(())
    }

    /// Evaluates `expression` in the page; its value (JSON), or the exception it threw.
    pub fn eval(&mut self, expression: &str) -> Result<Value> {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            bail!("{expression}: {e}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// Evaluates `expression` until it is truthy (not null, false, 0 or ""); returns it.
    /// Panics naming `what`, with the page's text, after `timeout`.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, expression: &str) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            match self.eval(expression) {
                Ok(v)
                    if !matches!(&v, Value::Null | Value::Bool(false))
                        && v != json!(0)
                        && v != json!("") =>
                {
                    return v
                }
                Ok(v) => last = v,
                Err(e) => last = json!(e.to_string()),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let text = self
            .eval("document.body ? document.body.innerText : ''")
            .unwrap_or_default();
        panic!("the page never showed {what} within {timeout:?} (last: {last}); it shows:\n{text}");
    }

    /// Types `text` into the focused element, as a keyboard does (one input event).
    pub fn type_text(&mut self, text: &str) -> Result<()> {
        self.call("Input.insertText", json!({ "text": text }))
            .map(|_| ())
    }

    /// Presses and releases Enter in the focused element.
    pub fn press_enter(&mut self) -> Result<()> {
        for kind in ["keyDown", "keyUp"] {
            let mut event = json!({
                "type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
            });
            if kind == "keyDown" {
                event["text"] = json!("\r");
            }
            self.call("Input.dispatchKeyEvent", event)?;
        }
        Ok(())
    }

    /// A PNG of the page as shown, written to `path`.
    pub fn screenshot(&mut self, path: &Path) -> Result<()> {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }))?;
        let data = r["data"]
            .as_str()
            .ok_or_else(|| anyhow!("no screenshot data"))?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .context("the screenshot's base64")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }
}

/// Kills the browser's whole process group (the browser and its renderers), then its
/// watchdog.
fn kill_group(child: &mut Child, watchdog: &mut Option<Child>) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    kill_with_watchdog(child, watchdog);
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.socket.close(None);
        kill_group(&mut self.child, &mut self.watchdog);
    }
}

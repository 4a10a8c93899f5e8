//! `kubectl devenv ui`: the portal serves the workspaces table live from its watches, acts
//! through the CLI's own code, and refuses whoever is not the page it printed: no token, a
//! foreign Host (DNS rebinding), a foreign Origin, a change without an Origin, another
//! loopback address.

use std::time::Duration;

use devenv_e2e::browser::{screenshot_path, Browser};
use devenv_e2e::objects::{get, get_ok};
use devenv_e2e::output::ok;
use devenv_e2e::plugin::{dv, webhook_for};
use devenv_e2e::portal::{row, Portal};
use devenv_e2e::serial::{serial, Timer};
use devenv_e2e::{check_ok, eventually, shared};
use serde_json::json;

const LIVE: Duration = Duration::from_secs(60);

#[test]
fn the_portal_shows_workspaces_live_acts_like_the_cli_and_refuses_strangers() {
    let _serial = serial();
    let _t =
        Timer::start("the_portal_shows_workspaces_live_acts_like_the_cli_and_refuses_strangers");
    let c = shared();
    let ns = c.fresh_namespace("portal");
    let _wh = webhook_for(c, &ns);
    ok(
        &dv(c, &ns, &["create", "alpha", "--no-wait"]),
        "create alpha",
    );

    let portal = Portal::start(&c.kubeconfig, &["-n", &ns], &[]);
    let host = portal.host();
    let origin = portal.origin();
    let token = portal.token.clone();

    // Who may use it.
    let (code, body) = portal.request("GET", "/", &[("Host", &host)]);
    assert_eq!(code, 403, "the page without the token: {body}");
    assert!(body.contains("token"), "{body}");
    let (code, body) = portal.request(
        "GET",
        "/api/workspaces",
        &[
            ("Host", &format!("rebound.example:{}", portal.port)),
            ("X-Devenv-Token", &token),
        ],
    );
    assert_eq!(code, 403, "a DNS-rebound Host with the right token: {body}");
    let start_alpha = format!("/api/workspaces/{ns}/alpha/start");
    let (code, body) = portal.request(
        "POST",
        &start_alpha,
        &[
            ("Host", &host),
            ("Origin", "http://evil.example"),
            ("X-Devenv-Token", &token),
        ],
    );
    assert_eq!(code, 403, "a cross-site POST with the right token: {body}");
    let (code, body) = portal.request(
        "POST",
        &start_alpha,
        &[("Host", &host), ("X-Devenv-Token", &token)],
    );
    assert_eq!(code, 403, "a POST without an Origin: {body}");
    let (code, body) = portal.request(
        "POST",
        &start_alpha,
        &[("Host", &host), ("Origin", &origin)],
    );
    assert_eq!(
        code, 403,
        "a POST from the portal's own Origin without the token: {body}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.2", portal.port)).is_err(),
        "the portal listens on 127.0.0.1 only, not on the other loopback addresses"
    );
    let (code, page) = portal.request("GET", &format!("/?token={token}"), &[("Host", &host)]);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains(&format!("app.js?token={token}")), "{page}");
    let (code, script) = portal.get(&format!("/app.js?token={token}"));
    assert_eq!(code, 200);
    assert!(
        script.contains("EventSource"),
        "the page is live, not polled"
    );

    // The table, then a stop from the CLI seen live.
    let mut events = portal.events();
    let doc = events.until("workspace alpha", LIVE, |d| {
        d["synced"] == true && row(d, "alpha").is_some()
    });
    assert_eq!(doc["namespace"], ns.as_str());
    let alpha = row(&doc, "alpha").expect("alpha's row");
    assert_eq!(alpha["namespace"], ns.as_str());
    assert_eq!(alpha["tier"], "small", "{alpha}");
    assert_eq!(alpha["claims"].as_array().map(Vec::len), Some(3), "{alpha}");
    ok(&dv(c, &ns, &["stop", "alpha"]), "stop alpha");
    events.until("alpha stopped (READY .../0)", LIVE, |d| {
        row(d, "alpha").is_some_and(|w| w["ready"].as_str().is_some_and(|r| r.ends_with("/0")))
    });

    // Start from the page, through the CLI's code and with its words.
    let (code, body) = portal.post(&start_alpha);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("workspace/alpha started"), "{body}");
    eventually("alpha's replicas back to 1", LIVE, || {
        (get_ok(c, &["statefulset", "alpha", "-n", &ns])["spec"]["replicas"] == 1).then_some(())
    });
    events.until("alpha started (READY .../1)", LIVE, |d| {
        row(d, "alpha").is_some_and(|w| w["ready"].as_str().is_some_and(|r| r.ends_with("/1")))
    });
    let (code, body) = portal.post(&start_alpha);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("is already running"),
        "the CLI's message: {body}"
    );

    // Scale through the CLI's code: its patches, its checks, its words.
    let scale_alpha = format!("/api/workspaces/{ns}/alpha/scale");
    let (code, body) = portal.post_json(&scale_alpha, r#"{"replicas": 2}"#);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("scaled to 2 replicas"), "{body}");
    assert_eq!(
        get_ok(c, &["statefulset", "alpha", "-n", &ns])["spec"]["replicas"],
        2
    );
    let (code, body) = portal.post_json(&scale_alpha, r#"{"replicas": -1}"#);
    assert_eq!(code, 400, "{body}");
    let (code, body) = portal.post_json(&scale_alpha, r#"{"tier": "huge"}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("huge"), "the error names the tier: {body}");
    let (code, body) = portal.post_json(&scale_alpha, r#"{"replicas": 1, "privileged": true}"#);
    assert_eq!(code, 400, "a field the form does not have: {body}");
    assert_eq!(
        get_ok(c, &["statefulset", "alpha", "-n", &ns])["spec"]["replicas"],
        2,
        "refused scales changed nothing"
    );

    // Only workspaces: an application's StatefulSet, its pods and the namespace's
    // `default` ServiceAccount are refused, whatever the URL names.
    let app = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "app", "namespace": ns},
        "spec": {
            "replicas": 1, "serviceName": "app",
            "selector": {"matchLabels": {"app": "app"}},
            "template": {
                "metadata": {"labels": {"app": "app"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "app", "image": "registry.invalid/app:1",
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
                },
            },
        },
    });
    check_ok(
        &["create statefulset app"],
        &c.kubectl_stdin(["create", "-f", "-"], &app.to_string()),
    );
    for action in ["stop", "delete"] {
        let (code, body) = portal.post(&format!("/api/workspaces/{ns}/app/{action}"));
        assert_eq!(
            code, 400,
            "{action} of an application's StatefulSet: {body}"
        );
        assert!(body.contains("is not a workspace"), "{body}");
    }
    let (code, body) = portal.post_json(
        &format!("/api/workspaces/{ns}/app/scale"),
        r#"{"replicas": 0}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        get_ok(c, &["statefulset", "app", "-n", &ns])["spec"]["replicas"],
        1
    );
    let (code, body) = portal.post(&format!("/api/workspaces/{ns}/default/delete"));
    assert_eq!(code, 404, "{body}");
    assert!(
        get(c, &["serviceaccount", "default", "-n", &ns]).is_some(),
        "the namespace's default ServiceAccount is still there"
    );
    eventually("pod app-0", LIVE, || {
        get(c, &["pod", "app-0", "-n", &ns]).map(|_| ())
    });
    let (code, body) = portal.request(
        "GET",
        &format!("/api/workspaces/{ns}/app/terminal?token={token}"),
        &[
            ("Host", &host),
            ("Origin", &origin),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    );
    assert_eq!(code, 404, "a terminal in an application's pod: {body}");
    assert!(
        body.contains("not a running pod of workspace app"),
        "{body}"
    );

    // Purge: only with the name typed; backed up first unless told not to; then the data
    // is gone, through `delete --purge` itself.
    ok(
        &dv(c, &ns, &["create", "doomed", "--no-wait"]),
        "create doomed",
    );
    let doomed_claims = eventually("doomed's claims", LIVE, || {
        let claims = devenv_e2e::workspace::claim_uids(c, &ns, "doomed");
        (claims.len() == 3).then_some(claims)
    });
    let purge_doomed = format!("/api/workspaces/{ns}/doomed/purge");
    let (code, body) = portal.post_json(&purge_doomed, r#"{"confirm": "doome", "noBackup": true}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("type its name"), "{body}");
    let (code, body) = portal.post_json(&purge_doomed, r#"{"confirm": "doomed"}"#);
    assert_eq!(code, 400, "no backup repository in the policy here: {body}");
    assert!(
        body.contains("--no-backup"),
        "the CLI's words say how to go on: {body}"
    );
    assert_eq!(
        devenv_e2e::workspace::claim_uids(c, &ns, "doomed"),
        doomed_claims,
        "refused purges deleted nothing"
    );
    let (code, body) =
        portal.post_json(&purge_doomed, r#"{"confirm": "doomed", "noBackup": true}"#);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("workspace/doomed and its volumes deleted, without a backup"),
        "{body}"
    );
    eventually("doomed's claims gone", LIVE, || {
        devenv_e2e::workspace::claim_uids(c, &ns, "doomed")
            .is_empty()
            .then_some(())
    });
    assert!(get(c, &["statefulset", "doomed", "-n", &ns]).is_none());

    // What the portal cannot do, it says.
    let (code, body) = portal.post(&format!("/api/workspaces/{ns}/alpha/destroy"));
    assert_eq!(code, 404, "no such action: {body}");
    let (code, body) = portal.post(&format!("/api/workspaces/{ns}/alpha/create"));
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("already exists"), "the CLI's words: {body}");
    let (code, body) = portal.post_json(
        &format!("/api/workspaces/{ns}/gamma/create"),
        r#"{"tier": "huge"}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("huge"), "the error names the tier: {body}");
    assert!(
        get(c, &["statefulset", "gamma", "-n", &ns]).is_none(),
        "a refused create leaves nothing"
    );
    let (code, body) = portal.post("/api/workspaces/kube-system/alpha/stop");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("not in namespace"), "{body}");
    let (code, body) = portal.post(&format!("/api/workspaces/{ns}/nosuch/stop"));
    assert!(code >= 400, "{code} {body}");
    assert!(
        body.contains("nosuch"),
        "the error names the workspace: {body}"
    );
}

/// The row of `ns/name` as the page shows it: its cells' text, or null.
fn row_js(ns: &str, name: &str) -> String {
    format!(
        "(() => {{ const tr = document.querySelector('#workspaces tbody tr[data-key=\"{ns}/{name}\"]'); \
         return tr ? Array.from(tr.cells, c => c.textContent) : null; }})()"
    )
}

#[test]
fn in_a_real_browser_the_table_is_live_and_start_stop_work() {
    let _serial = serial();
    let _t = Timer::start("in_a_real_browser_the_table_is_live_and_start_stop_work");
    let c = shared();
    let ns = c.fresh_namespace("browser");
    let _wh = webhook_for(c, &ns);
    ok(
        &dv(c, &ns, &["create", "alpha", "--no-wait"]),
        "create alpha",
    );
    ok(
        &dv(c, &ns, &["create", "beta", "--tier", "large", "--no-wait"]),
        "create beta",
    );
    let portal = Portal::start(&c.kubeconfig, &["-n", &ns], &[]);
    let mut browser = Browser::start_with(&["--host-resolver-rules=MAP rebound.test 127.0.0.1"])
        .expect("headless chromium");
    browser.navigate(&portal.url).expect("open the portal");
    browser.wait_for(
        "both workspaces and the live mark",
        LIVE,
        "document.querySelectorAll('#workspaces tbody tr').length === 2 \
         && document.getElementById('live').textContent === 'live'",
    );
    let header = browser
        .eval("Array.from(document.querySelectorAll('#workspaces thead th'), t => t.textContent)")
        .expect("the header");
    for column in [
        "Name", "Status", "Ready", "Tier", "Storage", "Owner", "Stops", "Actions",
    ] {
        assert!(
            header
                .as_array()
                .is_some_and(|h| h.iter().any(|c| c == column)),
            "column {column} in {header}"
        );
    }
    let beta = browser.eval(&row_js(&ns, "beta")).expect("beta's row");
    assert!(
        beta.as_array()
            .is_some_and(|cells| cells.iter().any(|c| c == "large")),
        "beta's tier: {beta}"
    );
    browser
        .screenshot(&screenshot_path("portal-table.png"))
        .expect("a screenshot of the table");

    // A stop from the CLI reaches the open page, without a reload.
    browser
        .eval("window.devenvNotReloaded = true")
        .expect("mark the page");
    ok(&dv(c, &ns, &["stop", "alpha"]), "stop alpha");
    browser.wait_for(
        "alpha stopped, shown live",
        LIVE,
        &format!(
            "(() => {{ const r = {}; return r && r[2].endsWith('/0') && r.includes('Start'); }})()",
            row_js(&ns, "alpha")
        ),
    );
    assert_eq!(
        browser
            .eval("window.devenvNotReloaded === true")
            .expect("the mark"),
        true,
        "the page updated in place"
    );

    // Start and stop from the page's buttons.
    browser
        .eval("document.querySelector('button[aria-label=\"Start alpha\"]').click()")
        .expect("click Start");
    browser.wait_for(
        "the CLI's words for the start",
        LIVE,
        "document.getElementById('result').textContent.includes('workspace/alpha started')",
    );
    eventually("alpha's replicas back to 1", LIVE, || {
        (get_ok(c, &["statefulset", "alpha", "-n", &ns])["spec"]["replicas"] == 1).then_some(())
    });
    browser.wait_for(
        "alpha's Stop button",
        LIVE,
        "!!document.querySelector('button[aria-label=\"Stop alpha\"]')",
    );
    browser
        .eval("document.querySelector('button[aria-label=\"Stop alpha\"]').click()")
        .expect("click Stop");
    eventually("alpha's replicas 0 again", LIVE, || {
        (get_ok(c, &["statefulset", "alpha", "-n", &ns])["spec"]["replicas"] == 0).then_some(())
    });
    browser.wait_for(
        "the CLI's words for the stop",
        LIVE,
        "document.getElementById('result').textContent.includes('stopped (volumes are kept)')",
    );

    // The scale form: beta's tier from the page.
    browser
        .eval(&format!(
            "(() => {{ const tr = document.querySelector('#workspaces tbody tr[data-key=\"{ns}/beta\"]'); tr.click(); \
             const f = document.getElementById('scale'); f.elements.tier.value = 'micro'; f.requestSubmit(); }})()"
        ))
        .expect("scale beta to micro");
    browser.wait_for(
        "the CLI's words for the resize",
        LIVE,
        "document.getElementById('result').textContent.includes('workspace/beta resized')",
    );
    eventually("beta's tier micro", LIVE, || {
        (get_ok(c, &["statefulset", "beta", "-n", &ns])["metadata"]["annotations"]
            ["devenv.io/tier"]
            == "micro")
            .then_some(())
    });
    browser
        .eval(&format!(
            "document.querySelector('#workspaces tbody tr[data-key=\"{ns}/beta\"]').click()"
        ))
        .expect("close beta's page");

    // A workspace's page, by keyboard: its access lines and its three claims.
    browser
        .eval(&format!(
            "(() => {{ const tr = document.querySelector('#workspaces tbody tr[data-key=\"{ns}/beta\"]'); \
             tr.focus(); tr.dispatchEvent(new KeyboardEvent('keydown', {{key: 'Enter', bubbles: true}})); }})()"
        ))
        .expect("open beta with Enter");
    browser.wait_for(
        "beta's detail with its three claims",
        LIVE,
        "!document.getElementById('detail').hidden \
         && document.querySelectorAll('#claims tbody tr').length === 3",
    );
    let events = browser.wait_for(
        "beta's events, in the page",
        LIVE,
        "(() => { const t = document.getElementById('events').textContent; \
         return t.includes('pod/beta-0') ? t : null; })()",
    );
    assert!(
        events
            .as_str()
            .is_some_and(|t| t.contains("FailedScheduling")),
        "the scheduler's word on beta's pod (no node here): {events}"
    );
    let access = browser
        .eval("document.getElementById('access').textContent")
        .expect("the access lines");
    assert!(
        access
            .as_str()
            .is_some_and(|a| a.contains(&format!("kubectl devenv ssh beta -n {ns}"))),
        "{access}"
    );
    browser
        .screenshot(&screenshot_path("portal-workspace.png"))
        .expect("a screenshot of a workspace's page");

    // 500 workspaces in the table: how long the page takes to build it (BENCHMARKS.md).
    let rendered = browser
        .eval(
            "(() => { const w = state.doc.workspaces[0]; \
             const doc = { ...state.doc, workspaces: Array.from({ length: 500 }, (_, i) => \
               ({ ...w, name: 'ws-' + String(i).padStart(3, '0') })) }; \
             const t0 = performance.now(); state.doc = doc; renderTable(); \
             const ms = performance.now() - t0; \
             return [ms, document.querySelectorAll('#workspaces tbody tr').length]; })()",
        )
        .expect("render 500 rows");
    assert_eq!(rendered[1], 500, "all 500 rows built: {rendered}");
    println!(
        "BENCH portal table of 500 workspaces rendered in {:.1} ms (headless Chromium)",
        rendered[0].as_f64().unwrap_or(f64::NAN)
    );

    // Strangers, from inside the browser. Without the token, the page is refused.
    let port = portal.port;
    browser
        .navigate(&format!("http://127.0.0.1:{port}/"))
        .expect("open the portal without its token");
    browser.wait_for(
        "the refusal without the token",
        LIVE,
        "document.body && document.body.innerText.includes('refused: this portal needs the token')",
    );
    // A DNS-rebound name (rebound.test resolves to 127.0.0.1), even with the token.
    browser
        .navigate(&format!(
            "http://rebound.test:{port}/?token={}",
            portal.token
        ))
        .expect("open the portal by a rebound name");
    browser.wait_for(
        "the refusal of a rebound Host",
        LIVE,
        "document.body && document.body.innerText.includes('refused: the Host header')",
    );
    // Another site's page (here a data: page, Origin null) posting a stop, even with the
    // token: nothing happens.
    let replicas = || get_ok(c, &["statefulset", "beta", "-n", &ns])["spec"]["replicas"].clone();
    let before = replicas();
    browser
        .navigate("data:text/html,<p>another site</p>")
        .expect("open another site");
    browser
        .eval(&format!(
            "fetch('http://127.0.0.1:{port}/api/workspaces/{ns}/beta/stop?token={}', \
             {{ method: 'POST', mode: 'no-cors' }}).then(() => 'sent', e => 'blocked: ' + e)",
            portal.token
        ))
        .expect("a cross-site POST");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(replicas(), before, "a cross-site POST stopped nothing");

    // The admin view (-A): the webhook's health and certificate, quotas, the leader.
    let quota = json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "devenv", "namespace": ns},
        "spec": {"hard": {"pods": "10"}},
    });
    check_ok(
        &["create resourcequota"],
        &c.kubectl_stdin(["create", "-f", "-"], &quota.to_string()),
    );
    let admin = Portal::start(&c.kubeconfig, &[], &["-A"]);
    let (code, body) = admin.get("/api/admin");
    assert_eq!(code, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).expect("the admin JSON");
    assert!(
        doc["status"]["certificate"]
            .as_str()
            .is_some_and(|c| c.contains("valid") || c.contains("expires")),
        "the certificate's expiry, as status says it: {}",
        doc["status"]
    );
    assert!(
        doc["leader"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no lifecycle controller")),
        "no controller runs here, and the page says so: {}",
        doc["leader"]
    );
    let (code, body) = portal.get("/api/admin");
    assert_eq!(code, 404, "the admin view needs -A: {body}");
    browser.navigate(&admin.url).expect("open the admin portal");
    browser.wait_for(
        "this namespace's quota in the admin view",
        LIVE,
        &format!(
            "(() => {{ const t = document.getElementById('admin-quotas').textContent; \
             return !document.getElementById('admin').hidden && t.includes('{ns} (devenv): pods'); }})()"
        ),
    );
    browser
        .screenshot(&screenshot_path("portal-admin.png"))
        .expect("a screenshot of the admin view");
}

//! The real server over TLS on an ephemeral port.

mod common;

use base64::Engine as _;
use common::*;
use devenv_webhook::server::metrics::{Endpoint, Outcome, ReloadResult};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

fn response_of(reply: &Reply) -> serde_json::Value {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let json = reply.json();
    assert_eq!(json["apiVersion"], "admission.k8s.io/v1", "{json}");
    assert_eq!(json["kind"], "AdmissionReview", "{json}");
    json["response"].clone()
}

#[tokio::test]
async fn workspace_pod_is_patched_over_h2_and_http11() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let server = TestServer::start(fast_config(dir.path())).await;

    for (alpn, version) in [
        (&[b"h2".as_slice()][..], hyper::Version::HTTP_2),
        (&[b"http/1.1".as_slice()][..], hyper::Version::HTTP_11),
    ] {
        let mut conn = Conn::open(server.addr, client_config(&certs.ca_cert_pem, alpn))
            .await
            .expect("connect");
        let reply = conn
            .send("POST", "/mutate", review("uid-ws", workspace_pod()))
            .await
            .expect("mutate");
        assert_eq!(reply.version, version);
        let response = response_of(&reply);
        assert_eq!(response["uid"], "uid-ws");
        assert_eq!(response["allowed"], true, "{response}");
        assert_eq!(response["patchType"], "JSONPatch", "{response}");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(response["patch"].as_str().expect("patch is a string"))
            .expect("patch is base64");
        let ops: serde_json::Value = serde_json::from_slice(&patch).expect("patch is JSON");
        let ops = ops.as_array().expect("patch is a list");
        assert!(!ops.is_empty());
        // The workspace runs as the policy's non-root user.
        let text = serde_json::to_string(ops).expect("json");
        assert!(
            text.contains("runAsNonRoot") || text.contains("runAsUser"),
            "{text}"
        );
    }
    assert_eq!(
        server
            .state
            .metrics()
            .requests(Endpoint::Mutate, Outcome::Patched),
        2
    );
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn non_workspace_pod_is_allowed_unchanged() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let server = TestServer::start(fast_config(dir.path())).await;
    for path in ["/mutate", "/validate"] {
        let reply = send(
            server.addr,
            &certs.ca_cert_pem,
            "POST",
            path,
            review("uid-plain", plain_pod()),
        )
        .await
        .expect("request");
        let response = response_of(&reply);
        assert_eq!(response["uid"], "uid-plain");
        assert_eq!(response["allowed"], true, "{response}");
        assert!(response.get("patch").is_none(), "{response}");
    }
    assert_eq!(
        server
            .state
            .metrics()
            .requests(Endpoint::Mutate, Outcome::Allowed),
        1
    );
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn privileged_workspace_pod_is_denied_with_the_field_path() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let server = TestServer::start(fast_config(dir.path())).await;
    let reply = send(
        server.addr,
        &certs.ca_cert_pem,
        "POST",
        "/validate",
        review("uid-priv", privileged_workspace_pod()),
    )
    .await
    .expect("validate");
    let response = response_of(&reply);
    assert_eq!(response["uid"], "uid-priv");
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.containers[0].securityContext.privileged"),
        "{message}"
    );
    assert_eq!(
        server
            .state
            .metrics()
            .requests(Endpoint::Validate, Outcome::Denied),
        1
    );
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn malformed_json_is_400() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let server = TestServer::start(fast_config(dir.path())).await;
    for body in [&b"{\"apiVersion\": "[..], b"", b"\xff\xfe"] {
        let reply = send(
            server.addr,
            &certs.ca_cert_pem,
            "POST",
            "/mutate",
            body.to_vec(),
        )
        .await
        .expect("request");
        assert_eq!(
            reply.status,
            400,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(String::from_utf8_lossy(&reply.body).contains("not JSON"));
    }
    assert_eq!(
        server
            .state
            .metrics()
            .requests(Endpoint::Mutate, Outcome::Error),
        3
    );
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn unusable_reviews_are_denied_with_200_and_a_reason() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let server = TestServer::start(fast_config(dir.path())).await;

    let mut v1beta1: serde_json::Value =
        serde_json::from_slice(&review("uid-beta", workspace_pod())).expect("json");
    v1beta1["apiVersion"] = "admission.k8s.io/v1beta1".into();
    let mut no_object: serde_json::Value =
        serde_json::from_slice(&review("uid-noobj", workspace_pod())).expect("json");
    no_object["request"]
        .as_object_mut()
        .expect("request")
        .remove("object");
    let no_request =
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    let a_pod = workspace_pod();
    let broken_request = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "uid-broken", "operation": 42}
    });

    let cases = [
        (v1beta1, "uid-beta", "admission.k8s.io/v1beta1"),
        (no_object, "uid-noobj", "no object"),
        (no_request, "", "no request"),
        (a_pod, "", "not an AdmissionReview"),
        (broken_request, "uid-broken", "not usable"),
    ];
    for (body, uid, needle) in cases {
        for path in ["/mutate", "/validate"] {
            let reply = send(
                server.addr,
                &certs.ca_cert_pem,
                "POST",
                path,
                serde_json::to_vec(&body).expect("json"),
            )
            .await
            .expect("request");
            let response = response_of(&reply);
            assert_eq!(response["allowed"], false, "{response}");
            assert_eq!(response["uid"], uid, "{response}");
            let message = response["status"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
    }
    assert_eq!(
        server
            .state
            .metrics()
            .requests(Endpoint::Validate, Outcome::Error),
        5
    );
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn body_over_3_mib_is_413() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let server = TestServer::start(fast_config(dir.path())).await;
    let big = vec![b' '; devenv_webhook::MAX_BODY_BYTES + 1];
    for alpn in [&[b"h2".as_slice()][..], &[b"http/1.1".as_slice()][..]] {
        let mut conn = Conn::open(server.addr, client_config(&certs.ca_cert_pem, alpn))
            .await
            .expect("connect");
        let reply = conn
            .send("POST", "/mutate", big.clone())
            .await
            .expect("request");
        assert_eq!(reply.status, 413);
    }

    // Without a Content-Length (chunked): the limit applies while reading.
    let stream = tls_connect(
        server.addr,
        client_config(&certs.ca_cert_pem, &[b"http/1.1"]),
    )
    .await
    .expect("connect");
    let (mut rd, mut wr) = tokio::io::split(stream);
    wr.write_all(
        b"POST /validate HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await
    .expect("head");
    let chunk = vec![b' '; 512 * 1024];
    let writer = tokio::spawn(async move {
        for _ in 0..8 {
            let head = format!("{:x}\r\n", chunk.len());
            if wr.write_all(head.as_bytes()).await.is_err()
                || wr.write_all(&chunk).await.is_err()
                || wr.write_all(b"\r\n").await.is_err()
            {
                return;
            }
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
    });
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(WAIT, rd.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    writer.abort();

    // A small request still works.
    let reply = send(
        server.addr,
        &certs.ca_cert_pem,
        "POST",
        "/validate",
        review("ok", plain_pod()),
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 200);
    server.stop().await.expect("stop");
}

/// curl, as an independent h2 client: it reports a stream reset as an error (exit 92), where
/// hyper's client returns the response it got before the reset. An over-limit body must be
/// answered 413 over h2 as over HTTP/1.1, with and without a Content-Length.
#[tokio::test]
async fn over_limit_body_is_a_clean_413_for_curl_over_h2_and_http11() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let server = TestServer::start(fast_config(dir.path())).await;
    let files = tempfile::tempdir().expect("tempdir");
    let ca = files.path().join("ca.crt");
    std::fs::write(&ca, &certs.ca_cert_pem).expect("ca");
    let body = files.path().join("big.json");
    std::fs::write(
        &body,
        vec![b' '; devenv_webhook::MAX_BODY_BYTES + 512 * 1024],
    )
    .expect("body");
    let url = format!("https://localhost:{}/mutate", server.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", server.addr.port());
    for (version, chunked) in [("--http2", false), ("--http2", true), ("--http1.1", false)] {
        let mut curl = std::process::Command::new("curl");
        curl.args(["-sS", version, "--resolve", &resolve, "--cacert"])
            .arg(&ca)
            .args(["-o", "/dev/null", "-w", "%{http_code} %{http_version}"])
            .args(["-H", "content-type: application/json"]);
        if chunked {
            curl.args(["-H", "transfer-encoding: chunked"]);
        }
        curl.arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg(&url);
        // Blocking, off the runtime that serves the request.
        let run = tokio::task::spawn_blocking(move || curl.output());
        let out = tokio::time::timeout(WAIT, run)
            .await
            .expect("curl in time")
            .expect("curl's thread")
            .expect("curl is needed by this test (Debian: apt-get install -y curl)");
        let said = String::from_utf8_lossy(&out.stdout);
        let expected = if version == "--http2" {
            "413 2"
        } else {
            "413 1.1"
        };
        assert!(
            out.status.success() && said == expected,
            "curl {version} chunked={chunked}: {} {said:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn slow_header_client_is_dropped_and_others_are_served() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let server = TestServer::start(fast_config(dir.path())).await; // header timeout 1s
    let mut slow = tls_connect(
        server.addr,
        client_config(&certs.ca_cert_pem, &[b"http/1.1"]),
    )
    .await
    .expect("connect");
    let started = Instant::now();
    slow.write_all(b"POST /mutate HTTP/1.1\r\nhost: loc")
        .await
        .expect("half a header");
    slow.flush().await.expect("flush");

    // Others are served meanwhile.
    for _ in 0..3 {
        let reply = send(
            server.addr,
            &certs.ca_cert_pem,
            "GET",
            "/healthz",
            Vec::new(),
        )
        .await
        .expect("healthz");
        assert_eq!(reply.status, 200);
    }

    // The slow one is dropped after the header timeout (EOF, a reset, or a 408).
    let mut buf = vec![0u8; 256];
    let read = tokio::time::timeout(WAIT, slow.read(&mut buf))
        .await
        .expect("the server must give up on the slow client");
    let elapsed = started.elapsed();
    match read {
        Ok(0) | Err(_) => {}
        Ok(n) => {
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(text.starts_with("HTTP/1.1 408"), "unexpected {text:?}");
        }
    }
    assert!(
        elapsed >= Duration::from_millis(900),
        "dropped too early: {elapsed:?}"
    );

    // A client that never even starts TLS is dropped too.
    let mut silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("tcp");
    let read = tokio::time::timeout(WAIT, silent.read(&mut buf))
        .await
        .expect("the server must give up on the silent client");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    server.stop().await.expect("stop");
}

#[tokio::test]
async fn rotated_certificate_is_served_to_new_connections() {
    let first = bundle();
    let second = bundle();
    let mut dir = CertDir::new(&first);
    let server = TestServer::start(fast_config(dir.path())).await;
    // A fresh client configuration per handshake: a shared one would resume its TLS
    // session, and a resumed session presents no certificate.
    let trust_first = || client_config(&first.ca_cert_pem, &[b"http/1.1"]);
    let trust_second = || client_config(&second.ca_cert_pem, &[b"http/1.1"]);

    assert!(tls_connect(server.addr, trust_first()).await.is_ok());
    assert!(tls_connect(server.addr, trust_second()).await.is_err());
    // A keep-alive connection opened before the rotation.
    let mut before = Conn::open(server.addr, trust_first())
        .await
        .expect("connect");
    assert_eq!(
        before
            .send("GET", "/healthz", Vec::new())
            .await
            .expect("healthz")
            .status,
        200
    );

    dir.rotate(&second);
    let addr = server.addr;
    let rotated = eventually(WAIT, || {
        let config = trust_second();
        async move { tls_connect(addr, config).await.is_ok() }
    })
    .await;
    assert!(rotated, "the new certificate was not picked up");
    assert!(tls_connect(server.addr, trust_first()).await.is_err());
    assert_eq!(server.state.metrics().cert_reloads(ReloadResult::Ok), 1);
    // The old connection keeps working.
    assert_eq!(
        before
            .send("GET", "/healthz", Vec::new())
            .await
            .expect("healthz")
            .status,
        200
    );

    // A broken pair (key of another certificate) is refused; the current one stays.
    dir.write(first.cert_pem.as_bytes(), second.key_pem.as_bytes());
    let state = server.state.clone();
    let refused = eventually(WAIT, || {
        let state = state.clone();
        async move { state.metrics().cert_reloads(ReloadResult::Error) == 1 }
    })
    .await;
    assert!(refused, "the mismatched pair was not noticed");
    assert!(tls_connect(server.addr, trust_second()).await.is_ok());
    assert!(tls_connect(server.addr, trust_first()).await.is_err());
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn policy_reload_takes_good_files_and_keeps_the_last_good_one() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let policy_dir = tempfile::tempdir().expect("tempdir");
    let policy_path = policy_dir.path().join("policy.yaml");
    std::fs::write(&policy_path, "defaultTier: small\n").expect("write policy");
    let mut config = fast_config(dir.path());
    config.policy_file = Some(policy_path.clone());
    let server = TestServer::start(config).await;
    assert_eq!(server.state.policy().default_tier, "small");

    std::fs::write(&policy_path, "defaultTier: large\n").expect("write policy");
    let state = server.state.clone();
    let reloaded = eventually(WAIT, || {
        let state = state.clone();
        async move { state.policy().default_tier == "large" }
    })
    .await;
    assert!(reloaded, "good policy not reloaded");
    assert_eq!(server.state.metrics().policy_reloads(ReloadResult::Ok), 1);

    std::fs::write(
        &policy_path,
        "tiers:\n  large:\n    requests: {cpu: eight, memory: 1Gi}\n    limits: {cpu: 8, memory: 1Gi}\n",
    )
    .expect("write bad policy");
    let rejected = eventually(WAIT, || {
        let state = state.clone();
        async move { state.metrics().policy_reloads(ReloadResult::Error) == 1 }
    })
    .await;
    assert!(rejected, "bad policy not noticed");
    assert_eq!(server.state.policy().default_tier, "large");
    // Still answering with the last good policy.
    let reply = send(
        server.addr,
        &certs.ca_cert_pem,
        "POST",
        "/mutate",
        review("u", plain_pod()),
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 200);
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn bad_policy_at_startup_refuses_to_start_naming_the_field() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let policy_dir = tempfile::tempdir().expect("tempdir");
    let policy_path = policy_dir.path().join("policy.yaml");
    std::fs::write(
        &policy_path,
        "tiers:\n  large:\n    requests: {cpu: eight, memory: 1Gi}\n    limits: {cpu: 8, memory: 1Gi}\n",
    )
    .expect("write");
    let mut config = fast_config(dir.path());
    config.policy_file = Some(policy_path);
    let err = devenv_webhook::Server::bind(config)
        .await
        .expect_err("must refuse");
    let text = format!("{err:#}");
    assert!(text.contains("tiers.large.requests.cpu"), "{text}");
}

#[tokio::test]
async fn missing_certificate_refuses_to_start() {
    let empty = tempfile::tempdir().expect("tempdir");
    let err = devenv_webhook::Server::bind(fast_config(empty.path()))
        .await
        .expect_err("must refuse");
    assert!(format!("{err:#}").contains("tls.crt"), "{err:#}");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let mut config = fast_config(dir.path());
    config.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let server = TestServer::start(config).await;
    let ca = &certs.ca_cert_pem;

    let reply = send(server.addr, ca, "GET", "/healthz", Vec::new())
        .await
        .expect("healthz");
    assert_eq!((reply.status, &reply.body[..]), (200, &b"ok"[..]));
    let reply = send(server.addr, ca, "GET", "/readyz", Vec::new())
        .await
        .expect("readyz");
    assert_eq!(reply.status, 200);
    let reply = send(server.addr, ca, "GET", "/mutate", Vec::new())
        .await
        .expect("GET mutate");
    assert_eq!(reply.status, 405);

    send(
        server.addr,
        ca,
        "POST",
        "/validate",
        review("m", plain_pod()),
    )
    .await
    .expect("validate");
    let reply = send(server.addr, ca, "GET", "/metrics", Vec::new())
        .await
        .expect("metrics");
    assert_eq!(reply.status, 200);
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(
        text.contains("devenv_webhook_requests_total{endpoint=\"validate\",outcome=\"allowed\"} 1"),
        "{text}"
    );
    assert!(text.contains("devenv_webhook_request_duration_seconds_bucket"));

    // The same over plain HTTP on the metrics listener.
    let metrics_addr = server.metrics_addr.expect("metrics listener");
    let mut tcp = tokio::net::TcpStream::connect(metrics_addr)
        .await
        .expect("tcp");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut plain = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut plain))
        .await
        .expect("in time")
        .expect("read");
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    assert!(plain.contains("outcome=\"allowed\"} 1"), "{plain}");
    assert!(
        plain.contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{plain}"
    );
    // The metrics listener is the same server as the lifecycle controller's: /healthz too.
    let mut tcp = tokio::net::TcpStream::connect(metrics_addr)
        .await
        .expect("tcp");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut health = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut health))
        .await
        .expect("in time")
        .expect("read");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("\r\n\r\nok"), "{health}");

    let state = server.state.clone();
    server.stop().await.expect("stop");
    assert!(state.readiness().is_err(), "not ready after shutdown");
}

#[tokio::test]
async fn many_concurrent_requests_on_one_h2_connection() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let server = TestServer::start(fast_config(dir.path())).await;
    let conn = Conn::open(server.addr, client_config(&certs.ca_cert_pem, &[b"h2"]))
        .await
        .expect("connect");
    let Conn::H2(sender) = conn else {
        panic!("expected h2")
    };
    let mut tasks = Vec::new();
    for i in 0..64 {
        let mut conn = Conn::H2(sender.clone());
        tasks.push(tokio::spawn(async move {
            let uid = format!("uid-{i}");
            let reply = conn
                .send("POST", "/validate", review(&uid, plain_pod()))
                .await
                .expect("validate");
            assert_eq!(response_of(&reply)["uid"], uid.as_str());
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(
        server
            .state
            .metrics()
            .requests(Endpoint::Validate, Outcome::Allowed),
        64
    );
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn graceful_stop_finishes_an_in_flight_request() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let mut config = fast_config(dir.path());
    config.request_limits.body_read_timeout = Duration::from_secs(5);
    let server = TestServer::start(config).await;
    let addr = server.addr;

    let body = review("uid-drain", plain_pod());
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
    wr.write_all(&body[..half]).await.expect("half body");
    wr.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stop = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No new connections once stopping.
    assert!(
        tls_connect(addr, client_config(&certs.ca_cert_pem, &[b"http/1.1"]))
            .await
            .is_err(),
        "still accepting after shutdown"
    );
    assert!(
        !stop.is_finished(),
        "stopped before the in-flight request finished"
    );
    wr.write_all(&body[half..]).await.expect("rest of body");
    wr.flush().await.expect("flush");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, rd.read_to_end(&mut answer))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("uid-drain"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    tokio::time::timeout(WAIT, stop)
        .await
        .expect("stops after draining")
        .expect("join")
        .expect("run");
}

#[tokio::test]
async fn connections_over_the_limit_wait_for_a_free_slot() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let mut config = fast_config(dir.path());
    config.limits.max_connections = 1;
    // Keep the idle first connection open however slow this machine is.
    config.limits.header_read_timeout = Duration::from_secs(60);
    let server = TestServer::start(config).await;
    let tls = || client_config(&certs.ca_cert_pem, &[b"http/1.1"]);

    let mut first = Conn::open(server.addr, tls())
        .await
        .expect("first connection");
    assert_eq!(
        first
            .send("GET", "/healthz", Vec::new())
            .await
            .expect("healthz")
            .status,
        200
    );
    // The only slot is taken: a second handshake is not even started.
    let second =
        tokio::time::timeout(Duration::from_millis(300), tls_connect(server.addr, tls())).await;
    assert!(
        second.is_err(),
        "a second connection was accepted over the limit"
    );

    drop(first);
    let reply = tokio::time::timeout(
        WAIT,
        send(
            server.addr,
            &certs.ca_cert_pem,
            "GET",
            "/healthz",
            Vec::new(),
        ),
    )
    .await
    .expect("served once the slot is free")
    .expect("healthz");
    assert_eq!(reply.status, 200);
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn idle_keep_alive_connection_is_still_answered_while_draining() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let server = TestServer::start(fast_config(dir.path())).await; // grace 5s
    let state = server.state.clone();
    let mut h1 = Conn::open(
        server.addr,
        client_config(&certs.ca_cert_pem, &[b"http/1.1"]),
    )
    .await
    .expect("connect");
    let reply = h1
        .send("POST", "/validate", review("before", plain_pod()))
        .await
        .expect("before");
    assert_eq!(reply.status, 200);

    let stop = tokio::spawn(server.stop());
    let draining = eventually(WAIT, || {
        let state = state.clone();
        async move { state.is_draining() }
    })
    .await;
    assert!(draining);
    // The API server may send its next request on the idle connection right now.
    let reply = h1
        .send("POST", "/validate", review("during", plain_pod()))
        .await
        .expect("a request on an idle keep-alive connection during the drain is answered");
    assert_eq!(reply.status, 200);
    assert_eq!(response_of(&reply)["uid"], "during");
    tokio::time::timeout(WAIT, stop)
        .await
        .expect("stops")
        .expect("join")
        .expect("run");
}

#[tokio::test]
async fn during_the_shutdown_delay_new_connections_are_answered_but_not_ready() {
    let certs = bundle();
    let dir = CertDir::new(&certs);
    let mut config = fast_config(dir.path());
    config.limits.shutdown_delay = Duration::from_millis(1500);
    let server = TestServer::start(config).await;
    let (addr, state) = (server.addr, server.state.clone());
    let t0 = std::time::Instant::now();
    let stop = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A request the API server routed here before it saw the pod terminating: a NEW
    // connection, accepted and answered.
    let reply = send(
        addr,
        &certs.ca_cert_pem,
        "POST",
        "/validate",
        review("uid-late", plain_pod()),
    )
    .await
    .expect("a new connection during the delay is served");
    assert_eq!(reply.status, 200);
    assert_eq!(response_of(&reply)["uid"], "uid-late");
    // Readiness fails from the signal on, so the kubelet takes the replica out too.
    let readyz = send(addr, &certs.ca_cert_pem, "GET", "/readyz", Vec::new())
        .await
        .expect("readyz during the delay");
    assert_eq!(
        readyz.status,
        503,
        "{:?}",
        String::from_utf8_lossy(&readyz.body)
    );
    assert!(state.readiness().is_err());
    assert!(!stop.is_finished(), "stopped before the delay was over");

    tokio::time::timeout(WAIT, stop)
        .await
        .expect("stops after the delay")
        .expect("join")
        .expect("run");
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "stopped {:?} after the signal, before the 1.5s delay",
        t0.elapsed()
    );
    assert!(
        tls_connect(addr, client_config(&certs.ca_cert_pem, &[b"http/1.1"]))
            .await
            .is_err(),
        "still accepting after the delay and the drain"
    );
}

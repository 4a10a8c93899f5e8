//! The webhook fixture the other suites rely on: stop / start again on the same port.

use std::time::Duration;

use devenv_e2e::serial::{serial, Timer};
use devenv_e2e::shared;
use devenv_e2e::webhook::WebhookProcess;

/// The fixture other suites reuse: stop / start_again keep the port and the CA, the port
/// is closed while stopped, and every start is a process that stays up.
#[test]
fn webhook_fixture_stops_and_starts_again_on_the_same_port() {
    let _serial = serial();
    let _t = Timer::start("webhook_fixture_stops_and_starts_again_on_the_same_port");
    let c = shared();
    let mut wh = WebhookProcess::start(c, None).expect("starting devenv-webhook");
    let (url, ca) = (wh.url(), wh.ca_pem());
    assert!(ca.contains("BEGIN CERTIFICATE"), "{ca}");
    let connects = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    for round in 0..4 {
        assert!(wh.is_running(), "round {round}: not running:\n{}", wh.log());
        assert!(connects(wh.port()), "round {round}: port closed");
        if round % 2 == 0 {
            wh.stop().expect("stop");
        } else {
            wh.kill();
        }
        assert!(!wh.is_running());
        assert!(!connects(wh.port()), "round {round}: still listening");
        wh.start_again().expect("start again");
        assert_eq!(wh.url(), url);
        assert_eq!(wh.ca_pem(), ca);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(wh.is_running(), "not running:\n{}", wh.log());
    let log = wh.log();
    assert_eq!(log.matches("listening").count(), 5, "{log}");
    let err = wh.start_again().expect_err("starting a running webhook");
    assert!(err.to_string().contains("already running"), "{err}");
}

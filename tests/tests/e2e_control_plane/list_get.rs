//! `list` and `get` (table, `-A`, `-o json`, `-o name`) report the real state.

use devenv_e2e::output::{assert_mentions, fails, json_of, ok};
use devenv_e2e::plugin::{devenv, dv, webhook_for};
use devenv_e2e::serial::{serial, Timer};
use devenv_e2e::shared;
use devenv_e2e::workspace::{pod_names_of, sts_claim_names, wait_pods, wait_settled};
use serde_json::json;

#[test]
fn list_and_get_report_the_real_state() {
    let _serial = serial();
    let _t = Timer::start("list_and_get_report_the_real_state");
    let c = shared();
    let ns = c.fresh_namespace("list");
    let _wh = webhook_for(c, &ns);

    ok(&dv(c, &ns, &["create", "busy", "--no-wait"]), "create busy");
    ok(
        &dv(c, &ns, &["create", "idle", "--tier", "micro", "--no-wait"]),
        "create idle",
    );
    wait_pods(c, &ns, "busy", &pod_names_of("busy", 1));
    wait_pods(c, &ns, "idle", &pod_names_of("idle", 1));
    wait_settled(c, &ns, "idle");
    ok(&dv(c, &ns, &["stop", "idle"]), "stop idle");
    wait_pods(c, &ns, "idle", &[]);

    let row = |text: &str, name: &str, all: bool| -> String {
        text.lines()
            .find(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                if all {
                    f.len() > 2 && f[0] == ns && f[1] == name
                } else {
                    f.first() == Some(&name)
                }
            })
            .unwrap_or_else(|| panic!("no row for {name} in:\n{text}"))
            .to_owned()
    };

    let text = ok(&dv(c, &ns, &["list"]), "list");
    assert!(text.starts_with("NAME"), "{text}");
    let busy = row(&text, "busy", false);
    assert_mentions(&busy, &["0/1", "Pending", "small"], "list: busy");
    let idle = row(&text, "idle", false);
    assert_mentions(&idle, &["0/0", "Stopped", "micro"], "list: idle");
    assert!(!idle.contains("Pending"), "{idle}");

    let text = ok(&devenv(c, ["list", "-A"]), "list -A");
    assert!(text.starts_with("NAMESPACE"), "{text}");
    assert_mentions(&row(&text, "busy", true), &["Pending"], "list -A: busy");
    assert_mentions(&row(&text, "idle", true), &["Stopped"], "list -A: idle");

    let text = ok(&dv(c, &ns, &["get", "busy"]), "get busy");
    assert_mentions(&row(&text, "busy", false), &["Pending"], "get busy");
    let text = ok(&dv(c, &ns, &["get", "idle"]), "get idle");
    assert_mentions(&row(&text, "idle", false), &["Stopped"], "get idle");

    let busy = json_of(&ok(
        &dv(c, &ns, &["get", "busy", "-o", "json"]),
        "get -o json",
    ));
    assert_eq!(busy["name"], "busy");
    assert_eq!(busy["namespace"], ns.as_str());
    assert!(busy["status"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Pending"));
    assert_eq!(busy["pods"][0]["name"], "busy-0");
    assert_eq!(busy["pods"][0]["phase"], "Pending");
    let claim_names: Vec<String> = busy["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(claim_names, sts_claim_names("busy", 0..1));

    let all = json_of(&ok(
        &devenv(c, ["list", "-A", "-o", "json"]),
        "list -A -o json",
    ));
    let list = all["items"].as_array().or(all.as_array()).expect("a list");
    let idle = list
        .iter()
        .find(|w| w["name"] == "idle" && w["namespace"] == ns.as_str())
        .unwrap_or_else(|| panic!("idle not in {all:#}"));
    assert_eq!(idle["status"], "Stopped");
    assert_eq!(idle["tier"], "micro");
    assert_eq!(idle["pods"], json!([]));

    let names = ok(&dv(c, &ns, &["list", "-o", "name"]), "list -o name");
    let mut lines: Vec<&str> = names.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["workspace/busy", "workspace/idle"]);
    let name = ok(&dv(c, &ns, &["get", "idle", "-o", "name"]), "get -o name");
    assert_eq!(name.trim(), "workspace/idle");

    let text = fails(&dv(c, &ns, &["get", "nobody"]), "get a missing workspace");
    assert_mentions(&text, &["nobody", "not found"], "get nobody");
}

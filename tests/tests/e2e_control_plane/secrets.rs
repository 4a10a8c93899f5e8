//! `secrets set` stores values that the plugin never prints and the webhook never logs.

use devenv_e2e::objects::get_ok;
use devenv_e2e::output::{assert_mentions, base64, both, ok, stderr, stdout};
use devenv_e2e::plugin::{devenv, dv, webhook_for};
use devenv_e2e::serial::{serial, Timer};
use devenv_e2e::workspace::{pod_names_of, wait_pods};
use devenv_e2e::{shared, unique_name};

#[test]
fn secret_values_are_stored_but_never_printed_nor_logged() {
    let _serial = serial();
    let _t = Timer::start("secret_values_are_stored_but_never_printed_nor_logged");
    let c = shared();
    let ns = c.fresh_namespace("secrets");
    let wh = webhook_for(c, &ns);
    let value = format!("e2e-Sekr1t-{}", unique_name("v"));
    let env_value = format!("e2e-FromEnv-{}", unique_name("v"));
    let forms = |v: &str| vec![v.to_owned(), base64(v.as_bytes())];
    let mut secret_forms = forms(&value);
    secret_forms.extend(forms(&env_value));
    let mut printed = String::new();

    let literal = format!("API_TOKEN={value}");
    for verbosity in [None, Some("-v"), Some("-vvv")] {
        let mut args = vec!["-n", ns.as_str()];
        args.extend(verbosity);
        args.extend([
            "secrets",
            "set",
            "team-keys",
            "--from-literal",
            literal.as_str(),
        ]);
        let out = devenv(c, &args);
        ok(&out, &format!("secrets set {verbosity:?}"));
        assert_mentions(
            &stdout(&out),
            &["secret/team-keys", "API_TOKEN"],
            "secrets set",
        );
        if verbosity == Some("-vvv") {
            assert!(
                stderr(&out).lines().count() > 5,
                "-vvv logs: {}",
                stderr(&out)
            );
        }
        printed.push_str(&both(&out));
    }
    // Another key from the environment, with -o yaml (the applied object, redacted).
    let out = devenv_e2e::plugin::devenv_command(&c.kubeconfig)
        .args([
            "-n",
            &ns,
            "-vvv",
            "secrets",
            "set",
            "team-keys",
            "--from-env",
            "E2E_SECRET_FROM_ENV",
            "-o",
            "yaml",
        ])
        .env("E2E_SECRET_FROM_ENV", &env_value)
        .output()
        .expect("kubectl devenv");
    let yaml = ok(&out, "secrets set --from-env -o yaml");
    assert_mentions(
        &yaml,
        &["API_TOKEN: <redacted>", "E2E_SECRET_FROM_ENV: <redacted>"],
        "-o yaml",
    );
    printed.push_str(&both(&out));

    let secret = get_ok(c, &["secret", "team-keys", "-n", &ns]);
    assert_eq!(secret["metadata"]["labels"]["devenv.io/inject"], "true");
    assert_eq!(secret["data"]["API_TOKEN"], base64(value.as_bytes()));
    assert_eq!(
        secret["data"]["E2E_SECRET_FROM_ENV"],
        base64(env_value.as_bytes())
    );

    // A workspace using it: the webhook looks the Secret up (metadata only) and admits.
    ok(
        &dv(
            c,
            &ns,
            &[
                "-v",
                "create",
                "alice",
                "--secret",
                "team-keys",
                "--no-wait",
            ],
        ),
        "create --secret",
    );
    wait_pods(c, &ns, "alice", &pod_names_of("alice", 1));
    let pod = get_ok(c, &["pod", "alice-0", "-n", &ns]);
    let env_from = pod["spec"]["containers"][0]["envFrom"].to_string();
    assert!(env_from.contains("team-keys"), "{env_from}");
    printed.push_str(&both(&dv(c, &ns, &["-vvv", "get", "alice", "-o", "yaml"])));

    let log = wh.log();
    assert!(
        log.contains("listening"),
        "the webhook's log is captured: {log}"
    );
    for form in &secret_forms {
        assert!(
            !printed.contains(form.as_str()),
            "the plugin printed a secret value ({form}):\n{printed}"
        );
        assert!(
            !log.contains(form.as_str()),
            "the webhook logged a secret value ({form}):\n{log}"
        );
    }
}

//! krew/devenv.yaml is a well-formed krew Plugin manifest, and every
//! platform's archive is named the way krew/release.sh names it.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use serde_yaml::Value;

fn manifest() -> Value {
    let text = std::fs::read_to_string(common::repo_root().join("krew/devenv.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn s<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} must be a string"))
}

/// (os, arch, target, archive) as release.sh prints them.
fn release_names() -> Vec<(String, String, String, String)> {
    let out = Command::new("bash")
        .arg(common::repo_root().join("krew/release.sh"))
        .arg("--print-names")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 4, "{l}");
            (f[0].into(), f[1].into(), f[2].into(), f[3].into())
        })
        .collect()
}

#[test]
fn manifest_structure() {
    let m = manifest();
    assert_eq!(
        m["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(m["kind"], "Plugin");
    assert_eq!(m["metadata"]["name"], "devenv");
    let spec = &m["spec"];
    let version = s(&spec["version"], "spec.version");
    assert_eq!(version, format!("v{}", env!("CARGO_PKG_VERSION")));
    assert!(s(&spec["homepage"], "homepage").starts_with("https://"));
    let short = s(&spec["shortDescription"], "shortDescription");
    assert!(!short.is_empty() && short.len() <= 60 && !short.ends_with('.'));
    assert!(!s(&spec["description"], "description").trim().is_empty());
    assert!(!s(&spec["caveats"], "caveats").trim().is_empty());

    let platforms = spec["platforms"].as_sequence().unwrap();
    let mut seen = BTreeSet::new();
    for p in platforms {
        let labels = &p["selector"]["matchLabels"];
        let os = s(&labels["os"], "os");
        let arch = s(&labels["arch"], "arch");
        assert!(
            seen.insert((os.to_owned(), arch.to_owned())),
            "{os}/{arch} twice"
        );
        let uri = s(&p["uri"], "uri");
        assert!(uri.starts_with("https://"), "{uri}");
        assert!(uri.contains(&format!("/download/{version}/")), "{uri}");
        let sha = s(&p["sha256"], "sha256");
        assert!(
            sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()),
            "{sha}"
        );
        let exe = if os == "windows" {
            "kubectl-devenv.exe"
        } else {
            "kubectl-devenv"
        };
        assert_eq!(s(&p["bin"], "bin"), exe);
        let files = p["files"].as_sequence().unwrap();
        assert!(
            files.iter().any(|f| f["from"] == exe && f["to"] == "."),
            "{os}/{arch}: bin not installed"
        );
    }
    let expected: BTreeSet<(String, String)> = ["linux", "darwin", "windows"]
        .iter()
        .flat_map(|os| ["amd64", "arm64"].map(|a| (os.to_string(), a.to_string())))
        .collect();
    assert_eq!(seen, expected);
}

#[test]
fn archive_names_match_release_sh() {
    let m = manifest();
    let names = release_names();
    let platforms = m["spec"]["platforms"].as_sequence().unwrap();
    assert_eq!(names.len(), platforms.len());
    for p in platforms {
        let os = s(&p["selector"]["matchLabels"]["os"], "os");
        let arch = s(&p["selector"]["matchLabels"]["arch"], "arch");
        let uri = s(&p["uri"], "uri");
        let (_, _, _, archive) = names
            .iter()
            .find(|(o, a, _, _)| o == os && a == arch)
            .unwrap_or_else(|| panic!("release.sh does not build {os}/{arch}"));
        assert!(
            uri.ends_with(&format!("/{archive}")),
            "{uri} is not {archive}"
        );
        let ext = if os == "windows" { "zip" } else { "tar.gz" };
        assert_eq!(
            archive,
            &format!(
                "kubectl-devenv_{}_{os}_{arch}.{ext}",
                env!("CARGO_PKG_VERSION")
            )
        );
    }
}

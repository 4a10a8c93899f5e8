//! krew/devenv.yaml is the template of a well-formed krew Plugin manifest:
//! every platform's archive is named the way krew/release.sh names it, and
//! its sha256 is a placeholder naming the platform, never a value (no stale
//! or all-zero sha256 can be published). `release.sh --manifest` fills each
//! placeholder with the sha256 of that platform's archive, and refuses (exit
//! 1, placeholder kept) when an archive is missing.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use serde_yaml::Value;

fn template_text() -> String {
    std::fs::read_to_string(common::repo_root().join("krew/devenv.yaml")).unwrap()
}

fn manifest() -> Value {
    serde_yaml::from_str(&template_text()).unwrap()
}

/// The placeholder release.sh replaces with a platform's sha256.
fn placeholder(os: &str, arch: &str) -> String {
    format!("@SHA256_{os}_{arch}@")
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// Runs `release.sh --manifest` with `dist` as DIST, writing `dist/devenv.yaml`.
fn release_manifest(dist: &Path) -> Output {
    Command::new("bash")
        .arg(common::repo_root().join("krew/release.sh"))
        .arg("--manifest")
        .env("DIST", dist)
        .env_remove("OUT")
        .env_remove("TEMPLATE")
        .env_remove("VERSION")
        .output()
        .unwrap()
}

/// `sha256sum FILE`'s hash.
fn sha256sum(file: &Path) -> String {
    let out = Command::new("sha256sum").arg(file).output().unwrap();
    assert!(out.status.success(), "sha256sum {}", file.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// A template with each sha256 replaced by `sha(os, arch)`, as YAML.
fn with_sha256(template: &Value, sha: impl Fn(&str, &str) -> String) -> Value {
    let mut m = template.clone();
    for p in m["spec"]["platforms"].as_sequence_mut().unwrap() {
        let os = p["selector"]["matchLabels"]["os"]
            .as_str()
            .unwrap()
            .to_owned();
        let arch = p["selector"]["matchLabels"]["arch"]
            .as_str()
            .unwrap()
            .to_owned();
        p["sha256"] = Value::String(sha(&os, &arch));
    }
    m
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
        // The template holds no sha256, only the platform's placeholder.
        let sha = s(&p["sha256"], "sha256");
        assert_eq!(sha, placeholder(os, arch), "{os}/{arch}");
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

#[test]
fn template_placeholders_are_exactly_one_per_platform() {
    let text = template_text();
    // Every @SHA256_..@ token in the file, wherever it is.
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("@SHA256_") {
        let tail = &rest[i + 1..];
        let end = tail.find('@').expect("a placeholder is closed by @");
        let token = &tail[..end];
        if token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            found.push(format!("@{token}@"));
        }
        rest = &tail[end + 1..];
    }
    let mut expected: Vec<String> = release_names()
        .iter()
        .map(|(os, arch, _, _)| placeholder(os, arch))
        .collect();
    found.sort();
    expected.sort();
    assert_eq!(found, expected, "each platform's placeholder, once");
    // No sha256-looking value anywhere (a stale one, or the all-zero one).
    let words = text.split(|c: char| !c.is_ascii_alphanumeric());
    let stale: Vec<&str> = words.filter(|w| w.len() == 64 && is_sha256(w)).collect();
    assert!(stale.is_empty(), "sha256 values in the template: {stale:?}");
    assert!(!text.contains(&"0".repeat(64)), "an all-zero sha256");
}

#[test]
fn release_manifest_carries_each_archives_sha256() {
    let dist = tempfile::tempdir().unwrap();
    // A different fake archive per platform, so a sha256 in the wrong place shows.
    for (os, arch, _, archive) in release_names() {
        std::fs::write(
            dist.path().join(&archive),
            format!("fake {os}/{arch} archive of kubectl-devenv\n"),
        )
        .unwrap();
    }
    let out = release_manifest(dist.path());
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dist.path().join("devenv.yaml")).unwrap();
    assert!(!text.contains("@SHA256_"), "a placeholder is left:\n{text}");
    let published: Value = serde_yaml::from_str(&text).unwrap();

    let names = release_names();
    let sha_of = |os: &str, arch: &str| {
        let (_, _, _, archive) = names
            .iter()
            .find(|(o, a, _, _)| o == os && a == arch)
            .unwrap();
        sha256sum(&dist.path().join(archive))
    };
    let mut seen = BTreeSet::new();
    for p in published["spec"]["platforms"].as_sequence().unwrap() {
        let os = s(&p["selector"]["matchLabels"]["os"], "os");
        let arch = s(&p["selector"]["matchLabels"]["arch"], "arch");
        let sha = s(&p["sha256"], "sha256");
        assert!(is_sha256(sha), "{os}/{arch}: {sha}");
        assert_eq!(sha, sha_of(os, arch), "{os}/{arch}");
        assert!(seen.insert(sha.to_owned()), "{os}/{arch}: sha256 repeated");
    }
    // Nothing else differs from the template (the version is Cargo.toml's, as there).
    assert_eq!(published, with_sha256(&manifest(), sha_of));
    // The template in git is left as it is.
    assert!(template_text().contains(&placeholder("linux", "amd64")));
}

#[test]
fn release_manifest_is_not_publishable_with_an_archive_missing() {
    let dist = tempfile::tempdir().unwrap();
    let names = release_names();
    let (os, arch, _, archive) = &names[0];
    std::fs::write(dist.path().join(archive), b"only one platform\n").unwrap();
    let out = release_manifest(dist.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("NOT publishable"), "{stderr}");
    let published: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dist.path().join("devenv.yaml")).unwrap())
            .unwrap();
    for p in published["spec"]["platforms"].as_sequence().unwrap() {
        let (o, a) = (
            s(&p["selector"]["matchLabels"]["os"], "os"),
            s(&p["selector"]["matchLabels"]["arch"], "arch"),
        );
        let sha = s(&p["sha256"], "sha256");
        if (o, a) == (os.as_str(), arch.as_str()) {
            assert_eq!(sha, sha256sum(&dist.path().join(archive)));
        } else {
            // Kept as the placeholder, which krew refuses: never a made-up value.
            assert_eq!(sha, placeholder(o, a));
            assert!(stderr.contains(&format!("{o}/{a} (")), "{stderr}");
        }
    }
}

/// The repository's LICENSE: the Apache-2.0 text that Cargo.toml names.
fn license_text() -> String {
    std::fs::read_to_string(common::repo_root().join("LICENSE")).expect("LICENSE at the repo root")
}

#[test]
fn license_is_the_apache_2_0_text_cargo_toml_names() {
    let text = license_text();
    assert!(text.contains("Apache License"), "not the Apache licence");
    assert!(
        text.contains("Version 2.0, January 2004"),
        "not version 2.0"
    );
    assert!(
        text.contains("END OF TERMS AND CONDITIONS"),
        "not the full text"
    );
    let cargo = std::fs::read_to_string(common::repo_root().join("Cargo.toml")).unwrap();
    assert!(cargo.contains("license = \"Apache-2.0\""), "Cargo.toml");
    // Every platform's manifest entry installs it.
    for p in manifest()["spec"]["platforms"].as_sequence().unwrap() {
        let files = p["files"].as_sequence().unwrap();
        assert!(
            files
                .iter()
                .any(|f| f["from"] == "LICENSE" && f["to"] == "."),
            "{:?}: LICENSE not installed",
            p["selector"]
        );
    }
}

/// The names in a .tar.gz, in order, and the text of one of them.
fn tar_list(archive: &Path) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tzf")
        .arg(archive)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar -tzf {}", archive.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn tar_file(archive: &Path, name: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xzOf")
        .arg(archive)
        .arg(name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar -xzOf {} {name}",
        archive.display()
    );
    out.stdout
}

#[test]
fn every_unix_archive_holds_the_binary_and_the_license_and_nothing_else() {
    let dist = tempfile::tempdir().unwrap();
    let bin = dist.path().join("fake-kubectl-devenv");
    for (os, arch, _, archive) in release_names() {
        if os == "windows" {
            continue; // zip: the same function packs it; tar lists only .tar.gz
        }
        let content = format!("#!/bin/sh\necho fake {os}/{arch}\n");
        std::fs::write(&bin, &content).unwrap();
        let out = Command::new("bash")
            .arg(common::repo_root().join("krew/release.sh"))
            .args(["--package", &os, &arch])
            .arg(&bin)
            .env("DIST", dist.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dist.path().join(&archive);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            path.display().to_string()
        );
        let mut names = tar_list(&path);
        names.sort();
        assert_eq!(names, ["LICENSE", "kubectl-devenv"], "{archive}");
        assert_eq!(tar_file(&path, "LICENSE"), license_text().into_bytes());
        assert_eq!(tar_file(&path, "kubectl-devenv"), content.into_bytes());
        // Reproducible: packing the same binary again gives the same sha256.
        let first = sha256sum(&path);
        let again = Command::new("bash")
            .arg(common::repo_root().join("krew/release.sh"))
            .args(["--package", &os, &arch])
            .arg(&bin)
            .env("DIST", dist.path())
            .output()
            .unwrap();
        assert!(again.status.success());
        assert_eq!(sha256sum(&path), first, "{archive} is not reproducible");
    }
    // An unknown platform is refused, and nothing is written for it.
    let out = Command::new("bash")
        .arg(common::repo_root().join("krew/release.sh"))
        .args(["--package", "plan9", "amd64"])
        .arg(&bin)
        .env("DIST", dist.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

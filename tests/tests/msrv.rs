//! The Rust version the README promises is true: no dependency asks for a
//! newer compiler than the workspace's `rust-version`, and the README says
//! the same version.
//!
//! Language features cannot be checked without the old compiler itself (the
//! workspace Cargo.toml says which one sets the floor); std APIs newer than
//! the promise are caught by clippy's `incompatible_msrv` lint, which reads
//! `rust-version` and runs in `.ci/run` with `-D warnings`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A `major.minor[.patch]` version as numbers, for comparing.
fn version(text: &str) -> Vec<u64> {
    text.split('.')
        .map(|part| {
            part.parse()
                .unwrap_or_else(|_| panic!("not a version: {text}"))
        })
        .collect()
}

/// `a` is newer than `b` (a missing patch counts as 0).
fn newer(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (version(a), version(b));
    a.resize(3, 0);
    b.resize(3, 0);
    a > b
}

/// The host's target triple, from `rustc -vV`.
fn host() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned()
}

/// `cargo metadata` for what builds on this machine (crates that only
/// Windows or macOS would build are left out), from the lock file.
fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root())
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(["--filter-platform", &host()])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// The workspace's `rust-version`, which every member inherits.
fn promise(metadata: &Value) -> String {
    let members = metadata["workspace_members"]
        .as_array()
        .expect("workspace_members");
    let mut versions: Vec<&str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|package| members.contains(&package["id"]))
        .map(|package| {
            package["rust_version"]
                .as_str()
                .unwrap_or_else(|| panic!("{} sets no rust-version", package["name"]))
        })
        .collect();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(
        versions.len(),
        1,
        "workspace members disagree on rust-version: {versions:?}"
    );
    versions[0].to_owned()
}

/// Every package the workspace builds on this machine (its own members,
/// their dependencies, dev-dependencies and build-dependencies) declares a
/// `rust-version` no newer than the workspace's.
#[test]
fn no_dependency_needs_a_newer_rust_than_the_workspace_promises() {
    let metadata = metadata();
    let promise = promise(&metadata);
    let resolved: Vec<&Value> = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes")
        .iter()
        .map(|node| &node["id"])
        .collect();
    let packages = metadata["packages"].as_array().expect("packages");
    let mut checked = 0;
    let mut too_new = Vec::new();
    for package in packages.iter().filter(|p| resolved.contains(&&p["id"])) {
        checked += 1;
        if let Some(needs) = package["rust_version"].as_str()
            && newer(needs, &promise)
        {
            too_new.push(format!(
                "{} {} needs Rust {needs}",
                package["name"].as_str().unwrap_or("?"),
                package["version"].as_str().unwrap_or("?"),
            ));
        }
    }
    assert!(checked > 20, "only {checked} packages resolved");
    assert!(
        too_new.is_empty(),
        "the workspace promises Rust {promise} (rust-version in Cargo.toml, and README.md), \
         but:\n  {}\nRaise the promise in both places (and say why in Cargo.toml), \
         or pin an older version of the dependency.",
        too_new.join("\n  ")
    );
}

/// README.md names the same minimum as `rust-version`.
#[test]
fn the_readme_promises_the_workspace_rust_version() {
    let promise = promise(&metadata());
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let said = format!("Rust {promise} or newer");
    assert!(
        readme.contains(&said),
        "README.md should say \"{said}\" (rust-version in Cargo.toml is {promise})"
    );
}

/// Nothing switches off the lint that catches std APIs newer than the
/// promise.
#[test]
fn the_incompatible_msrv_lint_stays_on() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let configured = manifest
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find(|line| line.contains("incompatible_msrv"));
    assert!(
        configured.is_none(),
        "Cargo.toml must not configure clippy::incompatible_msrv away: {configured:?}"
    );
    let output = Command::new("git")
        .current_dir(root())
        .args(["grep", "-l", "allow(clippy::incompatible_msrv"])
        .args(["--", ":!tests/tests/msrv.rs"])
        .output();
    if let Ok(output) = output {
        let hits = String::from_utf8_lossy(&output.stdout);
        assert!(
            hits.trim().is_empty(),
            "these files allow clippy::incompatible_msrv: {hits}"
        );
    }
}

/// Versions compare as numbers, part by part, not as text.
#[test]
fn versions_compare_by_number() {
    assert!(newer("1.88", "1.86"));
    assert!(newer("1.100", "1.99"));
    assert!(newer("1.88.1", "1.88"));
    assert!(!newer("1.88", "1.88.0"));
    assert!(!newer("1.70", "1.88"));
}

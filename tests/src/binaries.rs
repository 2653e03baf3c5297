//! Building the binaries the tests run.
//!
//! Cargo gives an integration test the path of its own package's binaries
//! (`CARGO_BIN_EXE_<name>`), not another package's. Looking in
//! `target/debug` instead would find nothing on a clean checkout, or a stale
//! binary after an edit. So each binary is built here, once per test
//! process, with the same cargo and profile as the tests: fast when
//! `cargo test --workspace` has already built it, correct when it has not.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// The path of the freshly built binary of the workspace package `name`
/// (each example's package and binary share a name).
///
/// Panics with cargo's message if the build fails: a test cannot go on
/// without its server.
pub fn binary(name: &str) -> PathBuf {
    build(name, name, |cargo| cargo.bin(name))
}

/// The path of the freshly built example program `example` of the
/// workspace package `package` (`cargo build -p PACKAGE --example
/// EXAMPLE`): a counter-example a chapter runs beside its step.
pub fn example(package: &str, example: &str) -> PathBuf {
    let key = format!("{package} --example {example}");
    build(&key, package, |cargo| cargo.example(example))
}

/// Builds `package` with `target` (a bin or an example) once per test
/// process, and returns the path cargo reports, cached under `key`.
fn build(
    key: &str,
    package: &str,
    target: impl FnOnce(escargot::CargoBuild) -> escargot::CargoBuild,
) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    // One build at a time: cargo would serialise them on its lock anyway.
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(key) {
        return path.clone();
    }
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let cargo = escargot::CargoBuild::new()
        .manifest_path(manifest)
        .package(package);
    let run = target(cargo)
        .current_release()
        .run()
        .unwrap_or_else(|err| panic!("building {key} failed: {err}"));
    let path = run.path().to_path_buf();
    built.insert(key.to_owned(), path.clone());
    path
}

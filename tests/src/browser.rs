//! Headless Chromium: the DOM a page ends with, and more with its flags
//! (`--screenshot`).
//!
//! Each run gets a fresh profile directory and its own process group, so
//! that one kill reaches the browser and every helper process it started,
//! whether it finished or hung.

use std::process::Command;
use std::time::Duration;

use crate::tools::{TempDir, output_within, runs_or_skip};

/// How long the browser may take with one page before it is killed.
pub const BROWSER_LIMIT: Duration = Duration::from_secs(60);

/// Debian's `chromium`, or None (after saying so loudly) when it is not
/// installed. Under CI (`CI=true`) a missing browser fails the test:
/// `.ci/run` installs it.
pub fn chromium() -> Option<&'static str> {
    runs_or_skip(
        "chromium",
        &["--version"],
        "this headless browser test",
        "apt-get update && apt-get install -y chromium",
    )
    .then_some("chromium")
}

/// Loads `url` and returns the DOM it ends with: what the page shows.
pub fn dump_dom(browser: &str, url: &str) -> String {
    headless(browser, &["--dump-dom", url])
}

/// Runs the browser headless with `args` (after the flags every run needs:
/// no sandbox, no GPU, nothing fetched from the network behind the page's
/// back, a fresh profile) and returns its standard output. It is killed if
/// it takes longer than [`BROWSER_LIMIT`], and in any case when it is done.
pub fn headless(browser: &str, args: &[&str]) -> String {
    let profile = TempDir::new("chromium-profile");
    let output = output_within(
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args),
        BROWSER_LIMIT,
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

//! Bounded polling.
//!
//! Where a readiness signal exists (a line on a pipe, a byte on a socket),
//! the tests wait on it. Some facts have none: "the server's fd count is
//! back to 5" changes inside another process. For those, poll, with a
//! generous deadline so a loaded machine does not fail the test, and a
//! short pause so polling costs little.

use std::time::{Duration, Instant};

/// Calls `check` until it returns true or `timeout` has passed; returns
/// whether it became true.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

//! For suites whose tests share cluster-wide state (the webhook configurations are
//! cluster-scoped): one test at a time, even without `--test-threads=1`, and how long
//! each took.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// One test at a time within this test binary; held until the guard drops. A test that
/// panicked while holding it does not block the others.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Prints `==== NAME` when a test starts and how long it took when it ends (passed or not).
pub struct Timer(&'static str, Instant);

impl Timer {
    pub fn start(name: &'static str) -> Timer {
        eprintln!("==== {name}");
        Timer(name, Instant::now())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        eprintln!(
            "==== {} {} in {:.1}s",
            self.0,
            if std::thread::panicking() {
                "FAILED"
            } else {
                "passed"
            },
            self.1.elapsed().as_secs_f64()
        );
    }
}

//! Named points in the commit path where a test can freeze the process, to kill it at a
//! precise moment. Without the `testing` feature they compile to nothing.

/// Freezes the process here if the test harness asked for it (see [`pause_point`]).
#[cfg(feature = "testing")]
pub(crate) fn point(name: &str) {
    pause_point(name);
}

/// Compiled out without the `testing` feature.
#[cfg(not(feature = "testing"))]
#[inline(always)]
pub(crate) fn point(_name: &str) {}

/// The variable naming where [`pause_point`] freezes the process: `NAME` or `NAME@N`
/// (the Nth time that point is reached).
#[cfg(feature = "testing")]
pub const PAUSE_AT_VAR: &str = "SWITCHYARD_TEST_PAUSE_AT";

/// What a frozen process prints on stderr, followed by the point's name.
#[cfg(feature = "testing")]
pub const PAUSED: &str = "SWITCHYARD PAUSED AT ";

/// If `SWITCHYARD_TEST_PAUSE_AT` names this point (and this is the Nth time it is
/// reached), prints [`PAUSED`] and the name on stderr and blocks forever, so that a
/// test can SIGKILL the process at exactly this moment.
#[cfg(feature = "testing")]
pub fn pause_point(name: &str) {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static REACHED: AtomicUsize = AtomicUsize::new(0);
    let Ok(wanted) = std::env::var(PAUSE_AT_VAR) else {
        return;
    };
    let (point, nth) = match wanted.split_once('@') {
        Some((point, nth)) => (point.to_owned(), nth.parse().unwrap_or(1)),
        None => (wanted, 1),
    };
    if point != name || REACHED.fetch_add(1, Ordering::SeqCst) + 1 != nth {
        return;
    }
    let _ = writeln!(std::io::stderr(), "{PAUSED}{name}");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

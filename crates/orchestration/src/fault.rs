//! Named points in the commit path where a test can freeze the process, to kill it at a
//! precise moment. Without the `testing` feature they compile to nothing.

/// Freezes the process here if the test harness asked for it (see
/// `testing::pause_point`).
#[cfg(feature = "testing")]
pub(crate) fn point(name: &str) {
    crate::testing::pause_point(name);
}

/// Compiled out without the `testing` feature.
#[cfg(not(feature = "testing"))]
#[inline(always)]
pub(crate) fn point(_name: &str) {}

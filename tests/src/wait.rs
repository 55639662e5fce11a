//! Polling with a deadline: tests wait for conditions, never for time.

use std::time::{Duration, Instant};

/// How often a condition is polled. Short enough that measured figures
/// (e.g. discovery time) are not dominated by it, long enough to be cheap.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What a polled closure may return: `bool`, `Option<T>`, or
/// `Result<T, String>` where the error describes what was seen instead (it
/// is printed when the wait times out).
pub trait Ready {
    /// The value handed back once the condition holds.
    type Output;
    /// `Ok` when the condition holds; `Err` with what was seen otherwise.
    fn into_ready(self) -> Result<Self::Output, Option<String>>;
}

impl Ready for bool {
    type Output = ();
    fn into_ready(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Ready for Option<T> {
    type Output = T;
    fn into_ready(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T> Ready for Result<T, String> {
    type Output = T;
    fn into_ready(self) -> Result<T, Option<String>> {
        self.map_err(Some)
    }
}

/// Polls `condition` until it holds and returns its value; panics after
/// `timeout` with `what` and the last thing the condition reported seeing.
pub fn wait_until<R: Ready>(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> R,
) -> R::Output {
    match try_wait_until(timeout, &mut condition) {
        Ok(value) => value,
        Err(last) => panic!(
            "timed out after {timeout:?} waiting for {what}; last seen: {}",
            last.as_deref().unwrap_or("(condition false)")
        ),
    }
}

/// Like [`wait_until`] but hands the timeout back to the caller: `Err` holds
/// what the condition last reported.
pub fn try_wait_until<R: Ready>(
    timeout: Duration,
    mut condition: impl FnMut() -> R,
) -> Result<R::Output, Option<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match condition().into_ready() {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(last);
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

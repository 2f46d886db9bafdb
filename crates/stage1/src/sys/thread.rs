//! Threads stage1 starts, counted, so that [`super::process::fork`] can
//! refuse to fork a process in which another thread may hold a lock the
//! child would inherit locked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// Threads started through [`spawn`] and not yet joined.
pub(super) static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// A thread started by [`spawn`]; [`Joined::join`] waits for it.
pub struct Joined<T>(JoinHandle<T>);

impl<T> Joined<T> {
    /// Waits for the thread; `None` if it panicked.
    pub fn join(self) -> Option<T> {
        let result = self.0.join().ok();
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

/// Starts `f` on a thread named `name`.
pub fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<Joined<T>> {
    RUNNING.fetch_add(1, Ordering::SeqCst);
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(|| {
            // Stops are taken by the main thread, whose handlers forget a
            // pid before reaping it there.
            super::signal::set_blocked(&crate::supervise::TERMINATION_SIGNALS, true);
            f()
        })
        .map(Joined)
        .inspect_err(|_| {
            RUNNING.fetch_sub(1, Ordering::SeqCst);
        })
}

/// How many threads [`spawn`] started are running.
pub fn running() -> usize {
    RUNNING.load(Ordering::SeqCst)
}

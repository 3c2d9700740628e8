//! Connection tasks that a graceful shutdown can signal, wait for (bounded) and abort.
//!
//! Each task holds a [`Stop`] (a `watch` receiver) until it ends, so "every task has
//! ended" is "the `watch` sender has no receiver left"; the abort handles are kept
//! only to cut the tasks that outlive the grace period.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::AbortHandle;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What [`Tasks::shutdown`] waits beyond the grace before aborting: a connection that
/// waited the whole grace for the peer's closing tag still closes TCP/TLS cleanly.
pub(crate) const ABORT_MARGIN: Duration = Duration::from_millis(250);

/// A set of connection tasks sharing one stop signal.
#[derive(Debug)]
pub(crate) struct Tasks {
    stop: watch::Sender<bool>,
    handles: Mutex<HashMap<u64, AbortHandle>>,
    serial: AtomicU64,
}

/// A task's view of the stop signal; held for the task's whole life.
#[derive(Debug)]
pub(crate) struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Completes once a shutdown has begun (at once if it already has). Cancel-safe.
    pub(crate) async fn stopped(&mut self) {
        if self.0.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Removes the task's abort handle when the task ends (or is dropped unpolled).
struct Guard {
    tasks: Arc<Tasks>,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        lock(&self.tasks.handles).remove(&self.id);
    }
}

impl Tasks {
    pub(crate) fn new() -> Arc<Self> {
        let (stop, _) = watch::channel(false);
        Arc::new(Tasks {
            stop,
            handles: Mutex::new(HashMap::new()),
            serial: AtomicU64::new(1),
        })
    }

    /// Whether a shutdown has begun.
    pub(crate) fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Spawns `f(stop)` on `rt`; `false` (nothing spawned) once a shutdown has begun.
    pub(crate) fn spawn<F, Fut>(self: &Arc<Self>, rt: &tokio::runtime::Handle, f: F) -> bool
    where
        F: FnOnce(Stop) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.is_stopping() {
            return false;
        }
        let id = self.serial.fetch_add(1, Ordering::Relaxed);
        let guard = Guard {
            tasks: self.clone(),
            id,
        };
        let fut = f(Stop(self.stop.subscribe()));
        let h = rt.spawn(async move {
            let _guard = guard;
            fut.await;
        });
        let mut handles = lock(&self.handles);
        // A task that already ended has removed (nothing) and must not be added.
        if !h.is_finished() {
            handles.insert(id, h.abort_handle());
        }
        true
    }

    /// Signals every task to stop; new spawns are refused from now on.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// [`stop`](Self::stop), then waits up to `grace` + [`ABORT_MARGIN`] for every
    /// task to end and aborts the ones still running. Returns how many were aborted.
    pub(crate) async fn shutdown(&self, grace: Duration) -> usize {
        self.stop();
        if tokio::time::timeout(grace + ABORT_MARGIN, self.stop.closed())
            .await
            .is_ok()
        {
            return 0;
        }
        let left: Vec<AbortHandle> = lock(&self.handles).drain().map(|(_, h)| h).collect();
        for h in &left {
            h.abort();
        }
        left.len()
    }
}

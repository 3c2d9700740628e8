//! [`StoreHandle`]: the one-writer thread, for async (and multi-threaded) callers.
//!
//! The store is synchronous and every write waits for an fsync, so it must not run on an
//! async executor's threads. [`StoreHandle::spawn`] moves a [`SqliteStore`] onto a
//! dedicated thread that runs requests one at a time from a bounded queue. A request is a
//! closure over `&mut SqliteStore`; its answer comes back through a [`Reply`], which is
//! both a `Future` (runtime-agnostic: it only stores the `Waker`) and blockable
//! ([`Reply::wait`]).
//!
//! * From async code: `handle.submit(|s| s.offline_push(&u, now, &xml))?.await`. A full
//!   queue is [`StoreError::Busy`] at once (never a blocked executor): answer the peer
//!   "try later" (XMPP `<resource-constraint/>`, SIP 503 with `Retry-After`).
//! * From a blocking thread (`spawn_blocking`, or the policy engine's own thread):
//!   [`StoreHandle::call_blocking`] waits for room in the queue and for the answer. The
//!   handle implements [`PolicyStore`] this way, so `Policy::open(handle.clone())` works
//!   on such a thread. Never call it on an executor thread, or from inside a request
//!   (that deadlocks the writer).
//!
//! When the last handle is dropped, the thread finishes the queued requests and returns
//! the store through its `JoinHandle`.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

use fedgate_policy::{Change, PolicyStore, Snapshot};

use crate::{SqliteStore, StoreError};

type Job = Box<dyn FnOnce(&mut SqliteStore) + Send>;

/// A cheap-to-clone handle to the store's writer thread. See the module docs.
#[derive(Clone)]
pub struct StoreHandle {
    tx: SyncSender<Job>,
    capacity: usize,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl StoreHandle {
    /// Moves `store` onto a new thread named `fedgate-store` with a queue of `capacity`
    /// requests (at least 1).
    pub fn spawn(
        store: SqliteStore,
        capacity: usize,
    ) -> Result<(Self, JoinHandle<SqliteStore>), StoreError> {
        let capacity = capacity.max(1);
        let path = store.path().to_owned();
        let (tx, rx) = sync_channel::<Job>(capacity);
        let join = std::thread::Builder::new()
            .name("fedgate-store".into())
            .spawn(move || {
                let mut store = store;
                while let Ok(job) = rx.recv() {
                    // A panicking request drops its open transaction (rolled back) and its
                    // reply (the caller gets `WriterGone`); the writer keeps serving.
                    let run = std::panic::AssertUnwindSafe(|| job(&mut store));
                    if std::panic::catch_unwind(run).is_err() {
                        tracing::error!(
                            "store: a request panicked; its transaction was rolled back"
                        );
                    }
                }
                store
            })
            .map_err(|source| StoreError::Io { path, source })?;
        Ok((Self { tx, capacity }, join))
    }

    /// The queue's capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn job<T, F>(f: F) -> (Job, Reply<T>)
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteStore) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                value: None,
                waker: None,
            }),
            ready: Condvar::new(),
        });
        let sender = ReplySender(Some(Arc::clone(&shared)));
        let job: Job = Box::new(move |store| sender.send(f(store)));
        (job, Reply { shared })
    }

    /// Queues `f` without blocking. [`StoreError::Busy`] when the queue is full,
    /// [`StoreError::WriterGone`] when the writer has stopped.
    pub fn submit<T, F>(&self, f: F) -> Result<Reply<T>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteStore) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, reply) = Self::job(f);
        match self.tx.try_send(job) {
            Ok(()) => Ok(reply),
            Err(TrySendError::Full(_)) => Err(StoreError::Busy {
                capacity: self.capacity,
            }),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::WriterGone),
        }
    }

    /// Queues `f`, waiting for room, and waits for its answer. Blocks: call it only
    /// from a thread that may block.
    pub fn call_blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteStore) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, reply) = Self::job(f);
        self.tx.send(job).map_err(|_| StoreError::WriterGone)?;
        reply.wait()
    }
}

/// The forwarding [`PolicyStore`] that fedgate-policy's store docs describe: each call is
/// one request to the writer, waited for. Blocking: see the module docs.
impl PolicyStore for StoreHandle {
    type Error = StoreError;

    fn load(&self) -> Result<Snapshot, StoreError> {
        self.call_blocking(|s| s.load())
    }

    fn apply(&mut self, batch: &[Change]) -> Result<(), StoreError> {
        let batch = batch.to_vec();
        self.call_blocking(move |s| s.apply(&batch))
    }
}

struct Slot<T> {
    value: Option<Result<T, StoreError>>,
    waker: Option<Waker>,
}

struct Shared<T> {
    slot: Mutex<Slot<T>>,
    ready: Condvar,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer's end of a reply; dropping it unsent answers [`StoreError::WriterGone`].
struct ReplySender<T>(Option<Arc<Shared<T>>>);

impl<T> ReplySender<T> {
    fn send(mut self, value: Result<T, StoreError>) {
        self.complete(value);
    }

    fn complete(&mut self, value: Result<T, StoreError>) {
        let Some(shared) = self.0.take() else { return };
        let waker = {
            let mut slot = shared.lock();
            slot.value = Some(value);
            slot.waker.take()
        };
        shared.ready.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for ReplySender<T> {
    fn drop(&mut self) {
        self.complete(Err(StoreError::WriterGone));
    }
}

/// The answer to a request: `.await` it, or [`Reply::wait`] on a blocking thread.
/// Polling it again after it returned `Ready` gives [`StoreError::WriterGone`].
#[must_use = "the request runs anyway; the reply says whether it was durable"]
pub struct Reply<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ready = self.shared.lock().value.is_some();
        f.debug_struct("Reply").field("ready", &ready).finish()
    }
}

impl<T> Reply<T> {
    /// Blocks the current thread until the answer is there.
    pub fn wait(self) -> Result<T, StoreError> {
        let mut slot = self.shared.lock();
        loop {
            if let Some(v) = slot.value.take() {
                return v;
            }
            if Arc::strong_count(&self.shared) == 1 {
                // Sender gone without a value: cannot happen (its Drop answers), but never
                // wait forever.
                return Err(StoreError::WriterGone);
            }
            slot = self
                .shared
                .ready
                .wait(slot)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl<T> Future for Reply<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.shared.lock();
        if let Some(v) = slot.value.take() {
            return Poll::Ready(v);
        }
        if Arc::strong_count(&self.shared) == 1 {
            return Poll::Ready(Err(StoreError::WriterGone));
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

//! The writer thread: async replies without a runtime, back-pressure, panics, shutdown.
#![allow(clippy::unwrap_used)] // test code: helpers outside #[test] fns

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;

use fedgate_policy::{Policy, PolicyStore, SubscriptionLimits, Timestamp, UserAddress};
use fedgate_store::*;

struct Unpark(thread::Thread, AtomicUsize);
impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.unpark();
    }
}

/// A minimal executor: poll, park until woken.
fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current(), AtomicUsize::new(0))));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

fn u(s: &str) -> UserAddress {
    s.parse().unwrap()
}

/// Blocks the writer until the returned sender is dropped or sent to; returns once the
/// writer is inside the blocking request.
fn stall(h: &StoreHandle) -> (mpsc::Sender<()>, Reply<()>) {
    let (started_tx, started_rx) = mpsc::channel();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let reply = h
        .submit(move |_| {
            started_tx.send(()).unwrap();
            let _ = gate_rx.recv();
            Ok(())
        })
        .unwrap();
    started_rx.recv().unwrap();
    (gate_tx, reply)
}

#[test]
fn async_reply_wakes_the_task_when_the_write_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (h, join) = StoreHandle::spawn(SqliteStore::open(dir.path()).unwrap(), 8).unwrap();
    let (gate, stalled) = stall(&h);
    let a = u("alice@example.com");
    let a2 = a.clone();
    let mut reply = h
        .submit(move |s| s.offline_push(&a2, Timestamp::ZERO, "<m/>"))
        .unwrap();
    let wakes = Arc::new(Unpark(thread::current(), AtomicUsize::new(0)));
    let waker = Waker::from(Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);
    assert!(std::pin::Pin::new(&mut reply).poll(&mut cx).is_pending());
    assert_eq!(wakes.1.load(Ordering::SeqCst), 0);
    drop(gate);
    stalled.wait().unwrap();
    // The writer wakes the waker registered by the pending poll (it unparks us).
    while wakes.1.load(Ordering::SeqCst) == 0 {
        thread::park();
    }
    let id = match std::pin::Pin::new(&mut reply).poll(&mut cx) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => panic!("woken but not ready"),
    };
    let a3 = a.clone();
    let queued = block_on(h.submit(move |s| s.offline_peek(&a3)).unwrap()).unwrap();
    assert_eq!(queued[0].id, id);
    drop(h);
    let store = join.join().unwrap();
    assert_eq!(store.offline_count(&a).unwrap(), 1);
}

#[test]
fn full_queue_is_busy_at_once_and_store_errors_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _join) = StoreHandle::spawn(SqliteStore::open(dir.path()).unwrap(), 1).unwrap();
    let (gate, stalled) = stall(&h);
    let queued = h.submit(|s| s.list_users()).unwrap();
    let err = h.submit(|s| s.list_users()).unwrap_err();
    assert!(matches!(err, StoreError::Busy { capacity: 1 }), "{err}");
    assert!(err.is_transient());
    gate.send(()).unwrap();
    stalled.wait().unwrap();
    assert_eq!(queued.wait().unwrap(), vec![]);
    let err = h
        .call_blocking(|s| s.set_password(&u("nobody@example.com"), "x"))
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownUser(_)), "{err}");
}

#[test]
fn a_panicking_request_answers_writer_gone_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _join) = StoreHandle::spawn(SqliteStore::open(dir.path()).unwrap(), 4).unwrap();
    let r: Result<(), _> = h.call_blocking(|s| {
        let tx = s.offline_push(&u("a@example.com"), Timestamp::ZERO, "<m/>");
        assert!(tx.is_ok());
        panic!("bug in a request");
    });
    assert!(matches!(r, Err(StoreError::WriterGone)));
    // The write before the panic was its own committed transaction; the writer lives.
    assert_eq!(
        h.call_blocking(|s| s.offline_count(&u("a@example.com")))
            .unwrap(),
        1
    );
}

#[test]
fn policy_engine_runs_through_the_handle_on_a_blocking_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (h, join) = StoreHandle::spawn(SqliteStore::open(dir.path()).unwrap(), 4).unwrap();
    let h2 = h.clone();
    thread::spawn(move || {
        let mut p = Policy::open(h2, SubscriptionLimits::default()).unwrap();
        p.add_local_domain(Timestamp::ZERO, "example.com".parse().unwrap())
            .unwrap();
    })
    .join()
    .unwrap();
    let snap = h.load().unwrap();
    assert_eq!(snap.local_domains.len(), 1);
    drop(h);
    let store = join.join().unwrap();
    assert_eq!(store.load().unwrap(), snap);
}

#[test]
fn dropping_the_last_handle_finishes_queued_writes_and_returns_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (h, join) = StoreHandle::spawn(SqliteStore::open(dir.path()).unwrap(), 4).unwrap();
    let (gate, stalled) = stall(&h);
    let queued = h
        .submit(|s| s.roster_set(&u("a@example.com"), &RosterItem::new("b@x.example")))
        .unwrap();
    drop(h);
    drop(gate);
    stalled.wait().unwrap();
    let version = queued.wait().unwrap();
    let store = join.join().unwrap();
    assert_eq!(store.roster(&u("a@example.com")).unwrap().version, version);
}

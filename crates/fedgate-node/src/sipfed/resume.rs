//! Watchers' subscription dialogs in the store, so that a restarted node goes on
//! notifying the Lync users who watch its users (issue #8: "SIP subscriptions,
//! dialogs needed to resume … survive a restart").
//!
//! A Lync watcher refreshes its subscription only every 1 h 45 min and knows
//! nothing of our restart: the dialog is still running on its side. So the gateway
//! writes each answered watcher subscription
//! ([`UserAgent::export_notifier`](fedgate_sip_txn::UserAgent::export_notifier), table
//! `sip_dialogs`) when it is accepted and at every refresh, and deletes it when it
//! ends. At start, every record still running is taken up again
//! ([`SipUa::restore_notifier`](crate::sip::SipUa::restore_notifier))
//! on the best route to the watcher's domain, and its watcher goes through the
//! router as a new SUBSCRIBE would (RFC 6121 inbound processing and the per-user
//! policy): an approved watcher gets an `active` NOTIFY with the user's presence in
//! the old dialog, a politely blocked one Offline, a refused one `terminated;
//! reason=rejected`, a pending one waits for the user again. A record of a domain no
//! longer permitted, of a user who no longer exists, or that does not decode is
//! deleted.
//!
//! IM sessions are not written down: a session ends with its connection on both
//! sides ([`CloseReason::FlowClosed`](fedgate_sip_txn::CloseReason::FlowClosed)),
//! and a restart ends every connection; the next message opens a new session.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fedgate_sip_txn::SubscriptionId;
use fedgate_sip_txn::ua::NotifierRecord;
use fedgate_store::{SipDialogRecord, SipDialogStore};

use super::translate::{self, DocFormat};
use super::{Decision, Shared, Watcher, admit, lock, policy_domain};
use crate::sip::ua::accept_types;

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The store's key of a dialog: Call-ID and our tag.
fn key_of(rec: &NotifierRecord) -> Option<String> {
    let call_id = rec.request.call_id().ok()?.0;
    Some(format!(
        "{};{}",
        String::from_utf8_lossy(&call_id),
        String::from_utf8_lossy(&rec.local_tag)
    ))
}

fn watcher_pair(shared: &Shared, sub: SubscriptionId) -> Option<super::Pair> {
    lock(&shared.state)
        .watchers
        .get(&sub)
        .map(|w| w.pair.clone())
}

/// A refresh within this time of the last write is not written again (a peer that
/// refreshes in a loop must not turn each SUBSCRIBE into a store write). The record
/// then holds an expiry up to this much early, and a restored subscription's CSeq
/// still skips [`RESTORE_CSEQ_GAP`](fedgate_sip_txn::ua::RESTORE_CSEQ_GAP) numbers.
const REWRITE_AFTER: Duration = Duration::from_secs(60);

/// Writes watcher `sub`'s dialog (after its acceptance and each refresh).
pub(super) async fn store_watcher(shared: &Arc<Shared>, sub: SubscriptionId) {
    let recent = lock(&shared.state)
        .stored_watchers
        .get(&sub)
        .is_some_and(|(_, at)| at.elapsed() < REWRITE_AFTER);
    if recent {
        return;
    }
    let Some(pair) = watcher_pair(shared, sub) else {
        return;
    };
    let rec = match shared.ua.export_notifier(sub).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(error = %e, "sip gateway: watcher dialog not exported");
            return;
        }
    };
    let Some(id) = key_of(&rec) else {
        return;
    };
    let now = unix_now();
    let row = SipDialogRecord {
        id: id.clone(),
        local: pair.0.to_string(),
        remote: pair.1.to_string(),
        record: rec.encode(),
        stored_at: now,
        expires_at: now.saturating_add(i64::try_from(rec.expires_in.as_secs()).unwrap_or(0)),
    };
    let r = match shared.store().submit(move |s| s.put_sip_dialog(&row)) {
        Ok(reply) => reply.await,
        Err(e) => Err(e),
    };
    match r {
        Ok(()) => {
            lock(&shared.state)
                .stored_watchers
                .insert(sub, (id, std::time::Instant::now()));
        }
        Err(e) => tracing::warn!(error = %e, "sip gateway: watcher dialog not stored"),
    }
}

/// Deletes the stored dialog of a watcher subscription that ended.
pub(super) async fn forget_watcher(shared: &Arc<Shared>, sub: SubscriptionId) {
    let Some((id, _)) = lock(&shared.state).stored_watchers.remove(&sub) else {
        return;
    };
    delete(shared, id).await;
}

async fn delete(shared: &Arc<Shared>, id: String) {
    let r = match shared.store().submit(move |s| s.delete_sip_dialog(&id)) {
        Ok(reply) => reply.await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, "sip gateway: watcher dialog not deleted");
    }
}

/// A watcher's connection closed (the UA holds its NOTIFYs back): its subscription
/// goes on over a connection of ours to the watcher's domain (RFC 3263: the best
/// target, as for our own requests), so presence changes keep reaching it before its
/// next refresh (Lync: up to 1 h 45 min away).
pub(super) async fn rebind_watcher(shared: &Arc<Shared>, sub: SubscriptionId) {
    let Some(pair) = watcher_pair(shared, sub) else {
        return;
    };
    let Some(domain) = policy_domain(&pair.1) else {
        return;
    };
    let target = match shared.routes.next_target(&domain, &[]).await {
        Ok(Some(t)) => t,
        Ok(None) | Err(_) => {
            tracing::info!(local = %pair.0, watcher = %pair.1,
                "sip gateway: no route to a watcher whose connection closed; NOTIFYs wait for its refresh");
            return;
        }
    };
    tracing::debug!(local = %pair.0, watcher = %pair.1, %target, "sip gateway: watcher's connection closed; NOTIFYs go to its domain");
    if let Err(e) = shared.ua.rebind_subscription(sub, target).await {
        tracing::debug!(error = %e, "sip gateway: watcher subscription not moved");
    }
}

/// Takes up the stored watcher subscriptions (at start, with the ops and event tasks
/// running). Returns how many were restored.
pub(super) async fn restore_watchers(shared: Arc<Shared>) -> usize {
    let now = unix_now();
    let rows = match shared.store().submit(move |s| s.sip_dialogs(now)) {
        Ok(reply) => reply.await,
        Err(e) => Err(e),
    };
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "sip gateway: stored watcher dialogs not read");
            return 0;
        }
    };
    let limits = fedgate_sip::Limits::default();
    let mut restored = 0;
    for row in rows {
        match restore_one(&shared, &row, &limits, now).await {
            Ok(()) => restored += 1,
            Err(why) => {
                tracing::info!(id = %row.id, local = %row.local, remote = %row.remote, why,
                    "sip gateway: stored watcher dialog not restored; deleted");
                delete(&shared, row.id).await;
            }
        }
    }
    if restored > 0 {
        tracing::info!(
            restored,
            "sip gateway: watcher subscriptions taken up again"
        );
    }
    restored
}

async fn restore_one(
    shared: &Arc<Shared>,
    row: &SipDialogRecord,
    limits: &fedgate_sip::Limits,
    now: i64,
) -> Result<(), &'static str> {
    let rec = NotifierRecord::decode(&row.record, limits).map_err(|_| "does not decode")?;
    let passed = u64::try_from(now.saturating_sub(row.stored_at)).unwrap_or(0);
    let left = rec
        .expires_in
        .checked_sub(Duration::from_secs(passed))
        .filter(|d| d.as_secs() > 0)
        .ok_or("expired")?;
    let (from, to) = (
        rec.request.from().map_err(|_| "no From")?,
        rec.request.to().map_err(|_| "no To")?,
    );
    // The policy and the users as they are now (no TLS identity to check: the
    // connection is gone; it was checked when the SUBSCRIBE came).
    let pair = admit(shared, &from, &to, None).map_err(|_| "not admitted any more")?;
    let domain = policy_domain(&pair.1).ok_or("no domain")?;
    let target = shared
        .routes
        .next_target(&domain, &[])
        .await
        .ok()
        .flatten()
        .ok_or("no route to the watcher's domain")?;
    let format = DocFormat::from_accept(&accept_types(&rec.request));
    let key = key_of(&rec).ok_or("no Call-ID")?;
    let sub = shared
        .ua
        .restore_notifier(target, rec, left)
        .await
        .map_err(|_| "refused by the user agent")?;
    {
        let mut st = lock(&shared.state);
        st.watchers.insert(
            sub,
            Watcher {
                pair: pair.clone(),
                format,
                decision: Decision::Pending,
                last: None,
                accepted: true,
            },
        );
        st.stored_watchers
            .insert(sub, (key, std::time::Instant::now()));
    }
    tracing::debug!(local = %pair.0, watcher = %pair.1, ?format, "sip gateway: watcher subscription restored");
    // As for a new SUBSCRIBE: the router answers `subscribed` (then the presence this
    // contact sees: an `active` NOTIFY), `unsubscribed` (terminated), or asks the user.
    shared
        .to_router(translate::presence_of_type("subscribe", &pair.1, &pair.0))
        .await;
    Ok(())
}

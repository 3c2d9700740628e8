//! The core's delivery rules, in process, without sockets: RFC 6121 §8 message routing,
//! offline storage, bounces, slow sessions, subscriptions and pre-approval (§3).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex};

use fedgate_node::core::{
    CoreConfig, OfflinePolicy, RemoteError, RemoteLinks, Router, SessionId, UserDirectory,
};
use fedgate_policy::UserAddress;
use fedgate_store::{
    OfflineStore, RosterStore, RosterSubscription, SqliteStore, StoreConfig, StoreHandle,
};
use fedgate_xmpp::{DomainPart, Element, FullJid, StreamErrorCondition};
use tokio::sync::mpsc;

use common::el;

const D: &str = "a.test";

struct Env {
    router: Router,
    store: StoreHandle,
    _dir: tempfile::TempDir,
}

async fn env(offline: OfflinePolicy, queue: usize) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        scram_iterations: 16,
        ..StoreConfig::default()
    };
    let (store, _join) =
        StoreHandle::spawn(SqliteStore::open_with(dir.path(), cfg).unwrap(), 64).unwrap();
    let users = UserDirectory::load(store.clone()).await.unwrap();
    for u in ["alice", "bob", "carol"] {
        users
            .add_user(&format!("{u}@{D}").parse().unwrap(), "pw")
            .await
            .unwrap();
    }
    let core = CoreConfig {
        session_queue: queue,
        offline,
        ..CoreConfig::default()
    };
    let router = Router::new(
        core,
        vec![DomainPart::new(D).unwrap()],
        store.clone(),
        users,
    );
    Env {
        router,
        store,
        _dir: dir,
    }
}

struct Sess {
    id: SessionId,
    jid: String,
    rx: mpsc::Receiver<Element>,
    ctl: Arc<fedgate_node::core::SessionCtl>,
}

impl Env {
    fn login(&self, full: &str) -> Sess {
        let r = self.router.register(FullJid::parse(full).unwrap());
        Sess {
            id: r.id,
            jid: full.into(),
            rx: r.rx,
            ctl: r.ctl,
        }
    }
    /// A stanza from the client (`from` stamped as the c2s machine does).
    async fn send(&self, s: &Sess, xml: &str) -> fedgate_node::core::ClientOutcome {
        let mut e = el(xml);
        e.set_attr("from", &s.jid);
        self.router.handle_from_client(s.id, e).await
    }
    async fn offline_count(&self, user: &str) -> usize {
        let u: UserAddress = user.parse().unwrap();
        self.store
            .submit(move |s| s.offline_count(&u))
            .unwrap()
            .await
            .unwrap()
    }
    async fn sub(&self, user: &str, contact: &str) -> Option<(RosterSubscription, bool, bool)> {
        let (u, c): (UserAddress, String) = (user.parse().unwrap(), contact.into());
        let i = self
            .store
            .submit(move |s| s.roster_item(&u, &c))
            .unwrap()
            .await
            .unwrap();
        i.map(|i| (i.subscription, i.ask_out, i.pending_in.is_some()))
    }
}

fn drain(s: &mut Sess, name: &str) -> Vec<Element> {
    let mut v = Vec::new();
    while let Ok(e) = s.rx.try_recv() {
        if e.name() == name {
            v.push(e);
        }
    }
    v
}

fn error_condition(e: &Element) -> Option<String> {
    let err = e.get_child("error", "jabber:client")?;
    let c = err.elements().next()?;
    Some(c.name().to_owned())
}

#[tokio::test]
async fn c2s_core_rfc6121_8_5_message_to_bare_jid_highest_priority() {
    let env = env(OfflinePolicy::Store, 16).await;
    let mut r1 = env.login("alice@a.test/r1");
    let mut r2 = env.login("alice@a.test/r2");
    let mut r3 = env.login("alice@a.test/r3");
    let bob = env.login("bob@a.test/x");
    assert!(
        env.send(&r1, "<presence><priority>1</priority></presence>")
            .await
            .deliver_offline
    );
    env.send(&r2, "<presence><priority>5</priority></presence>")
        .await;
    env.send(&r3, "<presence><priority>-1</priority></presence>")
        .await;
    assert!(
        !env.send(
            &r1,
            "<presence><priority>1</priority><show>away</show></presence>"
        )
        .await
        .deliver_offline
    );
    env.send(
        &bob,
        "<message to='alice@a.test' type='chat'><body>1</body></message>",
    )
    .await;
    assert_eq!(
        (
            drain(&mut r1, "message").len(),
            drain(&mut r2, "message").len(),
            drain(&mut r3, "message").len()
        ),
        (0, 1, 0)
    );
    // A tie: both get it.
    env.send(&r1, "<presence><priority>5</priority></presence>")
        .await;
    env.send(
        &bob,
        "<message to='alice@a.test' type='chat'><body>2</body></message>",
    )
    .await;
    assert_eq!(
        (
            drain(&mut r1, "message").len(),
            drain(&mut r2, "message").len()
        ),
        (1, 1)
    );
    // A full JID reaches its resource, negative priority or not.
    env.send(
        &bob,
        "<message to='alice@a.test/r3' type='chat'><body>3</body></message>",
    )
    .await;
    let m = drain(&mut r3, "message");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].attr("from"), Some("bob@a.test/x"));
    // An unknown resource: chat is handled as to the bare JID.
    env.send(
        &bob,
        "<message to='alice@a.test/gone' type='chat'><body>4</body></message>",
    )
    .await;
    assert_eq!(
        (
            drain(&mut r1, "message").len(),
            drain(&mut r2, "message").len()
        ),
        (1, 1)
    );
    // Nobody available: stored offline.
    env.send(&r1, "<presence type='unavailable'/>").await;
    env.send(&r2, "<presence type='unavailable'/>").await;
    env.send(&r3, "<presence type='unavailable'/>").await;
    env.send(
        &bob,
        "<message to='alice@a.test' type='chat'><body>5</body></message>",
    )
    .await;
    assert_eq!(env.offline_count("alice@a.test").await, 1);
    // headline is not stored; a message without body is not stored.
    env.send(
        &bob,
        "<message to='alice@a.test' type='headline'><body>6</body></message>",
    )
    .await;
    env.send(&bob, "<message to='alice@a.test' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>").await;
    assert_eq!(env.offline_count("alice@a.test").await, 1);
}

#[derive(Debug, Default)]
struct Links(Mutex<Vec<String>>);
impl RemoteLinks for Links {
    fn send(&self, stanza: Element) -> Result<(), RemoteError> {
        if stanza.attr("to") == Some("full@remote.test") {
            return Err(RemoteError::Full);
        }
        self.0.lock().unwrap().push(stanza.to_xml());
        Ok(())
    }
}

#[tokio::test]
async fn c2s_core_bounces_refuse_unknown_groupchat_remote() {
    let env = env(OfflinePolicy::Refuse, 16).await;
    let alice = env.login("alice@a.test/r");
    let cond = |o: fedgate_node::core::ClientOutcome| {
        assert_eq!(o.replies.len(), 1, "{:?}", o.replies);
        assert_eq!(o.replies[0].attr("type"), Some("error"));
        assert_eq!(o.replies[0].attr("to"), Some("alice@a.test/r"));
        error_condition(&o.replies[0]).unwrap()
    };
    let o = env
        .send(
            &alice,
            "<message to='bob@a.test' type='chat' id='m1'><body>x</body></message>",
        )
        .await;
    assert_eq!(cond(o), "service-unavailable");
    assert_eq!(env.offline_count("bob@a.test").await, 0);
    let o = env
        .send(
            &alice,
            "<message to='nobody@a.test' type='chat'><body>x</body></message>",
        )
        .await;
    assert_eq!(cond(o), "service-unavailable");
    let o = env
        .send(
            &alice,
            "<message to='bob@a.test/x' type='groupchat'><body>x</body></message>",
        )
        .await;
    assert_eq!(cond(o), "service-unavailable");
    let o = env
        .send(
            &alice,
            "<iq to='bob@a.test/x' type='get' id='q'><query xmlns='jabber:iq:version'/></iq>",
        )
        .await;
    assert_eq!(cond(o), "service-unavailable");
    // Errors are never answered with errors.
    let o = env.send(&alice, "<message to='nobody@a.test' type='error'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>").await;
    assert!(o.replies.is_empty());
    // Remote domains: no links yet.
    let o = env
        .send(
            &alice,
            "<message to='x@remote.test' type='chat'><body>x</body></message>",
        )
        .await;
    assert_eq!(cond(o), "remote-server-not-found");
    // Presence: a subscription request is bounced (to the bare JID: the available
    // resources), a directed presence is not.
    env.send(&alice, "<presence/>").await;
    let o = env
        .send(&alice, "<presence to='x@remote.test' type='subscribe'/>")
        .await;
    assert_eq!(cond(o), "remote-server-not-found");
    let o = env.send(&alice, "<presence to='x@remote.test'/>").await;
    assert!(o.replies.is_empty(), "{:?}", o.replies);
    let links = Arc::new(Links::default());
    env.router.set_remote_links(links.clone());
    let o = env
        .send(
            &alice,
            "<message to='x@remote.test' type='chat'><body>x</body></message>",
        )
        .await;
    assert!(o.replies.is_empty());
    assert_eq!(links.0.lock().unwrap().len(), 1);
    assert!(links.0.lock().unwrap()[0].contains("from='alice@a.test/r'"));
    let o = env
        .send(
            &alice,
            "<message to='full@remote.test' type='chat'><body>x</body></message>",
        )
        .await;
    assert_eq!(cond(o), "resource-constraint");
    // Ping to the server and to the own account.
    let o = env
        .send(
            &alice,
            "<iq to='a.test' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    assert_eq!(o.replies[0].attr("type"), Some("result"));
    let o = env
        .send(
            &alice,
            "<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    assert_eq!(o.replies[0].attr("type"), Some("result"));
}

#[tokio::test]
async fn c2s_core_slow_session_is_closed_and_nothing_is_lost() {
    let env = env(OfflinePolicy::Store, 4).await;
    let alice = env.login("alice@a.test/r");
    let mut bob = env.login("bob@a.test/x");
    env.send(&bob, "<presence/>").await;
    while bob.rx.try_recv().is_ok() {}
    for i in 0..10 {
        env.send(
            &alice,
            &format!("<message to='bob@a.test/x' type='chat'><body>{i}</body></message>"),
        )
        .await;
    }
    assert_eq!(
        bob.ctl.kicked(),
        Some(StreamErrorCondition::ResourceConstraint)
    );
    // The 6 that did not fit were stored; the 4 queued are routed again at unregister.
    assert_eq!(env.offline_count("bob@a.test").await, 6);
    bob.rx.close();
    let mut left = Vec::new();
    while let Ok(e) = bob.rx.try_recv() {
        left.push(e);
    }
    assert_eq!(left.len(), 4);
    env.router.unregister(bob.id, left).await;
    assert_eq!(env.offline_count("bob@a.test").await, 10);
    assert_eq!(env.router.session_count(), 1);
}

#[tokio::test]
async fn c2s_core_resource_conflict_kicks_the_older() {
    let env = env(OfflinePolicy::Store, 4).await;
    let old = env.login("alice@a.test/r");
    let new = env.login("alice@a.test/r");
    assert_eq!(old.ctl.kicked(), Some(StreamErrorCondition::Conflict));
    assert_eq!(new.ctl.kicked(), None);
    // Until its task ends, the replaced session is ignored.
    let ping = "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>";
    assert!(env.send(&old, ping).await.replies.is_empty());
    assert_eq!(env.send(&new, ping).await.replies.len(), 1);
    env.router.unregister(old.id, Vec::new()).await;
    assert_eq!(env.router.session_count(), 1);
}

#[tokio::test]
async fn c2s_core_rfc6121_3_subscription_states_offline_request_and_preapproval() {
    let env = env(OfflinePolicy::Store, 16).await;
    let alice = env.login("alice@a.test/r");
    env.send(&alice, "<presence/>").await;
    // alice asks bob, who is offline: pending out / pending in.
    env.send(&alice, "<presence to='bob@a.test' type='subscribe'/>")
        .await;
    assert_eq!(
        env.sub("alice@a.test", "bob@a.test").await,
        Some((RosterSubscription::None, true, false))
    );
    assert_eq!(
        env.sub("bob@a.test", "alice@a.test").await,
        Some((RosterSubscription::None, false, true))
    );
    // bob logs in: the request is delivered after his initial presence; his roster
    // does not show the pending-only item.
    let mut bob = env.login("bob@a.test/x");
    let o = env
        .send(
            &bob,
            "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
    assert_eq!(
        o.replies[0]
            .get_child("query", "jabber:iq:roster")
            .unwrap()
            .elements()
            .count(),
        0
    );
    let o = env.send(&bob, "<presence/>").await;
    assert!(
        o.replies
            .iter()
            .any(|e| e.attr("type") == Some("subscribe") && e.attr("from") == Some("alice@a.test")),
        "{:?}",
        o.replies
    );
    // bob approves: alice to, bob from; alice gets bob's presence.
    let approved = env
        .send(&bob, "<presence to='alice@a.test' type='subscribed'/>")
        .await;
    assert_eq!(
        env.sub("alice@a.test", "bob@a.test").await,
        Some((RosterSubscription::To, false, false))
    );
    assert_eq!(
        env.sub("bob@a.test", "alice@a.test").await,
        Some((RosterSubscription::From, false, false))
    );
    // bob's roster push (he asked for the roster), written by his own task.
    let pushes = approved.replies;
    assert!(drain(&mut bob, "iq").is_empty());
    assert!(
        pushes
            .iter()
            .any(|p| p.to_xml().contains("subscription='from'")),
        "{pushes:?}"
    );
    // bob changes presence: alice (from) sees it; bob does not see alice's (none).
    // alice unsubscribes: both none.
    env.send(&alice, "<presence to='bob@a.test' type='unsubscribe'/>")
        .await;
    assert_eq!(
        env.sub("alice@a.test", "bob@a.test").await,
        Some((RosterSubscription::None, false, false))
    );
    assert_eq!(
        env.sub("bob@a.test", "alice@a.test").await,
        Some((RosterSubscription::None, false, false))
    );
    // Pre-approval: carol approves alice before she asks; alice's request is answered
    // at once.
    let carol = env.login("carol@a.test/c");
    env.send(&carol, "<presence/>").await;
    env.send(&carol, "<presence to='alice@a.test' type='subscribed'/>")
        .await;
    env.send(&alice, "<presence to='carol@a.test' type='subscribe'/>")
        .await;
    assert_eq!(
        env.sub("alice@a.test", "carol@a.test").await,
        Some((RosterSubscription::To, false, false))
    );
    assert_eq!(
        env.sub("carol@a.test", "alice@a.test").await,
        Some((RosterSubscription::From, false, false))
    );
    // Roster set and remove: removing cancels both directions.
    let o = env.send(&alice, "<iq type='set' id='s'><query xmlns='jabber:iq:roster'><item jid='carol@a.test' name='Carol'><group>Friends</group></item></query></iq>").await;
    assert_eq!(o.replies[0].attr("type"), Some("result"));
    let o = env
        .send(
            &alice,
            "<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
    let xml = o.replies[0].to_xml();
    assert!(
        xml.contains("name='Carol'")
            && xml.contains("<group>Friends</group>")
            && xml.contains("subscription='to'"),
        "{xml}"
    );
    let o = env.send(&alice, "<iq type='set' id='d'><query xmlns='jabber:iq:roster'><item jid='carol@a.test' subscription='remove'/></query></iq>").await;
    assert!(o.replies.iter().any(|e| e.attr("type") == Some("result")));
    assert_eq!(env.sub("alice@a.test", "carol@a.test").await, None);
    assert_eq!(
        env.sub("carol@a.test", "alice@a.test").await,
        Some((RosterSubscription::None, false, false))
    );
}

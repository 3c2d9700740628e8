//! The per-user policy in the router, in process, without sockets: inbound
//! subscriptions from remote users (an XMPP domain and a SIP domain, both through
//! `Router::handle_remote`, as the s2s pump and the SIP gateway call it) decided by
//! fedgate-policy's engine on the SQLite store; answers stored; polite blocking of
//! presence and probes; everything resumed after a restart on the same store.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex};

use fedgate_node::core::{
    CoreConfig, RemoteError, RemoteLinks, Router, SessionId, UserDirectory, UserPolicy,
};
use fedgate_policy::{
    FederationConfig, Protocol, Rule, RuleTarget, SubscriptionKey, SubscriptionState, Timestamp,
    UserAddress, XmppListing,
};
use fedgate_store::{SqliteStore, StoreConfig, StoreHandle};
use fedgate_xmpp::{DomainPart, Element, FullJid};
use tokio::sync::mpsc;

use common::el;

const D: &str = "a.test";

/// What the router sent to remote domains: (to, name, type).
#[derive(Debug, Default)]
struct Links(Mutex<Vec<(String, String, String)>>);
impl RemoteLinks for Links {
    fn send(&self, s: Element) -> Result<(), RemoteError> {
        self.0.lock().unwrap().push((
            s.attr("to").unwrap_or("").to_owned(),
            s.name().to_owned(),
            s.attr("type").unwrap_or("available").to_owned(),
        ));
        Ok(())
    }
}
impl Links {
    fn take(&self) -> Vec<(String, String, String)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn federation() -> FederationConfig {
    let mut f = FederationConfig::new();
    f.add_local_domain(D.parse().unwrap()).unwrap();
    f.add_xmpp_domain("x.test".parse().unwrap(), XmppListing::Allow)
        .unwrap();
    f.add_sip_domain("lync.test".parse().unwrap()).unwrap();
    f
}

struct Env {
    router: Router,
    policy: UserPolicy,
    links: Arc<Links>,
}

async fn env(dir: &std::path::Path, rules: Vec<(UserAddress, RuleTarget, Rule)>) -> Env {
    let cfg = StoreConfig {
        scram_iterations: 16,
        ..StoreConfig::default()
    };
    let (store, _join) = StoreHandle::spawn(SqliteStore::open_with(dir, cfg).unwrap(), 64).unwrap();
    let users = UserDirectory::load(store.clone()).await.unwrap();
    if users.is_empty() {
        users
            .add_user(&format!("alice@{D}").parse().unwrap(), "pw")
            .await
            .unwrap();
    }
    let router = Router::new(
        CoreConfig::default(),
        vec![DomainPart::new(D).unwrap()],
        store.clone(),
        users,
    );
    let policy = UserPolicy::open(store, federation(), rules, Timestamp::from_millis(1))
        .await
        .unwrap();
    router.set_user_policy(policy.clone());
    let links = Arc::new(Links::default());
    router.set_remote_links(links.clone());
    Env {
        router,
        policy,
        links,
    }
}

struct Sess {
    id: SessionId,
    rx: mpsc::Receiver<Element>,
    /// What the router answered the session's own stanzas (written by its task).
    replies: Vec<Element>,
}

impl Env {
    async fn login(&self) -> Sess {
        let r = self
            .router
            .register(FullJid::parse("alice@a.test/r").unwrap());
        let mut s = Sess {
            id: r.id,
            rx: r.rx,
            replies: Vec::new(),
        };
        self.client(
            &mut s,
            "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
        self.client(&mut s, "<presence/>").await;
        s
    }
    async fn client(&self, s: &mut Sess, xml: &str) {
        let mut e = el(xml);
        e.set_attr("from", "alice@a.test/r");
        let out = self.router.handle_from_client(s.id, e).await;
        s.replies.extend(out.replies);
    }
    async fn remote(&self, from: &str, kind: &str) {
        self.router
            .handle_remote(el(&format!(
                "<presence from='{from}' to='alice@a.test' type='{kind}'/>"
            )))
            .await;
    }
    fn state(&self, watcher: &str) -> SubscriptionState {
        let k = SubscriptionKey::inbound("alice@a.test".parse().unwrap(), watcher.parse().unwrap());
        self.policy.read(|p| p.state(&k))
    }
    fn rule(&self, watcher: &str) -> Option<Rule> {
        let (a, w): (UserAddress, UserAddress) =
            ("alice@a.test".parse().unwrap(), watcher.parse().unwrap());
        self.policy
            .read(|p| p.rules(&a).and_then(|r| r.get(&RuleTarget::User(w))))
    }
}

/// The subscription requests the client got.
fn asked(s: &mut Sess) -> Vec<String> {
    let mut v = Vec::new();
    let mut all: Vec<Element> = std::mem::take(&mut s.replies);
    while let Ok(e) = s.rx.try_recv() {
        all.push(e);
    }
    for e in all {
        if e.name() == "presence" && e.attr("type") == Some("subscribe") {
            v.push(e.attr("from").unwrap_or("").to_owned());
        }
    }
    v
}

fn sent(to: &str, kind: &str) -> (String, String, String) {
    (to.into(), "presence".into(), kind.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_policy_pending_answered_polite_block_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path(), Vec::new()).await;
    let mut alice = env.login().await;
    env.links.take();

    // XMPP watcher, no rule: pending, alice is asked; her approval is stored.
    env.remote("bob@x.test", "subscribe").await;
    assert_eq!(asked(&mut alice), ["bob@x.test"]);
    assert_eq!(env.state("bob@x.test"), SubscriptionState::Pending);
    assert!(
        env.links.take().is_empty(),
        "nothing answered while pending"
    );
    env.client(&mut alice, "<presence to='bob@x.test' type='subscribed'/>")
        .await;
    assert_eq!(env.state("bob@x.test"), SubscriptionState::Active);
    assert_eq!(env.rule("bob@x.test"), Some(Rule::Allow));
    assert_eq!(
        env.links.take(),
        [
            sent("bob@x.test", "subscribed"),
            sent("bob@x.test", "available")
        ]
    );

    // SIP watcher (the gateway's path): pending over SIP; alice denies: a polite block.
    env.remote("carol@lync.test", "subscribe").await;
    assert_eq!(asked(&mut alice), ["carol@lync.test"]);
    let k = SubscriptionKey::inbound(
        "alice@a.test".parse().unwrap(),
        "carol@lync.test".parse().unwrap(),
    );
    assert_eq!(
        env.policy.read(|p| p.record(&k).map(|r| r.protocol)),
        Some(Protocol::Sip)
    );
    env.client(
        &mut alice,
        "<presence to='carol@lync.test' type='unsubscribed'/>",
    )
    .await;
    assert_eq!(env.rule("carol@lync.test"), Some(Rule::Block));
    assert_eq!(
        env.links.take(),
        [
            sent("carol@lync.test", "subscribed"),
            sent("carol@lync.test", "unavailable")
        ]
    );
    // Her presence changes reach bob only; carol's probe is answered unavailable.
    env.client(&mut alice, "<presence><show>away</show></presence>")
        .await;
    assert_eq!(env.links.take(), [sent("bob@x.test", "available")]);
    env.remote("carol@lync.test", "probe").await;
    assert_eq!(env.links.take(), [sent("carol@lync.test", "unavailable")]);
    env.remote("bob@x.test", "probe").await;
    assert_eq!(env.links.take(), [sent("bob@x.test", "available")]);
    // carol asks again: not asked, politely blocked again.
    env.remote("carol@lync.test", "subscribe").await;
    assert!(asked(&mut alice).is_empty());
    assert_eq!(
        env.links.take(),
        [
            sent("carol@lync.test", "subscribed"),
            sent("carol@lync.test", "unavailable")
        ]
    );

    // A domain that is not federated: denied, alice never hears of it.
    env.remote("eve@elsewhere.test", "subscribe").await;
    assert!(asked(&mut alice).is_empty());
    assert_eq!(
        env.links.take(),
        [sent("eve@elsewhere.test", "unsubscribed")]
    );

    // dave asks while alice is offline; then a restart on the same store.
    env.router.unregister(alice.id, Vec::new()).await;
    drop(alice);
    env.remote("dave@x.test", "subscribe").await;
    assert_eq!(env.state("dave@x.test"), SubscriptionState::Pending);
    drop(env);
    let env = env_again(dir.path()).await;
    assert_eq!(env.state("dave@x.test"), SubscriptionState::Pending);
    assert_eq!(env.rule("carol@lync.test"), Some(Rule::Block));
    assert_eq!(env.state("bob@x.test"), SubscriptionState::Active);
    let mut alice = env.login().await;
    assert_eq!(asked(&mut alice), ["dave@x.test"]);
    // At login: bob (allowed) is probed and gets her presence; carol nothing.
    let out = env.links.take();
    assert!(out.contains(&sent("bob@x.test", "available")), "{out:?}");
    assert!(
        !out.iter().any(|(to, ..)| to == "carol@lync.test"),
        "{out:?}"
    );
    env.client(&mut alice, "<presence to='dave@x.test' type='subscribed'/>")
        .await;
    assert_eq!(env.state("dave@x.test"), SubscriptionState::Active);
}

async fn env_again(dir: &std::path::Path) -> Env {
    env(dir, Vec::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_policy_configured_rules_and_lost_roster_request() {
    let dir = tempfile::tempdir().unwrap();
    let alice: UserAddress = "alice@a.test".parse().unwrap();
    let rules = vec![
        (
            alice.clone(),
            RuleTarget::Domain("x.test".parse().unwrap()),
            Rule::Allow,
        ),
        (
            alice.clone(),
            RuleTarget::User("eve@lync.test".parse().unwrap()),
            Rule::Block,
        ),
    ];
    let env = env(dir.path(), rules).await;
    let mut s = env.login().await;
    env.links.take();
    // Allowed by domain: accepted, not asked, presence sent after `subscribed`.
    env.remote("bob@x.test", "subscribe").await;
    assert!(asked(&mut s).is_empty());
    assert_eq!(
        env.links.take(),
        [
            sent("bob@x.test", "subscribed"),
            sent("bob@x.test", "available")
        ]
    );
    // Blocked by the administrator: polite block, not asked.
    env.remote("eve@lync.test", "subscribe").await;
    assert!(asked(&mut s).is_empty());
    assert_eq!(
        env.links.take(),
        [
            sent("eve@lync.test", "subscribed"),
            sent("eve@lync.test", "unavailable")
        ]
    );
    // A request the engine holds but the roster does not (a crash between the two
    // writes) is asked at the next login.
    let (a, w) = (
        alice.clone(),
        "carol@lync.test".parse::<UserAddress>().unwrap(),
    );
    env.policy
        .call(move |p| {
            // A SIP record expires: stamped with the wall clock, as the node does.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            let now = Timestamp::from_millis(u64::try_from(now.as_millis()).unwrap());
            p.handle_inbound_subscribe(now, &w, &a, Protocol::Sip, None)
        })
        .await
        .unwrap();
    let s2 = env
        .router
        .register(FullJid::parse("alice@a.test/other").unwrap());
    let mut e = el("<presence/>");
    e.set_attr("from", "alice@a.test/other");
    let out = env.router.handle_from_client(s2.id, e).await;
    let asked_again: Vec<_> = out
        .replies
        .iter()
        .filter(|e| e.attr("type") == Some("subscribe"))
        .map(|e| e.attr("from").unwrap_or("").to_owned())
        .collect();
    assert_eq!(asked_again, ["carol@lync.test"]);
    let _ = s;
}

/// Remote presence is mapped per receiving session: a `jabber` client (it announced the
/// Jabber-style states) gets Table 5's `jabber` column, an `xmpp-local` one its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_family_remote_presence_mapped_per_client() {
    use fedgate_node::core::{FederationGate, JABBER_STATE_NS};
    use fedgate_presence::Family;
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path(), Vec::new()).await;
    let mut f = federation();
    f.add_xmpp_domain("wx.test".parse().unwrap(), XmppListing::Allow)
        .unwrap();
    env.router.set_presence_mapper(Arc::new(FederationGate::new(
        f,
        [("wx.test".parse().unwrap(), Family::Webex)],
    )));
    let mut plain = env.login().await;
    let r = env
        .router
        .register(FullJid::parse("alice@a.test/j").unwrap());
    let mut e = el(&format!(
        "<presence><show>dnd</show><state xmlns='{JABBER_STATE_NS}'>busy</state></presence>"
    ));
    e.set_attr("from", "alice@a.test/j");
    env.router.handle_from_client(r.id, e).await;
    let mut jabber = r.rx;
    while jabber.try_recv().is_ok() {}
    while plain.rx.try_recv().is_ok() {}
    env.router
        .handle_remote(el(
            "<presence from='carol@wx.test/w' to='alice@a.test'><show>away</show><status>In a meeting</status></presence>",
        ))
        .await;
    let show_status = |e: &Element| {
        (
            e.get_child("show", "jabber:client").map(|c| c.text()),
            e.get_child("status", "jabber:client").map(|c| c.text()),
        )
    };
    let p = plain.rx.try_recv().unwrap();
    assert_eq!(p.attr("to"), Some("alice@a.test/r"));
    assert_eq!(show_status(&p), (None, Some("In a meeting".into())));
    let p = jabber.try_recv().unwrap();
    assert_eq!(p.attr("to"), Some("alice@a.test/j"));
    assert_eq!(
        show_status(&p),
        (Some("away".into()), Some("In a meeting".into()))
    );
}

/// `Router::handle_remote_message` (the SIP gateway answers a MESSAGE by it): the
/// outcome comes back to the caller instead of an error stanza to the remote sender.
/// Stored offline and delivered are `Ok`; an unknown local user is
/// `service-unavailable`, and nothing is sent to the remote domain, where
/// `handle_remote` would have bounced an error to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_remote_message_returns_the_outcome_instead_of_bouncing() {
    use fedgate_xmpp::stanza::StanzaErrorCondition as Cond;
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path(), Vec::new()).await;
    let chat = |to: &str, body: &str| {
        el(&format!(
            "<message from='bob@lync.test' to='{to}' type='chat'><body>{body}</body></message>"
        ))
    };
    // alice is offline: stored (CoreConfig::default() stores).
    assert_eq!(
        env.router
            .handle_remote_message(chat("alice@a.test", "stored"))
            .await,
        Ok(())
    );
    // carol does not exist.
    assert_eq!(
        env.router
            .handle_remote_message(chat("carol@a.test", "nobody"))
            .await,
        Err(Cond::ServiceUnavailable)
    );
    assert_eq!(env.links.take(), vec![], "no error stanza to lync.test");
    env.router
        .handle_remote(chat("carol@a.test", "nobody"))
        .await;
    assert_eq!(
        env.links.take(),
        vec![(
            "bob@lync.test".to_owned(),
            "message".to_owned(),
            "error".to_owned()
        )],
        "handle_remote bounces it"
    );
    // alice online: delivered to her session.
    let mut s = env.login().await;
    while s.rx.try_recv().is_ok() {}
    assert_eq!(
        env.router
            .handle_remote_message(chat("alice@a.test", "live"))
            .await,
        Ok(())
    );
    let got = s.rx.try_recv().unwrap();
    assert_eq!(
        got.get_child("body", "jabber:client").map(|b| b.text()),
        Some("live".into())
    );
}

/// The iq results and errors, and the block pushes, the session got (id, type, payload).
fn iqs(s: &mut Sess) -> Vec<Element> {
    let mut all: Vec<Element> = std::mem::take(&mut s.replies);
    while let Ok(e) = s.rx.try_recv() {
        all.push(e);
    }
    all.into_iter().filter(|e| e.name() == "iq").collect()
}

fn items(e: &Element, name: &str) -> Vec<String> {
    e.get_child(name, "urn:xmpp:blocking")
        .map(|l| {
            l.elements()
                .filter_map(|i| i.attr("jid").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// XEP-0191 from the client edits the per-user policy's Block rules: a user and a whole
/// domain blocked (their watchers are then politely blocked without asking alice, and a
/// contact already subscribed gets unavailable at once), the list read back and pushed,
/// malformed and local items refused, unblock restores the presence; the server
/// announces the feature (disco#info).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_xep0191_block_list_edits_the_user_policy() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path(), Vec::new()).await;
    let mut alice = env.login().await;
    // bob@x.test watches alice (approved).
    env.remote("bob@x.test", "subscribe").await;
    env.client(&mut alice, "<presence to='bob@x.test' type='subscribed'/>")
        .await;
    env.links.take();
    iqs(&mut alice);

    env.client(
        &mut alice,
        "<iq type='get' id='d1' to='a.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    )
    .await;
    let disco = iqs(&mut alice).pop().unwrap();
    assert_eq!(disco.attr("type"), Some("result"), "{}", disco.to_xml());
    assert!(
        disco.to_xml().contains("var=\"urn:xmpp:blocking\"")
            || disco.to_xml().contains("var='urn:xmpp:blocking'"),
        "{}",
        disco.to_xml()
    );

    env.client(
        &mut alice,
        "<iq type='get' id='b1'><blocklist xmlns='urn:xmpp:blocking'/></iq>",
    )
    .await;
    let r = iqs(&mut alice).pop().unwrap();
    assert_eq!((r.attr("id"), r.attr("type")), (Some("b1"), Some("result")));
    assert!(items(&r, "blocklist").is_empty());

    // Block bob (as a full JID) and the domain lync.test.
    env.client(
        &mut alice,
        "<iq type='set' id='b2'><block xmlns='urn:xmpp:blocking'><item jid='bob@x.test/phone'/><item jid='lync.test'/></block></iq>",
    )
    .await;
    let got = iqs(&mut alice);
    let result = got.iter().find(|e| e.attr("id") == Some("b2")).unwrap();
    assert_eq!(result.attr("type"), Some("result"));
    let push = got.iter().find(|e| e.attr("type") == Some("set")).unwrap();
    assert_eq!(items(push, "block"), ["bob@x.test", "lync.test"]);
    assert_eq!(env.rule("bob@x.test"), Some(Rule::Block));
    // bob, subscribed, sees alice unavailable at once.
    assert_eq!(env.links.take(), [sent("bob@x.test", "unavailable")]);
    // A new watcher from the blocked domain: politely blocked, alice not asked.
    env.remote("carol@lync.test", "subscribe").await;
    assert!(asked(&mut alice).is_empty());
    assert_eq!(
        env.links.take(),
        [
            sent("carol@lync.test", "subscribed"),
            sent("carol@lync.test", "unavailable")
        ]
    );
    // Her presence changes no longer reach bob.
    env.client(&mut alice, "<presence><show>away</show></presence>")
        .await;
    assert!(env.links.take().is_empty());
    env.client(
        &mut alice,
        "<iq type='get' id='b3'><blocklist xmlns='urn:xmpp:blocking'/></iq>",
    )
    .await;
    let r = iqs(&mut alice).pop().unwrap();
    assert_eq!(items(&r, "blocklist"), ["bob@x.test", "lync.test"]);

    // Refused: a malformed JID, a local user, an empty block, too many items at once.
    let many: String = (0..65)
        .map(|i| format!("<item jid='u{i}@x.test'/>"))
        .collect();
    for (id, xml, cond) in [
        ("e1", "<item jid='@@bad'/>", "jid-malformed"),
        ("e2", "<item jid='someone@a.test'/>", "not-acceptable"),
        ("e3", "", "bad-request"),
        ("e4", many.as_str(), "policy-violation"),
    ] {
        env.client(
            &mut alice,
            &format!(
                "<iq type='set' id='{id}'><block xmlns='urn:xmpp:blocking'>{xml}</block></iq>"
            ),
        )
        .await;
        let e = iqs(&mut alice).pop().unwrap();
        assert_eq!((e.attr("id"), e.attr("type")), (Some(id), Some("error")));
        assert!(e.to_xml().contains(cond), "{id}: {}", e.to_xml());
    }

    // Unblock bob: he gets her presence again; lync.test stays blocked.
    env.client(
        &mut alice,
        "<iq type='set' id='u1'><unblock xmlns='urn:xmpp:blocking'><item jid='bob@x.test'/></unblock></iq>",
    )
    .await;
    let got = iqs(&mut alice);
    assert!(
        got.iter()
            .any(|e| e.attr("id") == Some("u1") && e.attr("type") == Some("result"))
    );
    let push = got.iter().find(|e| e.attr("type") == Some("set")).unwrap();
    assert_eq!(items(push, "unblock"), ["bob@x.test"]);
    // alice had approved him: the allow is back.
    assert_eq!(env.rule("bob@x.test"), Some(Rule::Allow));
    assert_eq!(env.links.take(), [sent("bob@x.test", "available")]);
    // Unblock everything.
    env.client(
        &mut alice,
        "<iq type='set' id='u2'><unblock xmlns='urn:xmpp:blocking'/></iq>",
    )
    .await;
    iqs(&mut alice);
    env.client(
        &mut alice,
        "<iq type='get' id='b4'><blocklist xmlns='urn:xmpp:blocking'/></iq>",
    )
    .await;
    assert!(items(&iqs(&mut alice).pop().unwrap(), "blocklist").is_empty());
}

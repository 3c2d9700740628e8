//! Behaviour of the policy engine, one scenario per seed rule.
#![allow(clippy::unwrap_used)] // test code: helpers outside #[test] fns

use std::time::Duration;

use fedgate_policy::*;

fn d(s: &str) -> Domain {
    s.parse().unwrap()
}
fn u(s: &str) -> UserAddress {
    s.parse().unwrap()
}
fn t(secs: u64) -> Timestamp {
    Timestamp::from_millis(secs * 1000)
}

/// example.com local; lync.example over SIP; jabber.example on the XMPP allow list.
fn setup() -> Policy<MemoryStore> {
    let mut p = Policy::open(MemoryStore::new(), SubscriptionLimits::default()).unwrap();
    p.add_local_domain(t(0), d("example.com")).unwrap();
    p.add_local_domain(t(0), d("example.net")).unwrap();
    p.add_sip_domain(t(0), d("lync.example")).unwrap();
    p.add_xmpp_domain(t(0), d("jabber.example"), XmppListing::Allow)
        .unwrap();
    p
}

fn reopen(p: Policy<MemoryStore>) -> Policy<MemoryStore> {
    let limits = *p.limits();
    Policy::open(p.into_store(), limits).unwrap()
}

#[test]
fn denied_domain_never_contacts_the_user_and_records_nothing() {
    let mut p = setup();
    let alice = u("alice@example.com");
    for (watcher, proto, want) in [
        (
            u("eve@unknown.example"),
            Protocol::Xmpp,
            DomainDenial::NotFederated(NotFederatedReason::NotOnXmppAllowList),
        ),
        // Right domain, wrong protocol: SIP xor XMPP.
        (
            u("bob@lync.example"),
            Protocol::Xmpp,
            DomainDenial::WrongProtocol {
                federated_over: Protocol::Sip,
            },
        ),
        // A remote claiming one of our domains.
        (
            u("mallory@example.net"),
            Protocol::Sip,
            DomainDenial::LocalDomain,
        ),
    ] {
        let out = p
            .handle_inbound_subscribe(t(1), &watcher, &alice, proto, None)
            .unwrap();
        assert_eq!(out.decision, InboundDecision::Denied(want));
        assert_eq!(out.answer, SubscribeAnswer::Reject);
        assert!(!out.ask_user);
        let key = SubscriptionKey::inbound(alice.clone(), watcher.clone());
        assert_eq!(p.state(&key), SubscriptionState::None);
    }
    assert!(p.pending_requests(&alice, t(1)).is_empty());
    // The addressed user must be ours.
    let out = p
        .handle_inbound_subscribe(
            t(1),
            &u("bob@lync.example"),
            &u("x@other.example"),
            Protocol::Sip,
            None,
        )
        .unwrap();
    assert_eq!(
        out.decision,
        InboundDecision::Denied(DomainDenial::NotOurDomain)
    );
}

#[test]
fn block_gives_polite_block_answered_like_acceptance() {
    let mut p = setup();
    let alice = u("alice@example.com");
    let bob = u("bob@lync.example");
    let carol = u("carol@lync.example");
    p.set_rule(t(0), &alice, RuleTarget::User(bob.clone()), Rule::Block)
        .unwrap();
    p.set_rule(
        t(0),
        &alice,
        RuleTarget::Domain(d("lync.example")),
        Rule::Allow,
    )
    .unwrap();
    let blocked = p
        .handle_inbound_subscribe(t(1), &bob, &alice, Protocol::Sip, None)
        .unwrap();
    let allowed = p
        .handle_inbound_subscribe(t(1), &carol, &alice, Protocol::Sip, None)
        .unwrap();
    assert_eq!(blocked.decision, InboundDecision::PoliteBlock);
    assert_eq!(allowed.decision, InboundDecision::Accepted);
    // Nothing at protocol level reveals the block.
    assert_eq!(blocked.answer, allowed.answer);
    assert_eq!(blocked.expires, allowed.expires);
    assert_eq!(blocked.ask_user, allowed.ask_user);
    let seen = p.presence_fanout(&alice, &"busy", t(2));
    assert_eq!(
        seen,
        vec![(&bob, Seen::Offline), (&carol, Seen::Real(&"busy"))]
    );
}

#[test]
fn domain_block_wins_over_user_allow() {
    let mut p = setup();
    let alice = u("alice@example.com");
    let bob = u("bob@lync.example");
    p.set_rule(t(0), &alice, RuleTarget::User(bob.clone()), Rule::Allow)
        .unwrap();
    p.set_rule(
        t(0),
        &alice,
        RuleTarget::Domain(d("lync.example")),
        Rule::Block,
    )
    .unwrap();
    assert_eq!(
        p.authorize(&bob, &alice, Protocol::Sip),
        InboundDecision::PoliteBlock
    );
}

#[test]
fn pending_then_answer_is_stored_in_the_users_list() {
    let mut p = setup();
    let alice = u("alice@example.com");
    let bob = u("bob@jabber.example");
    let out = p
        .handle_inbound_subscribe(t(1), &bob, &alice, Protocol::Xmpp, None)
        .unwrap();
    assert_eq!(
        (out.decision, out.answer, out.ask_user),
        (
            InboundDecision::Pending,
            SubscribeAnswer::AcceptPending,
            true
        )
    );
    assert_eq!(out.expires, None, "XMPP subscriptions do not expire");
    // A repeated request does not ask again.
    let again = p
        .handle_inbound_subscribe(t(2), &bob, &alice, Protocol::Xmpp, None)
        .unwrap();
    assert!(!again.ask_user);
    assert_eq!(p.pending_requests(&alice, t(2)), vec![&bob]);
    // Pending watchers see nothing.
    assert!(p.presence_fanout(&alice, &"available", t(2)).is_empty());

    assert_eq!(
        p.answer(t(3), &alice, &bob, Rule::Allow).unwrap(),
        SubscriptionState::Active
    );
    assert_eq!(
        p.rules(&alice).unwrap().get(&RuleTarget::User(bob.clone())),
        Some(Rule::Allow)
    );
    assert_eq!(
        p.presence_fanout(&alice, &"available", t(3)),
        vec![(&bob, Seen::Real(&"available"))]
    );
    // The next subscription from Bob is accepted without asking.
    let out = p
        .handle_inbound_subscribe(t(4), &bob, &alice, Protocol::Xmpp, None)
        .unwrap();
    assert_eq!(
        (out.decision, out.ask_user),
        (InboundDecision::Accepted, false)
    );
    // Alice changes her mind: polite block from now on, no termination.
    p.set_rule(t(5), &alice, RuleTarget::User(bob.clone()), Rule::Block)
        .unwrap();
    assert_eq!(
        p.presence_fanout(&alice, &"available", t(5)),
        vec![(&bob, Seen::Offline)]
    );
    // Removing the rule withdraws the authorization: still only Offline.
    p.remove_rule(&alice, &RuleTarget::User(bob.clone()))
        .unwrap();
    assert_eq!(
        p.presence_fanout(&alice, &"available", t(6)),
        vec![(&bob, Seen::Offline)]
    );
}

#[test]
fn a_rule_set_later_decides_pending_requests() {
    let mut p = setup();
    let alice = u("alice@example.com");
    let bob = u("bob@lync.example");
    p.handle_inbound_subscribe(t(1), &bob, &alice, Protocol::Sip, None)
        .unwrap();
    let ev = p
        .set_rule(
            t(2),
            &alice,
            RuleTarget::Domain(d("lync.example")),
            Rule::Allow,
        )
        .unwrap();
    assert_eq!(
        ev,
        vec![SubscriptionEvent::Activated {
            key: SubscriptionKey::inbound(alice.clone(), bob.clone())
        }]
    );
    assert_eq!(p.view_for(&alice, &bob, &1, t(3)), Some(Seen::Real(&1)));
}

#[test]
fn rules_only_for_local_users() {
    let mut p = setup();
    let err = p
        .set_rule(
            t(0),
            &u("bob@lync.example"),
            RuleTarget::Domain(d("x.example")),
            Rule::Block,
        )
        .unwrap_err();
    assert!(matches!(err, PolicyError::NotLocalUser { .. }));
}

#[test]
fn outbound_is_per_local_user() {
    let mut p = setup();
    let alice = u("alice@example.com");
    let dave = u("dave@example.net");
    let bob = u("bob@lync.example");
    for local in [&alice, &dave] {
        let out = p.subscribe_outbound(t(0), local, &bob, None).unwrap();
        assert_eq!(
            out,
            OutboundDecision::Send {
                protocol: Protocol::Sip,
                expires: Some(Duration::from_secs(3600))
            }
        );
    }
    p.handle_outbound_response(
        t(1),
        &alice,
        &bob,
        RemoteAnswer::Active {
            expires: Some(Duration::from_secs(7200)),
        },
    )
    .unwrap();
    // Dave's still goes out even though Alice's is active.
    let out = p.subscribe_outbound(t(2), &dave, &bob, None).unwrap();
    assert!(matches!(out, OutboundDecision::Send { .. }));
    assert_eq!(
        p.state(&SubscriptionKey::outbound(alice.clone(), bob.clone())),
        SubscriptionState::Active
    );
    assert_eq!(
        p.state(&SubscriptionKey::outbound(dave.clone(), bob.clone())),
        SubscriptionState::Pending
    );
    assert!(p.accepts_presence_from(t(2), &alice, &bob, Protocol::Sip));
    assert!(!p.accepts_presence_from(t(2), &alice, &bob, Protocol::Xmpp));
    // Routing answers.
    assert_eq!(
        p.subscribe_outbound(t(0), &alice, &dave, None).unwrap(),
        OutboundDecision::LocalUser
    );
    assert_eq!(
        p.subscribe_outbound(t(0), &alice, &u("z@nowhere.example"), None)
            .unwrap(),
        OutboundDecision::NotFederated(NotFederatedReason::NotOnXmppAllowList)
    );
    assert_eq!(
        p.unsubscribe_outbound(t(3), &alice, &bob).unwrap(),
        Some(Protocol::Sip)
    );
    assert!(!p.accepts_presence_from(t(3), &alice, &bob, Protocol::Sip));
}

#[test]
fn refresh_and_expiry_deadlines() {
    let mut p = setup();
    let alice = u("alice@example.com");
    let bob = u("bob@lync.example");
    p.subscribe_outbound(t(0), &alice, &bob, Some(Duration::from_secs(7200)))
        .unwrap();
    p.handle_outbound_response(
        t(0),
        &alice,
        &bob,
        RemoteAnswer::Active {
            expires: Some(Duration::from_secs(7200)),
        },
    )
    .unwrap();
    let key = SubscriptionKey::outbound(alice.clone(), bob.clone());
    // Refresh after 1 h 45 min, Lync's own interval for a two-hour grant.
    assert_eq!(p.poll_timeout(), Some(t(6300)));
    assert!(p.handle_timeout(t(6299)).unwrap().is_empty());
    let ev = p.handle_timeout(t(6300)).unwrap();
    assert_eq!(
        ev,
        vec![SubscriptionEvent::Refresh {
            key: key.clone(),
            protocol: Protocol::Sip
        }]
    );
    // No answer to the refresh: it expires at two hours.
    assert_eq!(p.poll_timeout(), Some(t(7200)));
    let ev = p.handle_timeout(t(7200)).unwrap();
    assert_eq!(
        ev,
        vec![SubscriptionEvent::Terminated {
            key: key.clone(),
            reason: TerminationReason::Timeout
        }]
    );
    assert_eq!(
        p.state(&key),
        SubscriptionState::Terminated(TerminationReason::Timeout)
    );
    // Purged after the linger.
    assert_eq!(p.poll_timeout(), Some(t(7500)));
    assert!(p.handle_timeout(t(7500)).unwrap().is_empty());
    assert_eq!(p.state(&key), SubscriptionState::None);
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn inbound_sip_expires_and_then_delivers_nothing() {
    let mut p = setup();
    let alice = u("alice@example.com");
    let bob = u("bob@lync.example");
    p.set_rule(t(0), &alice, RuleTarget::User(bob.clone()), Rule::Allow)
        .unwrap();
    p.handle_inbound_subscribe(
        t(0),
        &bob,
        &alice,
        Protocol::Sip,
        Some(Duration::from_secs(600)),
    )
    .unwrap();
    assert_eq!(p.presence_fanout(&alice, &(), t(599)).len(), 1);
    // Even before the timer runs, an expired subscription delivers nothing.
    assert!(p.presence_fanout(&alice, &(), t(600)).is_empty());
    p.handle_timeout(t(600)).unwrap();
    assert!(p.presence_fanout(&alice, &(), t(600)).is_empty());
}

#[test]
fn config_change_terminates_what_it_no_longer_permits() {
    let mut p = setup();
    let alice = u("alice@example.com");
    let bob = u("bob@jabber.example");
    p.set_rule(t(0), &alice, RuleTarget::User(bob.clone()), Rule::Allow)
        .unwrap();
    p.handle_inbound_subscribe(t(0), &bob, &alice, Protocol::Xmpp, None)
        .unwrap();
    p.subscribe_outbound(t(0), &alice, &bob, None).unwrap();
    let ev = p
        .add_xmpp_domain(t(1), d("jabber.example"), XmppListing::Deny)
        .unwrap();
    assert_eq!(ev.len(), 2);
    assert!(ev.iter().all(|e| matches!(
        e,
        SubscriptionEvent::Terminated {
            reason: TerminationReason::NotFederated,
            ..
        }
    )));
    assert!(p.presence_fanout(&alice, &(), t(1)).is_empty());
    // The SIP xor XMPP rule on the engine: a domain on the XMPP deny list is still an XMPP entry.
    let err = p.add_sip_domain(t(1), d("jabber.example")).unwrap_err();
    assert!(matches!(
        err,
        PolicyError::Config(ConfigError::ConfiguredAsXmpp { .. })
    ));
    let err = p
        .add_xmpp_domain(t(1), d("lync.example"), XmppListing::Allow)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("delete lync.example as a SIP federated domain first"),
        "{err}"
    );
}

#[test]
fn restart_resumes_subscriptions_pending_requests_and_rules() {
    let mut p = setup();
    let alice = u("alice@example.com");
    let bob = u("bob@lync.example");
    let carol = u("carol@jabber.example");
    let dave = u("dave@lync.example");
    p.handle_inbound_subscribe(t(1), &bob, &alice, Protocol::Sip, None)
        .unwrap(); // pending
    p.handle_inbound_subscribe(t(1), &carol, &alice, Protocol::Xmpp, None)
        .unwrap();
    p.answer(t(2), &alice, &carol, Rule::Allow).unwrap(); // active
    p.subscribe_outbound(t(2), &alice, &dave, None).unwrap();
    p.handle_outbound_response(t(3), &alice, &dave, RemoteAnswer::Active { expires: None })
        .unwrap();
    p.set_xmpp_mode(t(3), XmppMode::DenyListed).unwrap();
    let before_records: Vec<SubscriptionRecord> = p.records().into_iter().cloned().collect();
    let before_timeout = p.poll_timeout();

    let p = reopen(p);
    let after: Vec<SubscriptionRecord> = p.records().into_iter().cloned().collect();
    assert_eq!(after, before_records);
    assert_eq!(p.poll_timeout(), before_timeout);
    assert_eq!(p.config().xmpp_mode(), XmppMode::DenyListed);
    assert_eq!(p.route(&d("lync.example")), Route::Sip);
    assert_eq!(p.pending_requests(&alice, t(4)), vec![&bob]);
    assert_eq!(
        p.presence_fanout(&alice, &"dnd", t(4)),
        vec![(&carol, Seen::Real(&"dnd"))]
    );
    assert_eq!(
        p.resume(t(4)),
        vec![
            ResumeAction::AskUser {
                key: SubscriptionKey::inbound(alice.clone(), bob.clone())
            },
            ResumeAction::Resubscribe {
                key: SubscriptionKey::outbound(alice.clone(), dave.clone()),
                protocol: Protocol::Sip
            },
        ]
    );
}

#[test]
fn a_failed_store_write_changes_nothing() {
    let mut p = setup();
    let alice = u("alice@example.com");
    let bob = u("bob@lync.example");
    let mut store = p.into_store();
    store.set_fail_writes(true);
    p = Policy::open(store, SubscriptionLimits::default()).unwrap();
    let err = p
        .handle_inbound_subscribe(t(1), &bob, &alice, Protocol::Sip, None)
        .unwrap_err();
    assert!(matches!(err, PolicyError::Store(_)));
    assert_eq!(
        p.state(&SubscriptionKey::inbound(alice.clone(), bob.clone())),
        SubscriptionState::None
    );
    assert!(
        p.set_rule(t(1), &alice, RuleTarget::User(bob.clone()), Rule::Allow)
            .is_err()
    );
    assert!(p.rules(&alice).is_none());
    assert!(p.add_sip_domain(t(1), d("new.example")).is_err());
    assert!(matches!(p.route(&d("new.example")), Route::NotFederated(_)));
}

#[test]
fn corrupt_store_is_refused() {
    let mut store = MemoryStore::new();
    store
        .apply(&[
            Change::PutLocalDomain(d("example.com")),
            Change::PutRemoteDomain(d("example.com"), FederationEntry::Sip),
        ])
        .unwrap();
    let err = Policy::open(store, SubscriptionLimits::default()).unwrap_err();
    assert!(matches!(
        err,
        PolicyError::CorruptStore(ConfigError::RemoteIsLocal { .. })
    ));
}

#[test]
fn subdomain_scenarios_end_to_end() {
    for (local, remote) in [
        ("imp.example.com", "example.com"),
        ("example.com", "foreign.example.com"),
        ("cup.example.com", "foreign.example.com"),
    ] {
        let mut p = Policy::open(MemoryStore::new(), SubscriptionLimits::default()).unwrap();
        p.add_local_domain(t(0), d(local)).unwrap();
        p.add_sip_domain(t(0), d(remote)).unwrap();
        let me = u(&format!("impuser@{local}"));
        let them = u(&format!("foreignuser@{remote}"));
        assert_eq!(p.route(me.domain()), Route::Local);
        assert_eq!(p.route(them.domain()), Route::Sip);
        p.answer(t(0), &me, &them, Rule::Allow).unwrap();
        let out = p
            .handle_inbound_subscribe(t(1), &them, &me, Protocol::Sip, None)
            .unwrap();
        assert_eq!(
            out.decision,
            InboundDecision::Accepted,
            "{local} / {remote}"
        );
        assert!(matches!(
            p.subscribe_outbound(t(1), &me, &them, None).unwrap(),
            OutboundDecision::Send { .. }
        ));
    }
}

#[test]
fn a_domain_becoming_local_terminates_its_remote_subscriptions() {
    // Found by the property test: under DenyListed, n@example.org could subscribe over XMPP;
    // once example.org becomes one of ours it must not stay a live remote watcher.
    let mut p = setup();
    let alice = u("alice@example.com");
    let n = u("n@example.org");
    p.set_xmpp_mode(t(0), XmppMode::DenyListed).unwrap();
    let out = p
        .handle_inbound_subscribe(t(1), &n, &alice, Protocol::Xmpp, None)
        .unwrap();
    assert_eq!(out.decision, InboundDecision::Pending);
    let ev = p.add_local_domain(t(2), d("example.org")).unwrap();
    let key = SubscriptionKey::inbound(alice.clone(), n.clone());
    assert_eq!(
        ev,
        vec![SubscriptionEvent::Terminated {
            key: key.clone(),
            reason: TerminationReason::NotFederated
        }]
    );
    assert!(p.pending_requests(&alice, t(2)).is_empty());
}

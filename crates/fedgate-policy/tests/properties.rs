//! Model-based property tests: random sequences of administrator, user, watcher, timer and
//! restart events, checked against an independent model of the configuration and the
//! users' lists.
//!
//! The safety property: no sequence of events ever delivers presence to a watcher whose
//! domain is not permitted, and never the real presence to a watcher the user blocked (or
//! never allowed).
#![allow(clippy::unwrap_used)] // test code: helpers outside #[test] fns

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fedgate_policy::*;
use proptest::prelude::*;

const LOCAL_USERS: [&str; 2] = ["alice@example.com", "dave@example.net"];
const REMOTE_DOMAINS: [&str; 4] = ["r1.example", "r2.example", "r3.example", "example.net"];
const WATCHERS: [&str; 6] = [
    "a@r1.example",
    "b@r1.example",
    "c@r2.example",
    "e@r3.example",
    "m@example.com",
    "n@example.net",
];

fn d(s: &str) -> Domain {
    s.parse().unwrap()
}
fn u(s: &str) -> UserAddress {
    s.parse().unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    AddRemote(usize, FederationEntry),
    RemoveRemote(usize),
    SetMode(XmppMode),
    ToggleLocalNet,
    SetRule(usize, bool, usize, Rule),
    RemoveRule(usize, bool, usize),
    Subscribe(usize, usize, Protocol, Option<u64>),
    Unsubscribe(usize, usize),
    Answer(usize, usize, Rule),
    Outbound(usize, usize),
    OutboundAnswer(usize, usize, bool),
    Advance(u64),
    Restart,
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![Just(Protocol::Sip), Just(Protocol::Xmpp)]
}
fn rule() -> impl Strategy<Value = Rule> {
    prop_oneof![Just(Rule::Allow), Just(Rule::Block)]
}
fn entry() -> impl Strategy<Value = FederationEntry> {
    prop_oneof![
        Just(FederationEntry::Sip),
        Just(FederationEntry::Xmpp(XmppListing::Allow)),
        Just(FederationEntry::Xmpp(XmppListing::Deny)),
    ]
}
fn op() -> impl Strategy<Value = Op> {
    let l = 0..LOCAL_USERS.len();
    let w = 0..WATCHERS.len();
    let rd = 0..REMOTE_DOMAINS.len();
    prop_oneof![
        2 => (rd.clone(), entry()).prop_map(|(i, e)| Op::AddRemote(i, e)),
        1 => rd.prop_map(Op::RemoveRemote),
        1 => prop_oneof![Just(XmppMode::AllowAll), Just(XmppMode::AllowListed), Just(XmppMode::DenyListed)]
            .prop_map(Op::SetMode),
        1 => Just(Op::ToggleLocalNet),
        3 => (l.clone(), any::<bool>(), 0..WATCHERS.len(), rule()).prop_map(|(a, b, c, r)| Op::SetRule(a, b, c, r)),
        1 => (l.clone(), any::<bool>(), 0..WATCHERS.len()).prop_map(|(a, b, c)| Op::RemoveRule(a, b, c)),
        5 => (w.clone(), l.clone(), protocol(), proptest::option::of(1u64..9000))
            .prop_map(|(a, b, p, e)| Op::Subscribe(a, b, p, e)),
        1 => (w.clone(), l.clone()).prop_map(|(a, b)| Op::Unsubscribe(a, b)),
        3 => (l.clone(), w.clone(), rule()).prop_map(|(a, b, r)| Op::Answer(a, b, r)),
        1 => (l.clone(), w.clone()).prop_map(|(a, b)| Op::Outbound(a, b)),
        1 => (l, w, any::<bool>()).prop_map(|(a, b, ok)| Op::OutboundAnswer(a, b, ok)),
        2 => (1u64..4000).prop_map(Op::Advance),
        1 => Just(Op::Restart),
    ]
}

/// The independent model: configuration and lists as plain sets, routing by the table.
#[derive(Debug, Default)]
struct Model {
    local: HashSet<Domain>,
    remote: HashMap<Domain, FederationEntry>,
    mode: XmppMode,
    rules: HashMap<(UserAddress, RuleTarget), Rule>,
}

impl Model {
    fn route(&self, dom: &Domain) -> Option<Protocol> {
        if self.local.contains(dom) {
            return None;
        }
        match (self.remote.get(dom), self.mode) {
            (Some(FederationEntry::Sip), _) => Some(Protocol::Sip),
            (_, XmppMode::AllowAll) => Some(Protocol::Xmpp),
            (Some(FederationEntry::Xmpp(XmppListing::Allow)), _) => Some(Protocol::Xmpp),
            (Some(FederationEntry::Xmpp(XmppListing::Deny)), _) => None,
            (None, XmppMode::AllowListed) => None,
            (None, XmppMode::DenyListed) => Some(Protocol::Xmpp),
        }
    }
    fn rule(&self, local: &UserAddress, target: RuleTarget) -> Option<Rule> {
        self.rules.get(&(local.clone(), target)).copied()
    }
    fn blocked(&self, local: &UserAddress, w: &UserAddress) -> bool {
        self.rule(local, RuleTarget::User(w.clone())) == Some(Rule::Block)
            || self.rule(local, RuleTarget::Domain(w.domain().clone())) == Some(Rule::Block)
    }
    fn allowed(&self, local: &UserAddress, w: &UserAddress) -> bool {
        !self.blocked(local, w)
            && (self.rule(local, RuleTarget::User(w.clone())) == Some(Rule::Allow)
                || self.rule(local, RuleTarget::Domain(w.domain().clone())) == Some(Rule::Allow))
    }
}

fn target(is_user: bool, i: usize) -> RuleTarget {
    let w = u(WATCHERS[i]);
    if is_user {
        RuleTarget::User(w)
    } else {
        RuleTarget::Domain(w.domain().clone())
    }
}

fn fresh() -> (Policy<MemoryStore>, Model) {
    let mut p = Policy::open(MemoryStore::new(), SubscriptionLimits::default()).unwrap();
    let mut m = Model::default();
    for dom in ["example.com", "example.net"] {
        p.add_local_domain(Timestamp::from_millis(0), d(dom))
            .unwrap();
        m.local.insert(d(dom));
    }
    (p, m)
}

/// Checks the safety property for every local user at `now`.
fn check_delivery(p: &Policy<MemoryStore>, m: &Model, now: Timestamp) -> Result<(), TestCaseError> {
    for l in LOCAL_USERS.map(u) {
        for (w, seen) in p.presence_fanout(&l, &"real", now) {
            let rec = p.record(&SubscriptionKey::inbound(l.clone(), w.clone()));
            let rec = rec.ok_or_else(|| TestCaseError::fail("delivery without a record"))?;
            prop_assert_eq!(rec.state, SubscriptionState::Active);
            prop_assert!(m.local.contains(l.domain()), "delivery for non-local {}", l);
            prop_assert_eq!(
                m.route(w.domain()),
                Some(rec.protocol),
                "delivery to {} whose domain is not permitted over {}",
                w,
                rec.protocol
            );
            if let Seen::Real(_) = seen {
                prop_assert!(
                    m.allowed(&l, w),
                    "real presence of {} to {} which is not allowed",
                    l,
                    w
                );
            }
        }
        // Blocked watchers never see the real state, whatever the state of their record.
        for w in WATCHERS.map(u) {
            if m.blocked(&l, &w) || m.route(w.domain()).is_none() {
                prop_assert!(!matches!(
                    p.view_for(&l, &w, &"real", now),
                    Some(Seen::Real(_))
                ));
            }
        }
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (mut p, mut m) = fresh();
    let mut now = Timestamp::from_millis(0);
    for op in ops {
        match op {
            Op::AddRemote(i, e) => {
                let dom = d(REMOTE_DOMAINS[i]);
                let res = p.add_remote_domain(now, dom.clone(), e);
                let expect_err = m.local.contains(&dom)
                    || matches!(
                        (m.remote.get(&dom), e),
                        (Some(FederationEntry::Sip), FederationEntry::Xmpp(_))
                            | (Some(FederationEntry::Xmpp(_)), FederationEntry::Sip)
                    );
                prop_assert_eq!(res.is_err(), expect_err, "{:?} {:?} -> {:?}", dom, e, res);
                if let Err(err) = res {
                    if m.remote.get(&dom) == Some(&FederationEntry::Sip) {
                        prop_assert!(err.to_string().contains("as a SIP federated domain first"));
                    }
                } else {
                    m.remote.insert(dom, e);
                }
            }
            Op::RemoveRemote(i) => {
                let dom = d(REMOTE_DOMAINS[i]);
                p.remove_remote_domain(now, &dom).unwrap();
                m.remote.remove(&dom);
            }
            Op::SetMode(mode) => {
                p.set_xmpp_mode(now, mode).unwrap();
                m.mode = mode;
            }
            Op::ToggleLocalNet => {
                let net = d("example.net");
                if m.local.contains(&net) {
                    p.remove_local_domain(now, &net).unwrap();
                    m.local.remove(&net);
                } else {
                    let res = p.add_local_domain(now, net.clone());
                    prop_assert_eq!(res.is_err(), m.remote.contains_key(&net));
                    if res.is_ok() {
                        m.local.insert(net);
                    }
                }
            }
            Op::SetRule(l, is_user, w, r) => {
                let l = u(LOCAL_USERS[l]);
                let tg = target(is_user, w);
                let res = p.set_rule(now, &l, tg.clone(), r);
                prop_assert_eq!(res.is_ok(), m.local.contains(l.domain()));
                if res.is_ok() {
                    m.rules.insert((l, tg), r);
                }
            }
            Op::RemoveRule(l, is_user, w) => {
                let l = u(LOCAL_USERS[l]);
                let tg = target(is_user, w);
                if p.remove_rule(&l, &tg).is_ok() {
                    m.rules.remove(&(l, tg));
                }
            }
            Op::Subscribe(w, l, proto, exp) => {
                let (w, l) = (u(WATCHERS[w]), u(LOCAL_USERS[l]));
                let out = p
                    .handle_inbound_subscribe(now, &w, &l, proto, exp.map(Duration::from_secs))
                    .unwrap();
                let permitted = m.local.contains(l.domain()) && m.route(w.domain()) == Some(proto);
                let want = if !permitted {
                    None
                } else if m.blocked(&l, &w) {
                    Some(InboundDecision::PoliteBlock)
                } else if m.allowed(&l, &w) {
                    Some(InboundDecision::Accepted)
                } else {
                    Some(InboundDecision::Pending)
                };
                match want {
                    None => {
                        prop_assert!(
                            matches!(out.decision, InboundDecision::Denied(_)),
                            "{:?}",
                            out
                        );
                        prop_assert!(!out.ask_user, "user contacted for a denied domain");
                        let key = SubscriptionKey::inbound(l.clone(), w.clone());
                        prop_assert!(!p.record(&key).is_some_and(|r| r.is_live(now)));
                        prop_assert!(!p.pending_requests(&l, now).contains(&&w));
                    }
                    Some(dec) => {
                        prop_assert_eq!(out.decision, dec);
                        prop_assert_eq!(out.answer, dec.answer());
                    }
                }
            }
            Op::Unsubscribe(w, l) => {
                p.handle_inbound_unsubscribe(now, &u(WATCHERS[w]), &u(LOCAL_USERS[l]))
                    .unwrap();
            }
            Op::Answer(l, w, r) => {
                let (l, w) = (u(LOCAL_USERS[l]), u(WATCHERS[w]));
                let res = p.answer(now, &l, &w, r);
                prop_assert_eq!(res.is_ok(), m.local.contains(l.domain()));
                if res.is_ok() {
                    m.rules.insert((l, RuleTarget::User(w)), r);
                }
            }
            Op::Outbound(l, w) => {
                let (l, w) = (u(LOCAL_USERS[l]), u(WATCHERS[w]));
                if let Ok(OutboundDecision::Send { protocol, .. }) =
                    p.subscribe_outbound(now, &l, &w, None)
                {
                    prop_assert_eq!(m.route(w.domain()), Some(protocol));
                }
            }
            Op::OutboundAnswer(l, w, ok) => {
                let (l, w) = (u(LOCAL_USERS[l]), u(WATCHERS[w]));
                let a = if ok {
                    RemoteAnswer::Active { expires: None }
                } else {
                    RemoteAnswer::Terminated(TerminationReason::Rejected)
                };
                let _ = p.handle_outbound_response(now, &l, &w, a);
            }
            Op::Advance(s) => {
                now = now + Duration::from_secs(s);
                check_delivery(&p, &m, now)?;
                while p.poll_timeout().is_some_and(|t| t <= now) {
                    p.handle_timeout(now).unwrap();
                }
            }
            Op::Restart => {
                let before: Vec<SubscriptionRecord> = p.records().into_iter().cloned().collect();
                let views: Vec<_> = LOCAL_USERS
                    .map(u)
                    .iter()
                    .map(|l| format!("{:?}", p.presence_fanout(l, &"real", now)))
                    .collect();
                let limits = *p.limits();
                p = Policy::open(p.into_store(), limits).unwrap();
                let after: Vec<SubscriptionRecord> = p.records().into_iter().cloned().collect();
                prop_assert_eq!(before, after);
                let views_after: Vec<_> = LOCAL_USERS
                    .map(u)
                    .iter()
                    .map(|l| format!("{:?}", p.presence_fanout(l, &"real", now)))
                    .collect();
                prop_assert_eq!(views, views_after);
            }
        }
        check_delivery(&p, &m, now)?;
        // Every live record runs over the protocol its domain is routed over.
        for rec in p.records() {
            if rec.is_live(now) {
                prop_assert_eq!(
                    m.route(rec.key.remote.domain()),
                    Some(rec.protocol),
                    "{:?}",
                    rec
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn no_sequence_delivers_presence_it_must_not(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}

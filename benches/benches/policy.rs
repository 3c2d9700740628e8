//! Policy decision cost with a large configuration: 10 000 federated domains and
//! 100 000 per-user rules (10 000 local users × 10 rules).
//!
//! `cargo bench -p fedgate-benches --bench policy -- --warm-up-time 1 --measurement-time 3`
//!
//! Target: one inbound-subscription decision (`Policy::authorize`) ≤ 200 ns.
//! No peer crate does this job, so there is no ratio; the figure is absolute.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fedgate_policy::{
    Domain, InboundDecision, MemoryStore, Policy, Protocol, Route, Rule, RuleTarget,
    SubscriptionLimits, Timestamp, UserAddress, XmppListing, XmppMode,
};

const DOMAINS: usize = 10_000;
const USERS: usize = 10_000;
const RULES_PER_USER: usize = 10;

fn domain(i: usize) -> Domain {
    Domain::new(&format!("partner{i:05}.example")).expect("valid domain")
}

fn user(name: &str, d: &Domain) -> UserAddress {
    UserAddress::from_parts(name, d).expect("valid address")
}

/// The federated domain index rule `r` of local user `n` refers to.
fn rule_domain(n: usize, r: usize) -> usize {
    (n * 7 + r * 1009) % DOMAINS
}

/// The protocol domain `i` is federated over (`None`: XMPP deny-listed), as built below.
fn proto_of(i: usize) -> Option<Protocol> {
    match i {
        _ if i.is_multiple_of(2) => Some(Protocol::Sip),
        _ if i % 20 == 1 => None,
        _ => Some(Protocol::Xmpp),
    }
}

/// Federated domain `i`: even ones SIP, odd ones on the XMPP allow list, every tenth odd
/// one on the XMPP deny list.
fn build() -> Policy<MemoryStore> {
    let now = Timestamp::ZERO;
    let mut p = Policy::open(MemoryStore::new(), SubscriptionLimits::default()).expect("open");
    p.add_local_domain(now, Domain::new("example.com").expect("valid"))
        .expect("local");
    p.set_xmpp_mode(now, XmppMode::AllowListed).expect("mode");
    for i in 0..DOMAINS {
        let d = domain(i);
        match proto_of(i) {
            Some(Protocol::Sip) => p.add_sip_domain(now, d).expect("sip"),
            None => p.add_xmpp_domain(now, d, XmppListing::Deny).expect("deny"),
            Some(Protocol::Xmpp) => p
                .add_xmpp_domain(now, d, XmppListing::Allow)
                .expect("allow"),
        };
    }
    let local = Domain::new("example.com").expect("valid");
    for n in 0..USERS {
        let me = user(&format!("user{n:05}"), &local);
        for r in 0..RULES_PER_USER {
            // Half user rules, half domain rules, spread over the federated domains.
            let k = rule_domain(n, r);
            let target = if r.is_multiple_of(2) {
                RuleTarget::User(user(&format!("contact{r}"), &domain(k)))
            } else {
                RuleTarget::Domain(domain(k))
            };
            let rule = if r.is_multiple_of(3) {
                Rule::Block
            } else {
                Rule::Allow
            };
            p.set_rule(now, &me, target, rule).expect("rule");
        }
    }
    let rules: usize = (0..USERS)
        .filter_map(|n| p.rules(&user(&format!("user{n:05}"), &local)))
        .map(|r| r.len())
        .sum();
    assert_eq!(rules, USERS * RULES_PER_USER);
    p
}

fn bench_policy(c: &mut Criterion) {
    let p = build();
    let local = Domain::new("example.com").expect("valid");
    // Pick a user whose allow-domain rule (r = 1) and block-domain rule (r = 3) both name a
    // permitted domain, so each case below is a real outcome of that user's own rules.
    let n = (0..USERS)
        .find(|&n| proto_of(rule_domain(n, 1)).is_some() && proto_of(rule_domain(n, 3)).is_some())
        .expect("some user qualifies");
    let me = user(&format!("user{n:05}"), &local);
    let allowed = rule_domain(n, 1);
    let blocked = rule_domain(n, 3);
    let (allowed_domain, allowed_proto) = (domain(allowed), proto_of(allowed).expect("permitted"));
    let (blocked_domain, blocked_proto) = (domain(blocked), proto_of(blocked).expect("permitted"));
    let cases = [
        ("accepted", user("someone", &allowed_domain), allowed_proto),
        (
            "polite_block",
            user("someone", &blocked_domain),
            blocked_proto,
        ),
        ("pending", user("stranger", &domain(4000)), Protocol::Sip),
        (
            "denied",
            user("eve", &Domain::new("unknown.example").expect("valid")),
            Protocol::Xmpp,
        ),
    ];
    let expected = [
        InboundDecision::Accepted,
        InboundDecision::PoliteBlock,
        InboundDecision::Pending,
    ];
    for ((name, w, proto), want) in cases.iter().zip(expected) {
        assert_eq!(p.authorize(w, &me, *proto), want, "{name}");
    }
    assert!(matches!(
        p.authorize(&cases[3].1, &me, cases[3].2),
        InboundDecision::Denied(_)
    ));

    let mut g = c.benchmark_group("policy/authorize_10k_domains_100k_rules");
    g.throughput(Throughput::Elements(1));
    for (name, watcher, proto) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| p.authorize(black_box(watcher), black_box(&me), black_box(*proto)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("policy/route_10k_domains");
    g.throughput(Throughput::Elements(1));
    let sip = domain(4000);
    g.bench_function("sip", |b| b.iter(|| p.route(black_box(&sip))));
    assert_eq!(p.route(&sip), Route::Sip);
    g.finish();
}

criterion_group!(benches, bench_policy);
criterion_main!(benches);

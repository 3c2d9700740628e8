//! Conformance tests for target lists, named by RFC section, against `StaticLookup`.

use std::future::Future;
use std::net::IpAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use fedgate_srv::*;

/// `StaticLookup` futures are ready on first poll.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("static lookups never pend"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn uri(secure: bool, host: &str, port: Option<u16>, transport: Option<&str>) -> SipUriFacts {
    SipUriFacts {
        secure,
        host: host.into(),
        port,
        transport: transport.map(str::to_owned),
    }
}

fn summary(l: &TargetList) -> Vec<(String, u16, Transport)> {
    l.targets
        .iter()
        .map(|t| (t.host.clone(), t.port, t.transport))
        .collect()
}

fn sip_zone() -> StaticLookup {
    let mut d = StaticLookup::new();
    d.add_srv(
        "_sipfederationtls._tcp.example.test",
        SrvRecord::new(0, 0, 5061, "edge.example.test"),
    )
    .add_srv(
        "_sips._tcp.example.test",
        SrvRecord::new(0, 0, 5061, "edge.example.test"),
    )
    .add_srv(
        "_sips._tcp.example.test",
        SrvRecord::new(10, 0, 5061, "sip2.example.test"),
    )
    .add_srv(
        "_sip._tcp.example.test",
        SrvRecord::new(0, 0, 5060, "sip2.example.test"),
    )
    .add_srv(
        "_sip._udp.example.test",
        SrvRecord::new(0, 0, 5060, "sip2.example.test"),
    )
    .add_host("edge.example.test", ip("127.0.0.5"))
    .add_host("sip2.example.test", ip("127.0.0.6"))
    .add_host("example.test", ip("127.0.0.7"));
    d
}

#[test]
fn rfc3263_federation_chain_order() {
    let d = sip_zone();
    let l = now(resolve_sip(
        &d,
        &uri(false, "example.test", None, None),
        &SipOptions::default(),
        &mut SplitMix64::new(1),
    ))
    .expect("targets");
    assert_eq!(
        summary(&l),
        [
            ("edge.example.test".into(), 5061, Transport::Tls),
            ("sip2.example.test".into(), 5061, Transport::Tls),
            ("sip2.example.test".into(), 5060, Transport::Tcp),
        ]
    );
    assert!(l.targets.iter().all(|t| t.source == TargetSource::Srv));
}

#[test]
fn rfc3263_4_1_sips_discards_non_tls() {
    let d = sip_zone();
    let opts = SipOptions {
        federation: false,
        allow_tcp: true,
        allow_udp: true,
    };
    let l = now(resolve_sip(
        &d,
        &uri(true, "example.test", None, None),
        &opts,
        &mut SplitMix64::new(1),
    ))
    .expect("targets");
    assert!(
        l.targets.iter().all(|t| t.transport == Transport::Tls),
        "{l:?}"
    );
    assert!(matches!(
        now(resolve_sip(
            &d,
            &uri(true, "example.test", None, Some("udp")),
            &opts,
            &mut SplitMix64::new(1)
        )),
        Err(ResolveError::UnsupportedTransport { .. })
    ));
    // sips: with transport=tcp is TLS over TCP
    let l = now(resolve_sip(
        &d,
        &uri(true, "example.test", None, Some("tcp")),
        &opts,
        &mut SplitMix64::new(1),
    ))
    .expect("targets");
    assert!(l.targets.iter().all(|t| t.transport == Transport::Tls));
}

#[test]
fn rfc3263_4_1_transport_param_selects_the_srv_label() {
    let d = sip_zone();
    let opts = SipOptions {
        federation: false,
        ..SipOptions::default()
    };
    let l = now(resolve_sip(
        &d,
        &uri(false, "example.test", None, Some("TCP")),
        &opts,
        &mut SplitMix64::new(1),
    ))
    .expect("targets");
    assert_eq!(
        summary(&l),
        [("sip2.example.test".into(), 5060, Transport::Tcp)]
    );
    let l = now(resolve_sip(
        &d,
        &uri(false, "example.test", None, Some("udp")),
        &opts,
        &mut SplitMix64::new(1),
    ))
    .expect("targets");
    assert_eq!(
        summary(&l),
        [("sip2.example.test".into(), 5060, Transport::Udp)]
    );
    assert!(matches!(
        now(resolve_sip(
            &d,
            &uri(false, "example.test", None, Some("ws")),
            &opts,
            &mut SplitMix64::new(1)
        )),
        Err(ResolveError::UnsupportedTransport { .. })
    ));
}

#[test]
fn rfc3263_4_2_ip_literal_and_explicit_port_skip_srv() {
    let d = sip_zone();
    let o = SipOptions::default();
    let l = now(resolve_sip(
        &d,
        &uri(false, "[::1]", None, None),
        &o,
        &mut SplitMix64::new(1),
    ))
    .expect("targets");
    assert_eq!(l.targets[0].addrs, [ip("::1")]);
    assert_eq!(
        (l.targets[0].port, l.targets[0].transport),
        (5061, Transport::Tls)
    );
    let plain = SipOptions {
        federation: false,
        ..o.clone()
    };
    let l = now(resolve_sip(
        &d,
        &uri(false, "192.0.2.1", None, None),
        &plain,
        &mut SplitMix64::new(1),
    ))
    .expect("t");
    assert_eq!(
        (l.targets[0].port, l.targets[0].transport),
        (5060, Transport::Udp)
    );
    let l = now(resolve_sip(
        &d,
        &uri(false, "example.test", Some(7000), None),
        &o,
        &mut SplitMix64::new(1),
    ))
    .expect("t");
    assert_eq!(summary(&l), [("example.test".into(), 7000, Transport::Tls)]);
    assert_eq!(l.targets[0].source, TargetSource::ExplicitPort);
}

#[test]
fn rfc3263_4_1_naptr_where_present() {
    let mut d = StaticLookup::new();
    let naptr = |order, service: &str, repl: &str| NaptrRecord {
        order,
        preference: 10,
        flags: "S".into(),
        service: service.into(),
        replacement: repl.into(),
    };
    d.add_naptr("sip.test", naptr(20, "SIP+D2T", "_tcpsrv.sip.test"))
        .add_naptr("sip.test", naptr(10, "SIPS+D2T", "_tlssrv.sip.test"))
        .add_naptr("sip.test", naptr(5, "SIP+D2W", "_ws.sip.test"))
        .add_srv("_tlssrv.sip.test", SrvRecord::new(0, 0, 5061, "a.sip.test"))
        .add_srv("_tcpsrv.sip.test", SrvRecord::new(0, 0, 5060, "b.sip.test"))
        .add_srv(
            "_sips._tcp.sip.test",
            SrvRecord::new(0, 0, 5061, "ignored.sip.test"),
        )
        .add_host("a.sip.test", ip("127.0.0.2"))
        .add_host("b.sip.test", ip("127.0.0.3"))
        .add_host("ignored.sip.test", ip("127.0.0.4"));
    let opts = SipOptions {
        federation: false,
        ..SipOptions::default()
    };
    let l = now(resolve_sip(
        &d,
        &uri(false, "sip.test", None, None),
        &opts,
        &mut SplitMix64::new(1),
    ))
    .expect("targets");
    assert_eq!(
        summary(&l),
        [
            ("a.sip.test".into(), 5061, Transport::Tls),
            ("b.sip.test".into(), 5060, Transport::Tcp)
        ]
    );
    assert!(l.targets.iter().all(|t| t.source == TargetSource::Naptr));
}

#[test]
fn rfc3263_4_2_no_srv_falls_back_to_a_on_5061_then_5060() {
    let mut d = StaticLookup::new();
    d.add_host("plain.test", ip("127.0.0.8"));
    let l = now(resolve_sip(
        &d,
        &uri(false, "plain.test", None, None),
        &SipOptions::default(),
        &mut SplitMix64::new(1),
    ))
    .expect("targets");
    assert_eq!(
        summary(&l),
        [
            ("plain.test".into(), 5061, Transport::Tls),
            ("plain.test".into(), 5060, Transport::Tcp)
        ]
    );
    assert!(
        l.targets
            .iter()
            .all(|t| t.source == TargetSource::AddressFallback)
    );
}

#[test]
fn rfc2782_dot_means_not_offered_for_sip_without_fallback() {
    let mut d = StaticLookup::new();
    d.add_srv(
        "_sipfederationtls._tcp.nofed.test",
        SrvRecord::new(0, 0, 0, "."),
    )
    .add_host("nofed.test", ip("127.0.0.8"));
    let r = now(resolve_sip(
        &d,
        &uri(false, "nofed.test", None, None),
        &SipOptions::default(),
        &mut SplitMix64::new(1),
    ));
    assert_eq!(
        r,
        Err(ResolveError::NotOffered {
            domain: "nofed.test".into()
        })
    );
}

fn xmpp_zone() -> StaticLookup {
    let mut d = StaticLookup::new();
    d.add_srv(
        "_xmpp-server._tcp.example.test",
        SrvRecord::new(10, 60, 5269, "xmpp1.example.test"),
    )
    .add_srv(
        "_xmpp-server._tcp.example.test",
        SrvRecord::new(10, 40, 5270, "xmpp2.example.test"),
    )
    .add_srv(
        "_xmpp-server._tcp.example.test",
        SrvRecord::new(20, 0, 5271, "backup.example.test"),
    )
    .add_srv(
        "_xmpps-server._tcp.example.test",
        SrvRecord::new(5, 0, 5370, "xmpp1.example.test"),
    )
    .add_host("xmpp1.example.test", ip("127.0.0.2"))
    .add_host("xmpp2.example.test", ip("127.0.0.3"))
    .add_host("backup.example.test", ip("127.0.0.4"))
    .add_host("backup.example.test", ip("::1"))
    .add_host("example.test", ip("127.0.0.9"));
    d
}

#[test]
fn xep0368_direct_tls_mixed_with_starttls_by_priority() {
    let d = xmpp_zone();
    let l = now(resolve_xmpp(
        &d,
        "Example.Test.",
        &XmppOptions::default(),
        &mut SplitMix64::new(1),
    ))
    .expect("targets");
    assert_eq!(l.targets[0].transport, Transport::Tls);
    assert_eq!(l.targets[0].port, 5370);
    assert_eq!(l.targets.len(), 4);
    assert_eq!(l.targets[3].host, "backup.example.test");
    assert_eq!(l.targets[3].addrs.len(), 2);
    assert_eq!(l.endpoints().len(), 5);
    let no_dtls = XmppOptions {
        direct_tls: false,
        ..XmppOptions::default()
    };
    let l = now(resolve_xmpp(
        &d,
        "example.test",
        &no_dtls,
        &mut SplitMix64::new(1),
    ))
    .expect("targets");
    assert!(l.targets.iter().all(|t| t.transport == Transport::Tcp));
}

#[test]
fn rfc6120_3_2_1_fallback_only_without_any_srv_answer() {
    let mut d = xmpp_zone();
    d.add_host("nosrv.test", ip("127.0.0.10"));
    let l = now(resolve_xmpp(
        &d,
        "nosrv.test",
        &XmppOptions::default(),
        &mut SplitMix64::new(1),
    ))
    .expect("targets");
    assert_eq!(summary(&l), [("nosrv.test".into(), 5269, Transport::Tcp)]);
    assert_eq!(l.targets[0].source, TargetSource::AddressFallback);

    // SRV answered but its target has no address: no fallback.
    d.add_srv(
        "_xmpp-server._tcp.broken.test",
        SrvRecord::new(0, 0, 5269, "nowhere.test"),
    )
    .add_host("broken.test", ip("127.0.0.11"));
    let r = now(resolve_xmpp(
        &d,
        "broken.test",
        &XmppOptions::default(),
        &mut SplitMix64::new(1),
    ));
    assert_eq!(
        r,
        Err(ResolveError::NoTargets {
            domain: "broken.test".into()
        })
    );

    // "." on _xmpp-server: not offered, no fallback.
    d.add_srv("_xmpp-server._tcp.dot.test", SrvRecord::new(0, 0, 0, "."))
        .add_host("dot.test", ip("127.0.0.12"));
    let r = now(resolve_xmpp(
        &d,
        "dot.test",
        &XmppOptions::default(),
        &mut SplitMix64::new(1),
    ));
    assert_eq!(
        r,
        Err(ResolveError::NotOffered {
            domain: "dot.test".into()
        })
    );

    // "." on _xmpps-server only means no direct TLS.
    d.add_srv("_xmpps-server._tcp.half.test", SrvRecord::new(0, 0, 0, "."))
        .add_srv(
            "_xmpp-server._tcp.half.test",
            SrvRecord::new(0, 0, 5269, "xmpp1.example.test"),
        );
    let l = now(resolve_xmpp(
        &d,
        "half.test",
        &XmppOptions::default(),
        &mut SplitMix64::new(1),
    ))
    .expect("targets");
    assert_eq!(
        summary(&l),
        [("xmpp1.example.test".into(), 5269, Transport::Tcp)]
    );
}

#[test]
fn rfc6120_3_2_lookup_errors_surface_when_nothing_resolves() {
    let mut d = StaticLookup::new();
    let e = LookupError::Timeout { name: "x".into() };
    d.fail("_xmpp-server._tcp.down.test", e.clone())
        .fail("_xmpps-server._tcp.down.test", e.clone())
        .fail("down.test", e.clone());
    let r = now(resolve_xmpp(
        &d,
        "down.test",
        &XmppOptions::default(),
        &mut SplitMix64::new(1),
    ));
    assert_eq!(r, Err(ResolveError::Lookup(e)));
    // Errors on SRV but the domain has an address: the fallback is used.
    let mut d = StaticLookup::new();
    d.fail(
        "_xmpp-server._tcp.flaky.test",
        LookupError::Timeout { name: "x".into() },
    )
    .add_host("flaky.test", ip("127.0.0.13"));
    let l = now(resolve_xmpp(
        &d,
        "flaky.test",
        &XmppOptions::default(),
        &mut SplitMix64::new(1),
    ))
    .expect("targets");
    assert_eq!(l.targets[0].source, TargetSource::AddressFallback);
}

#[test]
fn rfc2782_glue_is_used_without_an_address_lookup() {
    // Targets only resolvable through glue: with glue they resolve, without they do not.
    let mut d = StaticLookup::new();
    d.add_srv(
        "_xmpp-server._tcp.g.test",
        SrvRecord::new(0, 0, 5269, "n.g.test"),
    )
    .add_host("n.g.test", ip("127.0.0.2"));
    d.fail(
        "n.g.test",
        LookupError::Timeout {
            name: "n.g.test".into(),
        },
    );
    // fail() only affects lookups of that name; glue comes from the SRV answer.
    let l = now(resolve_xmpp(
        &d,
        "g.test",
        &XmppOptions::default(),
        &mut SplitMix64::new(1),
    ))
    .expect("via glue");
    assert_eq!(l.targets[0].addrs, [ip("127.0.0.2")]);
    d.without_glue();
    let r = now(resolve_xmpp(
        &d,
        "g.test",
        &XmppOptions::default(),
        &mut SplitMix64::new(1),
    ));
    assert!(matches!(
        r,
        Err(ResolveError::Lookup(LookupError::Timeout { .. }))
    ));
}

#[test]
fn static_lookup_from_toml() {
    let d = StaticLookup::from_toml_str(
        r#"
        [[srv]]
        name = "_xmpp-server._tcp.t.test"
        priority = 1
        weight = 1
        port = 5269
        target = "a.t.test."
        [[host]]
        name = "a.t.test"
        addrs = ["127.0.0.2"]
        "#,
    )
    .expect("valid");
    let l = now(resolve_xmpp(
        &d,
        "t.test",
        &XmppOptions::default(),
        &mut SplitMix64::new(1),
    ))
    .expect("targets");
    assert_eq!(summary(&l), [("a.t.test".into(), 5269, Transport::Tcp)]);
    assert!(StaticLookup::from_toml_str("[[srv]]\nname = \"x\"\n").is_err());
}

#[test]
fn hostile_srv_answer_is_capped_at_max_targets() {
    let mut d = StaticLookup::new();
    for i in 0..500u16 {
        d.add_srv(
            "_xmpp-server._tcp.big.test",
            SrvRecord::new(0, 1, 5269, &format!("n{i}.big.test")),
        )
        .add_host(&format!("n{i}.big.test"), ip("127.0.0.2"));
    }
    d.without_glue();
    let l = now(resolve_xmpp(
        &d,
        "big.test",
        &XmppOptions::default(),
        &mut SplitMix64::new(1),
    ))
    .expect("targets");
    assert_eq!(l.targets.len(), MAX_TARGETS);
}

#[test]
fn hostile_srv_answer_without_addresses_causes_bounded_lookups() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    /// Counts address lookups; every SRV target is unresolvable.
    struct Counting(StaticLookup, AtomicUsize);
    impl SrvLookup for Counting {
        fn lookup_srv(
            &self,
            name: &str,
        ) -> impl Future<Output = Result<SrvAnswer, LookupError>> + Send {
            self.0.lookup_srv(name)
        }
        fn lookup_ip(
            &self,
            host: &str,
        ) -> impl Future<Output = Result<std::sync::Arc<[IpAddr]>, LookupError>> + Send {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.lookup_ip(host)
        }
        fn lookup_naptr(
            &self,
            domain: &str,
        ) -> impl Future<Output = Result<std::sync::Arc<[NaptrRecord]>, LookupError>> + Send
        {
            self.0.lookup_naptr(domain)
        }
    }
    let mut d = StaticLookup::new();
    for i in 0..500u16 {
        d.add_srv(
            "_xmpp-server._tcp.big.test",
            SrvRecord::new(0, 1, 5269, &format!("n{i}.big.test")),
        );
    }
    let c = Counting(d, AtomicUsize::new(0));
    let r = now(resolve_xmpp(
        &c,
        "big.test",
        &XmppOptions::default(),
        &mut SplitMix64::new(1),
    ));
    assert_eq!(
        r,
        Err(ResolveError::NoTargets {
            domain: "big.test".into()
        })
    );
    assert_eq!(c.1.load(Ordering::Relaxed), MAX_TARGETS);
}

//! Node configuration: the example file, the embedded default, and every error path
//! naming its key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fedgate_node::config::{
    CertSource, ConfigError, FamilyName, FederatedDomainSection, MissingSan, NodeConfig,
    SecretSource, SipTransportKind, StartTls, TargetHost,
};
use fedgate_policy::{Domain, Protocol, Route, XmppMode};
use fedgate_presence::Family;
use fedgate_xmpp::s2s::TlsPolicy;

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fedgate.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).expect("examples/fedgate.toml")
}

fn d(s: &str) -> Domain {
    s.parse().expect("a valid domain")
}

/// A minimal valid configuration; tests append to it.
const BASE: &str = r#"
[node]
domains = ["example.com"]

[tls]
cert = "cert.pem"
key = "key.pem"
roots = ["roots.pem"]
"#;

/// Parses and validates; returns the error.
fn error(toml: &str) -> ConfigError {
    match NodeConfig::from_toml_str(toml).and_then(|c| c.validate().map(|_| ())) {
        Ok(()) => panic!("expected an error for:\n{toml}"),
        Err(e) => e,
    }
}

/// The key named by the error for `BASE` + `extra`, after checking that the message
/// shows it.
fn key(extra: &str) -> String {
    let e = error(&format!("{BASE}{extra}"));
    let k = e.key().expect("a key").to_owned();
    assert!(e.to_string().contains(&format!("`{k}`")), "{e}");
    k
}

// ---- the example file -------------------------------------------------------------

#[test]
fn example_parses_validates_and_its_values_are_the_code_defaults() {
    let text = example_text();
    let parsed = NodeConfig::from_toml_str(&text).unwrap();
    parsed.validate().unwrap();

    // The code's defaults, plus the values the example marks "example value". Changing
    // a default in code without changing the example fails here.
    let mut want = NodeConfig::default();
    want.node.domains = vec!["example.com".into()];
    want.tls.cert = Some("/etc/fedgate/cert.pem".into());
    want.tls.key = Some("/etc/fedgate/key.pem".into());
    want.tls.roots = vec!["/etc/fedgate/roots.pem".into()];
    want.federation.domain = vec![
        FederatedDomainSection {
            name: "contoso.example".into(),
            protocol: Protocol::Sip,
            family: Some(FamilyName::Lync),
            starttls: None,
            targets: vec![],
        },
        FederatedDomainSection {
            name: "jabber.example.org".into(),
            protocol: Protocol::Xmpp,
            family: Some(FamilyName::Xmpp),
            starttls: Some(StartTls::Required),
            targets: vec!["xmpp.example.org:5269".into()],
        },
    ];
    assert_eq!(parsed, want);
}

/// Every key path of a TOML value, arrays of tables as `key[]`.
fn key_paths(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                key_paths(v, &p, out);
            }
        }
        toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => {
            for item in items {
                key_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn example_writes_every_key() {
    // Every key the code knows, optional ones included.
    let mut full = NodeConfig::default();
    full.tls.cert = Some("c".into());
    full.tls.key = Some("k".into());
    full.xmpp.s2s.dialback_secret = Some("s".into());
    full.xmpp.s2s.secret_file = Some("f".into());
    full.federation.domain = vec![FederatedDomainSection {
        name: "x.example".into(),
        protocol: Protocol::Xmpp,
        family: Some(FamilyName::Xmpp),
        starttls: Some(StartTls::Optional),
        targets: vec![],
    }];
    let mut code_keys = Vec::new();
    key_paths(&toml::Value::try_from(&full).unwrap(), "", &mut code_keys);
    assert!(code_keys.len() > 60, "{code_keys:?}");

    let text = example_text();
    let mut example_keys = Vec::new();
    key_paths(
        &text.parse::<toml::Table>().unwrap().into(),
        "",
        &mut example_keys,
    );
    for k in &code_keys {
        let leaf = k.rsplit('.').next().unwrap();
        let commented = text.contains(&format!("# {leaf} = "));
        assert!(
            example_keys.contains(k) || commented,
            "examples/fedgate.toml does not write `{k}`"
        );
    }
}

#[test]
fn example_loads_from_its_file_and_validates_to_typed_values() {
    let v = NodeConfig::load_validated(example_path()).unwrap();
    assert_eq!(v.local_domains, vec![d("example.com")]);
    assert_eq!(v.federation.route(&d("contoso.example")), Route::Sip);
    assert_eq!(v.federation.route(&d("jabber.example.org")), Route::Xmpp);
    assert!(matches!(
        v.federation.route(&d("elsewhere.example")),
        Route::NotFederated(_)
    ));
    assert_eq!(v.federation.route(&d("example.com")), Route::Local);
    assert_eq!(v.federation.xmpp_mode(), XmppMode::AllowListed);
    let s2s = v.s2s.as_ref().unwrap();
    assert_eq!(s2s.listen, "0.0.0.0:5269".parse().unwrap());
    assert_eq!(s2s.starttls, TlsPolicy::Optional);
    assert!(matches!(s2s.secret, SecretSource::Random));
    assert_eq!(s2s.keepalive, Some(Duration::from_secs(60)));
    assert_eq!(v.c2s.as_ref().unwrap().listen.port(), 5222);
    assert_eq!(v.sip.listeners.len(), 1);
    assert_eq!(v.sip.listeners[0].transport, SipTransportKind::Tls);
    assert_eq!(v.sip.listeners[0].addr, "0.0.0.0:5061".parse().unwrap());
    assert_eq!(
        v.starttls_for(&d("jabber.example.org")),
        TlsPolicy::Required
    );
    assert_eq!(v.starttls_for(&d("other.example")), TlsPolicy::Optional);
    assert_eq!(v.xmpp_peers_requiring_tls(), vec![&d("jabber.example.org")]);
    let jabber = v.peer(&d("jabber.example.org")).unwrap();
    assert_eq!(jabber.family, Family::XmppFed);
    assert_eq!(jabber.targets[0].to_string(), "xmpp.example.org:5269");
    assert_eq!(
        jabber.targets[0].host,
        TargetHost::Name(d("xmpp.example.org"))
    );
    assert_eq!(v.peer(&d("contoso.example")).unwrap().family, Family::Lync);
    assert_eq!(
        v.tls.source,
        CertSource::Files {
            cert: "/etc/fedgate/cert.pem".into(),
            key: "/etc/fedgate/key.pem".into()
        }
    );
    assert_eq!(v.tls.missing_san, MissingSan::Warn);
}

#[test]
fn defaults_map_onto_the_crates_defaults() {
    let v = NodeConfig::from_toml_str(BASE).unwrap().validate().unwrap();
    assert_eq!(
        v.sip.transport,
        fedgate_node::sip::TransportConfig::default()
    );
    assert_eq!(v.xmpp_limits, fedgate_xmpp::Limits::default());
    assert_eq!(v.store, fedgate_store::StoreConfig::default());
    assert_eq!(v.dns, fedgate_node::dns::DnsConfig::default());
    assert_eq!(v.sip.client_auth, fedgate_node::tls::ClientAuth::Required);
    // Missing sections mean defaults: an empty document is the default.
    assert_eq!(
        NodeConfig::from_toml_str("").unwrap(),
        NodeConfig::default()
    );
}

#[test]
fn limits_are_carried_to_the_typed_values() {
    let v = NodeConfig::from_toml_str(&format!(
        "{BASE}\n[limits.sip]\nmax_headers = 100\n[limits.xmpp]\nmax_depth = 8\n\
         [limits.store]\nmax_roster_items = 50\n[limits.node]\nmax_connections_per_peer = 3\n\
         [sip]\nkeepalive_secs = 0\n"
    ))
    .unwrap()
    .validate()
    .unwrap();
    assert_eq!(v.sip.transport.limits.sip.max_headers, 100);
    assert_eq!(v.sip.transport.limits.max_connections_per_target, 3);
    assert_eq!(v.connections.max_connections_per_peer, 3);
    assert_eq!(v.sip.transport.timers.keepalive_interval, None);
    assert_eq!(v.xmpp_limits.max_depth, 8);
    assert_eq!(v.store.limits.max_roster_items, 50);
}

// ---- the embedded default ---------------------------------------------------------

#[test]
fn embedded_default_validates_on_loopback() {
    let cfg = NodeConfig::embedded_default();
    let v = cfg.validate().unwrap();
    assert_eq!(v.local_domains, vec![d("fedgate-a.test")]);
    assert_eq!(v.data_dir, PathBuf::from("./fedgate-data"));
    assert!(matches!(v.tls.source, CertSource::Generate { .. }));
    let c2s = v.c2s.as_ref().unwrap().listen;
    let s2s = v.s2s.as_ref().unwrap().listen;
    let sip = v.sip.listeners[0].addr;
    assert_eq!(c2s, "127.0.0.1:15222".parse().unwrap());
    assert_eq!(s2s, "127.0.0.1:15269".parse().unwrap());
    assert_eq!(sip, "127.0.0.1:15061".parse().unwrap());
    for a in [c2s, s2s, sip] {
        assert!(a.ip().is_loopback() && a.port() > 1024, "{a}");
    }
    assert_eq!(v.federation.route(&d("fedgate-b.test")), Route::Xmpp);
}

#[test]
fn embedded_default_round_trips_through_toml() {
    let cfg = NodeConfig::embedded_default();
    let text = toml::to_string(&cfg).unwrap();
    assert_eq!(NodeConfig::from_toml_str(&text).unwrap(), cfg);
    let text = toml::to_string(&NodeConfig::default()).unwrap();
    assert_eq!(
        NodeConfig::from_toml_str(&text).unwrap(),
        NodeConfig::default()
    );
}

// ---- errors name their key --------------------------------------------------------

#[test]
fn unknown_keys_are_named() {
    assert_eq!(key("[nodes]\nname = \"x\"\n"), "nodes");
    assert_eq!(
        key("[xmpp.s2s]\nlisten_addr = \"0.0.0.0:1\"\n"),
        "xmpp.s2s.listen_addr"
    );
    assert_eq!(
        key(
            "[[federation.domain]]\nname = \"a.example\"\nprotocol = \"sip\"\n\
             [[federation.domain]]\nnmae = \"b.example\"\nprotocol = \"xmpp\"\n"
        ),
        "federation.domain[1].nmae"
    );
    assert_eq!(
        key("[[sip.listeners]]\ntransport = \"tls\"\naddress = \"0.0.0.0:5061\"\nport = 1\n"),
        "sip.listeners[0].port"
    );
}

#[test]
fn wrong_types_are_named_with_line_and_column() {
    let e = error(&format!("{BASE}\n[limits.sip]\nmax_headers = \"many\"\n"));
    let ConfigError::Toml {
        key: k,
        line,
        column,
        message,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(k, "limits.sip.max_headers");
    let want_line = BASE.lines().count() + 3;
    assert_eq!((*line, *column), (want_line, 15), "{e}");
    assert!(message.contains("invalid type"), "{message}");
    assert!(e.to_string().contains(&format!("line {want_line}")), "{e}");

    assert_eq!(
        key("[sip]\nrequire_client_cert = \"yes\"\n"),
        "sip.require_client_cert"
    );
    assert_eq!(
        error("[node]\ndomains = \"example.com\"\n").key(),
        Some("node.domains")
    );
}

#[test]
fn syntax_errors_give_line_and_column() {
    let e = error("[node]\nname = \"a\"\ndomains = [\"example.com\"\n\n[tls]\n");
    let ConfigError::Toml { line, column, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(*line >= 3, "{e}");
    assert!(*column >= 1);
    assert!(e.key().unwrap().starts_with("node.domains"), "{e}");
    let e = error("[node]\nname = = 1\n");
    let ConfigError::Toml { line, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(*line, 2, "{e}");
}

#[test]
fn bad_starttls_values_are_named() {
    assert_eq!(
        key("[xmpp.s2s]\nstarttls = \"maybe\"\n"),
        "xmpp.s2s.starttls"
    );
    let e = error(&format!(
        "{BASE}[[federation.domain]]\nname = \"a.example\"\nprotocol = \"xmpp\"\n\
         starttls = \"always\"\n"
    ));
    assert_eq!(e.key(), Some("federation.domain[0].starttls"));
    assert!(e.to_string().contains("optional"), "{e}");
    // starttls on a SIP peer.
    assert_eq!(
        key(
            "[[federation.domain]]\nname = \"a.example\"\nprotocol = \"sip\"\nstarttls = \"required\"\n"
        ),
        "federation.domain[0].starttls"
    );
}

#[test]
fn bad_enum_names_are_named() {
    assert_eq!(
        key("[[federation.domain]]\nname = \"a.example\"\nprotocol = \"smtp\"\n"),
        "federation.domain[0].protocol"
    );
    assert_eq!(key("[policy]\nxmpp_mode = \"open\"\n"), "policy.xmpp_mode");
    assert_eq!(
        error("[tls]\nmissing_san = \"ignore\"\n").key(),
        Some("tls.missing_san")
    );
    // A table written twice is a TOML error naming it.
    assert_eq!(key("[tls]\ngenerate = true\n"), "tls");
    assert_eq!(
        key("[[sip.listeners]]\ntransport = \"sctp\"\naddress = \"0.0.0.0:5061\"\n"),
        "sip.listeners[0].transport"
    );
}

#[test]
fn missing_required_keys_name_their_entry() {
    let e = error(&format!(
        "{BASE}[[federation.domain]]\nname = \"a.example\"\n"
    ));
    assert_eq!(e.key(), Some("federation.domain[0].protocol"));
    assert!(e.to_string().contains("missing field `protocol`"), "{e}");
    let e = error("[[sip.listeners]]\ntransport = \"tcp\"\n");
    assert_eq!(e.key(), Some("sip.listeners[0].address"));
}

#[test]
fn bad_addresses_are_named() {
    assert_eq!(
        key("[xmpp.c2s]\nlisten = \"localhost:5222\"\n"),
        "xmpp.c2s.listen"
    );
    assert_eq!(key("[xmpp.s2s]\nlisten = \"0.0.0.0\"\n"), "xmpp.s2s.listen");
    assert_eq!(
        key(
            "[[sip.listeners]]\ntransport = \"udp\"\naddress = \"0.0.0.0:5060\"\n\
             [[sip.listeners]]\ntransport = \"tls\"\naddress = \"0.0.0.0:99999\"\n"
        ),
        "sip.listeners[1].address"
    );
    assert_eq!(
        key(
            "[[federation.domain]]\nname = \"a.example\"\nprotocol = \"xmpp\"\n\
             targets = [\"ok.example:5269\", \"bad host:1\"]\n"
        ),
        "federation.domain[0].targets[1]"
    );
    assert_eq!(
        key("[dns]\nnameservers = [\"dns.example\"]\n"),
        "dns.nameservers[0]"
    );
    // Two listeners on one socket.
    assert_eq!(
        key("[xmpp.c2s]\nlisten = \"0.0.0.0:5269\"\n"),
        "xmpp.c2s.listen"
    );
    // UDP and TCP may share a port; two TLS listeners may not.
    NodeConfig::from_toml_str(&format!(
        "{BASE}[[sip.listeners]]\ntransport = \"udp\"\naddress = \"0.0.0.0:5060\"\n\
         [[sip.listeners]]\ntransport = \"tcp\"\naddress = \"0.0.0.0:5060\"\n"
    ))
    .unwrap()
    .validate()
    .unwrap();
}

#[test]
fn bad_domains_are_named() {
    let e = error("[node]\ndomains = [\"example.com\", \"bad domain\"]\n");
    assert_eq!(e.key(), Some("node.domains[1]"));
    assert_eq!(
        key("[[federation.domain]]\nname = \"-x.example\"\nprotocol = \"sip\"\n"),
        "federation.domain[0].name"
    );
    assert_eq!(key("[policy]\ndeny = [\"a..b\"]\n"), "policy.deny[0]");
    let e = error("[node]\ndomains = [\"example.com\", \"EXAMPLE.com.\"]\n");
    assert_eq!(e.key(), Some("node.domains[1]"));
}

#[test]
fn sip_and_xmpp_for_one_domain_fails_with_delete_the_sip_entry_first() {
    let sip = "[[federation.domain]]\nname = \"partner.example\"\nprotocol = \"sip\"\n";
    let xmpp = "[[federation.domain]]\nname = \"Partner.Example\"\nprotocol = \"xmpp\"\n";
    for (body, xmpp_index) in [(format!("{sip}{xmpp}"), 1), (format!("{xmpp}{sip}"), 0)] {
        let e = error(&format!("{BASE}{body}"));
        assert_eq!(
            e.key(),
            Some(format!("federation.domain[{xmpp_index}].protocol").as_str())
        );
        assert!(
            matches!(
                e,
                ConfigError::Federation {
                    source: fedgate_policy::ConfigError::ConfiguredAsSip { .. },
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("delete partner.example as a SIP federated domain first"),
            "{e}"
        );
    }
    // On the deny list while a SIP peer: the same rule.
    let e = error(&format!(
        "{BASE}{sip}[policy]\ndeny = [\"partner.example\"]\n"
    ));
    assert_eq!(e.key(), Some("policy.deny[0]"));
    assert!(e.to_string().contains("SIP federated domain first"), "{e}");
    // On the deny list while an XMPP peer.
    let xmpp = xmpp.replace("Partner.Example", "partner.example");
    assert_eq!(
        key(&format!("{xmpp}[policy]\ndeny = [\"partner.example\"]\n")),
        "policy.deny[0]"
    );
    // The same domain twice over one protocol.
    assert_eq!(key(&format!("{sip}{sip}")), "federation.domain[1].name");
}

#[test]
fn family_must_fit_the_protocol() {
    let e = error(&format!(
        "{BASE}[[federation.domain]]\nname = \"a.example\"\nprotocol = \"xmpp\"\nfamily = \"lync\"\n"
    ));
    assert_eq!(e.key(), Some("federation.domain[0].family"));
    assert!(e.to_string().contains("lync"), "{e}");
    for fam in ["xmpp", "jabber", "sametime", "webex"] {
        assert_eq!(
            key(&format!(
                "[[federation.domain]]\nname = \"a.example\"\nprotocol = \"sip\"\nfamily = \"{fam}\"\n"
            )),
            "federation.domain[0].family"
        );
    }
    assert_eq!(
        key("[[federation.domain]]\nname = \"a.example\"\nprotocol = \"xmpp\"\nfamily = \"msn\"\n"),
        "federation.domain[0].family"
    );
    // Fitting families map to presence families; the default follows the protocol.
    let v = NodeConfig::from_toml_str(&format!(
        "{BASE}[[federation.domain]]\nname = \"j.example\"\nprotocol = \"xmpp\"\nfamily = \"jabber\"\n\
         [[federation.domain]]\nname = \"s.example\"\nprotocol = \"xmpp\"\nfamily = \"sametime\"\n\
         [[federation.domain]]\nname = \"w.example\"\nprotocol = \"xmpp\"\nfamily = \"webex\"\n\
         [[federation.domain]]\nname = \"l.example\"\nprotocol = \"sip\"\n\
         [[federation.domain]]\nname = \"x.example\"\nprotocol = \"xmpp\"\n"
    ))
    .unwrap()
    .validate()
    .unwrap();
    let fams: Vec<Family> = v.peers.iter().map(|p| p.family).collect();
    assert_eq!(
        fams,
        [
            Family::JabberFed,
            Family::Sametime,
            Family::Webex,
            Family::Lync,
            Family::XmppFed
        ]
    );
}

#[test]
fn at_least_one_local_domain() {
    let e = error("[tls]\ngenerate = true\n");
    assert_eq!(e.key(), Some("node.domains"));
    assert!(e.to_string().contains("at least one local domain"), "{e}");
    assert_eq!(error("[node]\ndomains = []\n").key(), Some("node.domains"));
}

#[test]
fn a_remote_domain_may_not_be_local() {
    let e = error(&format!(
        "{BASE}[[federation.domain]]\nname = \"example.com\"\nprotocol = \"xmpp\"\n"
    ));
    assert_eq!(e.key(), Some("federation.domain[0].protocol"));
    assert!(matches!(
        e,
        ConfigError::Federation {
            source: fedgate_policy::ConfigError::RemoteIsLocal { .. },
            ..
        }
    ));
    assert_eq!(
        key("[policy]\ndeny = [\"example.com\"]\n"),
        "policy.deny[0]"
    );
    // Subdomains are different domains.
    NodeConfig::from_toml_str(&format!(
        "{BASE}[[federation.domain]]\nname = \"imp.example.com\"\nprotocol = \"sip\"\n"
    ))
    .unwrap()
    .validate()
    .unwrap();
}

#[test]
fn tls_rules_are_named() {
    let domains = "[node]\ndomains = [\"example.com\"]\n";
    // A TLS listener without a certificate.
    let e = error(domains);
    assert_eq!(e.key(), Some("tls.cert"));
    assert!(
        e.to_string().contains("sip.listeners[0] is a TLS listener"),
        "{e}"
    );
    // cert without key, and the reverse.
    assert_eq!(
        error(&format!(
            "{domains}[tls]\ncert = \"c.pem\"\nroots = [\"r\"]\n"
        ))
        .key(),
        Some("tls.key")
    );
    assert_eq!(
        error(&format!(
            "{domains}[tls]\nkey = \"k.pem\"\nroots = [\"r\"]\n"
        ))
        .key(),
        Some("tls.cert")
    );
    // generate excludes cert.
    assert_eq!(
        error(&format!(
            "{domains}[tls]\ngenerate = true\ncert = \"c\"\nkey = \"k\"\n"
        ))
        .key(),
        Some("tls.generate")
    );
    // Mutual TLS needs roots.
    let e = error(&format!("{domains}[tls]\ncert = \"c\"\nkey = \"k\"\n"));
    assert_eq!(e.key(), Some("tls.roots"));
    assert!(e.to_string().contains("require_client_cert"), "{e}");
    // ... as does a SIP peer, even without mutual TLS on our listener.
    let e = error(&format!(
        "{domains}[tls]\ncert = \"c\"\nkey = \"k\"\n[sip]\nrequire_client_cert = false\n\
         [[federation.domain]]\nname = \"l.example\"\nprotocol = \"sip\"\n"
    ));
    assert_eq!(e.key(), Some("tls.roots"));
    // No TLS anywhere: no certificate needed (TLS is optional for XMPP federation).
    let v = NodeConfig::from_toml_str(&format!(
        "{domains}[sip]\nlisteners = []\n[xmpp.c2s]\nrequire_tls = false\n\
         [[federation.domain]]\nname = \"x.example\"\nprotocol = \"xmpp\"\n"
    ))
    .unwrap()
    .validate()
    .unwrap();
    assert_eq!(v.tls.source, CertSource::None);
    assert!(v.load_tls().unwrap().is_none());
    // ... unless a peer requires STARTTLS.
    let e = error(&format!(
        "{domains}[sip]\nlisteners = []\n[xmpp.c2s]\nrequire_tls = false\n\
         [[federation.domain]]\nname = \"x.example\"\nprotocol = \"xmpp\"\nstarttls = \"required\"\n"
    ));
    assert_eq!(e.key(), Some("tls.cert"));
    assert!(e.to_string().contains("federation.domain[0]"), "{e}");
}

#[test]
fn xmpp_rules_are_named() {
    assert_eq!(
        key("[xmpp.s2s]\ndialback_secret = \"short\"\n"),
        "xmpp.s2s.dialback_secret"
    );
    assert_eq!(
        key("[xmpp.s2s]\ndialback_secret = \"0123456789abcdef\"\nsecret_file = \"s\"\n"),
        "xmpp.s2s.secret_file"
    );
    assert_eq!(
        key("[xmpp.c2s]\nallow_plain_without_tls = true\n"),
        "xmpp.c2s.allow_plain_without_tls"
    );
    assert_eq!(
        key("[xmpp.c2s]\nmax_auth_failures = 0\n"),
        "xmpp.c2s.max_auth_failures"
    );
    assert_eq!(
        key("[xmpp.s2s]\nidle_timeout_secs = 0\n"),
        "xmpp.s2s.idle_timeout_secs"
    );
    // Disabled listeners are not checked for addresses and give None.
    let v = NodeConfig::from_toml_str(&format!(
        "{BASE}[xmpp.s2s]\nenabled = false\nlisten = \"nonsense\"\n"
    ))
    .unwrap()
    .validate()
    .unwrap();
    assert!(v.s2s.is_none());
    assert_eq!(v.starttls_for(&d("any.example")), TlsPolicy::Optional);
}

#[test]
fn limit_rules_are_named() {
    assert_eq!(
        key("[limits.xmpp]\nmax_depth = 0\n"),
        "limits.xmpp.max_depth"
    );
    assert_eq!(
        key("[limits.xmpp]\nmax_stanza_bytes = 1000\n"),
        "limits.xmpp.max_stanza_bytes_unauthenticated"
    );
    assert_eq!(
        key("[limits.sip]\nmax_udp_datagram = 70000\n"),
        "limits.sip.max_udp_datagram"
    );
    assert_eq!(
        key("[limits.sip]\nmax_line_length = 100000\n"),
        "limits.sip.max_line_length"
    );
    assert_eq!(
        key("[limits.node]\ninbound_queue = 0\n"),
        "limits.node.inbound_queue"
    );
    assert_eq!(
        key("[limits.node]\nmax_connections = 10\n"),
        "limits.node.max_connections_per_ip"
    );
    assert_eq!(
        key("[limits.store]\nmax_roster_items = 0\n"),
        "limits.store.max_roster_items"
    );
    assert_eq!(
        key("[limits.store]\nmax_sip_dialogs = 0\n"),
        "limits.store.max_sip_dialogs"
    );
    assert_eq!(
        key("[store]\nscram_iterations = 1000\n"),
        "store.scram_iterations"
    );
    assert_eq!(
        key("[sip]\nidle_timeout_secs = 0\n"),
        "sip.idle_timeout_secs"
    );
    assert_eq!(
        key("[sip]\nreconnect_max_secs = 0\n"),
        "sip.reconnect_max_secs"
    );
    assert_eq!(key("[dns]\ntimeout_ms = 0\n"), "dns.timeout_ms");
    assert_eq!(key("[dns]\nmin_ttl_secs = 700\n"), "dns.min_ttl_secs");
    assert_eq!(
        key("[limits.sip]\nmax_headers = -1\n"),
        "limits.sip.max_headers"
    );
}

#[test]
fn load_reports_the_file() {
    let e = NodeConfig::load("/nonexistent/fedgate.toml").unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert_eq!(e.key(), None);
    assert!(e.to_string().contains("/nonexistent/fedgate.toml"), "{e}");
}

// ---- start-up TLS and secrets -----------------------------------------------------

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("fedgate-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn generated_certificate_is_stored_reused_and_checked_against_the_domains() {
    let dir = TempDir::new("generate");
    let mut cfg = NodeConfig::embedded_default();
    cfg.node.data_dir = dir.0.join("data");
    let v = cfg.validate().unwrap();

    let first = v.load_tls().unwrap().unwrap();
    assert!(first.generated);
    assert!(first.missing_san.is_empty());
    let cert = dir.0.join("data/tls/cert.pem");
    assert!(cert.exists() && dir.0.join("data/tls/key.pem").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.0.join("data/tls/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
    }
    let id = first.settings.identity.as_ref().unwrap();
    assert_eq!(id.names(), vec!["fedgate-a.test"]);
    // The generated certificate is trusted as a root.
    assert_eq!(first.settings.roots, id.chain);
    assert_eq!(
        first.settings.client_auth,
        fedgate_node::tls::ClientAuth::Required
    );
    first.settings.server_config().unwrap();

    let second = v.load_tls().unwrap().unwrap();
    assert!(!second.generated);
    assert_eq!(second.settings.identity.unwrap().chain, id.chain);

    // A domain added later is missing from the stored certificate: a warning...
    cfg.node.domains.push("fedgate-c.test".into());
    let v = cfg.validate().unwrap();
    assert_eq!(
        v.load_tls().unwrap().unwrap().missing_san,
        vec![d("fedgate-c.test")]
    );
    // ... or an error where the config says so.
    cfg.tls.missing_san = MissingSan::Error;
    let e = cfg.validate().unwrap().load_tls().unwrap_err();
    assert_eq!(e.key(), Some("tls.missing_san"));
    assert!(e.to_string().contains("fedgate-c.test"), "{e}");

    // Half a stored pair is refused rather than overwritten.
    std::fs::remove_file(dir.0.join("data/tls/key.pem")).unwrap();
    let e = cfg.validate().unwrap().load_tls().unwrap_err();
    assert_eq!(e.key(), Some("tls.generate"));
}

#[test]
fn configured_certificate_and_roots_are_read_and_named_on_error() {
    let dir = TempDir::new("files");
    let cert = fedgate_node::tls::self_signed(&["example.com"]).unwrap();
    std::fs::write(dir.0.join("cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.0.join("key.pem"), &cert.key_pem).unwrap();
    let toml = |roots: &str| {
        format!(
            "[node]\ndomains = [\"example.com\", \"example.net\"]\n[tls]\ncert = {:?}\nkey = {:?}\n\
             roots = [{:?}, {roots:?}]\n",
            dir.0.join("cert.pem"),
            dir.0.join("key.pem"),
            dir.0.join("cert.pem"),
        )
    };
    let ok = NodeConfig::from_toml_str(&toml(dir.0.join("cert.pem").to_str().unwrap()))
        .unwrap()
        .validate()
        .unwrap();
    let tls = ok.load_tls().unwrap().unwrap();
    assert!(!tls.generated);
    assert_eq!(tls.settings.roots.len(), 2);
    assert_eq!(tls.missing_san, vec![d("example.net")]);

    let bad = NodeConfig::from_toml_str(&toml("/nonexistent/roots.pem"))
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(bad.load_tls().unwrap_err().key(), Some("tls.roots[1]"));

    let mut cfg =
        NodeConfig::from_toml_str(&toml(dir.0.join("cert.pem").to_str().unwrap())).unwrap();
    cfg.tls.cert = Some(dir.0.join("missing.pem"));
    assert_eq!(
        cfg.validate().unwrap().load_tls().unwrap_err().key(),
        Some("tls.cert")
    );
}

#[test]
fn dialback_secret_sources() {
    let dir = TempDir::new("secret");
    let file = dir.0.join("dialback.secret");
    std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
    let with = |extra: &str| {
        NodeConfig::from_toml_str(&format!("{BASE}[xmpp.s2s]\n{extra}"))
            .unwrap()
            .validate()
            .unwrap()
            .s2s
            .unwrap()
    };
    let from_file = with(&format!("secret_file = {file:?}\n"))
        .dialback_secret([0; 32])
        .unwrap();
    let inline = with("dialback_secret = \"0123456789abcdef0123\"\n")
        .dialback_secret([0; 32])
        .unwrap();
    // Same secret, same keys; the trailing newline of the file is not part of it.
    assert_eq!(
        from_file.key("a.example", "b.example", "id1"),
        inline.key("a.example", "b.example", "id1")
    );
    // Random when neither is configured: the caller's bytes.
    let r1 = with("").dialback_secret([1; 32]).unwrap();
    let r2 = with("").dialback_secret([2; 32]).unwrap();
    assert_ne!(r1.key("a", "b", "c"), r2.key("a", "b", "c"));
    // Debug never shows the secret.
    let s = with("dialback_secret = \"0123456789abcdef0123\"\n");
    assert!(!format!("{s:?}").contains("0123456789abcdef"));
    // A short or missing file names the key.
    std::fs::write(&file, "short\n").unwrap();
    let e = with(&format!("secret_file = {file:?}\n"))
        .dialback_secret([0; 32])
        .unwrap_err();
    assert_eq!(e.key(), Some("xmpp.s2s.secret_file"));
    let e = with("secret_file = \"/nonexistent/secret\"\n")
        .dialback_secret([0; 32])
        .unwrap_err();
    assert_eq!(e.key(), Some("xmpp.s2s.secret_file"));
}

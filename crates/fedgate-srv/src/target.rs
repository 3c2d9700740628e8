//! Target lists: SIP per RFC 3263 (plus Microsoft's `_sipfederationtls._tcp`) and XMPP
//! server-to-server per RFC 6120 §3.2 and XEP-0368.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::lookup::{LookupError, SrvLookup};
use crate::order::{Weighted, rfc2782_order};
use crate::record::{SrvAnswer, SrvRecord, SrvSet, normalize_name};
use crate::rng::RandomSource;

/// How to talk to a target.
///
/// For XMPP, `Tcp` is a plain stream that upgrades with STARTTLS (`_xmpp-server`) and
/// `Tls` is XEP-0368 direct TLS (`_xmpps-server`). In both cases the TLS reference
/// identity (SNI, certificate check) is the *origin domain*, never the SRV target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// UDP (SIP only).
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// Reads a SIP URI `transport=` parameter (`udp`, `tcp`, `tls`), case-insensitively.
    /// Others (`sctp`, `ws`, ...) are not supported and give `None`.
    pub fn from_sip_param(param: &str) -> Option<Self> {
        match param.to_ascii_lowercase().as_str() {
            "udp" => Some(Self::Udp),
            "tcp" => Some(Self::Tcp),
            "tls" => Some(Self::Tls),
            _ => None,
        }
    }

    /// The default SIP port: 5061 for TLS, 5060 otherwise (RFC 3261 §19.1.2).
    pub fn default_sip_port(self) -> u16 {
        match self {
            Self::Tls => 5061,
            _ => 5060,
        }
    }
}

/// Where a target came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSource {
    /// The URI host was an IP address.
    IpLiteral,
    /// The URI gave a port, so only A/AAAA was used (RFC 3263 §4.2).
    ExplicitPort,
    /// An SRV record reached through NAPTR.
    Naptr,
    /// An SRV record.
    Srv,
    /// No SRV answer at all: A/AAAA of the domain on the default port.
    AddressFallback,
}

/// One host to try, with its addresses in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name (normalised), or the IP literal.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport.
    pub transport: Transport,
    /// Addresses (never empty in a resolved [`TargetList`]).
    pub addrs: Vec<IpAddr>,
    /// Provenance, for logs.
    pub source: TargetSource,
}

/// An ordered, de-duplicated list of targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetList {
    /// Targets, best first.
    pub targets: Vec<Target>,
}

/// One connectable endpoint of a [`TargetList`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Address and port.
    pub addr: SocketAddr,
    /// Transport.
    pub transport: Transport,
}

impl TargetList {
    /// Every address of every target, in order, without repeats.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = Vec::new();
        for t in &self.targets {
            for a in &t.addrs {
                let e = Endpoint {
                    addr: SocketAddr::new(*a, t.port),
                    transport: t.transport,
                };
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
        out
    }
}

/// Why no target list could be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// SRV said the service is decidedly not offered ("." target); no fallback.
    #[error("{domain} does not offer the service (SRV target \".\")")]
    NotOffered {
        /// The domain.
        domain: String,
    },
    /// Records were found but no target has an address, or there was nothing at all.
    #[error("no reachable target for {domain}")]
    NoTargets {
        /// The domain.
        domain: String,
    },
    /// DNS failed and nothing usable was found.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The URI asks for a transport this crate does not support or that conflicts with
    /// the scheme (e.g. `sips:` with `transport=udp`).
    #[error("unsupported transport {param:?} for this URI")]
    UnsupportedTransport {
        /// The `transport=` parameter.
        param: String,
    },
}

/// The facts of a SIP URI that RFC 3263 needs; the caller parses the URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUriFacts {
    /// `sips:` scheme.
    pub secure: bool,
    /// Host part: a domain name, an IPv4 address or an IPv6 reference (`[..]` allowed).
    pub host: String,
    /// Explicit port, if any.
    pub port: Option<u16>,
    /// The raw `transport=` parameter, if any.
    pub transport: Option<String>,
}

/// What a SIP client is willing to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipOptions {
    /// Federation (Lync / Skype for Business / O365): query `_sipfederationtls._tcp`
    /// first and default to TLS.
    pub federation: bool,
    /// Plain TCP allowed (`_sip._tcp`, port 5060).
    pub allow_tcp: bool,
    /// UDP allowed (`_sip._udp`).
    pub allow_udp: bool,
}

impl Default for SipOptions {
    /// Federation on, TCP allowed, UDP not.
    fn default() -> Self {
        Self {
            federation: true,
            allow_tcp: true,
            allow_udp: false,
        }
    }
}

/// XMPP server-to-server options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmppOptions {
    /// Also look up `_xmpps-server._tcp` (XEP-0368 direct TLS).
    pub direct_tls: bool,
    /// Port of the A/AAAA fallback.
    pub fallback_port: u16,
}

impl Default for XmppOptions {
    /// Direct TLS on, fallback port 5269.
    fn default() -> Self {
        Self {
            direct_tls: true,
            fallback_port: 5269,
        }
    }
}

fn ip_literal(host: &str) -> Option<IpAddr> {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    h.parse().ok()
}

/// Most targets a [`TargetList`] holds. SRV and NAPTR answers come from the network: past
/// this many targets, further records are ignored, which also bounds the address
/// lookups one hostile answer can cause.
pub const MAX_TARGETS: usize = 32;

/// Collects targets, de-duplicating and remembering whether any SRV label answered.
struct Builder {
    domain: String,
    targets: Vec<Target>,
    pending: Vec<(SrvRecord, Transport, TargetSource, Arc<SrvSet>)>,
    srv_answered: bool,
    not_offered: bool,
    error: Option<LookupError>,
}

impl Builder {
    fn new(domain: &str) -> Self {
        Self {
            domain: domain.to_owned(),
            targets: Vec::new(),
            pending: Vec::new(),
            srv_answered: false,
            not_offered: false,
            error: None,
        }
    }

    /// Queries one SRV label; returns the set if it had records.
    async fn srv<L: SrvLookup + ?Sized>(&mut self, lookup: &L, name: &str) -> Option<Arc<SrvSet>> {
        match lookup.lookup_srv(name).await {
            Ok(SrvAnswer::Records(set)) => {
                self.srv_answered = true;
                Some(set)
            }
            Ok(SrvAnswer::NotOffered) => {
                self.not_offered = true;
                None
            }
            Ok(SrvAnswer::NoRecords) => None,
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    /// Orders one SRV set (RFC 2782) and queues its records.
    fn push_ordered<R: RandomSource + ?Sized>(
        &mut self,
        tagged: Vec<Tagged>,
        source: TargetSource,
        rng: &mut R,
    ) {
        let mut tagged = tagged;
        rfc2782_order(&mut tagged, rng);
        for t in tagged {
            self.pending.push((t.record, t.transport, source, t.set));
        }
    }

    /// Resolves the queued SRV targets' addresses: glue first, else an A/AAAA lookup.
    async fn resolve_pending<L: SrvLookup + ?Sized>(&mut self, lookup: &L) {
        let mut address_lookups = 0;
        for (r, transport, source, set) in std::mem::take(&mut self.pending) {
            if self.targets.len() >= MAX_TARGETS || address_lookups >= MAX_TARGETS {
                break;
            }
            if self.has(&r.target, r.port, transport) {
                continue;
            }
            let mut addrs: Vec<IpAddr> = set.glue_for(&r.target).collect();
            if addrs.is_empty() {
                address_lookups += 1;
                match lookup.lookup_ip(&r.target).await {
                    Ok(a) => addrs.extend(a.iter().copied()),
                    Err(e) => {
                        self.error.get_or_insert(e);
                    }
                }
            }
            self.push(Target {
                host: r.target,
                port: r.port,
                transport,
                addrs,
                source,
            });
        }
    }

    async fn address<L: SrvLookup + ?Sized>(
        &mut self,
        lookup: &L,
        host: &str,
        port: u16,
        transport: Transport,
        source: TargetSource,
    ) {
        match lookup.lookup_ip(host).await {
            Ok(a) => self.push(Target {
                host: host.to_owned(),
                port,
                transport,
                addrs: a.to_vec(),
                source,
            }),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }

    fn has(&self, host: &str, port: u16, transport: Transport) -> bool {
        self.targets
            .iter()
            .any(|t| t.host == host && t.port == port && t.transport == transport)
    }

    fn push(&mut self, t: Target) {
        if self.targets.len() < MAX_TARGETS
            && !t.addrs.is_empty()
            && !self.has(&t.host, t.port, t.transport)
        {
            self.targets.push(t);
        }
    }

    fn finish(self) -> Result<TargetList, ResolveError> {
        if !self.targets.is_empty() {
            return Ok(TargetList {
                targets: self.targets,
            });
        }
        if self.not_offered && !self.srv_answered {
            return Err(ResolveError::NotOffered {
                domain: self.domain,
            });
        }
        match self.error {
            Some(e) => Err(ResolveError::Lookup(e)),
            None => Err(ResolveError::NoTargets {
                domain: self.domain,
            }),
        }
    }
}

/// Builds the SIP target list for a request URI (RFC 3263 §4, client side).
///
/// * IP literal: that address; transport from `transport=`, else TLS for `sips:` or
///   federation, else UDP; default port per transport.
/// * Explicit port: A/AAAA of the host on that port (no SRV).
/// * `transport=` given: SRV for that transport (TLS: `_sipfederationtls._tcp` when
///   federating, then `_sips._tcp`; TCP: `_sip._tcp`; UDP: `_sip._udp`), else A/AAAA.
/// * Otherwise: `_sipfederationtls._tcp` (federation), then NAPTR where present
///   (`SIPS+D2T`, `SIP+D2T`, `SIP+D2U` with flag `S`, by order and preference), else
///   `_sips._tcp`, `_sip._tcp` (`_sip._udp`); each SRV set ordered by RFC 2782; and only
///   when no SRV label answered at all, A/AAAA on 5061 (TLS) then 5060 (TCP).
///
/// `sips:` only ever yields TLS targets. A label whose answer is a lone "." contributes
/// nothing; if no label has records and one said ".", the result is
/// [`ResolveError::NotOffered`] (no A/AAAA fallback). Run once per transaction
/// (RFC 3263 §4), then walk the list with [`crate::Failover`].
pub async fn resolve_sip<L, R>(
    lookup: &L,
    uri: &SipUriFacts,
    opts: &SipOptions,
    rng: &mut R,
) -> Result<TargetList, ResolveError>
where
    L: SrvLookup + ?Sized,
    R: RandomSource + ?Sized,
{
    let param = match &uri.transport {
        None => None,
        Some(p) => match Transport::from_sip_param(p) {
            Some(Transport::Udp) if uri.secure => {
                return Err(ResolveError::UnsupportedTransport { param: p.clone() });
            }
            Some(_) if uri.secure => Some(Transport::Tls),
            Some(t) => Some(t),
            None => return Err(ResolveError::UnsupportedTransport { param: p.clone() }),
        },
    };
    let secure = uri.secure;
    let default_transport = param.unwrap_or(if secure || opts.federation {
        Transport::Tls
    } else {
        Transport::Udp
    });

    if let Some(ip) = ip_literal(&uri.host) {
        let port = uri.port.unwrap_or(default_transport.default_sip_port());
        return Ok(TargetList {
            targets: vec![Target {
                host: ip.to_string(),
                port,
                transport: default_transport,
                addrs: vec![ip],
                source: TargetSource::IpLiteral,
            }],
        });
    }
    let domain = normalize_name(&uri.host).into_owned();
    let mut b = Builder::new(&domain);

    if let Some(port) = uri.port {
        b.address(
            lookup,
            &domain,
            port,
            default_transport,
            TargetSource::ExplicitPort,
        )
        .await;
        return b.finish();
    }

    let tcp_ok = !secure && (opts.allow_tcp || param == Some(Transport::Tcp));
    let udp_ok = !secure && (opts.allow_udp || param == Some(Transport::Udp));
    let mut labels: Vec<(&str, Transport)> = Vec::new();
    match param {
        Some(Transport::Tls) => {
            if opts.federation {
                labels.push(("_sipfederationtls._tcp", Transport::Tls));
            }
            labels.push(("_sips._tcp", Transport::Tls));
        }
        Some(Transport::Tcp) => labels.push(("_sip._tcp", Transport::Tcp)),
        Some(Transport::Udp) => labels.push(("_sip._udp", Transport::Udp)),
        None => {
            if opts.federation {
                let name = format!("_sipfederationtls._tcp.{domain}");
                if let Some(set) = b.srv(lookup, &name).await {
                    let tagged = tag(&set, Transport::Tls);
                    b.push_ordered(tagged, TargetSource::Srv, rng);
                }
            }
            let naptr = match lookup.lookup_naptr(&domain).await {
                Ok(n) => n,
                Err(e) => {
                    b.error.get_or_insert(e);
                    Arc::new([])
                }
            };
            let mut usable: Vec<(u16, u16, Transport, &str)> = naptr
                .iter()
                .filter(|n| n.flags.eq_ignore_ascii_case("s"))
                .filter_map(|n| {
                    let t = match n.service.to_ascii_uppercase().as_str() {
                        "SIPS+D2T" => Transport::Tls,
                        "SIP+D2T" if tcp_ok => Transport::Tcp,
                        "SIP+D2U" if udp_ok => Transport::Udp,
                        _ => return None,
                    };
                    Some((n.order, n.preference, t, n.replacement.as_str()))
                })
                .collect();
            usable.sort_by_key(|u| (u.0, u.1));
            if !usable.is_empty() {
                for (_, _, t, replacement) in usable {
                    if let Some(set) = b.srv(lookup, replacement).await {
                        let tagged = tag(&set, t);
                        b.push_ordered(tagged, TargetSource::Naptr, rng);
                    }
                }
            } else {
                labels.push(("_sips._tcp", Transport::Tls));
                if tcp_ok {
                    labels.push(("_sip._tcp", Transport::Tcp));
                }
                if udp_ok {
                    labels.push(("_sip._udp", Transport::Udp));
                }
            }
        }
    }
    for (label, t) in labels {
        if let Some(set) = b.srv(lookup, &format!("{label}.{domain}")).await {
            let tagged = tag(&set, t);
            b.push_ordered(tagged, TargetSource::Srv, rng);
        }
    }
    b.resolve_pending(lookup).await;
    if !b.srv_answered && !b.not_offered {
        let fallbacks: &[Transport] = match param {
            Some(t) => &[t][..],
            None if secure || opts.federation => {
                if tcp_ok {
                    &[Transport::Tls, Transport::Tcp]
                } else {
                    &[Transport::Tls]
                }
            }
            None => &[Transport::Udp],
        };
        let fallbacks = fallbacks.to_vec();
        for t in fallbacks {
            b.address(
                lookup,
                &domain,
                t.default_sip_port(),
                t,
                TargetSource::AddressFallback,
            )
            .await;
        }
    }
    b.finish()
}

/// An SRV record with the transport its label implies and the answer it came in.
struct Tagged {
    record: SrvRecord,
    transport: Transport,
    set: Arc<SrvSet>,
}

impl Weighted for Tagged {
    fn priority(&self) -> u16 {
        self.record.priority
    }
    fn weight(&self) -> u16 {
        self.record.weight
    }
}

fn tag(set: &Arc<SrvSet>, transport: Transport) -> Vec<Tagged> {
    set.records
        .iter()
        .map(|r| Tagged {
            record: r.clone(),
            transport,
            set: Arc::clone(set),
        })
        .collect()
}

/// Builds the XMPP server-to-server target list for `domain` (RFC 6120 §3.2, XEP-0368).
///
/// `_xmpps-server._tcp` (direct TLS, if enabled) and `_xmpp-server._tcp` (STARTTLS) are
/// looked up and their records ordered together by RFC 2782, as XEP-0368 says ("all
/// priorities and weights are mixed"). A "." on `_xmpps-server` only means "no direct
/// TLS". A/AAAA of the domain on the fallback port is used only when neither label gave
/// any SRV answer (no records, or a failed lookup); never after a "." and never because
/// the SRV targets could not be reached (RFC 6120 §3.2.1).
pub async fn resolve_xmpp<L, R>(
    lookup: &L,
    domain: &str,
    opts: &XmppOptions,
    rng: &mut R,
) -> Result<TargetList, ResolveError>
where
    L: SrvLookup + ?Sized,
    R: RandomSource + ?Sized,
{
    let domain = normalize_name(domain).into_owned();
    let mut b = Builder::new(&domain);
    let mut tagged = Vec::new();
    if opts.direct_tls
        && let Some(set) = b.srv(lookup, &format!("_xmpps-server._tcp.{domain}")).await
    {
        tagged.extend(tag(&set, Transport::Tls));
    }
    if let Some(set) = b.srv(lookup, &format!("_xmpp-server._tcp.{domain}")).await {
        tagged.extend(tag(&set, Transport::Tcp));
    }
    b.push_ordered(tagged, TargetSource::Srv, rng);
    b.resolve_pending(lookup).await;
    if !b.srv_answered && !b.not_offered {
        b.address(
            lookup,
            &domain,
            opts.fallback_port,
            Transport::Tcp,
            TargetSource::AddressFallback,
        )
        .await;
    }
    b.finish()
}

//! Federation policy and presence mapping on the remote paths: see [`FederationGate`].

use std::collections::HashMap;
use std::sync::Arc;

use fedgate_policy::{Domain, DomainDenial, FederationConfig, Protocol, Route as PolicyRoute};
use fedgate_presence::{Availability, Family, Presence, tables, xmpp as pxmpp};
use fedgate_xmpp::stanza::{StanzaError, StanzaErrorCondition as Cond, error_reply};
use fedgate_xmpp::{DomainPart, Element, ElementBuilder, Jid, ns};
use tokio::sync::mpsc;

use super::{PresenceMapper, RemoteError, RemoteLinks, Router, XmppRemoteLinks, renamespace};
use crate::config::ValidatedConfig;
use crate::xmpp::{InboundStanza, S2sOutbound};

/// The family of the node's own (local) XMPP clients, unless a presence says it comes
/// from a Jabber-style client ([`client_family`]).
pub const LOCAL_FAMILY: Family = Family::XmppLocal;

/// Namespace of the element with which a client announces the Jabber 8.x-style states
/// (Busy, Idle) that RFC 6121 `<show/>` cannot carry: `<state xmlns='…'>busy</state>`.
///
/// A local client counts as `jabber` for a presence that carries this element (empty,
/// or `available`, `busy`, `idle`, `dnd`, `away`: any text), and as `xmpp-local`
/// otherwise; the family is read from each presence, so nothing is remembered per
/// session. `busy` and `idle` are the availability (the client SHOULD also send the
/// nearest `<show/>`, `dnd` and `away`, for entities that ignore the element); any
/// other text leaves the availability to `<show/>`. We chose an extension element
/// over a `<show/>` value outside RFC 6121's four because RFC 6121 §4.7.2.1 allows only
/// those (a client library or server that validates `<show/>` may refuse or drop the
/// stanza), while an unknown child element in another namespace is kept by the rules and
/// passes through servers unchanged; XEP-0319 `<idle/>` is not used as the marker
/// because ordinary XMPP clients send it too, and they are not Jabber-style clients.
/// (The research notes hold nothing on how Cisco Jabber itself announces these states;
/// this element is fedgate's own convention.)
/// The node writes the element to `jabber-fed` domains when the mapped state is Busy
/// or Idle, and removes it towards every other family.
pub const JABBER_STATE_NS: &str = "urn:fedgate:presence:jabber-state:0";

/// The family of a local client's `presence`: `jabber` when it carries the
/// [`JABBER_STATE_NS`] `<state/>` element, else `xmpp-local`.
pub fn client_family(presence: &Element) -> Family {
    if presence.get_child("state", JABBER_STATE_NS).is_some() {
        Family::Jabber
    } else {
        LOCAL_FAMILY
    }
}

fn jabber_state(el: &Element) -> Option<Availability> {
    match el.get_child("state", JABBER_STATE_NS)?.text().trim() {
        "busy" => Some(Availability::Busy),
        "idle" => Some(Availability::Idle),
        _ => None,
    }
}

/// What [`FederationGate::inbound`] decides for a stanza from the s2s side.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Inbound {
    /// Hand it to the router (`jabber:client`, presence mapped).
    Deliver(Element),
    /// The sending domain is not permitted: never routed. `reply` (`jabber:server`,
    /// `<service-unavailable/>`) goes back to the sender when there is one.
    Refused {
        /// The error reply, for a message or an iq request.
        reply: Option<Element>,
        /// Why.
        denial: DomainDenial,
    },
    /// Not a readable stanza.
    Dropped,
}

/// Federation policy and presence mapping on the remote (XMPP s2s) paths.
///
/// [`FederationGate`] holds fedgate-policy's [`FederationConfig`] (from the validated
/// configuration) and the presence [`Family`] of every configured remote domain. It is
/// applied at the two points the router leaves for it:
///
/// * **outbound** ([`FederatedXmppLinks`], the [`RemoteLinks`] the node installs): a
///   stanza to a domain that is not federated over XMPP is refused with
///   [`RemoteError::NotAllowed`], which the router turns into `<not-allowed/>` (type
///   `cancel`) for the local sender. RFC 6120 §8.3.3.11 gives exactly this case
///   ("sending to entities at a blacklisted domain") as the use of `not-allowed`;
///   `service-unavailable` (§8.3.3.19) is kept for the inbound side, where it must
///   not reveal anything about the local user. A domain federated over SIP gets
///   `remote-server-not-found` here: with `sip.enabled`, the node's
///   [`DispatchLinks`](crate::sipfed::DispatchLinks) sends those to the SIP gateway
///   and never to this gate. Presence is then
///   mapped from the local client's family ([`client_family`]: `xmpp-local`, Table 7,
///   or `jabber`, Table 6) to the domain's family (`xmpp-local` to `xmpp`: unchanged).
/// * **inbound** ([`pump_federated`], the consumer of the s2s sink): a stanza from a
///   domain that is not permitted over XMPP ([`FederationConfig::permits`]) never
///   reaches the router: a `message` (not of type `error`) or an `iq` `get`/`set` is
///   answered `<service-unavailable/>`, anything else (presence, subscription
///   requests included) is dropped, so the local user is never contacted (the seed:
///   "denies the subscription (without contacting the local user)"). A stanza from a
///   permitted domain goes to the router as it came; the router maps presence for
///   each receiving session with this gate as its [`PresenceMapper`]
///   ([`FederationGate::map_inbound`]: from the domain's family to the client's,
///   `xmpp-local` or `jabber`: Table 4 for `sametime`, Table 5 for `webex`; no table
///   exists for `xmpp` and `jabber` (`jabber-fed`) towards a local client:
///   unchanged). Bounces generated by our own driver pass unchanged.
///
/// # Presence mapping
/// Only available presence (no `type`) is mapped: `<show/>` and `<status/>` are read
/// with [`fedgate_presence::xmpp`], mapped with [`tables::map`] (the crate's default
/// [`StatusRule::Tables`](fedgate_presence::StatusRule::Tables): a row that quotes no
/// text and does not say "with status message" shows no status text), and written back;
/// every other attribute and child (`<priority/>`, caps, ...) is kept. `unavailable` is
/// Offline in every table and passes unchanged, as do subscription stanzas and probes.
/// A presence whose `<show/>` cannot be read passes unchanged (logged).
///
/// # Families of local clients
/// Outbound presence is mapped from the sending client's family, read from the stanza
/// ([`client_family`]): `xmpp-local` (Table 7), or `jabber` (Table 6) for a client that
/// announces the Busy and Idle states with the [`JABBER_STATE_NS`] element.
///
/// # Not done here
/// Per-user decisions (fedgate-policy's [`Policy`](fedgate_policy::Policy) engine:
/// authorize, polite block, stored answers) are taken in the [`Router`], after this
/// gate, so that SIP traffic crosses them too (see the [module docs](super), "Per-user
/// policy"). The SIP side (Tables 1–3) is not wired here.
#[derive(Debug, Clone)]
pub struct FederationGate {
    federation: FederationConfig,
    families: HashMap<Domain, Family>,
}

fn policy_domain(d: &DomainPart) -> Option<Domain> {
    Domain::new(d.as_str()).ok()
}

fn to_domain(el: &Element) -> Option<Domain> {
    let jid = Jid::parse(el.attr("to")?).ok()?;
    policy_domain(jid.domain())
}

impl FederationGate {
    /// From fedgate-policy's configuration and the families of the configured domains.
    pub fn new(
        federation: FederationConfig,
        families: impl IntoIterator<Item = (Domain, Family)>,
    ) -> Self {
        FederationGate {
            federation,
            families: families.into_iter().collect(),
        }
    }

    /// From the validated node configuration (`[[federation.domain]]`, `[policy]`).
    pub fn from_config(cfg: &ValidatedConfig) -> Self {
        Self::new(
            cfg.federation.clone(),
            cfg.peers.iter().map(|p| (p.domain.clone(), p.family)),
        )
    }

    /// The family a remote domain's users are mapped with: its configured one, else
    /// `xmpp-fed` (a domain admitted by `allow-all` or `deny-listed` mode).
    pub fn family_of(&self, domain: &Domain) -> Family {
        self.families
            .get(domain)
            .copied()
            .unwrap_or(Family::XmppFed)
    }

    /// May a stanza go to `domain` over XMPP?
    pub fn outbound(&self, domain: &Domain) -> Result<(), RemoteError> {
        match self.federation.route(domain) {
            PolicyRoute::Xmpp => Ok(()),
            PolicyRoute::NotFederated(_) => Err(RemoteError::NotAllowed),
            // SIP federated: no SIP links yet. Local: the router never sends it here.
            PolicyRoute::Sip | PolicyRoute::Local => Err(RemoteError::NoRoute),
        }
    }

    /// A local client's stanza (`jabber:client`) on its way to `domain`: presence mapped
    /// from the client's family ([`client_family`]: Table 7 for `xmpp-local`, Table 6
    /// for `jabber`) to the domain's family.
    pub fn map_outbound(&self, el: Element, domain: &Domain) -> Element {
        let to = self.family_of(domain);
        let from = client_family(&el);
        if from == LOCAL_FAMILY && to == Family::XmppFed {
            return el; // plain XMPP federation: unchanged
        }
        map_presence(&el, from, to).unwrap_or(el)
    }

    /// A stanza from `domain` (`jabber:client`) for a local client of family `client`:
    /// presence mapped from the domain's family (Table 4 for `sametime`, Table 5 for
    /// `webex`; no table exists from `xmpp-fed` or `jabber-fed` to a local client:
    /// unchanged).
    pub fn map_inbound(&self, el: Element, domain: &Domain, client: Family) -> Element {
        let from = self.family_of(domain);
        if matches!(from, Family::XmppFed | Family::JabberFed) {
            return el;
        }
        map_presence(&el, from, client).unwrap_or(el)
    }
}

/// Remote presence as each local client shows it: from an XMPP-federated domain, mapped
/// by [`FederationGate::map_inbound`] for the client's family (`xmpp-local` or
/// `jabber`); from any other domain (a SIP one, mapped by its gateway), unchanged.
impl PresenceMapper for FederationGate {
    fn to_client(&self, presence: &Element, client: Family) -> Element {
        let domain = presence
            .attr("from")
            .and_then(|f| Jid::parse(f).ok())
            .and_then(|j| policy_domain(j.domain()));
        match domain {
            Some(d) if self.federation.route(&d) == PolicyRoute::Xmpp => {
                self.map_inbound(presence.clone(), &d, client)
            }
            _ => presence.clone(),
        }
    }
}

impl FederationGate {
    /// Decides what happens to a stanza from the s2s side.
    pub fn inbound(&self, s: &InboundStanza) -> Inbound {
        let Some(el) = renamespace(&s.element, ns::CLIENT) else {
            return Inbound::Dropped;
        };
        if s.bounce {
            return Inbound::Deliver(el); // our own driver's error reply
        }
        let verdict = match policy_domain(&s.from_domain) {
            Some(d) => self.federation.permits(&d, Protocol::Xmpp).map(|()| d),
            None => Err(DomainDenial::NotFederated(
                fedgate_policy::NotFederatedReason::NotOnXmppAllowList,
            )),
        };
        match verdict {
            // Presence is mapped by the router, per receiving client ([`PresenceMapper`]).
            Ok(_) => Inbound::Deliver(el),
            Err(denial) => {
                let t = s.element.attr("type");
                let answer = match s.element.name() {
                    "message" => t != Some("error"),
                    "iq" => matches!(t, Some("get" | "set")),
                    _ => false,
                };
                let reply = answer
                    .then(|| {
                        error_reply(
                            s.element.root(),
                            &StanzaError::new(Cond::ServiceUnavailable),
                        )
                    })
                    .flatten();
                Inbound::Refused { reply, denial }
            }
        }
    }
}

/// Maps an available `<presence/>` from family `from` to family `to`; `None` when it is
/// not an available presence, not readable, or no table covers the pair.
pub fn map_presence(el: &Element, from: Family, to: Family) -> Option<Element> {
    if el.name() != "presence" || el.attr("type").is_some() {
        return None;
    }
    let p = match pxmpp::parse(el.to_xml().as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "core: presence not mapped (unreadable)");
            return None;
        }
    };
    let mut canon = p.to_presence();
    if matches!(from, Family::Jabber | Family::JabberFed)
        && let Some(a) = jabber_state(el)
    {
        canon.availability = a;
    }
    let m = tables::map(from, to, canon.availability, canon.status.as_deref())?;
    let mapped = Presence {
        availability: m.availability,
        activity: None,
        status: m.status.map(str::to_owned),
    };
    let out = pxmpp::XmppPresence::from_presence(&mapped, p.priority);
    let stanza_ns = el.ns();
    let mut b = ElementBuilder::new(el.name(), stanza_ns);
    for (k, v) in el.attrs() {
        b = b.attr(k, v);
    }
    if !out.available {
        b = b.attr("type", "unavailable");
    }
    if let Some(show) = out.show {
        b.push_child(ElementBuilder::new("show", stanza_ns).text(show.as_str()));
    }
    if let Some(status) = out.status {
        b.push_child(ElementBuilder::new("status", stanza_ns).text(status));
    }
    let state = match m.availability {
        Availability::Busy => Some("busy"),
        Availability::Idle => Some("idle"),
        _ => None,
    };
    if matches!(to, Family::Jabber | Family::JabberFed)
        && let Some(state) = state
    {
        b.push_child(ElementBuilder::new("state", JABBER_STATE_NS).text(state));
    }
    for c in el.elements() {
        if c.is("show", stanza_ns) || c.is("status", stanza_ns) || c.is("state", JABBER_STATE_NS) {
            continue;
        }
        b.push_child(c.to_owned());
    }
    Some(b.build())
}

/// The node's [`RemoteLinks`]: XMPP s2s behind the [`FederationGate`] (policy, then the
/// presence mapping, then [`XmppRemoteLinks`]).
#[derive(Debug, Clone)]
pub struct FederatedXmppLinks {
    gate: Arc<FederationGate>,
    links: XmppRemoteLinks,
}

impl FederatedXmppLinks {
    /// `links` behind `gate`.
    pub fn new(gate: Arc<FederationGate>, links: XmppRemoteLinks) -> Self {
        FederatedXmppLinks { gate, links }
    }
}

impl RemoteLinks for FederatedXmppLinks {
    fn send(&self, stanza: Element) -> Result<(), RemoteError> {
        let Some(domain) = to_domain(&stanza) else {
            return Err(RemoteError::Other("no valid `to`".into()));
        };
        self.gate.outbound(&domain)?;
        self.links.send(self.gate.map_outbound(stanza, &domain))
    }
}

/// Hands every stanza from the s2s side to the router through the [`FederationGate`], until the
/// channel closes; refused requests are answered through `outbound`.
pub async fn pump_federated(
    mut rx: mpsc::Receiver<InboundStanza>,
    router: Router,
    gate: Arc<FederationGate>,
    outbound: S2sOutbound,
) {
    router.set_presence_mapper(gate.clone());
    while let Some(s) = rx.recv().await {
        match gate.inbound(&s) {
            Inbound::Deliver(el) => router.handle_remote(el).await,
            Inbound::Refused { reply, denial } => {
                tracing::info!(
                    from = %s.from_domain,
                    stanza = s.element.name(),
                    ?denial,
                    "core: stanza from a domain not permitted over XMPP refused"
                );
                if let Some(r) = reply
                    && let Err(e) = outbound.send(r)
                {
                    tracing::debug!(error = %e, "core: refusal not sent");
                }
            }
            Inbound::Dropped => {
                tracing::debug!(from = %s.from_domain, "core: unreadable stanza from s2s dropped")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::core::util::parse_stanza;
    use fedgate_policy::XmppListing;

    fn d(s: &str) -> Domain {
        Domain::new(s).unwrap()
    }

    fn gate() -> FederationGate {
        let mut f = FederationConfig::new();
        f.add_local_domain(d("local.test")).unwrap();
        for x in ["xmpp.test", "st.test", "wx.test", "jb.test"] {
            f.add_xmpp_domain(d(x), XmppListing::Allow).unwrap();
        }
        f.add_xmpp_domain(d("denied.test"), XmppListing::Deny)
            .unwrap();
        f.add_sip_domain(d("lync.test")).unwrap();
        FederationGate::new(
            f,
            [
                (d("xmpp.test"), Family::XmppFed),
                (d("st.test"), Family::Sametime),
                (d("wx.test"), Family::Webex),
                (d("jb.test"), Family::JabberFed),
            ],
        )
    }

    fn pres(show: Option<&str>, status: Option<&str>) -> Element {
        let mut x = String::from(
            "<presence xmlns='jabber:client' from='u@a.test/r' to='v@b.test' id='p1'>",
        );
        if let Some(s) = show {
            x += &format!("<show>{s}</show>");
        }
        if let Some(s) = status {
            x += &format!("<status>{s}</status>");
        }
        x += "<priority>5</priority><c xmlns='http://jabber.org/protocol/caps' node='n' ver='v' hash='sha-1'/></presence>";
        parse_stanza(&x).unwrap()
    }

    fn show_status(el: &Element) -> (Option<String>, Option<String>) {
        (
            el.get_child("show", ns::CLIENT).map(|c| c.text()),
            el.get_child("status", ns::CLIENT).map(|c| c.text()),
        )
    }

    fn s(x: &str) -> Option<String> {
        Some(x.to_owned())
    }

    fn inbound(from: &str, xml: &str, bounce: bool) -> InboundStanza {
        let el = renamespace(&parse_stanza(xml).unwrap(), ns::SERVER).unwrap();
        InboundStanza {
            from_domain: DomainPart::new(from).unwrap(),
            to_domain: DomainPart::new("local.test").unwrap(),
            element: el,
            bounce,
        }
    }

    #[test]
    fn outbound_policy_by_route() {
        let g = gate();
        assert_eq!(g.outbound(&d("xmpp.test")), Ok(()));
        assert_eq!(g.outbound(&d("denied.test")), Err(RemoteError::NotAllowed));
        assert_eq!(
            g.outbound(&d("elsewhere.test")),
            Err(RemoteError::NotAllowed)
        );
        assert_eq!(g.outbound(&d("lync.test")), Err(RemoteError::NoRoute));
    }

    #[test]
    fn outbound_xmpp_family_unchanged() {
        let g = gate();
        let p = pres(Some("away"), Some("at lunch"));
        assert_eq!(g.map_outbound(p.clone(), &d("xmpp.test")), p);
        // not configured (allow-all would admit it): xmpp-fed, unchanged
        assert_eq!(g.map_outbound(p.clone(), &d("other.test")), p);
    }

    #[test]
    fn outbound_table7_to_sametime_and_jabber_fed() {
        let g = gate();
        // Table 7 row 4: Extended Away → Away for Sametime, status not carried.
        let m = g.map_outbound(pres(Some("xa"), Some("gone")), &d("st.test"));
        assert_eq!(show_status(&m), (s("away"), None));
        // Webex shows Extended Away.
        let m = g.map_outbound(pres(Some("xa"), None), &d("wx.test"));
        assert_eq!(show_status(&m), (s("xa"), None));
        // Table 7 row 5: Away "Idle" → Webex Away "Idle".
        let m = g.map_outbound(pres(Some("away"), Some("Idle")), &d("wx.test"));
        assert_eq!(show_status(&m), (s("away"), s("Idle")));
        // dnd stays dnd; other children and attributes are kept.
        let m = g.map_outbound(pres(Some("dnd"), None), &d("jb.test"));
        assert_eq!(show_status(&m), (s("dnd"), None));
        assert_eq!(m.attr("id"), Some("p1"));
        assert_eq!(
            m.get_child("priority", ns::CLIENT).map(|c| c.text()),
            s("5")
        );
        assert!(
            m.get_child("c", "http://jabber.org/protocol/caps")
                .is_some()
        );
        // Available stays available (no show).
        let m = g.map_outbound(pres(None, None), &d("st.test"));
        assert_eq!(show_status(&m), (None, None));
        assert_eq!(m.attr("type"), None);
    }

    fn jabber_pres(show: Option<&str>, state: &str) -> Element {
        let mut x = String::from(
            "<presence xmlns='jabber:client' from='u@a.test/r' to='v@b.test' id='p1'>",
        );
        if let Some(s) = show {
            x += &format!("<show>{s}</show>");
        }
        x += &format!("<state xmlns='{JABBER_STATE_NS}'>{state}</state></presence>");
        parse_stanza(&x).unwrap()
    }

    fn state_of(el: &Element) -> Option<String> {
        el.get_child("state", JABBER_STATE_NS).map(|c| c.text())
    }

    #[test]
    fn client_family_from_the_state_element() {
        assert_eq!(client_family(&pres(Some("dnd"), None)), Family::XmppLocal);
        assert_eq!(client_family(&jabber_pres(None, "")), Family::Jabber);
        assert_eq!(
            client_family(&jabber_pres(Some("dnd"), "busy")),
            Family::Jabber
        );
    }

    #[test]
    fn outbound_table6_for_jabber_clients() {
        let g = gate();
        // Table 6 row 3: Busy → xmpp-fed Away, Sametime Away, jabber-fed Busy, Webex Idle.
        let busy = jabber_pres(Some("dnd"), "busy");
        let m = g.map_outbound(busy.clone(), &d("xmpp.test"));
        assert_eq!(show_status(&m), (s("away"), None));
        assert_eq!(state_of(&m), None, "the element is not for plain XMPP");
        let m = g.map_outbound(busy.clone(), &d("st.test"));
        assert_eq!(show_status(&m), (s("away"), None));
        let m = g.map_outbound(busy.clone(), &d("jb.test"));
        assert_eq!(show_status(&m), (s("dnd"), None));
        assert_eq!(state_of(&m), s("busy"));
        let m = g.map_outbound(busy, &d("wx.test"));
        assert_eq!(show_status(&m), (s("away"), None)); // Idle, written as away
        // Table 6 row 4: Idle → jabber-fed Idle.
        let m = g.map_outbound(jabber_pres(Some("away"), "idle"), &d("jb.test"));
        assert_eq!(state_of(&m), s("idle"));
        // Table 6 row 2: Do Not Disturb stays, without the element.
        let m = g.map_outbound(jabber_pres(Some("dnd"), ""), &d("jb.test"));
        assert_eq!((show_status(&m), state_of(&m)), ((s("dnd"), None), None));
        // The same Busy from an xmpp-local client (no element) is plain dnd: Table 7.
        let m = g.map_outbound(pres(Some("dnd"), None), &d("xmpp.test"));
        assert_eq!(show_status(&m), (s("dnd"), None));
    }

    #[test]
    fn inbound_tables_4_and_5() {
        let g = gate();
        // Table 5 row 3: Webex Away "In a meeting" → Available "In a meeting".
        let m = g.map_inbound(
            pres(Some("away"), Some("In a meeting")),
            &d("wx.test"),
            LOCAL_FAMILY,
        );
        assert_eq!(show_status(&m), (None, s("In a meeting")));
        // Table 5 row 4: plain Away stays Away.
        let m = g.map_inbound(pres(Some("away"), None), &d("wx.test"), LOCAL_FAMILY);
        assert_eq!(show_status(&m), (s("away"), None));
        // Table 4 row 3: Sametime Available "In a meeting" keeps its text.
        let m = g.map_inbound(
            pres(None, Some("In a meeting")),
            &d("st.test"),
            LOCAL_FAMILY,
        );
        assert_eq!(show_status(&m), (None, s("In a meeting")));
        // Table 4: Do Not Disturb → Do Not Disturb.
        let m = g.map_inbound(pres(Some("dnd"), None), &d("st.test"), LOCAL_FAMILY);
        assert_eq!(show_status(&m), (s("dnd"), None));
        // xmpp and jabber-fed have no table towards xmpp-local: unchanged.
        let p = pres(Some("xa"), Some("on holiday"));
        assert_eq!(g.map_inbound(p.clone(), &d("xmpp.test"), LOCAL_FAMILY), p);
        assert_eq!(g.map_inbound(p.clone(), &d("jb.test"), LOCAL_FAMILY), p);
    }

    #[test]
    fn only_available_presence_is_mapped() {
        let g = gate();
        for x in [
            "<presence xmlns='jabber:client' from='a@wx.test' to='b@local.test' type='unavailable'><status>bye</status></presence>",
            "<presence xmlns='jabber:client' from='a@wx.test' to='b@local.test' type='subscribe'/>",
            "<presence xmlns='jabber:client' from='a@wx.test' to='b@local.test'><show>bogus</show></presence>",
            "<message xmlns='jabber:client' from='a@wx.test' to='b@local.test'><body>x</body></message>",
        ] {
            let el = parse_stanza(x).unwrap();
            assert_eq!(
                g.map_inbound(el.clone(), &d("wx.test"), LOCAL_FAMILY),
                el,
                "{x}"
            );
        }
    }

    #[test]
    fn inbound_from_permitted_domain_delivered_and_mapped() {
        let g = gate();
        let st = inbound(
            "wx.test",
            "<presence xmlns='jabber:client' from='a@wx.test/r' to='b@local.test'><show>away</show><status>In a meeting</status></presence>",
            false,
        );
        let Inbound::Deliver(el) = g.inbound(&st) else {
            panic!("not delivered")
        };
        assert_eq!(el.ns(), ns::CLIENT);
        // Delivered as sent; the router maps it for each receiving client.
        assert_eq!(show_status(&el), (s("away"), s("In a meeting")));
        // Table 5 row 3: xmpp-local Available "In a meeting", jabber Away "In a meeting".
        let m = g.to_client(&el, Family::XmppLocal);
        assert_eq!(show_status(&m), (None, s("In a meeting")));
        let m = g.to_client(&el, Family::Jabber);
        assert_eq!(show_status(&m), (s("away"), s("In a meeting")));
    }

    #[test]
    fn inbound_for_jabber_clients_tables_4_and_5() {
        let g = gate();
        let from = |dom: &str, show: Option<&str>, status: Option<&str>| {
            let mut p = pres(show, status);
            p.set_attr("from", &format!("u@{dom}/r"));
            p
        };
        // Table 4 row 1: Sametime Available with a status: jabber keeps the text,
        // xmpp-local shows plain Available.
        let p = from("st.test", None, Some("reading mail"));
        assert_eq!(
            show_status(&g.to_client(&p, Family::Jabber)),
            (None, s("reading mail"))
        );
        assert_eq!(
            show_status(&g.to_client(&p, Family::XmppLocal)),
            (None, None)
        );
        // Table 4 row 4: Away with status message for jabber.
        let p = from("st.test", Some("away"), Some("back at 3"));
        assert_eq!(
            show_status(&g.to_client(&p, Family::Jabber)),
            (s("away"), s("back at 3"))
        );
        // Plain XMPP and SIP domains: unchanged for every client.
        let p = from("xmpp.test", Some("xa"), Some("gone"));
        assert_eq!(g.to_client(&p, Family::Jabber), p);
        let p = from("lync.test", Some("away"), Some("Busy"));
        assert_eq!(g.to_client(&p, Family::Jabber), p);
    }

    #[test]
    fn inbound_from_denied_domains_refused() {
        let g = gate();
        for from in ["denied.test", "elsewhere.test", "lync.test", "local.test"] {
            let msg = inbound(
                from,
                &format!(
                    "<message xmlns='jabber:client' from='e@{from}/r' to='b@local.test' id='m1' type='chat'><body>hi</body></message>"
                ),
                false,
            );
            let Inbound::Refused {
                reply: Some(r),
                denial,
            } = g.inbound(&msg)
            else {
                panic!("{from}: message not refused with a reply")
            };
            assert_eq!(r.ns(), ns::SERVER);
            assert_eq!(r.attr("type"), Some("error"));
            assert_eq!(r.attr("to"), Some(format!("e@{from}/r").as_str()));
            assert_eq!(r.attr("from"), Some("b@local.test"));
            let err = r.get_child("error", ns::SERVER).unwrap();
            assert!(
                err.get_child("service-unavailable", "urn:ietf:params:xml:ns:xmpp-stanzas")
                    .is_some(),
                "{r}"
            );
            if from == "lync.test" {
                assert!(matches!(denial, DomainDenial::WrongProtocol { .. }));
            }
            // presence (a subscription request too) is dropped without an answer.
            for t in ["subscribe", "probe"] {
                let p = inbound(
                    from,
                    &format!(
                        "<presence xmlns='jabber:client' from='e@{from}' to='b@local.test' type='{t}'/>"
                    ),
                    false,
                );
                assert!(
                    matches!(g.inbound(&p), Inbound::Refused { reply: None, .. }),
                    "{from} {t}"
                );
            }
            // an error message is not answered; an iq request is.
            let e = inbound(
                from,
                &format!(
                    "<message xmlns='jabber:client' from='e@{from}' to='b@local.test' type='error'/>"
                ),
                false,
            );
            assert!(matches!(
                g.inbound(&e),
                Inbound::Refused { reply: None, .. }
            ));
            let iq = inbound(
                from,
                &format!(
                    "<iq xmlns='jabber:client' from='e@{from}/r' to='b@local.test/x' type='get' id='q'><query xmlns='jabber:iq:version'/></iq>"
                ),
                false,
            );
            assert!(matches!(
                g.inbound(&iq),
                Inbound::Refused { reply: Some(_), .. }
            ));
        }
    }

    #[test]
    fn bounces_pass() {
        let g = gate();
        let b = inbound(
            "elsewhere.test",
            "<message xmlns='jabber:client' from='e@elsewhere.test' to='b@local.test/r' type='error'><error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
            true,
        );
        assert!(matches!(g.inbound(&b), Inbound::Deliver(_)));
    }
}

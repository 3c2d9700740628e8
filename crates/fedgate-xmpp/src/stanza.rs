//! Typed stanzas (RFC 6120 §8, RFC 6121 §4–5) and stanza errors (RFC 6120 §8.3).
//!
//! Conversions go both ways: `Stanza::try_from(&Element)` and `Stanza::to_element(ns)`.
//! Children this model does not know (extensions) are kept verbatim, in order.

use crate::jid::{Jid, JidError};
use crate::ns;
use crate::tree::{Element, ElementBuilder, ElementRef};

conditions! {
    /// Stanza error conditions, RFC 6120 §8.3.3.
    StanzaErrorCondition {
        /// §8.3.3.1
        BadRequest = "bad-request",
        /// §8.3.3.2
        Conflict = "conflict",
        /// §8.3.3.3
        FeatureNotImplemented = "feature-not-implemented",
        /// §8.3.3.4
        Forbidden = "forbidden",
        /// §8.3.3.5
        Gone = "gone",
        /// §8.3.3.6
        InternalServerError = "internal-server-error",
        /// §8.3.3.7
        ItemNotFound = "item-not-found",
        /// §8.3.3.8
        JidMalformed = "jid-malformed",
        /// §8.3.3.9
        NotAcceptable = "not-acceptable",
        /// §8.3.3.10
        NotAllowed = "not-allowed",
        /// §8.3.3.11
        NotAuthorized = "not-authorized",
        /// §8.3.3.12
        PolicyViolation = "policy-violation",
        /// §8.3.3.13
        RecipientUnavailable = "recipient-unavailable",
        /// §8.3.3.14
        Redirect = "redirect",
        /// §8.3.3.15
        RegistrationRequired = "registration-required",
        /// §8.3.3.16
        RemoteServerNotFound = "remote-server-not-found",
        /// §8.3.3.17
        RemoteServerTimeout = "remote-server-timeout",
        /// §8.3.3.18
        ResourceConstraint = "resource-constraint",
        /// §8.3.3.19
        ServiceUnavailable = "service-unavailable",
        /// §8.3.3.20
        SubscriptionRequired = "subscription-required",
        /// §8.3.3.21
        UndefinedCondition = "undefined-condition",
        /// §8.3.3.22
        UnexpectedRequest = "unexpected-request",
    }
}

conditions! {
    /// The `type` of a stanza error (RFC 6120 §8.3.2).
    ErrorType {
        /// Retry after providing credentials.
        Auth = "auth",
        /// Do not retry.
        Cancel = "cancel",
        /// Proceed (warning only).
        Continue = "continue",
        /// Retry after changing the data sent.
        Modify = "modify",
        /// Retry after waiting.
        Wait = "wait",
    }
}

impl StanzaErrorCondition {
    /// The error type RFC 6120 §8.3.3 gives in its examples for this condition.
    pub fn default_type(self) -> ErrorType {
        use StanzaErrorCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation | Redirect => {
                ErrorType::Modify
            }
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => {
                ErrorType::Auth
            }
            RecipientUnavailable | RemoteServerTimeout | ResourceConstraint | UnexpectedRequest => {
                ErrorType::Wait
            }
            _ => ErrorType::Cancel,
        }
    }
}

/// A stanza error (`<error/>` child of a stanza of type `error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    /// `type`.
    pub kind: ErrorType,
    /// The defined condition.
    pub condition: StanzaErrorCondition,
    /// `by`: the entity that generated the error.
    pub by: Option<String>,
    /// Alternate address for `gone` and `redirect`.
    pub alternate: Option<String>,
    /// Human-readable text.
    pub text: Option<String>,
}

impl StanzaError {
    /// An error with the condition's default type.
    pub fn new(condition: StanzaErrorCondition) -> Self {
        StanzaError {
            kind: condition.default_type(),
            condition,
            by: None,
            alternate: None,
            text: None,
        }
    }

    /// The `<error/>` element in content namespace `ns`.
    pub fn to_element(&self, ns: &str) -> Element {
        let mut cond = ElementBuilder::new(self.condition.as_str(), ns::STANZA_ERRORS);
        if let Some(a) = &self.alternate {
            cond = cond.text(a.clone());
        }
        let mut b = ElementBuilder::new("error", ns)
            .attr("type", self.kind.as_str())
            .attr_opt("by", self.by.clone())
            .child(cond);
        if let Some(t) = &self.text {
            b = b.child(ElementBuilder::new("text", ns::STANZA_ERRORS).text(t.clone()));
        }
        b.build()
    }

    /// Reads an `<error/>` element. Unknown conditions become `undefined-condition`.
    pub fn from_element(el: ElementRef<'_>) -> Result<Self, StanzaParseError> {
        if el.name() != "error" {
            return Err(StanzaParseError::BadPayload("not an error element"));
        }
        let kind = el
            .attr("type")
            .and_then(ErrorType::from_name)
            .ok_or(StanzaParseError::BadPayload("error type"))?;
        let mut e = StanzaError::new(StanzaErrorCondition::UndefinedCondition);
        e.kind = kind;
        e.by = el.attr("by").map(str::to_owned);
        let mut found = false;
        for c in el.elements().filter(|c| c.ns() == ns::STANZA_ERRORS) {
            if c.name() == "text" {
                e.text = Some(c.text());
            } else if !found {
                found = true;
                if let Some(cond) = StanzaErrorCondition::from_name(c.name()) {
                    e.condition = cond;
                    let t = c.text();
                    if !t.is_empty() {
                        e.alternate = Some(t);
                    }
                }
            }
        }
        Ok(e)
    }
}

/// Why an element is not a valid stanza; [`StanzaParseError::condition`] is the stanza
/// error to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StanzaParseError {
    /// Not `message`, `presence` or `iq` in `jabber:server`/`jabber:client`.
    #[error("not a stanza")]
    NotAStanza,
    /// `from` or `to` is not a valid JID.
    #[error("bad {0} address: {1}")]
    BadJid(&'static str, JidError),
    /// Unknown `type`.
    #[error("bad type {0:?}")]
    BadType(String),
    /// An `iq` without `id`.
    #[error("iq without id")]
    MissingId,
    /// A known child is malformed (or an iq has the wrong number of children).
    #[error("bad payload: {0}")]
    BadPayload(&'static str),
}

impl StanzaParseError {
    /// The stanza error condition to answer with.
    pub fn condition(&self) -> StanzaErrorCondition {
        match self {
            StanzaParseError::BadJid(..) => StanzaErrorCondition::JidMalformed,
            _ => StanzaErrorCondition::BadRequest,
        }
    }
}

/// Text with an optional `xml:lang`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LangText {
    /// `xml:lang`.
    pub lang: Option<String>,
    /// The text.
    pub text: String,
}

/// Attributes common to all stanzas.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Addressing {
    /// `from`.
    pub from: Option<Jid>,
    /// `to`.
    pub to: Option<Jid>,
    /// `id`.
    pub id: Option<String>,
    /// `xml:lang`.
    pub lang: Option<String>,
}

impl Addressing {
    fn read(el: ElementRef<'_>) -> Result<Self, StanzaParseError> {
        let jid = |n: &'static str| {
            el.attr(n)
                .map(Jid::parse)
                .transpose()
                .map_err(|e| StanzaParseError::BadJid(n, e))
        };
        Ok(Addressing {
            from: jid("from")?,
            to: jid("to")?,
            id: el.attr("id").map(str::to_owned),
            lang: el.attr("xml:lang").map(str::to_owned),
        })
    }
    fn write(&self, b: ElementBuilder) -> ElementBuilder {
        b.attr_opt("from", self.from.as_ref().map(|j| j.to_string()))
            .attr_opt("to", self.to.as_ref().map(|j| j.to_string()))
            .attr_opt("id", self.id.clone())
            .attr_opt("xml:lang", self.lang.clone())
    }
}

conditions! {
    /// `message` types (RFC 6121 §5.2.2).
    MessageType {
        /// One-to-one chat.
        Chat = "chat",
        /// An error.
        Error = "error",
        /// Multi-user chat.
        Groupchat = "groupchat",
        /// Alert, no reply expected.
        Headline = "headline",
        /// Standalone message (the default).
        Normal = "normal",
    }
}

conditions! {
    /// `presence` types (RFC 6121 §4.7.1); `available` is the absence of `type`.
    PresenceType {
        /// No `type` attribute.
        Available = "available",
        /// An error.
        Error = "error",
        /// Request for the recipient's presence.
        Probe = "probe",
        /// Subscription request.
        Subscribe = "subscribe",
        /// Subscription approved.
        Subscribed = "subscribed",
        /// No longer available.
        Unavailable = "unavailable",
        /// Unsubscribe.
        Unsubscribe = "unsubscribe",
        /// Subscription denied or cancelled.
        Unsubscribed = "unsubscribed",
    }
}

conditions! {
    /// `show` values (RFC 6121 §4.7.2.1).
    Show {
        /// Away.
        Away = "away",
        /// Free for chat.
        Chat = "chat",
        /// Do not disturb.
        Dnd = "dnd",
        /// Extended away.
        Xa = "xa",
    }
}

conditions! {
    /// `iq` types (RFC 6120 §8.2.3).
    IqType {
        /// Error.
        Error = "error",
        /// Request for data.
        Get = "get",
        /// Response.
        Result = "result",
        /// Provide data.
        Set = "set",
    }
}

/// `<thread/>` (RFC 6121 §5.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    /// The thread id.
    pub id: String,
    /// `parent`.
    pub parent: Option<String>,
}

/// A `<message/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Addressing.
    pub addr: Addressing,
    /// `type` (unknown values are read as `normal`, RFC 6121 §5.2.2).
    pub kind: MessageType,
    /// `<body/>` children.
    pub bodies: Vec<LangText>,
    /// `<subject/>` children.
    pub subjects: Vec<LangText>,
    /// `<thread/>`.
    pub thread: Option<Thread>,
    /// `<error/>` (type `error`).
    pub error: Option<StanzaError>,
    /// Other children, verbatim.
    pub extensions: Vec<Element>,
}

/// A `<presence/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// Addressing.
    pub addr: Addressing,
    /// `type`.
    pub kind: PresenceType,
    /// `<show/>`.
    pub show: Option<Show>,
    /// `<status/>` children.
    pub statuses: Vec<LangText>,
    /// `<priority/>` (default 0).
    pub priority: i8,
    /// `<error/>`.
    pub error: Option<StanzaError>,
    /// Other children, verbatim.
    pub extensions: Vec<Element>,
}

/// An `<iq/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iq {
    /// Addressing (`id` is required).
    pub addr: Addressing,
    /// `type`.
    pub kind: IqType,
    /// The payload child: exactly one for get/set, at most one for result/error.
    pub payload: Option<Element>,
    /// `<error/>` (type `error`).
    pub error: Option<StanzaError>,
}

/// Any stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stanza {
    /// `<message/>`.
    Message(Message),
    /// `<presence/>`.
    Presence(Presence),
    /// `<iq/>`.
    Iq(Iq),
}

fn is_content_ns(s: &str) -> bool {
    s == ns::SERVER || s == ns::CLIENT
}

fn lang_text(el: ElementRef<'_>) -> LangText {
    LangText {
        lang: el.attr("xml:lang").map(str::to_owned),
        text: el.text(),
    }
}

fn write_lang(b: ElementBuilder, name: &str, ns: &str, items: &[LangText]) -> ElementBuilder {
    let mut b = b;
    for t in items {
        b.push_child(
            ElementBuilder::new(name, ns)
                .attr_opt("xml:lang", t.lang.clone())
                .text(t.text.clone()),
        );
    }
    b
}

impl Message {
    /// A chat message with one body.
    pub fn chat(from: Jid, to: Jid, body: &str) -> Self {
        Message {
            addr: Addressing {
                from: Some(from),
                to: Some(to),
                id: None,
                lang: None,
            },
            kind: MessageType::Chat,
            bodies: vec![LangText {
                lang: None,
                text: body.to_owned(),
            }],
            subjects: Vec::new(),
            thread: None,
            error: None,
            extensions: Vec::new(),
        }
    }
    /// The first body without `xml:lang` (or the first body).
    pub fn body(&self) -> Option<&str> {
        self.bodies
            .iter()
            .find(|b| b.lang.is_none())
            .or(self.bodies.first())
            .map(|b| b.text.as_str())
    }

    fn read(el: ElementRef<'_>) -> Result<Self, StanzaParseError> {
        let kind = el
            .attr("type")
            .and_then(MessageType::from_name)
            .unwrap_or(MessageType::Normal);
        let mut m = Message {
            addr: Addressing::read(el)?,
            kind,
            bodies: Vec::new(),
            subjects: Vec::new(),
            thread: None,
            error: None,
            extensions: Vec::new(),
        };
        let cns = el.ns();
        for c in el.elements() {
            match (c.ns() == cns, c.name()) {
                (true, "body") => m.bodies.push(lang_text(c)),
                (true, "subject") => m.subjects.push(lang_text(c)),
                (true, "thread") if m.thread.is_none() => {
                    m.thread = Some(Thread {
                        id: c.text(),
                        parent: c.attr("parent").map(str::to_owned),
                    })
                }
                (true, "error") if m.error.is_none() => {
                    m.error = Some(StanzaError::from_element(c)?)
                }
                _ => m.extensions.push(c.to_owned()),
            }
        }
        Ok(m)
    }

    /// The element in content namespace `ns`.
    pub fn to_element(&self, ns: &str) -> Element {
        let mut b = self.addr.write(ElementBuilder::new("message", ns));
        if self.kind != MessageType::Normal {
            b = b.attr("type", self.kind.as_str());
        }
        b = write_lang(b, "subject", ns, &self.subjects);
        b = write_lang(b, "body", ns, &self.bodies);
        if let Some(t) = &self.thread {
            b.push_child(
                ElementBuilder::new("thread", ns)
                    .attr_opt("parent", t.parent.clone())
                    .text(t.id.clone()),
            );
        }
        if let Some(e) = &self.error {
            b.push_child(e.to_element(ns));
        }
        for x in &self.extensions {
            b.push_child(x.clone());
        }
        b.build()
    }
}

impl Presence {
    /// An available presence.
    pub fn available() -> Self {
        Presence {
            addr: Addressing::default(),
            kind: PresenceType::Available,
            show: None,
            statuses: Vec::new(),
            priority: 0,
            error: None,
            extensions: Vec::new(),
        }
    }

    fn read(el: ElementRef<'_>) -> Result<Self, StanzaParseError> {
        let kind = match el.attr("type") {
            None => PresenceType::Available,
            Some("available") => return Err(StanzaParseError::BadType("available".into())),
            Some(t) => {
                PresenceType::from_name(t).ok_or_else(|| StanzaParseError::BadType(t.into()))?
            }
        };
        let mut p = Presence {
            kind,
            addr: Addressing::read(el)?,
            ..Presence::available()
        };
        let mut saw_priority = false;
        let cns = el.ns();
        for c in el.elements() {
            match (c.ns() == cns, c.name()) {
                (true, "show") if p.show.is_none() => {
                    p.show = Some(
                        Show::from_name(c.text().trim())
                            .ok_or(StanzaParseError::BadPayload("show"))?,
                    )
                }
                (true, "status") => p.statuses.push(lang_text(c)),
                (true, "priority") if !saw_priority => {
                    saw_priority = true;
                    p.priority = c
                        .text()
                        .trim()
                        .parse()
                        .map_err(|_| StanzaParseError::BadPayload("priority"))?;
                }
                (true, "error") if p.error.is_none() => {
                    p.error = Some(StanzaError::from_element(c)?)
                }
                _ => p.extensions.push(c.to_owned()),
            }
        }
        Ok(p)
    }

    /// The element in content namespace `ns`.
    pub fn to_element(&self, ns: &str) -> Element {
        let mut b = self.addr.write(ElementBuilder::new("presence", ns));
        if self.kind != PresenceType::Available {
            b = b.attr("type", self.kind.as_str());
        }
        if let Some(s) = self.show {
            b.push_child(ElementBuilder::new("show", ns).text(s.as_str()));
        }
        b = write_lang(b, "status", ns, &self.statuses);
        if self.priority != 0 {
            b.push_child(ElementBuilder::new("priority", ns).text(self.priority.to_string()));
        }
        if let Some(e) = &self.error {
            b.push_child(e.to_element(ns));
        }
        for x in &self.extensions {
            b.push_child(x.clone());
        }
        b.build()
    }
}

impl Iq {
    fn read(el: ElementRef<'_>) -> Result<Self, StanzaParseError> {
        let t = el.attr("type").unwrap_or("");
        let kind = IqType::from_name(t).ok_or_else(|| StanzaParseError::BadType(t.into()))?;
        let addr = Addressing::read(el)?;
        if addr.id.is_none() {
            return Err(StanzaParseError::MissingId);
        }
        let cns = el.ns();
        let mut payload = None;
        let mut error = None;
        let mut n = 0;
        for c in el.elements() {
            if kind == IqType::Error && c.name() == "error" && c.ns() == cns && error.is_none() {
                error = Some(StanzaError::from_element(c)?);
                continue;
            }
            n += 1;
            if payload.is_none() {
                payload = Some(c.to_owned());
            }
        }
        let ok = match kind {
            IqType::Get | IqType::Set => n == 1,
            IqType::Result => n <= 1,
            IqType::Error => n <= 1 && error.is_some(),
        };
        if !ok {
            return Err(StanzaParseError::BadPayload("iq child count"));
        }
        Ok(Iq {
            addr,
            kind,
            payload,
            error,
        })
    }

    /// The element in content namespace `ns`.
    pub fn to_element(&self, ns: &str) -> Element {
        let mut b = self
            .addr
            .write(ElementBuilder::new("iq", ns))
            .attr("type", self.kind.as_str());
        if let Some(p) = &self.payload {
            b.push_child(p.clone());
        }
        if let Some(e) = &self.error {
            b.push_child(e.to_element(ns));
        }
        b.build()
    }
}

impl Stanza {
    /// The element in content namespace `ns`.
    pub fn to_element(&self, ns: &str) -> Element {
        match self {
            Stanza::Message(m) => m.to_element(ns),
            Stanza::Presence(p) => p.to_element(ns),
            Stanza::Iq(i) => i.to_element(ns),
        }
    }
    /// Addressing of any stanza.
    pub fn addr(&self) -> &Addressing {
        match self {
            Stanza::Message(m) => &m.addr,
            Stanza::Presence(p) => &p.addr,
            Stanza::Iq(i) => &i.addr,
        }
    }
}

impl TryFrom<ElementRef<'_>> for Stanza {
    type Error = StanzaParseError;
    fn try_from(el: ElementRef<'_>) -> Result<Self, StanzaParseError> {
        if !is_content_ns(el.ns()) {
            return Err(StanzaParseError::NotAStanza);
        }
        match el.name() {
            "message" => Message::read(el).map(Stanza::Message),
            "presence" => Presence::read(el).map(Stanza::Presence),
            "iq" => Iq::read(el).map(Stanza::Iq),
            _ => Err(StanzaParseError::NotAStanza),
        }
    }
}

impl TryFrom<&Element> for Stanza {
    type Error = StanzaParseError;
    fn try_from(el: &Element) -> Result<Self, StanzaParseError> {
        Stanza::try_from(el.root())
    }
}

/// Whether `el` is a stanza (`message`, `presence`, `iq` in a content namespace).
pub fn is_stanza(el: ElementRef<'_>) -> bool {
    is_content_ns(el.ns()) && matches!(el.name(), "message" | "presence" | "iq")
}

/// The error reply to a stanza (RFC 6120 §8.3.1): `from`/`to` swapped, same `id`,
/// `type='error'`, the original children (for message/presence) and the error. `None`
/// for stanzas of type `error` (never answer an error with an error) and non-stanzas.
pub fn error_reply(el: ElementRef<'_>, err: &StanzaError) -> Option<Element> {
    if !is_stanza(el) || el.attr("type") == Some("error") {
        return None;
    }
    let mut b = ElementBuilder::new(el.name(), el.ns())
        .attr_opt("from", el.attr("to"))
        .attr_opt("to", el.attr("from"))
        .attr_opt("id", el.attr("id"))
        .attr("type", "error");
    if el.name() != "iq" {
        for c in el.elements() {
            b.push_child(c.to_owned());
        }
    }
    b.push_child(err.to_element(el.ns()));
    Some(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        crate::test_util::parse_one(xml)
    }

    #[test]
    fn rfc6121_message() {
        let e = el(
            "<message from='a@x.test/r' to='B@Y.test' type='chat' id='1'><body>hi</body><body xml:lang='de'>hallo</body><thread parent='p'>t1</thread><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        );
        let Stanza::Message(m) = Stanza::try_from(&e).unwrap() else {
            panic!()
        };
        assert_eq!(m.kind, MessageType::Chat);
        assert_eq!(m.addr.to.as_ref().unwrap().to_string(), "b@y.test");
        assert_eq!(m.body(), Some("hi"));
        assert_eq!(m.bodies.len(), 2);
        assert_eq!(
            m.thread,
            Some(Thread {
                id: "t1".into(),
                parent: Some("p".into())
            })
        );
        assert_eq!(m.extensions.len(), 1);
        assert_eq!(
            m.extensions[0].ns(),
            "http://jabber.org/protocol/chatstates"
        );
        let back = Stanza::try_from(&m.to_element(ns::SERVER)).unwrap();
        assert_eq!(back, Stanza::Message(m));
        // Unknown type is normal.
        let Stanza::Message(m) = Stanza::try_from(&el("<message type='bogus'/>")).unwrap() else {
            panic!()
        };
        assert_eq!(m.kind, MessageType::Normal);
    }

    #[test]
    fn rfc6121_presence() {
        let e = el(
            "<presence><show>dnd</show><status>busy</status><priority>-5</priority><c xmlns='http://jabber.org/protocol/caps' ver='x'/></presence>",
        );
        let Stanza::Presence(p) = Stanza::try_from(&e).unwrap() else {
            panic!()
        };
        assert_eq!(p.kind, PresenceType::Available);
        assert_eq!(p.show, Some(Show::Dnd));
        assert_eq!(p.priority, -5);
        assert_eq!(p.extensions.len(), 1);
        for t in PresenceType::ALL
            .iter()
            .filter(|t| **t != PresenceType::Available)
        {
            let e = el(&format!("<presence type='{}'/>", t.as_str()));
            let Stanza::Presence(p) = Stanza::try_from(&e).unwrap() else {
                panic!()
            };
            assert_eq!(p.kind, *t);
            assert_eq!(
                Stanza::try_from(&p.to_element(ns::SERVER)).unwrap(),
                Stanza::Presence(p)
            );
        }
        for bad in [
            "<presence type='x'/>",
            "<presence><show>busy</show></presence>",
            "<presence><priority>300</priority></presence>",
        ] {
            assert_eq!(
                Stanza::try_from(&el(bad)).unwrap_err().condition(),
                StanzaErrorCondition::BadRequest
            );
        }
    }

    #[test]
    fn rfc6120_8_2_3_iq_rules() {
        assert!(
            Stanza::try_from(&el(
                "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"
            ))
            .is_ok()
        );
        assert!(Stanza::try_from(&el("<iq type='result' id='1'/>")).is_ok());
        assert_eq!(
            Stanza::try_from(&el("<iq type='get'><a xmlns='b'/></iq>")),
            Err(StanzaParseError::MissingId)
        );
        assert!(Stanza::try_from(&el("<iq type='get' id='1'/>")).is_err());
        assert!(
            Stanza::try_from(&el(
                "<iq type='set' id='1'><a xmlns='b'/><c xmlns='d'/></iq>"
            ))
            .is_err()
        );
        assert!(Stanza::try_from(&el("<iq type='nope' id='1'/>")).is_err());
        let e = el(
            "<iq type='error' id='1'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
        let Stanza::Iq(iq) = Stanza::try_from(&e).unwrap() else {
            panic!()
        };
        assert_eq!(
            iq.error.unwrap().condition,
            StanzaErrorCondition::ServiceUnavailable
        );
        assert_eq!(
            Stanza::try_from(&el("<message to='a@@b'/>"))
                .unwrap_err()
                .condition(),
            StanzaErrorCondition::JidMalformed
        );
    }

    #[test]
    fn rfc6120_8_3_errors_round_trip() {
        for c in StanzaErrorCondition::ALL {
            let mut e = StanzaError::new(*c);
            e.text = Some("why".into());
            e.by = Some("x.test".into());
            if *c == StanzaErrorCondition::Redirect {
                e.alternate = Some("xmpp:y@z".into());
            }
            let x = e.to_element(ns::SERVER);
            assert_eq!(StanzaError::from_element(x.root()).unwrap(), e);
        }
        let reply = error_reply(
            el("<message from='a@x' to='b@y' id='7'><body>b</body></message>").root(),
            &StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
        )
        .unwrap();
        assert_eq!(
            reply.to_xml(),
            "<message xmlns='jabber:server' from='b@y' to='a@x' id='7' type='error'><body>b</body><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        );
        assert!(
            error_reply(
                reply.root(),
                &StanzaError::new(StanzaErrorCondition::BadRequest)
            )
            .is_none()
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            "[ -~\u{e9}\u{1F600}\n\t]{0,24}"
        }
        fn jid() -> impl Strategy<Value = Option<Jid>> {
            proptest::option::of(
                (
                    "[a-z]{1,6}",
                    "[a-z]{1,6}\\.test",
                    proptest::option::of("[A-Za-z0-9 ]{1,8}"),
                )
                    .prop_map(|(l, d, r)| {
                        let s = match r {
                            Some(r) => format!("{l}@{d}/{r}"),
                            None => format!("{l}@{d}"),
                        };
                        Jid::parse(&s).unwrap()
                    }),
            )
        }
        fn lang_texts() -> impl Strategy<Value = Vec<LangText>> {
            proptest::collection::vec(
                (proptest::option::of("[a-z]{2}"), text())
                    .prop_map(|(lang, text)| LangText { lang, text }),
                0..3,
            )
        }
        fn addr() -> impl Strategy<Value = Addressing> {
            (
                jid(),
                jid(),
                proptest::option::of("[a-zA-Z0-9'&<]{1,8}"),
                proptest::option::of("[a-z]{2}"),
            )
                .prop_map(|(from, to, id, lang)| Addressing { from, to, id, lang })
        }
        fn ext() -> impl Strategy<Value = Vec<Element>> {
            proptest::collection::vec(
                ("[a-z]{1,6}", text()).prop_map(|(n, t)| {
                    Element::builder(&n, "urn:x:ext")
                        .attr("a", t.clone())
                        .text(t)
                        .build()
                }),
                0..3,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn message_round_trip(addr in addr(), k in 0usize..5, bodies in lang_texts(), subjects in lang_texts(),
                                  thread in proptest::option::of(("[a-z0-9]{1,8}", proptest::option::of("[a-z]{1,4}"))),
                                  extensions in ext()) {
                let m = Message {
                    addr, kind: MessageType::ALL[k], bodies, subjects,
                    thread: thread.map(|(id, parent)| Thread { id, parent }),
                    error: None, extensions,
                };
                // Through the writer and the reader, not just the tree.
                let xml = m.to_element(ns::SERVER).to_xml();
                let back = crate::test_util::parse_one(&xml);
                prop_assert_eq!(Stanza::try_from(&back).unwrap(), Stanza::Message(m));
            }

            #[test]
            fn presence_round_trip(addr in addr(), k in 0usize..8, show in proptest::option::of(0usize..4),
                                   statuses in lang_texts(), priority in any::<i8>(), extensions in ext()) {
                let p = Presence {
                    addr, kind: PresenceType::ALL[k], show: show.map(|i| Show::ALL[i]), statuses, priority,
                    error: None, extensions,
                };
                let back = crate::test_util::parse_one(&p.to_element(ns::SERVER).to_xml());
                prop_assert_eq!(Stanza::try_from(&back).unwrap(), Stanza::Presence(p));
            }
        }
    }
}

//! Dialogs (RFC 3261 §12): identifiers, CSeq ordering, route set and remote
//! target, and building in-dialog requests and responses.

use bytes::Bytes;
use fedgate_sip::{Address, CSeq, Contacts, HeaderKind, Message, Method, Uri};

use crate::error::Error;
use crate::util;

/// A dialog id (§12): Call-ID, local tag, remote tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// Call-ID.
    pub call_id: Bytes,
    /// Our tag.
    pub local_tag: Bytes,
    /// The peer's tag.
    pub remote_tag: Bytes,
}

impl DialogId {
    /// The id of the dialog an incoming request belongs to (local = To tag,
    /// remote = From tag). `None` if the request has no To tag.
    pub fn of_request(req: &Message) -> Option<DialogId> {
        Some(DialogId {
            call_id: req.call_id().ok()?.0,
            local_tag: req.to().ok()?.tag()?.clone(),
            remote_tag: req.from().ok()?.tag()?.clone(),
        })
    }
    /// The id of the dialog an incoming response belongs to (local = From tag,
    /// remote = To tag).
    pub fn of_response(resp: &Message) -> Option<DialogId> {
        Some(DialogId {
            call_id: resp.call_id().ok()?.0,
            local_tag: resp.from().ok()?.tag()?.clone(),
            remote_tag: resp.to().ok()?.tag()?.clone(),
        })
    }
}

/// A dialog id as three borrowed parts (Call-ID, local tag, remote tag), so a
/// `HashMap<DialogId, _>` can be searched with slices of a received message
/// (no copy, no reference count). Hashes exactly like [`DialogId`].
pub(crate) trait DialogKey {
    fn parts(&self) -> (&[u8], &[u8], &[u8]);
}

impl DialogKey for DialogId {
    fn parts(&self) -> (&[u8], &[u8], &[u8]) {
        (&self.call_id, &self.local_tag, &self.remote_tag)
    }
}

impl DialogKey for (&[u8], &[u8], &[u8]) {
    fn parts(&self) -> (&[u8], &[u8], &[u8]) {
        (self.0, self.1, self.2)
    }
}

impl std::hash::Hash for dyn DialogKey + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let (a, b, c) = self.parts();
        util::hash_parts(state, &[a, b, c]);
    }
}

/// A [`DialogId`] as a map key that hashes like `dyn DialogKey` (one write to the
/// hasher), so maps keyed by it can be searched with borrowed parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DialogMapKey(pub(crate) DialogId);

impl std::hash::Hash for DialogMapKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (&self.0 as &dyn DialogKey).hash(state);
    }
}

impl<'a> std::borrow::Borrow<dyn DialogKey + 'a> for DialogMapKey {
    fn borrow(&self) -> &(dyn DialogKey + 'a) {
        &self.0
    }
}

impl PartialEq for dyn DialogKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn DialogKey + '_ {}

/// The borrowed id of the dialog an incoming request belongs to (see
/// [`DialogId::of_request`]), decoded without allocating.
pub(crate) fn request_key(req: &Message) -> Option<(&[u8], &[u8], &[u8])> {
    let to = match req
        .headers
        .get(HeaderKind::To)
        .map(|h| util::raw_tag(h.value()))
    {
        Some(Some(t)) => t?,
        _ => req.to_ref().ok()?.tag()?,
    };
    let from = match req
        .headers
        .get(HeaderKind::From)
        .map(|h| util::raw_tag(h.value()))
    {
        Some(Some(t)) => t?,
        _ => req.from_ref().ok()?.tag()?,
    };
    Some((req.call_id_ref().ok()?.as_bytes(), to, from))
}

/// Which side created the dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogRole {
    /// We sent the dialog-creating request.
    Uac,
    /// We received it.
    Uas,
}

/// The state of one dialog (§12.1): id, sequence numbers, local and remote URIs,
/// remote target, route set.
#[derive(Debug, Clone)]
pub struct Dialog {
    id: DialogId,
    role: DialogRole,
    local: Address,
    remote: Address,
    local_seq: u32,
    remote_seq: Option<u32>,
    remote_target: Uri,
    route_set: Vec<Address>,
    local_contact: Address,
}

fn first_contact(m: &Message) -> Result<Uri, Error> {
    match m.contact()? {
        Contacts::Addresses(a) => a
            .into_iter()
            .next()
            .map(|a| a.uri)
            .ok_or(Error::InvalidMessage("no Contact")),
        Contacts::Star => Err(Error::InvalidMessage("Contact: * in a dialog")),
    }
}

impl Dialog {
    /// UAS side (§12.1.1): from the dialog-creating request we received and the tag
    /// we put in our To. Route set = Record-Route in order; remote target = Contact.
    pub fn uas(req: &Message, local_tag: Bytes, local_contact: Address) -> Result<Dialog, Error> {
        let from = req.from()?;
        let remote_tag = from
            .tag()
            .cloned()
            .ok_or(Error::InvalidMessage("From without tag"))?;
        let local = util::with_tag(req.to()?, &local_tag);
        Ok(Dialog {
            id: DialogId {
                call_id: req.call_id()?.0,
                local_tag,
                remote_tag,
            },
            role: DialogRole::Uas,
            local,
            remote: from,
            local_seq: 0,
            remote_seq: Some(req.cseq()?.seq),
            remote_target: first_contact(req)?,
            route_set: req.headers.record_route()?,
            local_contact,
        })
    }

    /// UAC side (§12.1.2): from the request we sent and a response with a To tag.
    /// Route set = Record-Route reversed; remote target = the response's Contact.
    pub fn uac(req: &Message, resp: &Message, local_contact: Address) -> Result<Dialog, Error> {
        let from = req.from()?;
        let to = resp.to()?;
        let mut route_set = resp.headers.record_route()?;
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: req.call_id()?.0,
                local_tag: from
                    .tag()
                    .cloned()
                    .ok_or(Error::InvalidMessage("From without tag"))?,
                remote_tag: to
                    .tag()
                    .cloned()
                    .ok_or(Error::InvalidMessage("To without tag"))?,
            },
            role: DialogRole::Uac,
            local: from,
            remote: to,
            local_seq: req.cseq()?.seq,
            remote_seq: None,
            remote_target: first_contact(resp)?,
            route_set,
            local_contact,
        })
    }

    /// Subscriber side, when the first NOTIFY arrives before the 2xx to our SUBSCRIBE
    /// (RFC 6665 §4.1.2.4): the dialog is built from the NOTIFY, a request sent to
    /// us, so its Record-Route is taken in order.
    pub fn from_early_request(
        ours: &Message,
        theirs: &Message,
        local_contact: Address,
    ) -> Result<Dialog, Error> {
        let from = ours.from()?;
        let remote = theirs.from()?;
        Ok(Dialog {
            id: DialogId {
                call_id: ours.call_id()?.0,
                local_tag: from
                    .tag()
                    .cloned()
                    .ok_or(Error::InvalidMessage("From without tag"))?,
                remote_tag: remote
                    .tag()
                    .cloned()
                    .ok_or(Error::InvalidMessage("From without tag"))?,
            },
            role: DialogRole::Uac,
            local: from,
            remote,
            local_seq: ours.cseq()?.seq,
            // Recorded by `check_request` when the request itself is processed.
            remote_seq: None,
            remote_target: first_contact(theirs)?,
            route_set: theirs.headers.record_route()?,
            local_contact,
        })
    }

    /// The id.
    pub fn id(&self) -> &DialogId {
        &self.id
    }
    /// Who created it.
    pub fn role(&self) -> DialogRole {
        self.role
    }
    /// Our address (with tag).
    pub fn local(&self) -> &Address {
        &self.local
    }
    /// The peer's address (with tag).
    pub fn remote(&self) -> &Address {
        &self.remote
    }
    /// The remote target (where requests go).
    pub fn remote_target(&self) -> &Uri {
        &self.remote_target
    }
    /// The route set, in the order Route headers are written.
    pub fn route_set(&self) -> &[Address] {
        &self.route_set
    }
    /// The last CSeq number we used.
    pub fn local_seq(&self) -> u32 {
        self.local_seq
    }
    /// The last CSeq number the peer used.
    pub fn remote_seq(&self) -> Option<u32> {
        self.remote_seq
    }

    /// Puts back what changed since the dialog was created from its request (a
    /// dialog restored after a restart, [`crate::ua::NotifierRecord`]).
    pub(crate) fn resume(&mut self, local_seq: u32, remote_seq: Option<u32>, target: Uri) {
        self.local_seq = local_seq;
        self.remote_seq = remote_seq;
        self.remote_target = target;
    }

    /// §12.2.2: checks and records the CSeq of an in-dialog request. A number lower
    /// than the last one (or equal, for a new request) is out of order: answer
    /// `Err(500)`. ACK and CANCEL carry the CSeq of their INVITE and are not checked.
    pub fn check_request(&mut self, req: &Message) -> Result<(), u16> {
        let cseq = req.cseq_ref().map_err(|_| 400u16)?;
        if matches!(cseq.method_bytes(), b"ACK" | b"CANCEL") {
            return Ok(());
        }
        self.check_seq(cseq.seq)
    }

    /// [`check_request`](Dialog::check_request) for a request other than ACK and
    /// CANCEL whose CSeq number is already decoded.
    pub(crate) fn check_seq(&mut self, seq: u32) -> Result<(), u16> {
        if let Some(last) = self.remote_seq
            && seq <= last
        {
            return Err(500);
        }
        self.remote_seq = Some(seq);
        Ok(())
    }

    /// Target refresh (§12.2): a Contact in a target-refresh request or its 2xx
    /// replaces the remote target.
    pub fn refresh_target(&mut self, msg: &Message) {
        if let Ok(u) = first_contact(msg) {
            self.remote_target = u;
        }
    }

    /// Builds a request in the dialog (§12.2.1.1) with the next CSeq number.
    ///
    /// Routing: with an empty route set, the Request-URI is the remote target and
    /// there is no Route. If the first route has `;lr` (loose routing), the
    /// Request-URI is the remote target and the route set is written as Route
    /// headers. Otherwise (strict routing) the Request-URI is the first route's URI
    /// and Route is the rest of the route set followed by the remote target.
    pub fn request(&mut self, method: Method) -> Message {
        self.local_seq = self.local_seq.wrapping_add(1).max(1);
        let seq = self.local_seq;
        self.build(method, seq)
    }

    /// The ACK for a 2xx to the INVITE with CSeq number `invite_seq` (§13.2.2.4).
    pub fn ack(&self, invite_seq: u32) -> Message {
        self.build(Method::Ack, invite_seq)
    }

    fn build(&self, method: Method, seq: u32) -> Message {
        let strict = self
            .route_set
            .first()
            .is_some_and(|r| r.uri.as_sip().is_some_and(|u| !u.lr()));
        let ruri = if strict {
            self.route_set
                .first()
                .map_or_else(|| self.remote_target.clone(), |r| r.uri.clone())
        } else {
            self.remote_target.clone()
        };
        let mut m = Message::request(method.clone(), ruri);
        util::push(&mut m, "Max-Forwards", Bytes::from_static(b"70"));
        m.push_typed(HeaderKind::From, &self.local);
        m.push_typed(HeaderKind::To, &self.remote);
        m.push_typed(
            HeaderKind::CallId,
            &fedgate_sip::CallId(self.id.call_id.clone()),
        );
        m.push_typed(HeaderKind::CSeq, &CSeq { seq, method });
        if strict {
            for r in self.route_set.iter().skip(1) {
                m.push_typed(HeaderKind::Route, r);
            }
            m.push_typed(HeaderKind::Route, &Address::new(self.remote_target.clone()));
        } else {
            for r in &self.route_set {
                m.push_typed(HeaderKind::Route, r);
            }
        }
        m.push_typed(HeaderKind::Contact, &self.local_contact);
        m
    }

    /// A response to an in-dialog request, with our tag in To, and our Contact on a
    /// 2xx to a target-refresh or dialog-creating request (INVITE, SUBSCRIBE,
    /// NOTIFY, UPDATE, REFER).
    pub fn response(&self, req: &Message, code: u16) -> Message {
        let mut r = util::response_to(req, code, Some(&self.id.local_tag));
        let refresh = matches!(
            req.method(),
            Some(
                Method::Invite
                    | Method::Subscribe
                    | Method::Notify
                    | Method::Update
                    | Method::Refer
            )
        );
        if refresh && (200..300).contains(&code) {
            r.headers.remove(HeaderKind::ContentLength);
            r.push_typed(HeaderKind::Contact, &self.local_contact);
            r.set_body(Bytes::new());
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::from(s.replace('\n', "\r\n"))).expect("parses")
    }

    fn contact() -> Address {
        fedgate_sip::HeaderValue::parse(&Bytes::from_static(b"<sip:gw.contoso.com;transport=tls>"))
            .expect("address")
    }

    const INVITE: &str = "INVITE sip:bob@contoso.com SIP/2.0
Via: SIP/2.0/TLS edge.fabrikam.com;branch=z9hG4bK1
Max-Forwards: 70
Record-Route: <sip:p1.contoso.com;lr>
Record-Route: <sip:edge.fabrikam.com;lr;ms-key-info=x>
From: <sip:alice@fabrikam.com>;tag=a1;epid=e1
To: <sip:bob@contoso.com>
Call-ID: c1@fabrikam.com
CSeq: 10 INVITE
Contact: <sip:alice@10.0.0.1:1620;transport=tls>
Content-Length: 0

";

    #[test]
    fn rfc3261_12_1_1_uas_route_set_in_order_and_contact_target() {
        let req = msg(INVITE);
        let mut d = Dialog::uas(&req, Bytes::from_static(b"b1"), contact()).expect("dialog");
        assert_eq!(d.id().remote_tag.as_ref(), b"a1");
        assert_eq!(d.route_set().len(), 2);
        assert_eq!(
            d.route_set()[0].uri.to_vec(),
            b"sip:p1.contoso.com;lr".to_vec()
        );
        let bye = d.request(Method::Bye);
        assert_eq!(
            bye.request_line().expect("rl").uri.to_vec(),
            b"sip:alice@10.0.0.1:1620;transport=tls".to_vec()
        );
        let routes: Vec<Vec<u8>> = bye
            .headers
            .route()
            .expect("route")
            .iter()
            .map(|r| r.uri.to_vec())
            .collect();
        assert_eq!(
            routes,
            vec![
                b"sip:p1.contoso.com;lr".to_vec(),
                b"sip:edge.fabrikam.com;lr;ms-key-info=x".to_vec()
            ]
        );
        assert_eq!(
            bye.to().expect("to").tag().map(|t| t.as_ref()),
            Some(&b"a1"[..])
        );
        assert_eq!(
            bye.from().expect("from").tag().map(|t| t.as_ref()),
            Some(&b"b1"[..])
        );
        assert_eq!(bye.cseq().expect("cseq").seq, 1);
        assert_eq!(d.request(Method::Message).cseq().expect("cseq").seq, 2);
    }

    #[test]
    fn rfc3261_12_2_2_lower_cseq_gets_500() {
        let req = msg(INVITE);
        let mut d = Dialog::uas(&req, Bytes::from_static(b"b1"), contact()).expect("dialog");
        let m11 = msg(&INVITE
            .replace("CSeq: 10 INVITE", "CSeq: 11 MESSAGE")
            .replace("INVITE sip", "MESSAGE sip"));
        assert_eq!(d.check_request(&m11), Ok(()));
        let m9 = msg(&INVITE
            .replace("CSeq: 10 INVITE", "CSeq: 9 MESSAGE")
            .replace("INVITE sip", "MESSAGE sip"));
        assert_eq!(d.check_request(&m9), Err(500));
        let ack = msg(&INVITE
            .replace("CSeq: 10 INVITE", "CSeq: 10 ACK")
            .replace("INVITE sip", "ACK sip"));
        assert_eq!(d.check_request(&ack), Ok(()));
    }

    #[test]
    fn rfc3261_12_1_2_uac_route_set_reversed_and_strict_routing() {
        let req = msg(INVITE);
        let resp = msg("SIP/2.0 200 OK
Via: SIP/2.0/TLS edge.fabrikam.com;branch=z9hG4bK1
Record-Route: <sip:strict.contoso.com>
Record-Route: <sip:p2.fabrikam.com;lr>
From: <sip:alice@fabrikam.com>;tag=a1;epid=e1
To: <sip:bob@contoso.com>;tag=b9
Call-ID: c1@fabrikam.com
CSeq: 10 INVITE
Contact: <sip:bob@192.0.2.7:5061;transport=tls>
Content-Length: 0

");
        let mut d = Dialog::uac(&req, &resp, contact()).expect("dialog");
        assert_eq!(d.id().remote_tag.as_ref(), b"b9");
        // Reversed: p2 (lr) first.
        assert_eq!(
            d.route_set()[0].uri.to_vec(),
            b"sip:p2.fabrikam.com;lr".to_vec()
        );
        let m = d.request(Method::Message);
        assert_eq!(m.cseq().expect("cseq").seq, 11);
        assert_eq!(
            m.request_line().expect("rl").uri.to_vec(),
            b"sip:bob@192.0.2.7:5061;transport=tls".to_vec()
        );
        let ack = d.ack(10);
        assert_eq!(ack.cseq().expect("c").seq, 10);
        // Strict routing: first route without ;lr becomes the Request-URI and the
        // remote target goes last in Route.
        let resp2 = msg(&String::from_utf8_lossy(&resp.to_bytes())
            .replace("Record-Route: <sip:p2.fabrikam.com;lr>\r\n", "")
            .replace("\r\n", "\n"));
        let mut d2 = Dialog::uac(&req, &resp2, contact()).expect("dialog");
        let m = d2.request(Method::Bye);
        assert_eq!(
            m.request_line().expect("rl").uri.to_vec(),
            b"sip:strict.contoso.com".to_vec()
        );
        let routes: Vec<Vec<u8>> = m
            .headers
            .route()
            .expect("route")
            .iter()
            .map(|r| r.uri.to_vec())
            .collect();
        assert_eq!(
            routes,
            vec![b"sip:bob@192.0.2.7:5061;transport=tls".to_vec()]
        );
    }

    #[test]
    fn borrowed_key_finds_the_dialog_like_the_owned_id() {
        use std::collections::HashMap;
        let req = msg(&INVITE.replace(
            "To: <sip:bob@contoso.com>",
            "To: <sip:bob@contoso.com>;tag=b1",
        ));
        let id = DialogId::of_request(&req).expect("id");
        let mut m = HashMap::new();
        m.insert(DialogMapKey(id.clone()), 7);
        let k = request_key(&req).expect("key");
        assert_eq!(m.get(&k as &dyn DialogKey), Some(&7));
        let other: (&[u8], &[u8], &[u8]) = (b"c1@fabrikam.com", b"b1", b"a2");
        assert_eq!(m.get(&other as &dyn DialogKey), None);
        assert!(request_key(&msg(INVITE)).is_none(), "no To tag, no dialog");
    }

    #[test]
    fn response_carries_to_tag_and_contact() {
        let req = msg(INVITE);
        let d = Dialog::uas(&req, Bytes::from_static(b"b1"), contact()).expect("dialog");
        let r = d.response(&req, 200);
        assert_eq!(
            r.to().expect("to").tag().map(|t| t.as_ref()),
            Some(&b"b1"[..])
        );
        assert!(matches!(r.contact().expect("c"), Contacts::Addresses(a) if a.len() == 1));
        assert_eq!(
            DialogId::of_response(&r).expect("id").remote_tag.as_ref(),
            b"b1"
        );
    }
}

//! DNS messages: building queries and reading answers (hickory-proto).

use std::net::IpAddr;

use fedgate_srv::{Glue, NaptrRecord, SrvAnswer, SrvRecord, normalize_name};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

/// Longest CNAME chain followed inside one answer.
const MAX_CNAME_HOPS: usize = 8;

/// An absolute query name from a normalised name.
pub(crate) fn query_name(name: &str) -> Option<Name> {
    if name.is_empty() || name == "." {
        return None;
    }
    Name::from_ascii(format!("{name}.")).ok()
}

pub(crate) fn build_query(
    id: u16,
    name: &Name,
    rtype: RecordType,
    edns_payload: u16,
) -> Option<Vec<u8>> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name.clone(), rtype));
    if edns_payload > 0 {
        let mut e = Edns::new();
        e.set_max_payload(edns_payload);
        m.set_edns(e);
    }
    m.to_vec().ok()
}

/// True if `m` is the response to our query (id, QR bit, question echoed).
pub(crate) fn matches_query(m: &Message, id: u16, name: &Name, rtype: RecordType) -> bool {
    m.metadata.id == id
        && m.metadata.message_type == MessageType::Response
        && m.queries.len() == 1
        && m.queries[0].query_type == rtype
        && m.queries[0].name == *name
}

fn owner(r: &hickory_proto::rr::Record) -> String {
    normalize_name(&r.name.to_ascii()).into_owned()
}

/// The names that answer `qname`: itself, then the CNAME chain inside the answer.
fn chain(m: &Message, qname: &str) -> Vec<String> {
    let mut names = vec![qname.to_owned()];
    for _ in 0..MAX_CNAME_HOPS {
        let Some(last) = names.last() else { break };
        let next = m.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if owner(r) == *last => {
                Some(normalize_name(&c.0.to_ascii()).into_owned())
            }
            _ => None,
        });
        match next {
            Some(n) if !names.contains(&n) => names.push(n),
            _ => break,
        }
    }
    names
}

/// Negative TTL per RFC 2308 §5: min(SOA TTL, SOA MINIMUM) from the authority section.
pub(crate) fn soa_negative_ttl(m: &Message) -> Option<u32> {
    m.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
        _ => None,
    })
}

/// SRV answer and the TTL to cache it for (`None`: negative, use the negative TTL).
pub(crate) fn read_srv(m: &Message, qname: &str) -> (SrvAnswer, Option<u32>) {
    let names = chain(m, qname);
    let mut ttl: Option<u32> = None;
    let mut records = Vec::new();
    for r in &m.answers {
        if let RData::SRV(s) = &r.data
            && names.contains(&owner(r))
        {
            ttl = Some(ttl.map_or(r.ttl, |t| t.min(r.ttl)));
            let target = if s.target.is_root() {
                ".".to_owned()
            } else {
                s.target.to_ascii()
            };
            records.push(SrvRecord::new(s.priority, s.weight, s.port, &target));
        }
    }
    let mut glue = Vec::new();
    for r in &m.additionals {
        let addr = match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        let host = owner(r);
        // only glue for our targets is kept (SrvAnswer::classify); its TTL bounds ours
        if records.iter().any(|s| s.target == host) {
            ttl = Some(ttl.map_or(r.ttl, |t| t.min(r.ttl)));
            glue.push(Glue { host, addr });
        }
    }
    let answer = SrvAnswer::classify(records, glue);
    match answer {
        SrvAnswer::NoRecords => (answer, None),
        _ => (answer, ttl),
    }
}

/// Addresses of one A or AAAA answer and their TTL.
pub(crate) fn read_addrs(m: &Message, qname: &str) -> (Vec<IpAddr>, Option<u32>) {
    let names = chain(m, qname);
    let mut ttl: Option<u32> = None;
    let mut out = Vec::new();
    for r in &m.answers {
        let addr = match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        if names.contains(&owner(r)) {
            ttl = Some(ttl.map_or(r.ttl, |t| t.min(r.ttl)));
            out.push(addr);
        }
    }
    (out, ttl)
}

/// NAPTR records and their TTL.
pub(crate) fn read_naptr(m: &Message, qname: &str) -> (Vec<NaptrRecord>, Option<u32>) {
    let names = chain(m, qname);
    let mut ttl: Option<u32> = None;
    let mut out = Vec::new();
    for r in &m.answers {
        if let RData::NAPTR(n) = &r.data
            && names.contains(&owner(r))
        {
            ttl = Some(ttl.map_or(r.ttl, |t| t.min(r.ttl)));
            out.push(NaptrRecord {
                order: n.order,
                preference: n.preference,
                flags: String::from_utf8_lossy(&n.flags).into_owned(),
                service: String::from_utf8_lossy(&n.services).into_owned(),
                replacement: normalize_name(&n.replacement.to_ascii()).into_owned(),
            });
        }
    }
    (out, ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, CNAME, SRV};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn srv_with_glue_cname_and_ttl() {
        let q = name("_xmpp-server._tcp.example.test.");
        let bytes = build_query(7, &q, RecordType::SRV, 1232).unwrap();
        let mut m = Message::from_vec(&bytes).unwrap();
        assert!(m.edns.is_some());
        m.metadata.message_type = MessageType::Response;
        assert!(matches_query(&m, 7, &q, RecordType::SRV));
        assert!(!matches_query(&m, 8, &q, RecordType::SRV));
        assert!(!matches_query(&m, 7, &q, RecordType::A));
        m.add_answer(Record::from_rdata(
            q.clone(),
            300,
            RData::CNAME(CNAME(name("alias.example.test."))),
        ));
        m.add_answer(Record::from_rdata(
            name("Alias.Example.Test."),
            30,
            RData::SRV(SRV::new(10, 5, 5269, name("x1.example.test."))),
        ));
        m.add_answer(Record::from_rdata(
            name("other.test."),
            1,
            RData::SRV(SRV::new(0, 0, 1, name("evil.test."))),
        ));
        m.add_additional(Record::from_rdata(
            name("x1.example.test."),
            20,
            RData::A(A::new(127, 0, 0, 2)),
        ));
        m.add_additional(Record::from_rdata(
            name("evil.test."),
            1,
            RData::A(A::new(127, 0, 0, 66)),
        ));
        let (a, ttl) = read_srv(&m, "_xmpp-server._tcp.example.test");
        let SrvAnswer::Records(set) = a else {
            panic!("{a:?}")
        };
        assert_eq!(
            set.records,
            [SrvRecord::new(10, 5, 5269, "x1.example.test")]
        );
        assert_eq!(set.glue.len(), 1);
        assert_eq!(ttl, Some(20));
    }

    #[test]
    fn root_target_and_empty_answers() {
        let q = name("_xmpp-server._tcp.nosrv.test.");
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_answer(Record::from_rdata(
            q.clone(),
            30,
            RData::SRV(SRV::new(0, 0, 0, Name::root())),
        ));
        assert_eq!(
            read_srv(&m, "_xmpp-server._tcp.nosrv.test").0,
            SrvAnswer::NotOffered
        );
        let empty = Message::new(1, MessageType::Response, OpCode::Query);
        assert_eq!(read_srv(&empty, "x.test"), (SrvAnswer::NoRecords, None));
        assert_eq!(query_name("."), None);
    }
}

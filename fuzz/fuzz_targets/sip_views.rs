//! Differential: fedgate-sip's borrowed views against the owned decoders on arbitrary
//! bytes, both as a whole datagram and as one header value. A view must exist exactly
//! when the owned value parses, with the same error, and `to_owned()` must equal it.
#![no_main]
use bytes::Bytes;
use fedgate_sip::{
    Address, AddressRef, CSeq, CSeqRef, CallId, CallIdRef, ContactRefs, HeaderError, HeaderValue,
    Limits, Via, ViaRef, parse_datagram,
};
use libfuzzer_sys::fuzz_target;

fn collect<T, U>(
    r: Result<impl Iterator<Item = Result<T, HeaderError>>, HeaderError>,
    f: impl Fn(&T) -> U,
) -> Result<Vec<U>, HeaderError> {
    r?.map(|x| x.map(|x| f(&x))).collect()
}

fuzz_target!(|data: &[u8]| {
    let src = Bytes::copy_from_slice(data);
    // One header value.
    assert_eq!(
        ViaRef::parse(&src, &src).map(|v| v.to_owned()),
        Via::parse(&src),
        "via value"
    );
    assert_eq!(
        AddressRef::parse(&src, &src).map(|a| a.to_owned()),
        Address::parse(&src),
        "address value"
    );
    assert_eq!(
        CallIdRef::parse(&src, &src).map(|c| c.to_owned()),
        CallId::parse(&src)
    );
    assert_eq!(
        CSeqRef::parse(&src, &src).map(|c| c.to_owned()),
        CSeq::parse(&src)
    );
    // A whole message.
    let Ok(m) = parse_datagram(src, &Limits::default()) else {
        return;
    };
    assert_eq!(collect(m.vias(), |v| v.to_owned()), m.via(), "vias");
    assert_eq!(
        m.top_via_ref().map(|v| v.to_owned()),
        m.top_via(),
        "top via"
    );
    assert_eq!(m.from_ref().map(|a| a.to_owned()), m.from(), "from");
    assert_eq!(m.to_ref().map(|a| a.to_owned()), m.to(), "to");
    assert_eq!(m.call_id_ref().map(|c| c.to_owned()), m.call_id());
    assert_eq!(m.cseq_ref().map(|c| c.to_owned()), m.cseq());
    assert_eq!(
        m.contact_refs().and_then(ContactRefs::to_owned),
        m.contact(),
        "contact"
    );
    let h = m.headers();
    assert_eq!(
        collect(Ok(h.route_refs()), |a| a.to_owned()),
        h.route(),
        "route"
    );
    assert_eq!(
        collect(Ok(h.record_route_refs()), |a| a.to_owned()),
        h.record_route(),
        "record-route"
    );
});

//! RFC 7572 pager-mode messages: the two syntax tables as data.
//!
//! The message types themselves live in `fedgate-sip` and `fedgate-xmpp`;
//! a gateway looks each item up here. Rules that go with the tables:
//! [`MAX_PAGER_MESSAGE`] (RFC 3428 §7) and the X2S answer to a bigger message
//! (`<policy-violation/>`, RFC 7572 §5).

use super::SyntaxRow;

const fn row(
    cite: &'static str,
    source: &'static str,
    target: &'static str,
    notes: &'static str,
) -> SyntaxRow {
    SyntaxRow {
        cite,
        source,
        target,
        notes,
    }
}

/// RFC 7572 Table 1: message syntax mapping from XMPP to SIP.
pub const XMPP_TO_SIP: &[SyntaxRow] = &[
    row("RFC 7572 Table 1 row 1", "<body/>", "body of MESSAGE", ""),
    row("RFC 7572 Table 1 row 2", "<subject/>", "Subject", ""),
    row("RFC 7572 Table 1 row 3", "<thread/>", "Call-ID", ""),
    row("RFC 7572 Table 1 row 4", "from", "From", "1"),
    row("RFC 7572 Table 1 row 5", "id", "transaction identifier", ""),
    row("RFC 7572 Table 1 row 6", "to", "To or Request-URI", ""),
    row("RFC 7572 Table 1 row 7", "type", "(no mapping)", "2"),
    row("RFC 7572 Table 1 row 8", "xml:lang", "Content-Language", ""),
];

/// RFC 7572 Table 2: message syntax mapping from SIP to XMPP.
pub const SIP_TO_XMPP: &[SyntaxRow] = &[
    row("RFC 7572 Table 2 row 1", "Call-ID", "<thread/>", ""),
    row("RFC 7572 Table 2 row 2", "Content-Language", "xml:lang", ""),
    row("RFC 7572 Table 2 row 3", "CSeq", "(no mapping)", ""),
    row("RFC 7572 Table 2 row 4", "From", "from", "1"),
    row("RFC 7572 Table 2 row 5", "Subject", "<subject/>", ""),
    row("RFC 7572 Table 2 row 6", "Request-URI or To", "to", ""),
    row("RFC 7572 Table 2 row 7", "body of MESSAGE", "<body/>", ""),
    row("RFC 7572 Table 2 row 8", "transaction identifier", "id", ""),
];

/// RFC 3428 §7: a MESSAGE outside a session carries at most 1300 bytes; RFC
/// 7572 §5: the XMPP-to-SIP gateway SHOULD answer a bigger XMPP message with
/// `<policy-violation/>`.
pub const MAX_PAGER_MESSAGE: usize = 1300;

/// The `type` an S2X gateway gives a pager-mode message (RFC 7572 §6: none or
/// `normal`; this crate uses `normal`).
pub const S2X_MESSAGE_TYPE: &str = "normal";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stox::lookup;

    macro_rules! row_tests {
        ($table:ident: $($name:ident: $src:literal => $dst:literal, notes $n:literal;)*) => {
            $(
                #[test]
                fn $name() {
                    let r = lookup($table, $src).expect("row present");
                    assert_eq!(r.target, $dst);
                    assert_eq!(r.notes, $n);
                }
            )*
        };
    }

    row_tests! { XMPP_TO_SIP:
        t1_r1_body: "<body/>" => "body of MESSAGE", notes "";
        t1_r2_subject: "<subject/>" => "Subject", notes "";
        t1_r3_thread: "<thread/>" => "Call-ID", notes "";
        t1_r4_from: "from" => "From", notes "1";
        t1_r5_id: "id" => "transaction identifier", notes "";
        t1_r6_to: "to" => "To or Request-URI", notes "";
        t1_r7_type: "type" => "(no mapping)", notes "2";
        t1_r8_lang: "xml:lang" => "Content-Language", notes "";
    }

    row_tests! { SIP_TO_XMPP:
        t2_r1_call_id: "Call-ID" => "<thread/>", notes "";
        t2_r2_lang: "Content-Language" => "xml:lang", notes "";
        t2_r3_cseq: "CSeq" => "(no mapping)", notes "";
        t2_r4_from: "From" => "from", notes "1";
        t2_r5_subject: "Subject" => "<subject/>", notes "";
        t2_r6_to: "Request-URI or To" => "to", notes "";
        t2_r7_body: "body of MESSAGE" => "<body/>", notes "";
        t2_r8_id: "transaction identifier" => "id", notes "";
    }

    #[test]
    fn tables_are_complete_and_mirror() {
        assert_eq!(XMPP_TO_SIP.len(), 8);
        assert_eq!(SIP_TO_XMPP.len(), 8);
        // Every mapped item in one direction comes back in the other, except
        // type (XMPP only) and CSeq (SIP only).
        for r in XMPP_TO_SIP.iter().filter(|r| r.target != "(no mapping)") {
            let back = SIP_TO_XMPP
                .iter()
                .find(|b| b.target == r.source)
                .unwrap_or_else(|| panic!("{}", r.cite));
            assert!(
                back.source.contains(r.target.split(' ').next().unwrap()),
                "{}",
                r.cite
            );
        }
    }
}

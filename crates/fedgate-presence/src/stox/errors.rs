//! RFC 7247 §6 error mapping: XMPP stanza error conditions ⇄ SIP response codes.
//!
//! Only 3xx–6xx are mapped (no 1xx/2xx equivalents). Never generate an error
//! in answer to an error.

use std::fmt;

/// The 22 XMPP stanza error conditions (RFC 6120 §8.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Condition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    Gone,
    InternalServerError,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    PolicyViolation,
    RecipientUnavailable,
    Redirect,
    RegistrationRequired,
    RemoteServerNotFound,
    RemoteServerTimeout,
    ResourceConstraint,
    ServiceUnavailable,
    SubscriptionRequired,
    UndefinedCondition,
    UnexpectedRequest,
}

impl Condition {
    /// All 22 conditions.
    pub const ALL: [Condition; 22] = [
        Condition::BadRequest,
        Condition::Conflict,
        Condition::FeatureNotImplemented,
        Condition::Forbidden,
        Condition::Gone,
        Condition::InternalServerError,
        Condition::ItemNotFound,
        Condition::JidMalformed,
        Condition::NotAcceptable,
        Condition::NotAllowed,
        Condition::NotAuthorized,
        Condition::PolicyViolation,
        Condition::RecipientUnavailable,
        Condition::Redirect,
        Condition::RegistrationRequired,
        Condition::RemoteServerNotFound,
        Condition::RemoteServerTimeout,
        Condition::ResourceConstraint,
        Condition::ServiceUnavailable,
        Condition::SubscriptionRequired,
        Condition::UndefinedCondition,
        Condition::UnexpectedRequest,
    ];

    /// The element name (`bad-request`).
    pub const fn name(self) -> &'static str {
        match self {
            Condition::BadRequest => "bad-request",
            Condition::Conflict => "conflict",
            Condition::FeatureNotImplemented => "feature-not-implemented",
            Condition::Forbidden => "forbidden",
            Condition::Gone => "gone",
            Condition::InternalServerError => "internal-server-error",
            Condition::ItemNotFound => "item-not-found",
            Condition::JidMalformed => "jid-malformed",
            Condition::NotAcceptable => "not-acceptable",
            Condition::NotAllowed => "not-allowed",
            Condition::NotAuthorized => "not-authorized",
            Condition::PolicyViolation => "policy-violation",
            Condition::RecipientUnavailable => "recipient-unavailable",
            Condition::Redirect => "redirect",
            Condition::RegistrationRequired => "registration-required",
            Condition::RemoteServerNotFound => "remote-server-not-found",
            Condition::RemoteServerTimeout => "remote-server-timeout",
            Condition::ResourceConstraint => "resource-constraint",
            Condition::ServiceUnavailable => "service-unavailable",
            Condition::SubscriptionRequired => "subscription-required",
            Condition::UndefinedCondition => "undefined-condition",
            Condition::UnexpectedRequest => "unexpected-request",
        }
    }

    /// The condition for an element name.
    pub fn from_name(name: &str) -> Option<Condition> {
        Condition::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}/>", self.name())
    }
}

/// The SIP side of an XMPP → SIP row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SipAnswer {
    /// A single code.
    Code(u16),
    /// Notes 1 and 2: `full` when the error relates to a full JID, `bare` for a bare JID.
    ByJid {
        /// Code for a full JID.
        full: u16,
        /// Code for a bare JID.
        bare: u16,
    },
    /// Note 3: 301 if `<gone/>` carries the new address, else 410.
    Gone,
    /// Note 4: 404 if the remote server does not exist, 408 if it cannot be resolved.
    NotFoundOrUnresolvable,
    /// "491 or 400": this crate answers 491.
    Either(u16, u16),
    /// Note 5: `<service-unavailable/>` must not become 503; 403 and 405 are
    /// closest. This crate answers 403 (it hides whether the account exists,
    /// which is what XMPP servers use this condition for).
    NotServiceUnavailable,
}

/// One row of RFC 7247 §6.1 Table 2 (XMPP → SIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct XmppToSipRow {
    /// Row position.
    pub cite: &'static str,
    /// XMPP condition.
    pub condition: Condition,
    /// SIP code(s).
    pub answer: SipAnswer,
}

const fn x2s(cite: &'static str, condition: Condition, answer: SipAnswer) -> XmppToSipRow {
    XmppToSipRow {
        cite,
        condition,
        answer,
    }
}

use Condition as C;
use SipAnswer as S;

/// RFC 7247 §6.1 Table 2: XMPP error condition → SIP response code ("SHOULD").
pub const XMPP_TO_SIP: &[XmppToSipRow] = &[
    x2s("RFC 7247 Table 2 row 1", C::BadRequest, S::Code(400)),
    x2s("RFC 7247 Table 2 row 2", C::Conflict, S::Code(400)),
    x2s(
        "RFC 7247 Table 2 row 3",
        C::FeatureNotImplemented,
        S::ByJid {
            full: 405,
            bare: 501,
        },
    ), // note 1
    x2s(
        "RFC 7247 Table 2 row 4",
        C::Forbidden,
        S::ByJid {
            full: 403,
            bare: 603,
        },
    ), // note 2
    x2s("RFC 7247 Table 2 row 5", C::Gone, S::Gone), // note 3
    x2s(
        "RFC 7247 Table 2 row 6",
        C::InternalServerError,
        S::Code(500),
    ),
    x2s(
        "RFC 7247 Table 2 row 7",
        C::ItemNotFound,
        S::ByJid {
            full: 404,
            bare: 604,
        },
    ), // note 2
    x2s("RFC 7247 Table 2 row 8", C::JidMalformed, S::Code(400)),
    x2s(
        "RFC 7247 Table 2 row 9",
        C::NotAcceptable,
        S::ByJid {
            full: 406,
            bare: 606,
        },
    ), // note 2
    x2s("RFC 7247 Table 2 row 10", C::NotAllowed, S::Code(403)),
    x2s("RFC 7247 Table 2 row 11", C::NotAuthorized, S::Code(401)),
    x2s("RFC 7247 Table 2 row 12", C::PolicyViolation, S::Code(403)),
    x2s(
        "RFC 7247 Table 2 row 13",
        C::RecipientUnavailable,
        S::ByJid {
            full: 480,
            bare: 600,
        },
    ), // note 2
    x2s("RFC 7247 Table 2 row 14", C::Redirect, S::Code(302)),
    x2s(
        "RFC 7247 Table 2 row 15",
        C::RegistrationRequired,
        S::Code(407),
    ),
    x2s(
        "RFC 7247 Table 2 row 16",
        C::RemoteServerNotFound,
        S::NotFoundOrUnresolvable,
    ), // note 4
    x2s(
        "RFC 7247 Table 2 row 17",
        C::RemoteServerTimeout,
        S::Code(408),
    ),
    x2s(
        "RFC 7247 Table 2 row 18",
        C::ResourceConstraint,
        S::Code(500),
    ),
    x2s(
        "RFC 7247 Table 2 row 19",
        C::ServiceUnavailable,
        S::NotServiceUnavailable,
    ), // note 5
    x2s(
        "RFC 7247 Table 2 row 20",
        C::SubscriptionRequired,
        S::Code(400),
    ),
    x2s(
        "RFC 7247 Table 2 row 21",
        C::UndefinedCondition,
        S::Code(400),
    ),
    x2s(
        "RFC 7247 Table 2 row 22",
        C::UnexpectedRequest,
        S::Either(491, 400),
    ),
];

/// What the choice between two codes depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ErrorContext {
    /// The stanza's `to` was a full JID (notes 1, 2).
    pub full_jid: bool,
    /// `<gone/>` carried the new address (note 3).
    pub gone_has_address: bool,
    /// The remote server exists but could not be resolved (note 4).
    pub unresolvable: bool,
}

/// The SIP response code for an XMPP error condition.
pub fn sip_code(condition: Condition, ctx: ErrorContext) -> u16 {
    let answer = XMPP_TO_SIP
        .iter()
        .find(|r| r.condition == condition)
        .map_or(S::Code(400), |r| r.answer);
    match answer {
        S::Code(c) | S::Either(c, _) => c,
        S::ByJid { full, bare } => {
            if ctx.full_jid {
                full
            } else {
                bare
            }
        }
        S::Gone => {
            if ctx.gone_has_address {
                301
            } else {
                410
            }
        }
        S::NotFoundOrUnresolvable => {
            if ctx.unresolvable {
                408
            } else {
                404
            }
        }
        S::NotServiceUnavailable => 403,
    }
}

/// The SIP side of a SIP → XMPP row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SipKey {
    /// An exact code.
    Code(u16),
    /// A class default: `3` for 3xx, …
    Class(u8),
}

/// One row of RFC 7247 §6.2 Table 3 (SIP → XMPP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SipToXmppRow {
    /// Row position.
    pub cite: &'static str,
    /// SIP code or class.
    pub sip: SipKey,
    /// XMPP condition.
    pub condition: Condition,
}

const fn s2x(cite: &'static str, sip: SipKey, condition: Condition) -> SipToXmppRow {
    SipToXmppRow {
        cite,
        sip,
        condition,
    }
}

use SipKey::{Class, Code};

/// RFC 7247 §6.2 Table 3: SIP response code → XMPP error condition ("SHOULD").
pub const SIP_TO_XMPP: &[SipToXmppRow] = &[
    s2x("RFC 7247 Table 3 row 1", Class(3), C::Redirect),
    s2x("RFC 7247 Table 3 row 2", Code(300), C::Redirect),
    s2x("RFC 7247 Table 3 row 3", Code(301), C::Gone), // note 1: with the new address
    s2x("RFC 7247 Table 3 row 4", Code(302), C::Redirect),
    s2x("RFC 7247 Table 3 row 5", Code(305), C::Redirect),
    s2x("RFC 7247 Table 3 row 6", Code(380), C::NotAcceptable),
    s2x("RFC 7247 Table 3 row 7", Class(4), C::BadRequest),
    s2x("RFC 7247 Table 3 row 8", Code(400), C::BadRequest),
    s2x("RFC 7247 Table 3 row 9", Code(401), C::NotAuthorized),
    s2x("RFC 7247 Table 3 row 10", Code(402), C::BadRequest), // note 2
    s2x("RFC 7247 Table 3 row 11", Code(403), C::Forbidden),  // note 3
    s2x("RFC 7247 Table 3 row 12", Code(404), C::ItemNotFound), // note 4
    s2x(
        "RFC 7247 Table 3 row 13",
        Code(405),
        C::FeatureNotImplemented,
    ),
    s2x("RFC 7247 Table 3 row 14", Code(406), C::NotAcceptable),
    s2x(
        "RFC 7247 Table 3 row 15",
        Code(407),
        C::RegistrationRequired,
    ),
    s2x("RFC 7247 Table 3 row 16", Code(408), C::RemoteServerTimeout), // note 5
    s2x("RFC 7247 Table 3 row 17", Code(410), C::Gone),                // note 1: without an address
    s2x("RFC 7247 Table 3 row 18", Code(413), C::PolicyViolation),
    s2x("RFC 7247 Table 3 row 19", Code(414), C::PolicyViolation),
    s2x("RFC 7247 Table 3 row 20", Code(415), C::NotAcceptable),
    s2x("RFC 7247 Table 3 row 21", Code(416), C::NotAcceptable),
    s2x(
        "RFC 7247 Table 3 row 22",
        Code(420),
        C::FeatureNotImplemented,
    ),
    s2x("RFC 7247 Table 3 row 23", Code(421), C::NotAcceptable),
    s2x("RFC 7247 Table 3 row 24", Code(423), C::ResourceConstraint),
    s2x(
        "RFC 7247 Table 3 row 25",
        Code(430),
        C::RecipientUnavailable,
    ), // note 6
    s2x(
        "RFC 7247 Table 3 row 26",
        Code(439),
        C::FeatureNotImplemented,
    ), // note 6
    s2x("RFC 7247 Table 3 row 27", Code(440), C::PolicyViolation), // note 7
    s2x(
        "RFC 7247 Table 3 row 28",
        Code(480),
        C::RecipientUnavailable,
    ),
    s2x("RFC 7247 Table 3 row 29", Code(481), C::ItemNotFound),
    s2x("RFC 7247 Table 3 row 30", Code(482), C::NotAcceptable),
    s2x("RFC 7247 Table 3 row 31", Code(483), C::NotAcceptable),
    s2x("RFC 7247 Table 3 row 32", Code(484), C::ItemNotFound),
    s2x("RFC 7247 Table 3 row 33", Code(485), C::ItemNotFound),
    s2x(
        "RFC 7247 Table 3 row 34",
        Code(486),
        C::RecipientUnavailable,
    ),
    s2x(
        "RFC 7247 Table 3 row 35",
        Code(487),
        C::RecipientUnavailable,
    ),
    s2x("RFC 7247 Table 3 row 36", Code(488), C::NotAcceptable),
    s2x("RFC 7247 Table 3 row 37", Code(489), C::PolicyViolation), // note 8
    s2x("RFC 7247 Table 3 row 38", Code(491), C::UnexpectedRequest),
    s2x("RFC 7247 Table 3 row 39", Code(493), C::BadRequest),
    s2x("RFC 7247 Table 3 row 40", Class(5), C::InternalServerError),
    s2x("RFC 7247 Table 3 row 41", Code(500), C::InternalServerError),
    s2x(
        "RFC 7247 Table 3 row 42",
        Code(501),
        C::FeatureNotImplemented,
    ),
    s2x(
        "RFC 7247 Table 3 row 43",
        Code(502),
        C::RemoteServerNotFound,
    ),
    s2x("RFC 7247 Table 3 row 44", Code(503), C::InternalServerError), // note 9
    s2x("RFC 7247 Table 3 row 45", Code(504), C::RemoteServerTimeout),
    s2x("RFC 7247 Table 3 row 46", Code(505), C::NotAcceptable),
    s2x("RFC 7247 Table 3 row 47", Code(513), C::PolicyViolation),
    s2x("RFC 7247 Table 3 row 48", Class(6), C::RecipientUnavailable),
    s2x(
        "RFC 7247 Table 3 row 49",
        Code(600),
        C::RecipientUnavailable,
    ),
    s2x(
        "RFC 7247 Table 3 row 50",
        Code(603),
        C::RecipientUnavailable,
    ),
    s2x("RFC 7247 Table 3 row 51", Code(604), C::ItemNotFound),
    s2x("RFC 7247 Table 3 row 52", Code(606), C::NotAcceptable),
];

/// The XMPP condition for a SIP response code: the exact row, else the class
/// default (3xx `<redirect/>`, 4xx `<bad-request/>`, 5xx
/// `<internal-server-error/>`, 6xx `<recipient-unavailable/>`). `None` for
/// codes outside 300..=699, which have no error equivalent.
pub fn xmpp_condition(code: u16) -> Option<Condition> {
    if !(300..=699).contains(&code) {
        return None;
    }
    let class = u8::try_from(code / 100).ok()?;
    SIP_TO_XMPP
        .iter()
        .find(|r| r.sip == Code(code))
        .or_else(|| SIP_TO_XMPP.iter().find(|r| r.sip == Class(class)))
        .map(|r| r.condition)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: ErrorContext = ErrorContext {
        full_jid: true,
        gone_has_address: false,
        unresolvable: false,
    };
    const BARE: ErrorContext = ErrorContext {
        full_jid: false,
        gone_has_address: false,
        unresolvable: false,
    };

    macro_rules! x2s_tests {
        ($($name:ident: $cond:ident => full $f:literal, bare $b:literal;)*) => {
            $(
                #[test]
                fn $name() {
                    assert_eq!(sip_code(Condition::$cond, FULL), $f);
                    assert_eq!(sip_code(Condition::$cond, BARE), $b);
                }
            )*
        };
    }

    // RFC 7247 Table 2, one test per row.
    x2s_tests! {
        x2s_r01_bad_request: BadRequest => full 400, bare 400;
        x2s_r02_conflict: Conflict => full 400, bare 400;
        x2s_r03_feature_not_implemented: FeatureNotImplemented => full 405, bare 501;
        x2s_r04_forbidden: Forbidden => full 403, bare 603;
        x2s_r06_internal_server_error: InternalServerError => full 500, bare 500;
        x2s_r07_item_not_found: ItemNotFound => full 404, bare 604;
        x2s_r08_jid_malformed: JidMalformed => full 400, bare 400;
        x2s_r09_not_acceptable: NotAcceptable => full 406, bare 606;
        x2s_r10_not_allowed: NotAllowed => full 403, bare 403;
        x2s_r11_not_authorized: NotAuthorized => full 401, bare 401;
        x2s_r12_policy_violation: PolicyViolation => full 403, bare 403;
        x2s_r13_recipient_unavailable: RecipientUnavailable => full 480, bare 600;
        x2s_r14_redirect: Redirect => full 302, bare 302;
        x2s_r15_registration_required: RegistrationRequired => full 407, bare 407;
        x2s_r17_remote_server_timeout: RemoteServerTimeout => full 408, bare 408;
        x2s_r18_resource_constraint: ResourceConstraint => full 500, bare 500;
        x2s_r20_subscription_required: SubscriptionRequired => full 400, bare 400;
        x2s_r21_undefined_condition: UndefinedCondition => full 400, bare 400;
        x2s_r22_unexpected_request: UnexpectedRequest => full 491, bare 491;
    }

    #[test]
    fn x2s_r05_gone() {
        assert_eq!(sip_code(C::Gone, BARE), 410);
        let ctx = ErrorContext {
            gone_has_address: true,
            ..BARE
        };
        assert_eq!(sip_code(C::Gone, ctx), 301);
    }

    #[test]
    fn x2s_r16_remote_server_not_found() {
        assert_eq!(sip_code(C::RemoteServerNotFound, BARE), 404);
        let ctx = ErrorContext {
            unresolvable: true,
            ..BARE
        };
        assert_eq!(sip_code(C::RemoteServerNotFound, ctx), 408);
    }

    #[test]
    fn x2s_r19_service_unavailable_is_never_503() {
        for ctx in [FULL, BARE] {
            let c = sip_code(C::ServiceUnavailable, ctx);
            assert_ne!(c, 503);
            assert!(c == 403 || c == 405);
        }
    }

    macro_rules! s2x_tests {
        ($($name:ident: $code:literal => $cond:ident;)*) => {
            $(
                #[test]
                fn $name() {
                    assert_eq!(xmpp_condition($code), Some(Condition::$cond));
                }
            )*
        };
    }

    // RFC 7247 Table 3, one test per row (class rows tested with an unlisted code).
    s2x_tests! {
        s2x_r01_3xx: 399 => Redirect;
        s2x_r02_300: 300 => Redirect;
        s2x_r03_301: 301 => Gone;
        s2x_r04_302: 302 => Redirect;
        s2x_r05_305: 305 => Redirect;
        s2x_r06_380: 380 => NotAcceptable;
        s2x_r07_4xx: 499 => BadRequest;
        s2x_r08_400: 400 => BadRequest;
        s2x_r09_401: 401 => NotAuthorized;
        s2x_r10_402: 402 => BadRequest;
        s2x_r11_403: 403 => Forbidden;
        s2x_r12_404: 404 => ItemNotFound;
        s2x_r13_405: 405 => FeatureNotImplemented;
        s2x_r14_406: 406 => NotAcceptable;
        s2x_r15_407: 407 => RegistrationRequired;
        s2x_r16_408: 408 => RemoteServerTimeout;
        s2x_r17_410: 410 => Gone;
        s2x_r18_413: 413 => PolicyViolation;
        s2x_r19_414: 414 => PolicyViolation;
        s2x_r20_415: 415 => NotAcceptable;
        s2x_r21_416: 416 => NotAcceptable;
        s2x_r22_420: 420 => FeatureNotImplemented;
        s2x_r23_421: 421 => NotAcceptable;
        s2x_r24_423: 423 => ResourceConstraint;
        s2x_r25_430: 430 => RecipientUnavailable;
        s2x_r26_439: 439 => FeatureNotImplemented;
        s2x_r27_440: 440 => PolicyViolation;
        s2x_r28_480: 480 => RecipientUnavailable;
        s2x_r29_481: 481 => ItemNotFound;
        s2x_r30_482: 482 => NotAcceptable;
        s2x_r31_483: 483 => NotAcceptable;
        s2x_r32_484: 484 => ItemNotFound;
        s2x_r33_485: 485 => ItemNotFound;
        s2x_r34_486: 486 => RecipientUnavailable;
        s2x_r35_487: 487 => RecipientUnavailable;
        s2x_r36_488: 488 => NotAcceptable;
        s2x_r37_489: 489 => PolicyViolation;
        s2x_r38_491: 491 => UnexpectedRequest;
        s2x_r39_493: 493 => BadRequest;
        s2x_r40_5xx: 599 => InternalServerError;
        s2x_r41_500: 500 => InternalServerError;
        s2x_r42_501: 501 => FeatureNotImplemented;
        s2x_r43_502: 502 => RemoteServerNotFound;
        s2x_r44_503: 503 => InternalServerError;
        s2x_r45_504: 504 => RemoteServerTimeout;
        s2x_r46_505: 505 => NotAcceptable;
        s2x_r47_513: 513 => PolicyViolation;
        s2x_r48_6xx: 699 => RecipientUnavailable;
        s2x_r49_600: 600 => RecipientUnavailable;
        s2x_r50_603: 603 => RecipientUnavailable;
        s2x_r51_604: 604 => ItemNotFound;
        s2x_r52_606: 606 => NotAcceptable;
    }

    #[test]
    fn no_mapping_outside_3xx_6xx() {
        for c in [0, 100, 180, 200, 202, 299, 700, 999] {
            assert_eq!(xmpp_condition(c), None, "{c}");
        }
    }

    #[test]
    fn tables_are_complete() {
        assert_eq!(XMPP_TO_SIP.len(), 22);
        for c in Condition::ALL {
            assert_eq!(
                XMPP_TO_SIP.iter().filter(|r| r.condition == c).count(),
                1,
                "{c}"
            );
            assert_eq!(Condition::from_name(c.name()), Some(c));
        }
        assert_eq!(SIP_TO_XMPP.len(), 52);
    }
}

//! Small helpers: parsing a stored stanza back, XEP-0082 timestamps, the wall clock.

use std::time::{SystemTime, UNIX_EPOCH};

use fedgate_policy::Timestamp;
use fedgate_xmpp::{Element, Event, Limits, StreamKind, StreamReader};

const HEADER: &str = "<stream:stream xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

/// Parses one stanza serialized with [`Element::to_xml`] (as stored offline).
pub(crate) fn parse_stanza(xml: &str) -> Option<Element> {
    let mut r = StreamReader::new(
        StreamKind::Client,
        Limits::default(),
        std::time::Instant::now(),
    );
    r.set_authenticated();
    r.feed(HEADER.as_bytes());
    r.feed(xml.as_bytes());
    loop {
        match r.poll_event() {
            Ok(Some(Event::Element(e))) => return Some(e),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}

/// XEP-0082 `DateTime` (UTC, millisecond precision) of a Unix-epoch timestamp.
pub(crate) fn xep0082(t: Timestamp) -> String {
    let ms = t.as_millis();
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep0082_dates() {
        assert_eq!(xep0082(Timestamp::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            xep0082(Timestamp::from_millis(951_782_400_123)),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            xep0082(Timestamp::from_millis(1_764_097_200_000)),
            "2025-11-25T19:00:00.000Z"
        );
    }

    #[test]
    fn stored_stanza_round_trip() {
        let el = parse_stanza(
            "<message xmlns='jabber:client' to='a@b.test' type='chat'><body>x &lt;</body></message>",
        )
        .unwrap();
        assert_eq!(el.attr("to"), Some("a@b.test"));
        assert_eq!(parse_stanza(&el.to_xml()).unwrap().to_xml(), el.to_xml());
        assert!(parse_stanza("<message").is_none());
    }
}

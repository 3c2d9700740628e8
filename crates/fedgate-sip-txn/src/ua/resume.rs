//! [`NotifierRecord`]: a notifier subscription that survives a restart.

use std::time::Duration;

use bytes::Bytes;
use fedgate_sip::{HeaderKind, Limits, Message, Method, Uri, parse_datagram};

use super::SubState;
use crate::error::Error;

const MAGIC: &str = "FEDGATE-NOTIFIER 1";

/// A notifier subscription, written down to be restored after a restart.
///
/// What a notifier subscription needs to survive a restart of the process
/// ([`UserAgent::export_notifier`](super::UserAgent::export_notifier),
/// [`UserAgent::restore_notifier`](super::UserAgent::restore_notifier)).
///
/// A subscription dialog outlives its connection (RFC 3261 §12) and, written down,
/// the process: a Lync watcher refreshes only every 1 h 45 min, so a notifier that
/// forgot its dialogs at a restart would leave the watcher without NOTIFYs that long.
///
/// The record is the SUBSCRIBE that created the subscription, as received (From,
/// To, Call-ID, Event, Accept, Record-Route and Contact come from it), and what
/// changed since: our tag, both CSeq numbers, the remote target of the latest target
/// refresh, the state and the time left. Its encoding is a short header block and
/// the SUBSCRIBE's wire form:
///
/// ```text
/// FEDGATE-NOTIFIER 1
/// Local-Tag: 8c1f…
/// Local-Seq: 14
/// Remote-Seq: 3
/// Remote-Target: sip:bob@192.0.2.7:5061;transport=tls
/// State: active
/// Expires-In: 6012
///
/// SUBSCRIBE sip:alice@example.com SIP/2.0
/// …
/// ```
///
/// `Expires-In` is relative to the moment of the export; the application stores the
/// wall-clock time with the record and subtracts what passed before it restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierRecord {
    /// The SUBSCRIBE that created the subscription, as received.
    pub request: Message,
    /// Our tag (the To tag of our 200).
    pub local_tag: Bytes,
    /// The last CSeq number we used in the dialog (our NOTIFYs).
    pub local_seq: u32,
    /// The last CSeq number the subscriber used (its refreshes).
    pub remote_seq: Option<u32>,
    /// Where in-dialog requests go (the Contact of the latest target refresh).
    pub remote_target: Uri,
    /// `Active` or `Pending`.
    pub state: SubState,
    /// Time left until it expires without a refresh, at the moment of the export.
    pub expires_in: Duration,
}

/// A tag, number or URI written on one line: no CR, LF or NUL.
fn one_line(v: &[u8]) -> Result<&[u8], Error> {
    if v.is_empty() || v.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(Error::InvalidMessage("notifier record: bad value"));
    }
    Ok(v)
}

fn num<T: std::str::FromStr>(v: &[u8]) -> Result<T, Error> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Error::InvalidMessage("notifier record: bad number"))
}

impl NotifierRecord {
    /// The encoding described on [`NotifierRecord`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.request.body.len());
        out.extend_from_slice(MAGIC.as_bytes());
        out.extend_from_slice(b"\r\nLocal-Tag: ");
        out.extend_from_slice(&self.local_tag);
        out.extend_from_slice(format!("\r\nLocal-Seq: {}", self.local_seq).as_bytes());
        if let Some(r) = self.remote_seq {
            out.extend_from_slice(format!("\r\nRemote-Seq: {r}").as_bytes());
        }
        out.extend_from_slice(b"\r\nRemote-Target: ");
        self.remote_target.encode(&mut out);
        let state: &[u8] = match self.state {
            SubState::Pending => b"pending",
            _ => b"active",
        };
        out.extend_from_slice(b"\r\nState: ");
        out.extend_from_slice(state);
        out.extend_from_slice(
            format!("\r\nExpires-In: {}\r\n\r\n", self.expires_in.as_secs()).as_bytes(),
        );
        self.request.encode(&mut out);
        out
    }

    /// Reads a record written by [`encode`](NotifierRecord::encode). Anything else
    /// (another version, a missing field, a request that is not a SUBSCRIBE with a
    /// From tag) is refused with [`Error::InvalidMessage`].
    pub fn decode(data: &[u8], limits: &Limits) -> Result<NotifierRecord, Error> {
        let split = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or(Error::InvalidMessage("notifier record: no request"))?;
        let (head, request) = (&data[..split], &data[split + 4..]);
        let mut lines = head
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        if lines.next() != Some(MAGIC.as_bytes()) {
            return Err(Error::InvalidMessage("notifier record: unknown version"));
        }
        let (mut tag, mut lseq, mut rseq, mut target, mut state, mut exp) =
            (None, None, None, None, None, None);
        for line in lines {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(Error::InvalidMessage("notifier record: bad line"));
            };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            let value = one_line(value)?;
            match name {
                b"Local-Tag" => tag = Some(Bytes::copy_from_slice(value)),
                b"Local-Seq" => lseq = Some(num::<u32>(value)?),
                b"Remote-Seq" => rseq = Some(num::<u32>(value)?),
                b"Remote-Target" => {
                    target = Some(
                        Uri::parse(&Bytes::copy_from_slice(value))
                            .map_err(|_| Error::InvalidMessage("notifier record: bad URI"))?,
                    );
                }
                b"State" => {
                    state = Some(match value {
                        b"active" => SubState::Active,
                        b"pending" => SubState::Pending,
                        _ => return Err(Error::InvalidMessage("notifier record: bad state")),
                    });
                }
                b"Expires-In" => exp = Some(Duration::from_secs(num::<u64>(value)?)),
                _ => return Err(Error::InvalidMessage("notifier record: unknown field")),
            }
        }
        let request = parse_datagram(Bytes::copy_from_slice(request), limits)
            .map_err(|_| Error::InvalidMessage("notifier record: bad request"))?;
        if request.method() != Some(&Method::Subscribe)
            || request.from().ok().and_then(|f| f.tag().cloned()).is_none()
            || request.headers.get(HeaderKind::Event).is_none()
        {
            return Err(Error::InvalidMessage(
                "notifier record: not a SUBSCRIBE with a From tag and an Event",
            ));
        }
        let missing = Error::InvalidMessage("notifier record: missing field");
        Ok(NotifierRecord {
            request,
            local_tag: tag.ok_or(missing.clone())?,
            local_seq: lseq.ok_or(missing.clone())?,
            remote_seq: rseq,
            remote_target: target.ok_or(missing.clone())?,
            state: state.ok_or(missing.clone())?,
            expires_in: exp.ok_or(missing)?,
        })
    }
}

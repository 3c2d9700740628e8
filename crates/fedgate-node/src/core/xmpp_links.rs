//! The XMPP s2s driver ([`crate::xmpp`]) plugged into the [`Router`]: outbound through
//! [`XmppRemoteLinks`] (a [`RemoteLinks`] over [`S2sOutbound`]), inbound through
//! [`pump_inbound`] (the node's [`StanzaSink`](crate::xmpp::StanzaSink) receiver into
//! [`Router::handle_remote`]).
//!
//! These are the unfiltered seams; the node uses them behind the
//! [`FederationGate`](super::FederationGate) ([`FederatedXmppLinks`](super::FederatedXmppLinks),
//! [`pump_federated`](super::pump_federated)), which adds federation policy and the
//! presence mapping.

use fedgate_xmpp::stanza::Stanza;
use fedgate_xmpp::{Element, ns};
use tokio::sync::mpsc;

use super::{RemoteError, RemoteLinks, Router};
use crate::xmpp::{InboundStanza, S2sOutbound, SendError};

/// The stanza in content namespace `to_ns` (`jabber:client` ↔ `jabber:server`).
pub fn renamespace(el: &Element, to_ns: &str) -> Option<Element> {
    if el.ns() == to_ns {
        return Some(el.clone());
    }
    Stanza::try_from(el).ok().map(|s| s.to_element(to_ns))
}

/// Remote XMPP domains over s2s.
#[derive(Debug, Clone)]
pub struct XmppRemoteLinks(pub S2sOutbound);

impl RemoteLinks for XmppRemoteLinks {
    fn send(&self, stanza: Element) -> Result<(), RemoteError> {
        let el = renamespace(&stanza, ns::SERVER)
            .ok_or_else(|| RemoteError::Other("not a valid stanza".into()))?;
        self.0.send(el).map_err(|e| match e {
            SendError::LocalDestination(_) | SendError::NotLocal(_) => RemoteError::NoRoute,
            e => RemoteError::Other(e.to_string()),
        })
    }
}

/// Hands every stanza from the s2s side (received from a peer, or a bounce) to the
/// router, until the channel closes.
pub async fn pump_inbound(mut rx: mpsc::Receiver<InboundStanza>, router: Router) {
    while let Some(s) = rx.recv().await {
        match renamespace(&s.element, ns::CLIENT) {
            Some(el) => router.handle_remote(el).await,
            None => {
                tracing::debug!(from = %s.from_domain, "core: unreadable stanza from s2s dropped")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_both_ways() {
        let el = crate::core::util::parse_stanza(
            "<message xmlns='jabber:client' from='a@x.test/r' to='b@y.test' type='chat'><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        )
        .unwrap();
        let s = renamespace(&el, ns::SERVER).unwrap();
        assert_eq!(s.ns(), ns::SERVER);
        assert_eq!(
            s.get_child("body", ns::SERVER).map(|b| b.text()).as_deref(),
            Some("hi")
        );
        assert!(
            s.get_child("active", "http://jabber.org/protocol/chatstates")
                .is_some()
        );
        let back = renamespace(&s, ns::CLIENT).unwrap();
        assert_eq!(back.to_xml(), el.to_xml());
    }
}

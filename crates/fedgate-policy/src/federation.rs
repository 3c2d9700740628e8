//! Administrator configuration: local domains, federated domains (SIP xor XMPP), the
//! XMPP administrator policy, and the routing answer derived from them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::addr::{Domain, FastMap, FastSet};

/// The federation protocol used with a remote domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// SIP federation (Lync / Skype for Business / Office 365), RFC 3261.
    Sip,
    /// XMPP server-to-server federation, RFC 6120.
    Xmpp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sip => "SIP",
            Self::Xmpp => "XMPP",
        })
    }
}

/// The XMPP administrator policy mode.
///
/// Seed: "For SIP federation, you configure a federated domain. For XMPP federation, you
/// define the administrator policy for XMPP federation."
///
/// The defined answer for every domain (not local, not a SIP federated domain):
///
/// | mode          | on allow list | on deny list | on neither list |
/// |---------------|---------------|--------------|-----------------|
/// | `AllowAll`    | permitted     | permitted    | permitted       |
/// | `AllowListed` | permitted     | denied       | **denied**      |
/// | `DenyListed`  | permitted     | denied       | **permitted**   |
///
/// `AllowAll` ignores both lists (they are kept, so switching modes back restores them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum XmppMode {
    /// Federate over XMPP with every domain that is not local and not SIP federated.
    AllowAll,
    /// Federate over XMPP only with domains on the allow list (the default: closed).
    #[default]
    AllowListed,
    /// Federate over XMPP with every domain except those on the deny list.
    DenyListed,
}

/// Which XMPP list a domain is on. A domain is on at most one list: the two lists are one
/// map, so "on both lists" cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XmppListing {
    /// On the XMPP allow list.
    Allow,
    /// On the XMPP deny list.
    Deny,
}

/// One configured remote domain: a SIP federated domain, or an entry of an XMPP list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FederationEntry {
    /// A SIP federated domain.
    Sip,
    /// On an XMPP administrator-policy list.
    Xmpp(XmppListing),
}

/// Why a remote domain is not federated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum NotFederatedReason {
    /// The domain is on the XMPP deny list (mode `AllowListed` or `DenyListed`).
    XmppDenyListed,
    /// Mode `AllowListed` and the domain is on neither list (and is no SIP federated domain).
    NotOnXmppAllowList,
}

impl fmt::Display for NotFederatedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::XmppDenyListed => "the domain is on the XMPP deny list",
            Self::NotOnXmppAllowList => {
                "the domain is not a SIP federated domain and not on the XMPP allow list"
            }
        })
    }
}

/// Where a domain lives, as the node's router needs to know it.
///
/// This is the one routing question the node asks; it never looks at policy internals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// One of our local domains: deliver to a local user.
    Local,
    /// Federated over SIP.
    Sip,
    /// Federated over XMPP.
    Xmpp,
    /// Not federated, and why.
    NotFederated(NotFederatedReason),
}

impl Route {
    /// The federation protocol, if the domain is federated.
    pub fn protocol(self) -> Option<Protocol> {
        match self {
            Self::Sip => Some(Protocol::Sip),
            Self::Xmpp => Some(Protocol::Xmpp),
            Self::Local | Self::NotFederated(_) => None,
        }
    }
}

/// Why an inbound request's domain is not permitted. The user is never contacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DomainDenial {
    /// The addressed (local) user's domain is not one of our local domains.
    NotOurDomain,
    /// The remote party claims one of our own domains: it cannot come in over federation.
    LocalDomain,
    /// The domain is not federated.
    NotFederated(NotFederatedReason),
    /// The domain is federated, but over the other protocol.
    WrongProtocol {
        /// The protocol the domain is federated over.
        federated_over: Protocol,
    },
}

/// A configuration change that would break a federation rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// XMPP was requested for a SIP federated domain (the seed's example.com case).
    #[error(
        "{domain} is configured as a SIP federated domain; a domain is federated over SIP or \
         XMPP, never both: delete {domain} as a SIP federated domain first, then add it for XMPP"
    )]
    ConfiguredAsSip {
        /// The domain.
        domain: Domain,
    },
    /// SIP was requested for a domain on an XMPP list.
    #[error(
        "{domain} is on the XMPP {listing} list; a domain is federated over SIP or XMPP, never \
         both: delete the XMPP entry for {domain} first, then add it as a SIP federated domain"
    )]
    ConfiguredAsXmpp {
        /// The domain.
        domain: Domain,
        /// The list it is on.
        listing: ListingName,
    },
    /// A remote domain was requested that is one of our local domains.
    #[error(
        "{domain} is one of our local domains; a remote (federated) domain may not be a local domain"
    )]
    RemoteIsLocal {
        /// The domain.
        domain: Domain,
    },
    /// A local domain was requested that is configured as a remote domain.
    #[error(
        "{domain} is configured as a remote domain; delete that entry before making it a local domain"
    )]
    LocalIsRemote {
        /// The domain.
        domain: Domain,
    },
}

/// The name of an XMPP list, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingName(pub XmppListing);

impl fmt::Display for ListingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            XmppListing::Allow => "allow",
            XmppListing::Deny => "deny",
        })
    }
}

/// Local domains, federated domains and the XMPP administrator policy.
///
/// Rules, with the seed sentence each comes from:
///
/// * SIP xor XMPP, enforced in [`FederationConfig::check_remote`]: "If you wish to enable XMPP
///   federation with an external domain, ensure that the external domain was not previously
///   configured as a SIP federated domain on the IM and Presence Service." … "To allow this,
///   the local administrator must first delete example.com as a SIP federated domain on the
///   IM and Presence Service." Each domain has at most one entry (one map), so it is
///   federated over one protocol at most by construction.
/// * Remote is never local, enforced in [`FederationConfig::check_remote`] and
///   [`FederationConfig::check_local`]: "Federation is fully supported in IM and Presence
///   Service deployments with multiple domains provided the remote domain is not managed by
///   the local IM and Presence Service deployment."
/// * Subdomains: "The IM and Presence Service supports the following subdomain scenarios"
///   (ours a subdomain of theirs; theirs a subdomain of ours; siblings). Domains are matched
///   exactly, never by suffix, so all three work: `imp.example.com` local with
///   `example.com` remote, `example.com` local with `foreign.example.com` remote, and
///   `cup.example.com` local with `foreign.example.com` remote.
///
/// ```
/// use fedgate_policy::{Domain, FederationConfig, Route, XmppListing};
/// let d = |s: &str| s.parse::<Domain>().unwrap();
/// let mut cfg = FederationConfig::new();
/// cfg.add_local_domain(d("imp.example.com")).unwrap();
/// cfg.add_sip_domain(d("example.com")).unwrap();
/// let err = cfg.add_xmpp_domain(d("example.com"), XmppListing::Allow).unwrap_err();
/// assert!(err.to_string().contains("delete example.com as a SIP federated domain first"));
/// assert_eq!(cfg.route(&d("example.com")), Route::Sip);
/// assert_eq!(cfg.route(&d("imp.example.com")), Route::Local);
/// ```
#[derive(Debug, Clone, Default)]
pub struct FederationConfig {
    local: FastSet<Domain>,
    remote: FastMap<Domain, FederationEntry>,
    xmpp_mode: XmppMode,
}

impl FederationConfig {
    /// An empty configuration: no local domains, no federated domains, XMPP mode
    /// [`XmppMode::AllowListed`] (nothing federates until configured).
    pub fn new() -> Self {
        Self::default()
    }

    /// Our local domains (several are supported).
    pub fn local_domains(&self) -> impl Iterator<Item = &Domain> {
        self.local.iter()
    }

    /// Every configured remote domain and its entry.
    pub fn entries(&self) -> impl Iterator<Item = (&Domain, FederationEntry)> {
        self.remote.iter().map(|(d, e)| (d, *e))
    }

    /// The configured entry for `domain`, if any.
    pub fn entry(&self, domain: &Domain) -> Option<FederationEntry> {
        self.remote.get(domain).copied()
    }

    /// The XMPP administrator policy mode.
    pub fn xmpp_mode(&self) -> XmppMode {
        self.xmpp_mode
    }

    /// True when `domain` is one of our local domains.
    pub fn is_local(&self, domain: &Domain) -> bool {
        self.local.contains(domain)
    }

    /// Checks that `domain` may become a local domain.
    pub fn check_local(&self, domain: &Domain) -> Result<(), ConfigError> {
        if self.remote.contains_key(domain) {
            return Err(ConfigError::LocalIsRemote {
                domain: domain.clone(),
            });
        }
        Ok(())
    }

    /// Checks that `domain` may be given the remote `entry` (see the type-level rules).
    /// Re-adding the same protocol (or moving a domain between the two XMPP lists) is fine.
    pub fn check_remote(&self, domain: &Domain, entry: FederationEntry) -> Result<(), ConfigError> {
        if self.local.contains(domain) {
            return Err(ConfigError::RemoteIsLocal {
                domain: domain.clone(),
            });
        }
        match (self.remote.get(domain), entry) {
            (Some(FederationEntry::Sip), FederationEntry::Xmpp(_)) => {
                Err(ConfigError::ConfiguredAsSip {
                    domain: domain.clone(),
                })
            }
            (Some(FederationEntry::Xmpp(listing)), FederationEntry::Sip) => {
                Err(ConfigError::ConfiguredAsXmpp {
                    domain: domain.clone(),
                    listing: ListingName(*listing),
                })
            }
            _ => Ok(()),
        }
    }

    /// Adds a local domain.
    pub fn add_local_domain(&mut self, domain: Domain) -> Result<(), ConfigError> {
        self.check_local(&domain)?;
        self.local.insert(domain);
        Ok(())
    }

    /// Removes a local domain; returns whether it was one.
    pub fn remove_local_domain(&mut self, domain: &Domain) -> bool {
        self.local.remove(domain)
    }

    /// Adds a SIP federated domain.
    pub fn add_sip_domain(&mut self, domain: Domain) -> Result<(), ConfigError> {
        self.add_remote(domain, FederationEntry::Sip)
    }

    /// Puts a domain on an XMPP list. Fails with [`ConfigError::ConfiguredAsSip`] for a SIP
    /// federated domain.
    pub fn add_xmpp_domain(
        &mut self,
        domain: Domain,
        listing: XmppListing,
    ) -> Result<(), ConfigError> {
        self.add_remote(domain, FederationEntry::Xmpp(listing))
    }

    /// Adds a remote domain entry after [`Self::check_remote`].
    pub fn add_remote(
        &mut self,
        domain: Domain,
        entry: FederationEntry,
    ) -> Result<(), ConfigError> {
        self.check_remote(&domain, entry)?;
        self.remote.insert(domain, entry);
        Ok(())
    }

    /// Deletes a remote domain entry (SIP federated domain or XMPP list entry); returns it.
    pub fn remove_remote(&mut self, domain: &Domain) -> Option<FederationEntry> {
        self.remote.remove(domain)
    }

    /// Inserts without checks (replaying a change already checked and stored).
    pub(crate) fn insert_local_unchecked(&mut self, domain: Domain) {
        self.local.insert(domain);
    }

    /// Inserts without checks (replaying a change already checked and stored).
    pub(crate) fn insert_remote_unchecked(&mut self, domain: Domain, entry: FederationEntry) {
        self.remote.insert(domain, entry);
    }

    /// Sets the XMPP administrator policy mode.
    pub fn set_xmpp_mode(&mut self, mode: XmppMode) {
        self.xmpp_mode = mode;
    }

    /// Where `domain` lives: local, federated over SIP, over XMPP, or not federated (why).
    ///
    /// Order: local domains first; then the domain's own entry (a SIP federated domain is
    /// SIP whatever the XMPP mode); then the XMPP administrator policy (table on [`XmppMode`]).
    pub fn route(&self, domain: &Domain) -> Route {
        if self.local.contains(domain) {
            return Route::Local;
        }
        let entry = self.remote.get(domain).copied();
        match (entry, self.xmpp_mode) {
            (Some(FederationEntry::Sip), _) => Route::Sip,
            (_, XmppMode::AllowAll) => Route::Xmpp,
            (Some(FederationEntry::Xmpp(XmppListing::Allow)), _) => Route::Xmpp,
            (Some(FederationEntry::Xmpp(XmppListing::Deny)), _) => {
                Route::NotFederated(NotFederatedReason::XmppDenyListed)
            }
            (None, XmppMode::AllowListed) => {
                Route::NotFederated(NotFederatedReason::NotOnXmppAllowList)
            }
            (None, XmppMode::DenyListed) => Route::Xmpp,
        }
    }

    /// Whether a request from `domain` arriving over `protocol` comes from a permitted
    /// federated domain.
    ///
    /// Seed: "On receipt of the inbound subscription, the IM and Presence Service verifies
    /// that the external domain is one of the permitted federated domains that you define at
    /// the administration level". A domain federated over the other protocol is not
    /// permitted here (SIP xor XMPP), nor is a domain claiming to be one of ours.
    pub fn permits(&self, domain: &Domain, protocol: Protocol) -> Result<(), DomainDenial> {
        match self.route(domain) {
            Route::Local => Err(DomainDenial::LocalDomain),
            Route::NotFederated(reason) => Err(DomainDenial::NotFederated(reason)),
            Route::Sip if protocol == Protocol::Sip => Ok(()),
            Route::Xmpp if protocol == Protocol::Xmpp => Ok(()),
            Route::Sip => Err(DomainDenial::WrongProtocol {
                federated_over: Protocol::Sip,
            }),
            Route::Xmpp => Err(DomainDenial::WrongProtocol {
                federated_over: Protocol::Xmpp,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Domain {
        s.parse().unwrap()
    }

    #[test]
    fn xmpp_for_a_sip_domain_fails_with_delete_first() {
        let mut cfg = FederationConfig::new();
        cfg.add_sip_domain(d("example.com")).unwrap();
        for listing in [XmppListing::Allow, XmppListing::Deny] {
            let err = cfg.add_xmpp_domain(d("example.com"), listing).unwrap_err();
            assert_eq!(
                err,
                ConfigError::ConfiguredAsSip {
                    domain: d("example.com")
                }
            );
            assert!(
                err.to_string()
                    .contains("delete example.com as a SIP federated domain first")
            );
        }
        assert_eq!(cfg.route(&d("example.com")), Route::Sip);
        // After deleting the SIP entry, XMPP can be enabled.
        assert_eq!(
            cfg.remove_remote(&d("example.com")),
            Some(FederationEntry::Sip)
        );
        cfg.add_xmpp_domain(d("example.com"), XmppListing::Allow)
            .unwrap();
        assert_eq!(cfg.route(&d("example.com")), Route::Xmpp);
    }

    #[test]
    fn sip_for_an_xmpp_domain_fails_too() {
        let mut cfg = FederationConfig::new();
        cfg.add_xmpp_domain(d("example.org"), XmppListing::Allow)
            .unwrap();
        let err = cfg.add_sip_domain(d("example.org")).unwrap_err();
        assert!(matches!(err, ConfigError::ConfiguredAsXmpp { .. }));
        assert!(err.to_string().contains("delete the XMPP entry"));
        // Moving between XMPP lists and re-adding the same protocol are allowed.
        cfg.add_xmpp_domain(d("example.org"), XmppListing::Deny)
            .unwrap();
        cfg.add_sip_domain(d("sip.example")).unwrap();
        cfg.add_sip_domain(d("sip.example")).unwrap();
    }

    #[test]
    fn remote_may_not_be_local_and_vice_versa() {
        let mut cfg = FederationConfig::new();
        cfg.add_local_domain(d("example.com")).unwrap();
        cfg.add_local_domain(d("example.net")).unwrap();
        assert_eq!(
            cfg.add_sip_domain(d("example.net")),
            Err(ConfigError::RemoteIsLocal {
                domain: d("example.net")
            })
        );
        assert_eq!(
            cfg.add_xmpp_domain(d("example.com"), XmppListing::Allow),
            Err(ConfigError::RemoteIsLocal {
                domain: d("example.com")
            })
        );
        cfg.add_sip_domain(d("partner.example")).unwrap();
        assert_eq!(
            cfg.add_local_domain(d("partner.example")),
            Err(ConfigError::LocalIsRemote {
                domain: d("partner.example")
            })
        );
        // Local wins over any XMPP mode.
        cfg.set_xmpp_mode(XmppMode::AllowAll);
        assert_eq!(cfg.route(&d("example.net")), Route::Local);
        assert_eq!(
            cfg.permits(&d("example.net"), Protocol::Xmpp),
            Err(DomainDenial::LocalDomain)
        );
    }

    #[test]
    fn subdomain_scenarios() {
        // 1. Ours is a subdomain of theirs.
        let mut cfg = FederationConfig::new();
        cfg.add_local_domain(d("imp.example.com")).unwrap();
        cfg.add_sip_domain(d("example.com")).unwrap();
        assert_eq!(cfg.route(&d("imp.example.com")), Route::Local);
        assert_eq!(cfg.route(&d("example.com")), Route::Sip);
        assert_eq!(cfg.permits(&d("example.com"), Protocol::Sip), Ok(()));
        // 2. Theirs is a subdomain of ours.
        let mut cfg = FederationConfig::new();
        cfg.add_local_domain(d("example.com")).unwrap();
        cfg.add_xmpp_domain(d("foreign.example.com"), XmppListing::Allow)
            .unwrap();
        assert_eq!(cfg.route(&d("example.com")), Route::Local);
        assert_eq!(cfg.route(&d("foreign.example.com")), Route::Xmpp);
        // A sibling that is not configured is not swept in by the parent.
        assert_eq!(
            cfg.route(&d("other.example.com")),
            Route::NotFederated(NotFederatedReason::NotOnXmppAllowList)
        );
        // 3. Siblings under one parent.
        let mut cfg = FederationConfig::new();
        cfg.add_local_domain(d("cup.example.com")).unwrap();
        cfg.add_sip_domain(d("foreign.example.com")).unwrap();
        assert_eq!(cfg.route(&d("cup.example.com")), Route::Local);
        assert_eq!(cfg.route(&d("foreign.example.com")), Route::Sip);
        assert!(matches!(
            cfg.route(&d("example.com")),
            Route::NotFederated(_)
        ));
    }

    #[test]
    fn xmpp_mode_table() {
        let mut cfg = FederationConfig::new();
        cfg.add_local_domain(d("example.com")).unwrap();
        cfg.add_xmpp_domain(d("allowed.example"), XmppListing::Allow)
            .unwrap();
        cfg.add_xmpp_domain(d("denied.example"), XmppListing::Deny)
            .unwrap();
        cfg.add_sip_domain(d("lync.example")).unwrap();
        let (a, n, x, s) = (
            d("allowed.example"),
            d("denied.example"),
            d("neither.example"),
            d("lync.example"),
        );
        let deny = Route::NotFederated(NotFederatedReason::XmppDenyListed);
        let not_allowed = Route::NotFederated(NotFederatedReason::NotOnXmppAllowList);
        let table = [
            (XmppMode::AllowAll, [Route::Xmpp, Route::Xmpp, Route::Xmpp]),
            (XmppMode::AllowListed, [Route::Xmpp, deny, not_allowed]),
            (XmppMode::DenyListed, [Route::Xmpp, deny, Route::Xmpp]),
        ];
        for (mode, want) in table {
            cfg.set_xmpp_mode(mode);
            assert_eq!(
                [cfg.route(&a), cfg.route(&n), cfg.route(&x)],
                want,
                "{mode:?}"
            );
            assert_eq!(cfg.route(&s), Route::Sip, "{mode:?}");
            assert_eq!(
                cfg.permits(&s, Protocol::Xmpp),
                Err(DomainDenial::WrongProtocol {
                    federated_over: Protocol::Sip
                })
            );
        }
    }
}

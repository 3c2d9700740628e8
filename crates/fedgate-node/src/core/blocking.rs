//! XEP-0191 Blocking Command: the user's own block list, from the client.
//!
//! The list is the `Block` rules of the user's per-user policy (fedgate-policy), the
//! same list a deny answer writes to: `<item jid='user@domain'/>` is a rule for that
//! remote user, `<item jid='domain'/>` one for every user of that domain (the seed:
//! "The user can also block subscriptions on a per user and a per domain basis. This
//! can be configured by the Cisco Jabber client."). A full JID is taken as its bare
//! JID, `domain/resource` as the domain. Only users and domains of other servers can
//! be blocked (`not-acceptable` otherwise): the policy governs federation.
//!
//! Effects are the policy's polite block (the seed's blocking): the contact sees the
//! user unavailable (sent at once to a blocked contact, and to the roster contacts of a
//! blocked domain), its subscription requests are answered as for a denied watcher,
//! and on unblock a contact the user had approved (subscribed in the roster) gets its
//! allow rule back and the user's current presence; an unblocked contact that was
//! never approved is asked about again at its next request. Not done from XEP-0191: messages from a blocked contact are
//! still delivered and the user's own stanzas to it are not refused (§3.4, §3.5): a
//! polite block must not show, and a denied subscription does not end a chat.
//!
//! Limits: at most 64 items per command and 1,000 entries per list
//! (`policy-violation` beyond).
//!
//! `<blocklist/>` answers the list and marks the session for pushes; `<block/>` and
//! `<unblock/>` (no item: the whole list) answer a result and push the change to the
//! user's sessions that asked for the list (§3.3). Server features are answered to a
//! disco#info request to the user's domain (XEP-0030), with `urn:xmpp:blocking`.

use super::*;

pub(super) const BLOCKING_NS: &str = "urn:xmpp:blocking";
/// Items in one `<block/>` or `<unblock/>` (each is a store write): more is refused
/// with `policy-violation`.
const MAX_ITEMS: usize = 64;
/// Entries in one user's block list: a block that would go past it is refused with
/// `policy-violation` (the list lives in memory and in the store).
const MAX_BLOCKED: usize = 1000;
const DISCO_INFO_NS: &str = "http://jabber.org/protocol/disco#info";

/// What a client's `<item jid=…/>` names.
fn target_of(jid: &str) -> Option<RuleTarget> {
    let j = Jid::parse(jid).ok()?;
    let bare = j.bare();
    match bare.local() {
        Some(_) => UserAddress::new(&bare.to_string())
            .ok()
            .map(RuleTarget::User),
        None => fedgate_policy::Domain::new(bare.domain().as_str())
            .ok()
            .map(RuleTarget::Domain),
    }
}

fn jid_of(t: &RuleTarget) -> String {
    match t {
        RuleTarget::User(u) => u.to_string(),
        RuleTarget::Domain(d) => d.as_str().to_owned(),
    }
}

fn list(name: &str, targets: &[RuleTarget]) -> Element {
    let mut b = ElementBuilder::new(name, BLOCKING_NS);
    for t in targets {
        b.push_child(
            ElementBuilder::new("item", BLOCKING_NS)
                .attr("jid", jid_of(t))
                .build(),
        );
    }
    b.build()
}

impl Router {
    /// Whether `el` (an iq from a client) is a disco#info request to the server or a
    /// blocking command; answers it if so.
    pub(super) async fn blocking_or_disco(
        &self,
        ctx: &mut Ctx,
        full: &FullJid,
        el: &Element,
    ) -> bool {
        let kind = el.attr("type").unwrap_or("");
        let to_server = el
            .attr("to")
            .is_some_and(|t| t == full.bare().domain().as_str());
        if to_server && kind == "get" && el.get_child("query", DISCO_INFO_NS).is_some() {
            let mut q = ElementBuilder::new("query", DISCO_INFO_NS).child(
                ElementBuilder::new("identity", DISCO_INFO_NS)
                    .attr("category", "server")
                    .attr("type", "im")
                    .build(),
            );
            for f in [DISCO_INFO_NS, PING_NS, ROSTER_NS, BLOCKING_NS] {
                q.push_child(
                    ElementBuilder::new("feature", DISCO_INFO_NS)
                        .attr("var", f)
                        .build(),
                );
            }
            ctx.out.push(iq_result(full, el, Some(q.build())));
            return true;
        }
        let own = el.attr("to").is_none_or(|t| t == full.bare().to_string());
        let Some(cmd) = el
            .elements()
            .find(|c| c.ns() == BLOCKING_NS)
            .map(|c| c.name().to_owned())
        else {
            return false;
        };
        if !own {
            return false;
        }
        match (kind, cmd.as_str()) {
            ("get", "blocklist") => self.blocklist(ctx, full, el),
            ("set", "block") => self.block(ctx, full, el, true).await,
            ("set", "unblock") => self.block(ctx, full, el, false).await,
            _ => self.iq_error_to_self(ctx, el, Cond::BadRequest),
        }
        true
    }

    fn blocklist(&self, ctx: &mut Ctx, full: &FullJid, el: &Element) {
        let Some(u) = addr(full.bare()) else {
            return self.iq_error_to_self(ctx, el, Cond::ItemNotFound);
        };
        let blocked = self.blocked_targets(&u);
        if let Some(v) = lock(&self.inner.sessions).get_mut(full.bare())
            && let Some(e) = v.iter_mut().find(|e| &e.full == full)
        {
            e.blocklist = true;
        }
        ctx.out
            .push(iq_result(full, el, Some(list("blocklist", &blocked))));
    }

    fn blocked_targets(&self, u: &UserAddress) -> Vec<RuleTarget> {
        let Some(pol) = self.user_policy() else {
            return Vec::new();
        };
        let mut v: Vec<RuleTarget> = pol.read(|p| {
            p.rules(u)
                .map(|r| {
                    r.iter()
                        .filter(|(_, rule)| *rule == Rule::Block)
                        .map(|(t, _)| t)
                        .collect()
                })
                .unwrap_or_default()
        });
        v.sort();
        v
    }

    async fn block(&self, ctx: &mut Ctx, full: &FullJid, el: &Element, block: bool) {
        let user = full.bare().clone();
        let (Some(pol), Some(u)) = (self.user_policy(), addr(&user)) else {
            return self.iq_error_to_self(ctx, el, Cond::ServiceUnavailable);
        };
        let Some(cmd) = el.elements().find(|c| c.ns() == BLOCKING_NS) else {
            return self.iq_error_to_self(ctx, el, Cond::BadRequest);
        };
        if cmd.elements().filter(|c| c.is("item", BLOCKING_NS)).count() > MAX_ITEMS {
            return self.iq_error_to_self(ctx, el, Cond::PolicyViolation);
        }
        let mut targets = Vec::new();
        for item in cmd.elements().filter(|c| c.is("item", BLOCKING_NS)) {
            let Some(t) = item.attr("jid").and_then(target_of) else {
                return self.iq_error_to_self(ctx, el, Cond::JidMalformed);
            };
            let domain = match &t {
                RuleTarget::User(a) => a.domain().as_str().to_owned(),
                RuleTarget::Domain(d) => d.as_str().to_owned(),
            };
            let remote = DomainPart::new(&domain).ok().is_some_and(|d| {
                matches!(
                    self.route_of(&Jid::Bare(BareJid::domain_jid(d))),
                    Route::Remote(_)
                )
            });
            if !remote {
                return self.iq_error_to_self(ctx, el, Cond::NotAcceptable);
            }
            targets.push(t);
        }
        if targets.is_empty() {
            if block {
                // §3.3: a block without an item is a bad request.
                return self.iq_error_to_self(ctx, el, Cond::BadRequest);
            }
            targets = self.blocked_targets(&u); // unblock everything
        }
        if block {
            let mut after = self.blocked_targets(&u);
            after.extend(targets.iter().cloned());
            after.sort();
            after.dedup();
            if after.len() > MAX_BLOCKED {
                return self.iq_error_to_self(ctx, el, Cond::PolicyViolation);
            }
        }
        // A contact the user had approved (the roster says it is subscribed) gets its
        // allow back on unblock: a block replaced that rule.
        let roster = self.roster_of(&user).await;
        let approved: Vec<UserAddress> = roster
            .items
            .iter()
            .filter(|i| matches!(i.subscription, Sub::From | Sub::Both))
            .filter_map(|i| UserAddress::new(&i.jid).ok())
            .collect();
        let (u2, ts) = (u.clone(), targets.clone());
        let r = pol
            .call(move |p| {
                for t in ts {
                    if block {
                        p.set_rule(util::now(), &u2, t, Rule::Block)?;
                    } else if p.rules(&u2).and_then(|r| r.get(&t)) == Some(Rule::Block) {
                        match &t {
                            RuleTarget::User(c) if approved.contains(c) => {
                                p.set_rule(util::now(), &u2, t, Rule::Allow)?;
                            }
                            _ => p.remove_rule(&u2, &t)?,
                        }
                    }
                }
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(user = %user, error = %e, "core: blocking command not stored");
            return self.iq_error_to_self(ctx, el, Cond::InternalServerError);
        }
        tracing::info!(user = %user, block, items = targets.len(), "core: block list changed by the user");
        ctx.out.push(iq_result(full, el, None));
        // §3.3: pushed to the sessions that asked for the list.
        let push = list(if block { "block" } else { "unblock" }, &targets);
        for t in self.targets(&user, |e| e.blocklist) {
            let id = format!("push{}", self.inner.next_id.fetch_add(1, Ordering::Relaxed));
            let iq = ElementBuilder::new("iq", ns::CLIENT)
                .attr("to", t.full.to_string())
                .attr("id", id)
                .attr("type", "set")
                .child(push.clone())
                .build();
            self.push(ctx, &t, iq);
        }
        // The presence the contacts see now: Offline for the blocked; the real one
        // again for an unblocked contact subscribed to the user.
        for item in &roster.items {
            let Some(contact) = bare_of(Some(&item.jid)) else {
                continue;
            };
            let Some(c) = addr(&contact) else { continue };
            let hit = targets.iter().any(|t| match t {
                RuleTarget::User(a) => *a == c,
                RuleTarget::Domain(d) => c.domain() == d,
            });
            if !hit || !matches!(item.subscription, Sub::From | Sub::Both) {
                continue;
            }
            let still_blocked = self.politely_blocked(&user, &contact);
            self.presence_to(ctx, &user, &contact, block || still_blocked);
        }
    }
}

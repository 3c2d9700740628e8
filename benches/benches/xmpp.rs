//! Placeholder until the xmpp bench lands in this change.
fn main() {}

//! Placeholder until the sip bench lands in this change.
fn main() {}

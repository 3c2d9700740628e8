//! Placeholder until the policy bench lands in this change.
fn main() {}

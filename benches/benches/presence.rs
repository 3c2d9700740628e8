//! Placeholder until the presence bench lands in this change.
fn main() {}

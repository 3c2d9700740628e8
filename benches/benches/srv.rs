//! Placeholder until the srv bench lands in this change.
fn main() {}

//! Shared inputs for the fedgate benchmarks.

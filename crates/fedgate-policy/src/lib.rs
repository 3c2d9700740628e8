//! fedgate-policy (under construction in this change).

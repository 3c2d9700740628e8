//! fedgate-node (under construction in this change).

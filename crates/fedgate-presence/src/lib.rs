//! fedgate-presence (under construction in this change).

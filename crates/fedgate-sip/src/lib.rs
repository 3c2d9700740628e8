//! fedgate-sip (under construction in this change).

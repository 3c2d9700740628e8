//! fedgate-xmpp (under construction in this change).

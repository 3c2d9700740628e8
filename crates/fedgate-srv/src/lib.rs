//! fedgate-srv (under construction in this change).

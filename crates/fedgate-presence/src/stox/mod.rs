//! SIP ⇄ XMPP interworking (the STOX series) as data: RFC 8048 (presence;
//! obsoletes RFC 7248), RFC 7572 (pager-mode messages) and RFC 7247
//! (addresses, and the SIP status ⇄ XMPP stanza error tables).
//!
//! Table text follows the authors' xml2rfc sources of the approved drafts
//! (draft-ietf-stox-7248bis-14, -im-13, -core-11); RFC 7572's tables were
//! checked against the published RFC. Each data row names its table and row.

pub mod address;
pub mod errors;
pub mod message;
pub mod presence;

/// One row of a syntax-mapping table: an element or attribute on one side
/// and what it becomes on the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyntaxRow {
    /// Where the row is: "RFC 8048 Table 1 row 3".
    pub cite: &'static str,
    /// Source item, as the table writes it.
    pub source: &'static str,
    /// Target item, as the table writes it ("no mapping" included).
    pub target: &'static str,
    /// The table's note numbers for this row, comma-separated ("" if none).
    pub notes: &'static str,
}

/// The row of `table` whose source is `source` (exact, as the table writes it).
pub fn lookup(table: &'static [SyntaxRow], source: &str) -> Option<&'static SyntaxRow> {
    table.iter().find(|r| r.source == source)
}

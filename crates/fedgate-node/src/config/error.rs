//! [`ConfigError`]: every error names the key at fault.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};

/// A configuration that cannot be read or used. Every variant names the key path
/// (`federation.domain[2].protocol`); TOML errors also give the line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {}: cannot read: {detail}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        detail: String,
    },
    /// TOML syntax, an unknown key, a missing required key, or a value of the wrong type
    /// or not among the allowed names.
    #[error("config: `{key}` (line {line}, column {column}): {message}")]
    Toml {
        /// The key path (`(document)` when the error is at top level).
        key: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// What the TOML reader said.
        message: String,
    },
    /// A value that parsed but is not acceptable (bad address, bad domain, out of range,
    /// contradicting another key).
    #[error("config: `{key}`: {reason}")]
    Invalid {
        /// The key path.
        key: String,
        /// Why.
        reason: String,
    },
    /// A federation rule of fedgate-policy (SIP xor XMPP, remote is not local).
    #[error("config: `{key}`: {source}")]
    Federation {
        /// The key path of the entry that breaks the rule.
        key: String,
        /// The rule, with fedgate-policy's explanation.
        source: fedgate_policy::ConfigError,
    },
}

impl ConfigError {
    /// The key path at fault (`None` only for [`ConfigError::Read`]).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Toml { key, .. }
            | ConfigError::Invalid { key, .. }
            | ConfigError::Federation { key, .. } => Some(key),
        }
    }

    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// A TOML reader error, located in `input`.
    pub(crate) fn from_toml(input: &str, err: &toml::de::Error) -> ConfigError {
        let span = err.span().unwrap_or(0..0);
        let (line, column) = line_column(input, span.start);
        // An empty span points between two characters: look at the one after it.
        let probe = span.start..span.end.max(span.start + 1);
        let (table, _) = DeTable::parse_recoverable(input);
        let mut key = key_at(table.get_ref(), &probe);
        // A missing key is reported on its table: name the key itself.
        if let Some(missing) = err
            .message()
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            let path = key.get_or_insert_with(String::new);
            push_key(path, missing);
        }
        let key = key.unwrap_or_else(|| "(document)".to_owned());
        ConfigError::Toml {
            key,
            line,
            column,
            message: err.message().trim_end().to_owned(),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(input: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(input.len());
    let before = input.get(..offset).unwrap_or(input);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        path.push_str(key);
    } else {
        let _ = write!(path, "{key:?}");
    }
}

/// The key path of the deepest key or value whose span holds `span`.
fn key_at(table: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    let mut path = String::new();
    find_in_table(table, span, &mut path).then_some(path)
}

fn find_in_table(table: &DeTable<'_>, span: &Range<usize>, path: &mut String) -> bool {
    for (k, v) in table.iter() {
        let len = path.len();
        push_key(path, k.get_ref());
        if contains(&k.span(), span) || find_in_value(v.get_ref(), &v.span(), span, path) {
            return true;
        }
        path.truncate(len);
    }
    false
}

fn find_in_value(
    value: &DeValue<'_>,
    value_span: &Range<usize>,
    span: &Range<usize>,
    path: &mut String,
) -> bool {
    match value {
        // Tables may be spread over the file (headers, dotted keys): look inside first.
        DeValue::Table(t) => find_in_table(t, span, path) || contains(value_span, span),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                if find_in_value(item.get_ref(), &item.span(), span, path) {
                    return true;
                }
                path.truncate(len);
            }
            contains(value_span, span)
        }
        _ => contains(value_span, span),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_in_characters() {
        assert_eq!(line_column("abc", 0), (1, 1));
        assert_eq!(line_column("a\nbé c", 6), (2, 4));
        assert_eq!(line_column("a\n", 99), (2, 1));
    }

    #[test]
    fn quoted_keys_are_quoted_in_the_path() {
        let mut p = String::new();
        push_key(&mut p, "dns");
        push_key(&mut p, "a.b");
        assert_eq!(p, "dns.\"a.b\"");
    }
}

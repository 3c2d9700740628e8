//! A small, bounded, namespace-aware XML reader on `xmlparser`, and the
//! escaping used by the writers. Shared by the PIDF, Microsoft and XMPP codecs.
//!
//! The reader builds a tree of the whole (small) document. It refuses DTDs
//! (no entity expansion), unknown entities, unbound prefixes, mismatched end
//! tags and anything over the [`Limits`].

use std::fmt::Write as _;

/// Limits applied while reading a document from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document accepted, in bytes. Default 64 KiB.
    pub max_bytes: usize,
    /// Deepest element nesting accepted (the root is depth 1). Default 32.
    pub max_depth: usize,
    /// Most elements accepted in one document. Default 2048.
    pub max_elements: usize,
    /// Most attributes (including namespace declarations) on one element. Default 64.
    pub max_attributes: usize,
}

impl Limits {
    /// The defaults listed on each field.
    pub const DEFAULT: Limits = Limits {
        max_bytes: 64 * 1024,
        max_depth: 32,
        max_elements: 2048,
        max_attributes: 64,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Why a presence document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The document is larger than [`Limits::max_bytes`].
    #[error("document of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Elements nest deeper than [`Limits::max_depth`].
    #[error("elements nest deeper than {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// More elements than [`Limits::max_elements`].
    #[error("more than {limit} elements")]
    TooManyElements {
        /// The limit.
        limit: usize,
    },
    /// More attributes on one element than [`Limits::max_attributes`].
    #[error("more than {limit} attributes on one element")]
    TooManyAttributes {
        /// The limit.
        limit: usize,
    },
    /// The input is not UTF-8.
    #[error("not UTF-8 (valid up to byte {valid_up_to})")]
    Utf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// The XML is not well formed.
    #[error("malformed XML: {0}")]
    Syntax(String),
    /// The document has a DTD; they are refused (no entity expansion).
    #[error("DTDs are not accepted")]
    Dtd,
    /// An entity or character reference that XML does not predefine, or a bad one.
    #[error("unknown or invalid entity reference {0:?}")]
    Entity(String),
    /// A namespace prefix without a declaration.
    #[error("namespace prefix {0:?} is not declared")]
    UnboundPrefix(String),
    /// The root element is not the one this reader handles.
    #[error("root element is {{{found_ns}}}{found}, expected {expected}")]
    UnexpectedRoot {
        /// What the reader expected.
        expected: &'static str,
        /// The namespace found.
        found_ns: String,
        /// The local name found.
        found: String,
    },
    /// A required element or attribute is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A value that the format does not allow.
    #[error("invalid {what}: {value:?}")]
    Invalid {
        /// What was being read.
        what: &'static str,
        /// The value, truncated to 64 characters.
        value: String,
    },
}

impl Error {
    pub(crate) fn invalid(what: &'static str, value: &str) -> Error {
        Error::Invalid {
            what,
            value: value.chars().take(64).collect(),
        }
    }
}

/// A resolved attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attr {
    pub ns: String,
    pub name: String,
    pub value: String,
}

/// A child node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Element(Element),
    Text(String),
}

/// An element with its namespace resolved ("" for none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub ns: String,
    pub name: String,
    pub attrs: Vec<Attr>,
    pub children: Vec<Node>,
}

pub(crate) const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

impl Element {
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// Attribute without a namespace.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attr_ns("", name)
    }

    pub fn attr_ns(&self, ns: &str, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns == ns && a.name == name)
            .map(|a| a.value.as_str())
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(ns, name))
    }

    /// The concatenated character data directly inside this element.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// Depth-first search of all descendants (including self).
    pub fn descendants(&self) -> Vec<&Element> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            out.push(e);
            // Reverse so that document order is kept.
            let kids: Vec<&Element> = e.elements().collect();
            stack.extend(kids.into_iter().rev());
        }
        out
    }
}

struct Open {
    prefix: String,
    local: String,
    raw_attrs: Vec<(String, String, String)>,
    ns_marks: usize,
    element: Option<Element>,
}

fn resolve<'a>(scopes: &'a [(String, String)], prefix: &str) -> Option<&'a str> {
    if prefix == "xml" {
        return Some(XML_NS);
    }
    let found = scopes
        .iter()
        .rev()
        .find(|(p, _)| p == prefix)
        .map(|(_, u)| u.as_str());
    // No default namespace declared: elements are in no namespace.
    if found.is_none() && prefix.is_empty() {
        return Some("");
    }
    found
}

/// Decode the five predefined entities and character references.
pub(crate) fn unescape(raw: &str) -> Result<String, Error> {
    if !raw.contains('&') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find(';')
            .filter(|&e| e <= 10)
            .ok_or_else(|| Error::Entity(after.chars().take(10).collect()))?;
        let name = &after[..end];
        let c = match name {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "apos" => '\'',
            "quot" => '"',
            _ => {
                let code = if let Some(h) = name.strip_prefix("#x") {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = name.strip_prefix('#') {
                    d.parse::<u32>().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .filter(|&c| is_xml_char(c))
                    .ok_or_else(|| Error::Entity(name.to_owned()))?
            }
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parse `input` into its root element under `limits`. A refusal for a limit
/// or a DTD is logged at debug level.
pub(crate) fn parse(input: &[u8], limits: &Limits) -> Result<Element, Error> {
    let result = parse_inner(input, limits);
    if let Err(
        e @ (Error::TooLarge { .. }
        | Error::TooDeep { .. }
        | Error::TooManyElements { .. }
        | Error::TooManyAttributes { .. }
        | Error::Dtd),
    ) = &result
    {
        tracing::debug!(error = %e, len = input.len(), "presence document refused");
    }
    result
}

fn parse_inner(input: &[u8], limits: &Limits) -> Result<Element, Error> {
    if input.len() > limits.max_bytes {
        return Err(Error::TooLarge {
            size: input.len(),
            limit: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(input).map_err(|e| Error::Utf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let mut scopes: Vec<(String, String)> = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;

    for token in xmlparser::Tokenizer::from(text) {
        let token = token.map_err(|e| Error::Syntax(e.to_string()))?;
        use xmlparser::Token;
        match token {
            Token::DtdStart { .. } | Token::EmptyDtd { .. } | Token::EntityDeclaration { .. } => {
                return Err(Error::Dtd);
            }
            Token::DtdEnd { .. }
            | Token::Declaration { .. }
            | Token::ProcessingInstruction { .. }
            | Token::Comment { .. } => {}
            Token::ElementStart { prefix, local, .. } => {
                if root.is_some() {
                    return Err(Error::Syntax("content after the root element".into()));
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(Error::TooManyElements {
                        limit: limits.max_elements,
                    });
                }
                if stack.len() + 1 > limits.max_depth {
                    return Err(Error::TooDeep {
                        limit: limits.max_depth,
                    });
                }
                stack.push(Open {
                    prefix: prefix.as_str().to_owned(),
                    local: local.as_str().to_owned(),
                    raw_attrs: Vec::new(),
                    ns_marks: scopes.len(),
                    element: None,
                });
            }
            Token::Attribute {
                prefix,
                local,
                value,
                ..
            } => {
                let open = stack
                    .last_mut()
                    .ok_or_else(|| Error::Syntax("attribute outside an element".into()))?;
                if open.raw_attrs.len() >= limits.max_attributes {
                    return Err(Error::TooManyAttributes {
                        limit: limits.max_attributes,
                    });
                }
                let value = unescape(value.as_str())?;
                let (p, l) = (prefix.as_str(), local.as_str());
                if p.is_empty() && l == "xmlns" {
                    scopes.push((String::new(), value));
                } else if p == "xmlns" {
                    scopes.push((l.to_owned(), value));
                } else {
                    open.raw_attrs.push((p.to_owned(), l.to_owned(), value));
                }
            }
            Token::ElementEnd { end, .. } => match end {
                xmlparser::ElementEnd::Open | xmlparser::ElementEnd::Empty => {
                    let open = stack
                        .last_mut()
                        .ok_or_else(|| Error::Syntax("stray element end".into()))?;
                    let ns = resolve(&scopes, &open.prefix)
                        .ok_or_else(|| Error::UnboundPrefix(open.prefix.clone()))?
                        .to_owned();
                    let mut attrs = Vec::with_capacity(open.raw_attrs.len());
                    for (p, l, v) in open.raw_attrs.drain(..) {
                        let ns = if p.is_empty() {
                            String::new()
                        } else {
                            resolve(&scopes, &p)
                                .ok_or_else(|| Error::UnboundPrefix(p.clone()))?
                                .to_owned()
                        };
                        attrs.push(Attr {
                            ns,
                            name: l,
                            value: v,
                        });
                    }
                    open.element = Some(Element {
                        ns,
                        name: std::mem::take(&mut open.local),
                        attrs,
                        children: Vec::new(),
                    });
                    if matches!(end, xmlparser::ElementEnd::Empty) {
                        close(&mut stack, &mut scopes, &mut root)?;
                    }
                }
                xmlparser::ElementEnd::Close(prefix, local) => {
                    let open = stack
                        .last()
                        .ok_or_else(|| Error::Syntax("stray end tag".into()))?;
                    let same_name = open
                        .element
                        .as_ref()
                        .is_some_and(|e| e.name == local.as_str());
                    if open.prefix != prefix.as_str() || !same_name {
                        return Err(Error::Syntax(format!(
                            "end tag </{}> does not match",
                            local.as_str()
                        )));
                    }
                    close(&mut stack, &mut scopes, &mut root)?;
                }
            },
            Token::Text { text } => {
                push_text(&mut stack, unescape(text.as_str())?)?;
            }
            Token::Cdata { text, .. } => {
                push_text(&mut stack, text.as_str().to_owned())?;
            }
        }
    }
    if !stack.is_empty() {
        return Err(Error::Syntax("unexpected end of document".into()));
    }
    root.ok_or(Error::Syntax("no root element".into()))
}

fn push_text(stack: &mut [Open], text: String) -> Result<(), Error> {
    match stack.last_mut().and_then(|o| o.element.as_mut()) {
        Some(e) => {
            e.children.push(Node::Text(text));
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(Error::Syntax("text outside the root element".into())),
    }
}

fn close(
    stack: &mut Vec<Open>,
    scopes: &mut Vec<(String, String)>,
    root: &mut Option<Element>,
) -> Result<(), Error> {
    let open = stack
        .pop()
        .ok_or_else(|| Error::Syntax("stray end tag".into()))?;
    scopes.truncate(open.ns_marks);
    let el = open
        .element
        .ok_or_else(|| Error::Syntax("element closed before its start tag ended".into()))?;
    match stack.last_mut().and_then(|o| o.element.as_mut()) {
        Some(parent) => parent.children.push(Node::Element(el)),
        None => *root = Some(el),
    }
    Ok(())
}

/// Whether `c` may appear in an XML 1.0 document.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Append `s` escaped for character data. Characters XML cannot carry are dropped.
pub(crate) fn escape_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c if is_xml_char(c) => out.push(c),
            _ => {}
        }
    }
}

/// Append `s` escaped for a double-quoted attribute value.
pub(crate) fn escape_attr(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => {
                let _ = write!(out, "&#{};", c as u32);
            }
            c if is_xml_char(c) => out.push(c),
            _ => {}
        }
    }
}

/// Drop the characters XML cannot carry (what the writers do to free text).
#[cfg(test)]
pub(crate) fn xml_clean(s: &str) -> String {
    s.chars().filter(|&c| is_xml_char(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Element, Error> {
        parse(s.as_bytes(), &Limits::DEFAULT)
    }

    #[test]
    fn namespaces_resolve() {
        let e =
            p(r#"<a xmlns="urn:a" xmlns:b="urn:b"><b:c b:x="1" y="2"/><d xmlns="urn:d"/><e/></a>"#)
                .unwrap();
        assert!(e.is("urn:a", "a"));
        let kids: Vec<_> = e.elements().collect();
        assert!(kids[0].is("urn:b", "c"));
        assert_eq!(kids[0].attr_ns("urn:b", "x"), Some("1"));
        assert_eq!(kids[0].attr("y"), Some("2"));
        assert!(kids[1].is("urn:d", "d"));
        assert!(kids[2].is("urn:a", "e"));
    }

    #[test]
    fn entities_and_cdata() {
        let e = p("<a>x&lt;&amp;&#65;&#x42;<![CDATA[<&>]]></a>").unwrap();
        assert_eq!(e.text(), "x<&AB<&>");
        assert!(matches!(p("<a>&foo;</a>"), Err(Error::Entity(_))));
        assert!(matches!(p("<a>&#0;</a>"), Err(Error::Entity(_))));
        assert!(matches!(
            p("<a>&amp</a>"),
            Err(Error::Entity(_)) | Err(Error::Syntax(_))
        ));
    }

    #[test]
    fn refuses_bad_documents() {
        assert!(matches!(
            p(r#"<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>"#),
            Err(Error::Dtd)
        ));
        assert!(matches!(p("<a><b></a>"), Err(Error::Syntax(_))));
        assert!(matches!(p("<a>"), Err(Error::Syntax(_))));
        assert!(matches!(p("<a/><b/>"), Err(Error::Syntax(_))));
        assert!(matches!(p("<x:a/>"), Err(Error::UnboundPrefix(_))));
        assert!(matches!(p(""), Err(Error::Syntax(_))));
        assert!(matches!(
            parse(&[0xff, 0xfe], &Limits::DEFAULT),
            Err(Error::Utf8 { .. })
        ));
    }

    #[test]
    fn limits() {
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert_eq!(p(&deep), Err(Error::TooDeep { limit: 32 }));
        let many = format!("<a>{}</a>", "<b/>".repeat(3000));
        assert_eq!(p(&many), Err(Error::TooManyElements { limit: 2048 }));
        let attrs: String = (0..70).map(|i| format!(" a{i}='1'")).collect();
        assert_eq!(
            p(&format!("<a{attrs}/>")),
            Err(Error::TooManyAttributes { limit: 64 })
        );
        let big = vec![b' '; 70 * 1024];
        assert!(matches!(
            parse(&big, &Limits::DEFAULT),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn escaping_round_trips() {
        let s = "a<b>&\"'\r\n\t\u{1}z";
        let mut t = String::from("<a x=\"");
        escape_attr(&mut t, s);
        t.push_str("\">");
        escape_text(&mut t, s);
        t.push_str("</a>");
        let e = p(&t).unwrap();
        let clean = xml_clean(s);
        assert_eq!(e.attr("x"), Some(clean.as_str()));
        assert_eq!(e.text(), clean);
    }
}

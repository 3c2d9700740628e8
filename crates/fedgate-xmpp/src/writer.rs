//! Serialising elements and stream headers.
//!
//! Output is always well-formed: `&`, `<`, `>` are escaped in text; attributes are
//! single-quoted with `'`, `&`, `<`, `>` escaped and tab, LF, CR written as character
//! references (so they survive attribute-value normalisation); characters XML 1.0
//! cannot carry (controls other than tab/LF/CR, U+FFFE, U+FFFF) become U+FFFD.

use crate::ns;
use crate::tree::{ElementRef, NodeRef};

/// Namespaces in force where an element is written.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The default namespace in force.
    pub default_ns: &'a str,
    /// Prefixes bound in the enclosing context, `(prefix, namespace)`.
    pub prefixes: &'a [(&'a str, &'a str)],
}

impl Scope<'static> {
    /// No namespace in force: the root element declares its own.
    pub const EMPTY: Scope<'static> = Scope {
        default_ns: "",
        prefixes: &[],
    };
    /// Top level of an s2s stream we opened: default `jabber:server`, `stream` and `db`
    /// prefixes bound.
    pub const SERVER: Scope<'static> = Scope {
        default_ns: ns::SERVER,
        prefixes: &[("stream", ns::STREAM), ("db", ns::DIALBACK)],
    };
    /// Top level of a c2s stream we opened: default `jabber:client`, `stream` bound.
    pub const CLIENT: Scope<'static> = Scope {
        default_ns: ns::CLIENT,
        prefixes: &[("stream", ns::STREAM)],
    };
}

// 1 = needs attention in text, 2 = in attribute values.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = 3;
        i += 1;
    }
    t[b'\n' as usize] = 2;
    t[b'\t' as usize] = 2;
    t[b'&' as usize] = 3;
    t[b'<' as usize] = 3;
    t[b'>' as usize] = 3;
    t[b'\'' as usize] = 2;
    t[0xEF] = 3;
    t
};

#[inline]
fn escape(out: &mut String, s: &str, mask: u8) {
    let b = s.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < b.len() {
        if CLASS[b[i] as usize] & mask == 0 {
            i += 1;
            continue;
        }
        out.push_str(&s[run..i]);
        let c = b[i];
        let mut adv = 1;
        match c {
            b'&' => out.push_str("&amp;"),
            b'<' => out.push_str("&lt;"),
            b'>' => out.push_str("&gt;"),
            b'\'' => out.push_str("&apos;"),
            b'\t' => out.push_str("&#9;"),
            b'\n' if mask == 2 => out.push_str("&#10;"),
            b'\n' => out.push('\n'),
            b'\r' => out.push_str("&#13;"),
            0xEF => {
                // Three-byte sequence; U+FFFE / U+FFFF are not XML characters.
                adv = 3;
                let seq = &s[i..i + 3];
                if seq == "\u{FFFE}" || seq == "\u{FFFF}" {
                    out.push('\u{FFFD}');
                } else {
                    out.push_str(seq);
                }
            }
            _ => out.push('\u{FFFD}'),
        }
        i += adv;
        run = i;
    }
    out.push_str(&s[run..]);
}

/// Appends `s` escaped for character data.
pub fn escape_text(out: &mut String, s: &str) {
    escape(out, s, 1);
}

/// Appends `s` escaped for a single-quoted attribute value.
pub fn escape_attr(out: &mut String, s: &str) {
    escape(out, s, 2);
}

/// Appends the XML of `el` to `out`, declaring namespaces and prefixes not already in
/// force in `scope`.
pub fn write_element(out: &mut String, el: ElementRef<'_>, scope: &Scope<'_>) {
    let mut prefixes: Vec<(&str, &str)> = scope.prefixes.to_vec();
    write_rec(out, el, scope.default_ns, &mut prefixes);
}

fn write_rec<'a>(
    out: &mut String,
    el: ElementRef<'a>,
    default_ns: &str,
    prefixes: &mut Vec<(&'a str, &'a str)>,
) {
    let mark = prefixes.len();
    for (n, v) in el.attrs() {
        if let Some(p) = n.strip_prefix("xmlns:") {
            prefixes.push((p, v));
        }
    }
    out.push('<');
    let mut child_default = default_ns;
    match el.prefix() {
        Some(p) => {
            out.push_str(p);
            out.push(':');
            out.push_str(el.name());
            let bound = prefixes
                .iter()
                .rev()
                .find(|(q, _)| *q == p)
                .map(|(_, u)| *u);
            if bound != Some(el.ns()) {
                out.push_str(" xmlns:");
                out.push_str(p);
                out.push_str("='");
                escape_attr(out, el.ns());
                out.push('\'');
                prefixes.push((p, el.ns()));
            }
        }
        None => {
            out.push_str(el.name());
            if el.ns() != default_ns {
                out.push_str(" xmlns='");
                escape_attr(out, el.ns());
                out.push('\'');
            }
            child_default = el.ns();
        }
    }
    for (n, v) in el.attrs() {
        out.push(' ');
        out.push_str(n);
        out.push_str("='");
        escape_attr(out, v);
        out.push('\'');
    }
    let mut children = el.nodes().peekable();
    if children.peek().is_none() {
        out.push_str("/>");
    } else {
        out.push('>');
        for c in children {
            match c {
                NodeRef::Text(t) => escape_text(out, t),
                NodeRef::Element(e) => write_rec(out, e, child_default, prefixes),
            }
        }
        out.push_str("</");
        if let Some(p) = el.prefix() {
            out.push_str(p);
            out.push(':');
        }
        out.push_str(el.name());
        out.push('>');
    }
    prefixes.truncate(mark);
}

/// The attributes of a stream header we send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeaderOut<'a> {
    /// `from`.
    pub from: Option<&'a str>,
    /// `to`.
    pub to: Option<&'a str>,
    /// `id` (only the receiving entity sets it).
    pub id: Option<&'a str>,
    /// Declare `xmlns:db` (s2s streams that support dialback).
    pub dialback: bool,
    /// `jabber:server` (true) or `jabber:client` (false).
    pub server: bool,
}

/// Appends `<?xml version='1.0'?><stream:stream …>` to `out`.
pub fn write_stream_header(out: &mut String, h: &StreamHeaderOut<'_>) {
    out.push_str("<?xml version='1.0'?><stream:stream xmlns='");
    out.push_str(if h.server { ns::SERVER } else { ns::CLIENT });
    out.push_str("' xmlns:stream='");
    out.push_str(ns::STREAM);
    out.push('\'');
    if h.dialback {
        out.push_str(" xmlns:db='");
        out.push_str(ns::DIALBACK);
        out.push('\'');
    }
    for (n, v) in [("from", h.from), ("to", h.to), ("id", h.id)] {
        if let Some(v) = v {
            out.push(' ');
            out.push_str(n);
            out.push_str("='");
            escape_attr(out, v);
            out.push('\'');
        }
    }
    out.push_str(" version='1.0'>");
}

/// The closing tag of a stream.
pub const STREAM_CLOSE: &str = "</stream:stream>";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Element;

    #[test]
    fn escapes() {
        let mut s = String::new();
        escape_text(&mut s, "a<b>&c\r\n\u{1}\u{FFFF}é\u{FFFD}");
        assert_eq!(s, "a&lt;b&gt;&amp;c&#13;\n\u{FFFD}\u{FFFD}é\u{FFFD}");
        s.clear();
        escape_attr(&mut s, "'\t\n\r\"");
        assert_eq!(s, "&apos;&#9;&#10;&#13;\"");
    }

    #[test]
    fn namespaces_declared_once() {
        let e = Element::builder("message", ns::SERVER)
            .attr("to", "x")
            .child(Element::builder("body", ns::SERVER).text("hi"))
            .child(Element::builder("x", "urn:x").child(Element::builder("y", "urn:x")))
            .child(Element::builder("result", ns::DIALBACK).prefix("db"))
            .build();
        let mut s = String::new();
        write_element(&mut s, e.root(), &Scope::SERVER);
        assert_eq!(
            s,
            "<message to='x'><body>hi</body><x xmlns='urn:x'><y/></x><db:result/></message>"
        );
        assert_eq!(
            e.to_xml(),
            "<message xmlns='jabber:server' to='x'><body>hi</body><x xmlns='urn:x'><y/></x><db:result xmlns:db='jabber:server:dialback'/></message>"
        );
    }

    #[test]
    fn stream_header() {
        let mut s = String::new();
        write_stream_header(
            &mut s,
            &StreamHeaderOut {
                from: Some("a.test"),
                to: Some("b.test"),
                id: None,
                dialback: true,
                server: true,
            },
        );
        assert_eq!(
            s,
            "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='a.test' to='b.test' version='1.0'>"
        );
    }
}

//! Element trees in one arena: a stanza is three allocations (its strings, its nodes,
//! its attributes) however many elements and attributes it has.

use std::fmt;

pub(crate) const NONE: usize = usize::MAX;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Span {
    pub(crate) const EMPTY: Span = Span { start: 0, end: 0 };
    #[inline]
    pub(crate) fn is_empty(self) -> bool {
        self.start == self.end
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) is_text: bool,
    /// Element name, or the text of a text node.
    pub(crate) name: Span,
    pub(crate) prefix: Span,
    pub(crate) ns: Span,
    pub(crate) attrs_start: usize,
    pub(crate) attrs_end: usize,
    pub(crate) first_child: usize,
    pub(crate) last_child: usize,
    pub(crate) next: usize,
}

impl Node {
    pub(crate) fn element(name: Span, prefix: Span, ns: Span, attrs_at: usize) -> Node {
        Node {
            is_text: false,
            name,
            prefix,
            ns,
            attrs_start: attrs_at,
            attrs_end: attrs_at,
            first_child: NONE,
            last_child: NONE,
            next: NONE,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Attr {
    pub(crate) name: Span,
    pub(crate) value: Span,
}

/// An XML element with its attributes and children: a stanza, a nonza such as
/// `<db:result/>`, or any payload.
///
/// Names, namespaces and text are already resolved and decoded. Equality is structural
/// (name, namespace, prefix, attributes in order, children), not by memory layout.
/// `xmlns:p` declarations are kept as attributes so extensions survive verbatim; the
/// default namespace is the element's [`ns`](ElementRef::ns).
#[derive(Clone)]
pub struct Element {
    pub(crate) buf: String,
    pub(crate) nodes: Vec<Node>,
    pub(crate) attrs: Vec<Attr>,
}

/// A borrowed element inside an [`Element`] tree.
#[derive(Clone, Copy)]
pub struct ElementRef<'a> {
    el: &'a Element,
    idx: usize,
}

/// A child of an element.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NodeRef<'a> {
    /// A child element.
    Element(ElementRef<'a>),
    /// Character data (entities decoded; CDATA merged in).
    Text(&'a str),
}

impl Element {
    /// An empty element `name` in namespace `ns`.
    pub fn new(name: &str, ns: &str) -> Element {
        ElementBuilder::new(name, ns).build()
    }

    /// Starts building an element.
    pub fn builder(name: &str, ns: &str) -> ElementBuilder {
        ElementBuilder::new(name, ns)
    }

    pub(crate) fn with_capacity(text: usize, nodes: usize, attrs: usize) -> Element {
        Element {
            buf: String::with_capacity(text),
            nodes: Vec::with_capacity(nodes),
            attrs: Vec::with_capacity(attrs),
        }
    }

    /// The root element.
    #[inline]
    pub fn root(&self) -> ElementRef<'_> {
        ElementRef { el: self, idx: 0 }
    }

    /// Local name of the root element.
    pub fn name(&self) -> &str {
        self.root().name()
    }
    /// Namespace name of the root element.
    pub fn ns(&self) -> &str {
        self.root().ns()
    }
    /// Prefix of the root element, if it was written with one.
    pub fn prefix(&self) -> Option<&str> {
        self.root().prefix()
    }
    /// Value of an attribute of the root element, by qualified name (`to`, `xml:lang`).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.root().attr(name)
    }
    /// Attributes of the root element.
    pub fn attrs(&self) -> Attrs<'_> {
        self.root().attrs()
    }
    /// Child nodes of the root element.
    pub fn nodes(&self) -> Children<'_> {
        self.root().nodes()
    }
    /// Child elements of the root element.
    pub fn elements(&self) -> impl Iterator<Item = ElementRef<'_>> {
        self.root().elements()
    }
    /// First child element with this name and namespace.
    pub fn get_child(&self, name: &str, ns: &str) -> Option<ElementRef<'_>> {
        self.root().get_child(name, ns)
    }
    /// Concatenated text children of the root element.
    pub fn text(&self) -> String {
        self.root().text()
    }
    /// `name` and `ns` match the root element.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.root().is(name, ns)
    }

    #[inline]
    pub(crate) fn s(&self, sp: Span) -> &str {
        &self.buf[sp.start..sp.end]
    }

    #[inline]
    pub(crate) fn push_str(&mut self, s: &str) -> Span {
        let start = self.buf.len();
        self.buf.push_str(s);
        Span {
            start,
            end: self.buf.len(),
        }
    }

    /// Links `child` as last child of `parent`.
    #[inline]
    pub(crate) fn link(&mut self, parent: usize, child: usize) {
        let last = self.nodes[parent].last_child;
        if last == NONE {
            self.nodes[parent].first_child = child;
        } else {
            self.nodes[last].next = child;
        }
        self.nodes[parent].last_child = child;
    }

    /// Appends text to `parent`, merging with a preceding text node.
    pub(crate) fn append_text(&mut self, parent: usize, text: &str) {
        if text.is_empty() {
            return;
        }
        let last = self.nodes[parent].last_child;
        if last != NONE && self.nodes[last].is_text && self.nodes[last].name.end == self.buf.len() {
            self.buf.push_str(text);
            self.nodes[last].name.end = self.buf.len();
            return;
        }
        let sp = self.push_str(text);
        self.push_text_node(parent, sp);
    }

    /// Adds a text node whose text is `sp` (already in `buf`), merging if possible.
    pub(crate) fn push_text_node(&mut self, parent: usize, sp: Span) {
        if sp.is_empty() {
            return;
        }
        let last = self.nodes[parent].last_child;
        if last != NONE && self.nodes[last].is_text && self.nodes[last].name.end == sp.start {
            self.nodes[last].name.end = sp.end;
            return;
        }
        let idx = self.nodes.len();
        self.nodes.push(Node {
            is_text: true,
            name: sp,
            prefix: Span::EMPTY,
            ns: Span::EMPTY,
            attrs_start: 0,
            attrs_end: 0,
            first_child: NONE,
            last_child: NONE,
            next: NONE,
        });
        self.link(parent, idx);
    }

    /// Copies `src` as the last child of `parent`.
    pub(crate) fn append_subtree(&mut self, parent: Option<usize>, src: ElementRef<'_>) -> usize {
        let name = self.push_str(src.name());
        let prefix = match src.prefix() {
            Some(p) => self.push_str(p),
            None => Span::EMPTY,
        };
        let ns = match parent {
            Some(p) if self.s(self.nodes[p].ns) == src.ns() => self.nodes[p].ns,
            _ => self.push_str(src.ns()),
        };
        let at = self.attrs.len();
        for (n, v) in src.attrs() {
            let name = self.push_str(n);
            let value = self.push_str(v);
            self.attrs.push(Attr { name, value });
        }
        let idx = self.nodes.len();
        let mut node = Node::element(name, prefix, ns, at);
        node.attrs_end = self.attrs.len();
        self.nodes.push(node);
        if let Some(p) = parent {
            self.link(p, idx);
        }
        for c in src.nodes() {
            match c {
                NodeRef::Text(t) => self.append_text(idx, t),
                NodeRef::Element(e) => {
                    self.append_subtree(Some(idx), e);
                }
            }
        }
        idx
    }

    /// Sets (or replaces) an attribute of the root element.
    pub fn set_attr(&mut self, name: &str, value: &str) {
        let (s, e) = (self.nodes[0].attrs_start, self.nodes[0].attrs_end);
        if let Some(i) = (s..e).find(|&i| self.s(self.attrs[i].name) == name) {
            let v = self.push_str(value);
            self.attrs[i].value = v;
            return;
        }
        if e == self.attrs.len() {
            let name = self.push_str(name);
            let value = self.push_str(value);
            self.attrs.push(Attr { name, value });
            self.nodes[0].attrs_end += 1;
            return;
        }
        // Root attributes are not at the end: move them there (old entries stay unused).
        let at = self.attrs.len();
        for i in s..e {
            let a = self.attrs[i];
            self.attrs.push(a);
        }
        let name = self.push_str(name);
        let value = self.push_str(value);
        self.attrs.push(Attr { name, value });
        self.nodes[0].attrs_start = at;
        self.nodes[0].attrs_end = self.attrs.len();
    }

    /// Removes an attribute of the root element; returns whether it was present.
    pub fn remove_attr(&mut self, name: &str) -> bool {
        let (s, e) = (self.nodes[0].attrs_start, self.nodes[0].attrs_end);
        if let Some(i) = (s..e).find(|&i| self.s(self.attrs[i].name) == name) {
            for j in i..e - 1 {
                self.attrs[j] = self.attrs[j + 1];
            }
            self.nodes[0].attrs_end -= 1;
            true
        } else {
            false
        }
    }

    /// About how many bytes its XML takes (its text and names plus some markup per
    /// node and attribute): room to reserve before writing it, so that writing does
    /// not grow the buffer step by step.
    pub(crate) fn xml_size_hint(&self) -> usize {
        self.buf.len() + 24 * (self.nodes.len() + self.attrs.len()) + 16
    }

    /// The XML of this element with its namespace declared (`xmlns='…'`).
    pub fn to_xml(&self) -> String {
        let mut s = String::with_capacity(self.xml_size_hint());
        crate::writer::write_element(&mut s, self.root(), &crate::writer::Scope::EMPTY);
        s
    }
}

impl<'a> ElementRef<'a> {
    #[inline]
    fn node(&self) -> &'a Node {
        &self.el.nodes[self.idx]
    }
    /// Local name.
    #[inline]
    pub fn name(&self) -> &'a str {
        self.el.s(self.node().name)
    }
    /// Namespace name (resolved).
    #[inline]
    pub fn ns(&self) -> &'a str {
        self.el.s(self.node().ns)
    }
    /// The prefix the element was written with (`db` in `<db:result/>`).
    #[inline]
    pub fn prefix(&self) -> Option<&'a str> {
        let p = self.node().prefix;
        if p.is_empty() {
            None
        } else {
            Some(self.el.s(p))
        }
    }
    /// `name` and `ns` match.
    #[inline]
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name() == name && self.ns() == ns
    }
    /// Attribute value by qualified name as written (`type`, `xml:lang`, `xmlns:foo`).
    #[inline]
    pub fn attr(&self, name: &str) -> Option<&'a str> {
        let n = self.node();
        self.el.attrs[n.attrs_start..n.attrs_end]
            .iter()
            .find(|a| self.el.s(a.name) == name)
            .map(|a| self.el.s(a.value))
    }
    /// Attributes in document order.
    pub fn attrs(&self) -> Attrs<'a> {
        let n = self.node();
        Attrs {
            el: self.el,
            i: n.attrs_start,
            end: n.attrs_end,
        }
    }
    /// Child nodes in document order.
    pub fn nodes(&self) -> Children<'a> {
        Children {
            el: self.el,
            next: self.node().first_child,
        }
    }
    /// Child elements in document order.
    pub fn elements(self) -> impl Iterator<Item = ElementRef<'a>> + 'a {
        self.nodes().filter_map(|n| match n {
            NodeRef::Element(e) => Some(e),
            NodeRef::Text(_) => None,
        })
    }
    /// First child element with this name and namespace.
    pub fn get_child(&self, name: &str, ns: &str) -> Option<ElementRef<'a>> {
        self.elements().find(|e| e.is(name, ns))
    }
    /// Concatenated text children.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in self.nodes() {
            if let NodeRef::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }
    /// The text if it is exactly one text node (no allocation), else `None`.
    pub fn text_ref(&self) -> Option<&'a str> {
        let mut it = self.nodes();
        match (it.next(), it.next()) {
            (Some(NodeRef::Text(t)), None) => Some(t),
            (None, _) => Some(""),
            _ => None,
        }
    }
    /// Copies this subtree into its own [`Element`].
    pub fn to_owned(&self) -> Element {
        let mut e = Element::with_capacity(64, 4, 4);
        e.append_subtree(None, *self);
        e
    }
    /// The tree this element belongs to.
    pub fn tree(&self) -> &'a Element {
        self.el
    }
}

/// Iterator over attributes as `(qualified name, value)`.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    el: &'a Element,
    i: usize,
    end: usize,
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        if self.i >= self.end {
            return None;
        }
        let a = self.el.attrs[self.i];
        self.i += 1;
        Some((self.el.s(a.name), self.el.s(a.value)))
    }
}

/// Iterator over child nodes.
#[derive(Debug, Clone)]
pub struct Children<'a> {
    el: &'a Element,
    next: usize,
}

impl<'a> Iterator for Children<'a> {
    type Item = NodeRef<'a>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.next == NONE {
            return None;
        }
        let idx = self.next;
        let n = &self.el.nodes[idx];
        self.next = n.next;
        Some(if n.is_text {
            NodeRef::Text(self.el.s(n.name))
        } else {
            NodeRef::Element(ElementRef { el: self.el, idx })
        })
    }
}

impl PartialEq for ElementRef<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.name() == o.name()
            && self.ns() == o.ns()
            && self.prefix() == o.prefix()
            && self.attrs().eq(o.attrs())
            && self.nodes().eq(o.nodes())
    }
}

impl PartialEq for Element {
    fn eq(&self, o: &Self) -> bool {
        self.root() == o.root()
    }
}
impl Eq for Element {}

impl fmt::Debug for ElementRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        crate::writer::write_element(&mut s, *self, &crate::writer::Scope::EMPTY);
        f.write_str(&s)
    }
}
impl fmt::Debug for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.root(), f)
    }
}
impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_xml())
    }
}

/// Builds an [`Element`]: attributes, then children.
#[derive(Debug, Clone)]
pub struct ElementBuilder {
    name: String,
    ns: String,
    prefix: Option<String>,
    attrs: Vec<(String, String)>,
    children: Vec<Child>,
}

#[derive(Debug, Clone)]
enum Child {
    Element(Element),
    Text(String),
}

impl ElementBuilder {
    /// An element `name` in namespace `ns`.
    pub fn new(name: &str, ns: &str) -> Self {
        ElementBuilder {
            name: name.to_owned(),
            ns: ns.to_owned(),
            prefix: None,
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }
    /// Writes the element with this prefix (which must be declared in scope or with an
    /// `xmlns:prefix` attribute; the writer declares it otherwise).
    pub fn prefix(mut self, p: &str) -> Self {
        self.prefix = Some(p.to_owned());
        self
    }
    /// Adds (or replaces) an attribute.
    pub fn attr(mut self, name: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        if let Some(a) = self.attrs.iter_mut().find(|a| a.0 == name) {
            a.1 = value;
        } else {
            self.attrs.push((name.to_owned(), value));
        }
        self
    }
    /// Adds an attribute if `value` is `Some`.
    pub fn attr_opt(self, name: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.attr(name, v),
            None => self,
        }
    }
    /// Appends a child element.
    pub fn child(mut self, e: impl Into<Element>) -> Self {
        self.children.push(Child::Element(e.into()));
        self
    }
    /// Appends text.
    pub fn text(mut self, t: impl Into<String>) -> Self {
        self.children.push(Child::Text(t.into()));
        self
    }
    /// Appends a child element in place (for loops).
    pub fn push_child(&mut self, e: impl Into<Element>) {
        self.children.push(Child::Element(e.into()));
    }
    /// Finishes the element.
    pub fn build(self) -> Element {
        let mut e = Element::with_capacity(64, 1 + self.children.len(), self.attrs.len());
        let name = e.push_str(&self.name);
        let prefix = match &self.prefix {
            Some(p) => e.push_str(p),
            None => Span::EMPTY,
        };
        let ns = e.push_str(&self.ns);
        for (n, v) in &self.attrs {
            let name = e.push_str(n);
            let value = e.push_str(v);
            e.attrs.push(Attr { name, value });
        }
        let mut node = Node::element(name, prefix, ns, 0);
        node.attrs_end = e.attrs.len();
        e.nodes.push(node);
        for c in &self.children {
            match c {
                Child::Text(t) => e.append_text(0, t),
                Child::Element(c) => {
                    e.append_subtree(Some(0), c.root());
                }
            }
        }
        e
    }
}

impl From<ElementBuilder> for Element {
    fn from(b: ElementBuilder) -> Element {
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_navigate() {
        let e = Element::builder("message", "jabber:server")
            .attr("to", "a@b")
            .child(
                Element::builder("body", "jabber:server")
                    .text("hi ")
                    .text("there"),
            )
            .text("x")
            .build();
        assert_eq!(e.name(), "message");
        assert_eq!(e.attr("to"), Some("a@b"));
        let body = e.get_child("body", "jabber:server").unwrap();
        assert_eq!(body.text(), "hi there");
        assert_eq!(body.text_ref(), Some("hi there"));
        assert_eq!(e.nodes().count(), 2);
        let copy = body.to_owned();
        assert_eq!(copy.root(), body);
        assert_ne!(copy, e);
    }

    #[test]
    fn set_and_remove_attr() {
        let mut e = Element::builder("iq", "jabber:server")
            .attr("id", "1")
            .child(Element::builder("q", "urn:x").attr("a", "b"))
            .build();
        e.set_attr("id", "2");
        e.set_attr("type", "get");
        assert_eq!(
            e.attrs().collect::<Vec<_>>(),
            vec![("id", "2"), ("type", "get")]
        );
        assert_eq!(e.elements().next().unwrap().attr("a"), Some("b"));
        assert!(e.remove_attr("id"));
        assert!(!e.remove_attr("id"));
        assert_eq!(e.attrs().collect::<Vec<_>>(), vec![("type", "get")]);
    }
}

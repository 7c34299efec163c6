//! The page as [`protocol::cobrowse`] nodes: ids, cleaning, masking (through [`crate::mask`]).
//!
//! What is left out: `<script>`, `<noscript>`, `<template>`, `<base>`, `<meta http-equiv>`,
//! comments, the widget's `<parley-chat>` host and everything in it, and the content of
//! `data-parley-block` elements. Attributes lose `on*` handlers, `javascript:` URLs, `srcdoc`
//! and the `src` of frames; URLs become absolute; field values are masked unless marked safe.
//! Same-origin stylesheets under [`INLINE_CSS_MAX`] are inlined as `<style>` (the agent may not
//! be able to fetch them: cookies, intranets), bigger or cross-origin ones stay links.
//!
//! Open shadow roots and the documents of same-origin frames are serialized as [`Fragment`]s
//! under their host, with the host's rules; a frame of another origin becomes a `block` of its
//! size. Every shadow root and frame document met is listed in [`Serializer::found`], so the
//! session observes its changes too.

use js_sys::WeakMap;
use protocol::cobrowse::{Fragment, Node as WireNode, NodeId, Size, MAX_DEPTH};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{
    CssStyleSheet, Document, Element, HtmlInputElement, HtmlLinkElement, HtmlSelectElement,
    HtmlTextAreaElement, Node,
};

use crate::mask::{self, Ctx};
use crate::tree;

pub use crate::tree::depth_of;

/// Same-origin stylesheets smaller than this (bytes of CSS text) are inlined.
pub const INLINE_CSS_MAX: usize = 32 * 1024;

/// Attributes that hold one URL.
const URL_ATTRS: &[&str] = &[
    "href",
    "src",
    "action",
    "formaction",
    "poster",
    "cite",
    "background",
    "xlink:href",
    "data",
];

/// Node ids of one page load, and the masked-field count of the item being built.
pub struct Serializer {
    /// Node → id. Weak, so removed nodes are freed; ids are never given twice.
    ids: WeakMap,
    next: NodeId,
    /// Fields masked since the counter was last taken.
    pub masked: u32,
    /// The document's base URL, read again for every item ([`Self::begin`]): URLs are made
    /// absolute against it.
    base: String,
    /// Shadow roots and frame documents serialized since the list was last taken: the session
    /// observes each (a `MutationObserver` on the page's document does not see into them).
    pub found: Vec<Node>,
}

impl Default for Serializer {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether `node` is ever serialized (as itself; its ancestors are not checked).
pub fn serializable(node: &Node) -> bool {
    match node.node_type() {
        Node::TEXT_NODE => node.parent_element().is_none_or(|p| !skipped_tag(&p)),
        Node::ELEMENT_NODE => tree::element(node).is_some_and(|el| !skipped_tag(el)),
        _ => false,
    }
}

fn skipped_tag(el: &Element) -> bool {
    match el.local_name().as_str() {
        "script" | "noscript" | "template" | "base" | "parley-chat" => true,
        "meta" => el.has_attribute("http-equiv"),
        _ => el.has_attribute("data-parley-host"),
    }
}

/// Whether `node` sits in a part of the page that is never serialized below its own level: inside
/// a skipped element, a blocked element, or the widget — in its own tree or around the shadow
/// host or frame that holds it.
pub fn in_hidden_subtree(node: &Node) -> bool {
    let hidden_here = node.parent_element().is_some_and(|el| {
        el.closest("script,noscript,template,parley-chat,[data-parley-host],[data-parley-block]")
            .ok()
            .flatten()
            .is_some()
    });
    hidden_here
        || tree::outer(node).is_some_and(|host| {
            skipped_tag(&host) || host.has_attribute(mask::BLOCK_ATTR) || in_hidden_subtree(&host)
        })
}

fn document() -> Option<Document> {
    web_sys::window().and_then(|w| w.document())
}

/// `url` resolved against the document, or None when it is not one we pass on
/// (`javascript:`, `vbscript:`, unparsable).
pub fn absolute(url: &str, base: &str) -> Option<String> {
    let u = web_sys::Url::new_with_base(url.trim(), base).ok()?;
    let scheme = u.protocol().to_ascii_lowercase();
    (scheme != "javascript:" && scheme != "vbscript:").then(|| u.href())
}

/// `url(...)` references in CSS text made absolute against `base`.
pub fn absolute_css(css: &str, base: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut rest = css;
    while let Some(i) = rest.find("url(") {
        out.push_str(&rest[..i + 4]);
        rest = &rest[i + 4..];
        let Some(end) = rest.find(')') else {
            break;
        };
        let inner = rest[..end].trim();
        let bare = inner.trim_matches(|c| c == '"' || c == '\'');
        if bare.starts_with("data:") {
            out.push_str(inner);
        } else {
            let url = absolute(bare, base).unwrap_or_default();
            out.push('"');
            out.push_str(&url.replace('"', "%22"));
            out.push('"');
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn absolute_srcset(v: &str, base: &str) -> String {
    v.split(',')
        .filter_map(|part| {
            let mut words = part.split_whitespace();
            let url = absolute(words.next()?, base)?;
            let rest: Vec<&str> = words.collect();
            Some(if rest.is_empty() {
                url
            } else {
                format!("{url} {}", rest.join(" "))
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Serializer {
    /// A serializer for a fresh page: ids start at 1.
    pub fn new() -> Self {
        Serializer {
            ids: WeakMap::new(),
            next: 1,
            masked: 0,
            base: String::new(),
            found: Vec::new(),
        }
    }

    /// Starts an item: reads the base URL and resets the masked counter.
    pub fn begin(&mut self) {
        self.base = document()
            .and_then(|d| d.base_uri().ok().flatten())
            .unwrap_or_default();
        self.masked = 0;
    }

    /// The id `node` has, if it was ever serialized.
    pub fn id_of(&self, node: &Node) -> Option<NodeId> {
        let v = self.ids.get(node.as_ref());
        v.as_f64().map(|n| n as NodeId)
    }

    /// The id of `node`, given now if it has none.
    pub fn id(&mut self, node: &Node) -> NodeId {
        if let Some(id) = self.id_of(node) {
            return id;
        }
        let id = self.fresh();
        self.ids.set(node.unchecked_ref(), &JsValue::from(id));
        id
    }

    fn fresh(&mut self) -> NodeId {
        let id = self.next;
        self.next += 1;
        id
    }

    /// Finds the element or text node with id `id` (None when it left the page).
    pub fn find(&self, id: NodeId) -> Option<Node> {
        let doc = document()?;
        let root: Node = doc.document_element()?.into();
        let mut stack = vec![root];
        while let Some(n) = stack.pop() {
            if self.id_of(&n) == Some(id) {
                return Some(n);
            }
            let kids = n.child_nodes();
            for i in (0..kids.length()).rev() {
                if let Some(k) = kids.item(i) {
                    if serializable(&k) {
                        stack.push(k);
                    }
                }
            }
            if let Some(el) = tree::element(&n) {
                if let Some(root) = tree::shadow(el) {
                    stack.push(root.into());
                } else if let Some(root) =
                    tree::frame_document(el).and_then(|d| d.document_element())
                {
                    stack.push(root.into());
                }
            }
        }
        None
    }

    /// Serializes `node` and its subtree, with `ctx` the rules in force at its parent. None for
    /// a node that is never sent.
    pub fn node(&mut self, node: &Node, ctx: Ctx) -> Option<WireNode> {
        self.node_at(node, ctx, depth_of(node))
    }

    /// [`Self::node`] for a node at `depth` in the page (the `<html>` element is at 1). Nodes
    /// deeper than [`MAX_DEPTH`] are left out: the agent's side refuses deeper items, and this
    /// recursion stays within the wasm stack.
    pub fn node_at(&mut self, node: &Node, ctx: Ctx, depth: usize) -> Option<WireNode> {
        if !serializable(node) || depth > MAX_DEPTH {
            return None;
        }
        let id = self.id(node);
        let Some(el) = tree::element(node) else {
            let t = node.text_content().unwrap_or_default();
            return Some(WireNode {
                id,
                tag: None,
                ns: None,
                attrs: Vec::new(),
                text: Some(ctx.text(&t)),
                kids: Vec::new(),
                block: None,
                shadow: None,
                frame: None,
            });
        };
        let tag = el.local_name();
        let ns = (el.namespace_uri().as_deref() == Some("http://www.w3.org/2000/svg"))
            .then(|| "svg".to_owned());
        // A blocked element, or a frame whose document this page cannot read (another origin):
        // a box of its size, nothing else.
        let frame_doc = tree::frame_document(el);
        let unreadable_frame = tree::is_frame(el)
            && frame_doc
                .as_ref()
                .and_then(|d| d.document_element())
                .is_none();
        if el.has_attribute(mask::BLOCK_ATTR) || unreadable_frame {
            return Some(WireNode {
                id,
                tag: Some(tag),
                ns,
                attrs: Vec::new(),
                text: None,
                kids: Vec::new(),
                block: Some(size_of(el)),
                shadow: None,
                frame: None,
            });
        }
        if tree::is_html_tag(el, "link") {
            if let Some(style) = self.inline_stylesheet(el, id) {
                return Some(style);
            }
        }
        let ctx = ctx.child(el);
        let mut attrs = self.attrs(el, ctx);
        if mask::is_field(el) {
            self.field_state(el, ctx, &mut attrs);
        }
        let kids = self.kids(node, ctx, depth + 1);
        // What lives below the element but not among its children: two levels down (the
        // fragment, then its nodes), with the element's rules carried across.
        let shadow = tree::shadow(el).map(|root| {
            let root: Node = root.into();
            self.found.push(root.clone());
            Box::new(Fragment {
                id: self.id(&root),
                kids: self.kids(&root, ctx.across(), depth + 2),
                size: None,
            })
        });
        let frame = frame_doc.and_then(|doc| {
            let html: Node = doc.document_element()?.into();
            let doc: Node = doc.into();
            self.found.push(doc.clone());
            Some(Box::new(Fragment {
                id: self.id(&doc),
                kids: self
                    .node_at(&html, ctx.across(), depth + 2)
                    .into_iter()
                    .collect(),
                size: Some(size_of(el)),
            }))
        });
        Some(WireNode {
            id,
            tag: Some(tag),
            ns,
            attrs,
            text: None,
            kids,
            block: None,
            shadow,
            frame,
        })
    }

    /// The serialized children of `parent` (an element, a shadow root), each at `depth`.
    fn kids(&mut self, parent: &Node, ctx: Ctx, depth: usize) -> Vec<WireNode> {
        let mut kids = Vec::new();
        let children = parent.child_nodes();
        for i in 0..children.length() {
            if let Some(k) = children.item(i) {
                if let Some(n) = self.node_at(&k, ctx, depth) {
                    kids.push(n);
                }
            }
        }
        kids
    }

    /// The cleaned attributes of `el` (its field value is added by [`Self::field_state`]).
    fn attrs(&mut self, el: &Element, ctx: Ctx) -> Vec<(String, String)> {
        let list = el.attributes();
        let mut out = Vec::with_capacity(list.length() as usize);
        for i in 0..list.length() {
            let Some(a) = list.item(i) else { continue };
            if let Some(v) = self.attr(el, &a.name(), &a.value(), ctx) {
                out.push((a.name(), v));
            }
        }
        out
    }

    /// One attribute as it may be shared; None to leave it out. Field `value`s are handled by
    /// [`Self::field_state`] from the live value and never taken from the markup here.
    pub fn attr(&mut self, el: &Element, name: &str, value: &str, ctx: Ctx) -> Option<String> {
        let name = name.to_ascii_lowercase();
        let tag = el.local_name();
        if name.starts_with("on") || name == "srcdoc" || name == "nonce" || name == "integrity" {
            return None;
        }
        if mask::is_field(el) && (name == "value" || name == "checked" || name == "selected") {
            return None;
        }
        if name == "src" && matches!(tag.as_str(), "iframe" | "frame" | "object" | "embed") {
            return None;
        }
        // A frame's URLs are relative to its own document.
        let frame_base = tree::frame_base(el);
        let base = frame_base.as_ref().unwrap_or(&self.base);
        let v = if URL_ATTRS.contains(&name.as_str()) {
            absolute(value, base)?
        } else if name == "srcset" {
            absolute_srcset(value, base)
        } else if name == "style" {
            absolute_css(value, base)
        } else {
            value.to_owned()
        };
        // Whatever survived cleaning still passes the privacy rules, in one place.
        mask::attr(el, &name, v, ctx)
    }

    /// Adds a field's live value (and checked state) to `attrs`, masked per the rules.
    fn field_state(&mut self, el: &Element, ctx: Ctx, attrs: &mut Vec<(String, String)>) {
        let (value, checked) = field_value(el);
        let masked = mask::masks_value(el, ctx);
        if let Some(checked) = checked {
            if !masked && checked {
                attrs.push(("checked".into(), String::new()));
            }
            return;
        }
        if masked {
            if !value.is_empty() {
                self.masked += 1;
            }
            attrs.push(("value".into(), mask::value(&value)));
        } else {
            attrs.push(("value".into(), value));
        }
    }

    /// `<link rel=stylesheet>` of this origin with readable rules under the size limit, as a
    /// `<style>` node (the link's id, its text a fresh one).
    fn inline_stylesheet(&mut self, el: &Element, id: NodeId) -> Option<WireNode> {
        // A `<link>` in the HTML namespace (checked by the caller), of any realm.
        let link: &HtmlLinkElement = el.unchecked_ref();
        if !link
            .rel()
            .to_ascii_lowercase()
            .split_whitespace()
            .any(|r| r == "stylesheet")
        {
            return None;
        }
        let sheet: CssStyleSheet = link.sheet()?.unchecked_into();
        // Cross-origin sheets throw on cssRules: they stay links.
        let rules = sheet.css_rules().ok()?;
        let mut css = String::new();
        for i in 0..rules.length() {
            if let Some(r) = rules.item(i) {
                css.push_str(&r.css_text());
                css.push('\n');
                if css.len() > INLINE_CSS_MAX {
                    return None;
                }
            }
        }
        let href = link.href();
        let media = link.media();
        let text = WireNode {
            id: self.fresh(),
            tag: None,
            ns: None,
            attrs: Vec::new(),
            text: Some(absolute_css(&css, &href)),
            kids: Vec::new(),
            block: None,
            shadow: None,
            frame: None,
        };
        let mut attrs = vec![("data-parley-href".to_owned(), href)];
        if !media.is_empty() {
            attrs.push(("media".into(), media));
        }
        Some(WireNode {
            id,
            tag: Some("style".into()),
            ns: None,
            attrs,
            text: None,
            kids: vec![text],
            block: None,
            shadow: None,
            frame: None,
        })
    }

    /// A field's value as it may be shared, and its checked state when the visitor may share it
    /// (`None` for a masked checkbox: nothing to say). Counts a masked non-empty value.
    pub fn shared_value(&mut self, el: &Element) -> (String, Option<bool>, bool) {
        let ctx = Ctx::of(el);
        let (value, checked) = field_value(el);
        if mask::masks_value(el, ctx) {
            if !value.is_empty() {
                self.masked += 1;
            }
            (mask::value(&value), None, true)
        } else {
            (value, checked, false)
        }
    }
}

/// The size of `el`'s box on the visitor's screen, in whole CSS pixels.
fn size_of(el: &Element) -> Size {
    let r = el.get_bounding_client_rect();
    Size {
        w: r.width().round() as i32,
        h: r.height().round() as i32,
    }
}

/// A field's live value, and `Some(checked)` for checkboxes and radios. Told by tag, not by
/// `dyn_ref`: a same-origin frame's fields belong to another realm.
fn field_value(el: &Element) -> (String, Option<bool>) {
    if tree::is_html_tag(el, "input") {
        let i: &HtmlInputElement = el.unchecked_ref();
        let t = i.type_().to_ascii_lowercase();
        if t == "checkbox" || t == "radio" {
            return (i.value(), Some(i.checked()));
        }
        return (i.value(), None);
    }
    if tree::is_html_tag(el, "textarea") {
        return (el.unchecked_ref::<HtmlTextAreaElement>().value(), None);
    }
    if tree::is_html_tag(el, "select") {
        return (el.unchecked_ref::<HtmlSelectElement>().value(), None);
    }
    (String::new(), None)
}

//! The page as one tree across its boundaries: open shadow roots and same-origin frames.
//!
//! A shadow root's nodes have no parent element at the top, and a frame's nodes live in another
//! document — and in another JS realm, where `dyn_ref`/`dyn_into` (an `instanceof` check against
//! this window's classes) say no to an element that is one. So this crate tells node kinds by node
//! type, namespace and tag ([`element`], [`is_html`]), and crosses a boundary only through
//! [`outer`] (upwards) and [`shadow`] / [`frame_document`] (downwards). Masking rules, hidden
//! regions and depths are computed across them ([`crate::mask::Ctx::of`],
//! [`crate::serialize::in_hidden_subtree`], [`depth_of`]): a region marked on a host or around a
//! frame goes on inside.

use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Document, Element, Node, ShadowRoot};

/// The HTML namespace.
pub const HTML_NS: &str = "http://www.w3.org/1999/xhtml";

/// `node` as an element, whatever realm it comes from.
pub fn element(node: &Node) -> Option<&Element> {
    (node.node_type() == Node::ELEMENT_NODE).then(|| node.unchecked_ref())
}

/// Whether `el` is an HTML element (not SVG or MathML).
pub fn is_html(el: &Element) -> bool {
    el.namespace_uri().as_deref() == Some(HTML_NS)
}

/// Whether `el` is the HTML element `<tag>`.
pub fn is_html_tag(el: &Element, tag: &str) -> bool {
    el.local_name() == tag && is_html(el)
}

fn main_document() -> Option<Document> {
    web_sys::window().and_then(|w| w.document())
}

/// The element the tree holding `node` hangs from: a shadow root's host, or the `<iframe>` of a
/// same-origin frame's document. `None` in the page's own document (and for detached nodes).
pub fn outer(node: &Node) -> Option<Element> {
    let root = node.get_root_node();
    boundary_of(&root)
}

/// The element a shadow root or frame document (`root`) hangs from.
fn boundary_of(root: &Node) -> Option<Element> {
    match root.node_type() {
        Node::DOCUMENT_FRAGMENT_NODE => {
            // A shadow root has a host; any other fragment is detached content.
            let host = js_sys::Reflect::get(root, &JsValue::from_str("host")).ok()?;
            (host.is_object()).then(|| host.unchecked_into())
        }
        Node::DOCUMENT_NODE => {
            let main = main_document()?;
            if root.is_same_node(Some(&main)) {
                return None;
            }
            let doc: &Document = root.unchecked_ref();
            doc.default_view()?.frame_element().ok().flatten()
        }
        _ => None,
    }
}

/// The node above `node` in the page as one tree: its parent, or for a shadow root its host and
/// for a frame's document its `<iframe>`.
pub fn parent(node: &Node) -> Option<Node> {
    node.parent_node()
        .or_else(|| boundary_of(node).map(Node::from))
}

/// `el`'s open shadow root (closed ones are never shared).
pub fn shadow(el: &Element) -> Option<ShadowRoot> {
    el.shadow_root()
}

/// The document of `el` when it is an `<iframe>`/`<frame>` this page may read (same origin,
/// `srcdoc`, `about:blank`); `None` for other elements and for frames of another origin.
pub fn frame_document(el: &Element) -> Option<Document> {
    if !(is_html_tag(el, "iframe") || is_html_tag(el, "frame")) {
        return None;
    }
    let doc = js_sys::Reflect::get(el, &JsValue::from_str("contentDocument")).ok()?;
    doc.is_object().then(|| doc.unchecked_into())
}

/// Whether `el` is an `<iframe>`/`<frame>` (readable or not).
pub fn is_frame(el: &Element) -> bool {
    is_html_tag(el, "iframe") || is_html_tag(el, "frame")
}

/// How deep `node` sits in the page: the root element is at 1, a shadow root or frame document
/// one level below its host, its top nodes one more ([`protocol::cobrowse::MAX_DEPTH`] counts
/// the same way).
pub fn depth_of(node: &Node) -> usize {
    let mut depth = 1;
    let mut top = node.clone();
    while let Some(p) = top.parent_element() {
        depth += 1;
        top = p.into();
    }
    match outer(&top) {
        Some(host) => depth + 1 + depth_of(&host),
        None => depth,
    }
}

/// The base URL of `el`'s document when that is a frame's (not the page's own).
pub fn frame_base(el: &Element) -> Option<String> {
    let doc = el.owner_document()?;
    let main = main_document()?;
    if doc.is_same_node(Some(&main)) {
        return None;
    }
    doc.base_uri().ok().flatten()
}

/// `el.isContentEditable`, read so that it works for elements of any realm and namespace (SVG
/// elements have no such property: false).
pub fn is_content_editable(el: &Element) -> bool {
    js_sys::Reflect::get(el, &JsValue::from_str("isContentEditable"))
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

//! The co-browse mirror's document: builds the visitor's page from a [`Snapshot`] inside the
//! mirror iframe's document and keeps it current with [`Mutations`] and input values.
//!
//! Only DOM calls that create nodes and set attributes or text are used — never `inner_html` —
//! and every tag and attribute passes [`crate::cobrowse::tag_rule`] and
//! [`crate::cobrowse::attr_allowed`] again (the widget cleaned them already). Scripts could not
//! run anyway: the iframe is sandboxed without `allow-scripts` and `/console/mirror.html` is
//! served with `script-src 'none'`; this is the second lock.
//!
//! A shadow root of the visitor's page is built as an open shadow root on the mirror's host
//! element (its `<style>`s stay scoped, its `<slot>`s show the host's children as on the page). A
//! same-origin frame's document is built in a shadow root of a box of the frame's size: one
//! document, so ids, hit tests and the mirror's policy hold inside it too, and nothing is loaded
//! into a nested browsing context.

use std::collections::HashMap;

use protocol::cobrowse::{Fragment, Mutations, Node, NodeId, Size, Snapshot};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Document, Element, ShadowRootInit, ShadowRootMode};

use crate::cobrowse::{attr_allowed, tag_rule, TagRule};

const SVG_NS: &str = "http://www.w3.org/2000/svg";
const XLINK_NS: &str = "http://www.w3.org/1999/xlink";
/// The expando property that carries a mirror node's id, so a hit test can name the element.
const ID_PROP: &str = "__parleyId";
/// Set on the grey boxes that stand in for blocked elements and embedded documents.
pub const BLOCK_ATTR: &str = "data-parley-block";
/// Set on the box that holds a same-origin frame's document.
pub const FRAME_ATTR: &str = "data-parley-frame";

/// The visitor's page, as built in one mirror document.
pub struct MirrorDoc {
    /// The iframe's document the page is built in.
    doc: Document,
    /// Every built node by its id: mutations and highlights address nodes this way.
    nodes: HashMap<NodeId, web_sys::Node>,
    /// The page (snapshot) id.
    pub page: u32,
}

impl MirrorDoc {
    /// Builds `snap` in `doc`, replacing whatever `doc` showed (a previous page included).
    pub fn build(doc: Document, snap: &Snapshot) -> MirrorDoc {
        let mut m = MirrorDoc {
            doc,
            nodes: HashMap::new(),
            page: snap.page,
        };
        if let Some(root) = m.node(&snap.root) {
            match (m.doc.document_element(), as_element(&root)) {
                (Some(old), Some(el)) if el.tag_name().eq_ignore_ascii_case("html") => {
                    let _ = m.doc.replace_child(&root, &old);
                }
                // Not an `<html>` root (not what the widget sends): show it in the body.
                _ => {
                    if let Some(body) = m.doc.body() {
                        body.set_text_content(None);
                        let _ = body.append_child(&root);
                    }
                }
            }
        }
        m.doc.set_title(&snap.title);
        m
    }

    /// The document the page lives in.
    pub fn document(&self) -> &Document {
        &self.doc
    }

    /// The element with id `id`, if it exists and is an element.
    pub fn element(&self, id: NodeId) -> Option<Element> {
        as_element(self.nodes.get(&id)?)
    }

    /// Applies one batch: removes, adds, attributes, texts, in that order. Returns false when the
    /// batch names nodes the mirror does not have (it drifted from the visitor's page: resync).
    pub fn apply(&mut self, m: &Mutations) -> bool {
        let mut consistent = true;
        for id in &m.removes {
            match self.nodes.get(id).cloned() {
                Some(node) => {
                    if let Some(parent) = node.parent_node() {
                        let _ = parent.remove_child(&node);
                    }
                    self.forget(&node);
                }
                None => consistent = false,
            }
        }
        for add in &m.adds {
            let Some(parent) = self.nodes.get(&add.parent).cloned() else {
                consistent = false;
                continue;
            };
            if as_element(&parent).is_some_and(|p| is_block(&p)) {
                continue;
            }
            let Some(node) = self.node(&add.node) else {
                continue;
            };
            let before = add.before.and_then(|b| self.nodes.get(&b).cloned());
            let placed = match before {
                Some(b) if b.parent_node().as_ref() == Some(&parent) => {
                    parent.insert_before(&node, Some(&b))
                }
                _ => parent.append_child(&node),
            };
            if placed.is_err() {
                self.forget(&node);
                consistent = false;
            }
        }
        for a in &m.attrs {
            let Some(el) = self.element(a.id) else {
                consistent = false;
                continue;
            };
            if is_block(&el) {
                continue;
            }
            match &a.value {
                Some(v) => set_attr(&el, &a.name, v),
                None => {
                    let _ = el.remove_attribute(&a.name);
                }
            }
        }
        for t in &m.texts {
            match self.nodes.get(&t.id) {
                Some(node) => node.set_text_content(Some(&t.text)),
                None => consistent = false,
            }
        }
        consistent
    }

    /// A form field's shown value (and checked state for checkboxes and radios).
    pub fn input(&self, id: NodeId, value: &str, checked: Option<bool>) -> bool {
        let Some(el) = self.element(id) else {
            return false;
        };
        let _ = js_sys::Reflect::set(&el, &"value".into(), &value.into());
        if let Some(c) = checked {
            let _ = js_sys::Reflect::set(&el, &"checked".into(), &c.into());
        }
        true
    }

    /// A scrollable element's offset.
    pub fn scroll_element(&self, id: NodeId, x: i32, y: i32) -> bool {
        let Some(el) = self.element(id) else {
            return false;
        };
        el.set_scroll_left(x);
        el.set_scroll_top(y);
        true
    }

    /// The id of the mirror node `node`, or of its nearest ancestor that has one.
    pub fn id_at(&self, node: &web_sys::Node) -> Option<NodeId> {
        let mut cur = Some(node.clone());
        while let Some(n) = cur {
            if let Some(id) = node_id(&n) {
                if self.nodes.contains_key(&id) {
                    return Some(id);
                }
            }
            cur = n.parent_node();
        }
        None
    }

    /// How many nodes the mirror holds (for tests and logs).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the mirror holds no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Builds one serialized node (and its subtree) in the mirror document.
    fn node(&mut self, n: &Node) -> Option<web_sys::Node> {
        let built: web_sys::Node = match &n.tag {
            None => self
                .doc
                .create_text_node(n.text.as_deref().unwrap_or(""))
                .into(),
            Some(tag) => {
                let tag = tag.to_ascii_lowercase();
                let http_equiv = n
                    .attrs
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("http-equiv"));
                let valid = !tag.is_empty()
                    && tag.starts_with(|c: char| c.is_ascii_alphabetic())
                    && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                let rule = if valid {
                    tag_rule(&tag, http_equiv)
                } else {
                    TagRule::Drop
                };
                match rule {
                    // A comment keeps the node's place, so later adds `before` it still land
                    // where the visitor's page has them.
                    TagRule::Drop => self.doc.create_comment("").into(),
                    TagRule::Placeholder => match &n.frame {
                        Some(f) if n.block.is_none() && tag_rule_frame(&tag) => {
                            self.frame_box(f, &n.attrs)?.into()
                        }
                        _ => self.placeholder("div", n.block, &n.attrs)?.into(),
                    },
                    TagRule::Build if n.block.is_some() => {
                        self.placeholder(&tag, n.block, &[])?.into()
                    }
                    TagRule::Build => {
                        let el = if n.ns.as_deref() == Some("svg") {
                            self.doc.create_element_ns(Some(SVG_NS), &tag).ok()?
                        } else {
                            self.doc.create_element(&tag).ok()?
                        };
                        for (k, v) in &n.attrs {
                            set_attr(&el, k, v);
                        }
                        for kid in &n.kids {
                            if let Some(k) = self.node(kid) {
                                let _ = el.append_child(&k);
                            }
                        }
                        if let Some(f) = &n.shadow {
                            self.shadow(&el, f);
                        }
                        if tag == "select" {
                            // A select's `value` is no attribute a browser reads: set it, so a
                            // masked one (no option has the mask as value) shows no choice
                            // instead of its first option.
                            if let Some((_, v)) = n.attrs.iter().find(|(k, _)| k == "value") {
                                let _ = js_sys::Reflect::set(&el, &"value".into(), &v.into());
                            }
                        }
                        el.into()
                    }
                }
            }
        };
        let _ = js_sys::Reflect::set(&built, &ID_PROP.into(), &JsValue::from(n.id));
        self.nodes.insert(n.id, built.clone());
        Some(built)
    }

    /// Builds fragment `f` in an open shadow root of `host` (mapped to the fragment's id, so adds
    /// inside it land there). A host that takes no shadow root gets the nodes as children.
    fn shadow(&mut self, host: &Element, f: &Fragment) {
        let root: web_sys::Node =
            match host.attach_shadow(&ShadowRootInit::new(ShadowRootMode::Open)) {
                Ok(r) => {
                    let _ = js_sys::Reflect::set(&r, &ID_PROP.into(), &JsValue::from(f.id));
                    r.into()
                }
                Err(_) => host.clone().into(),
            };
        for kid in &f.kids {
            if let Some(k) = self.node(kid) {
                let _ = root.append_child(&k);
            }
        }
        self.nodes.insert(f.id, root);
    }

    /// The box that shows a same-origin frame: the frame's size, its document in a shadow root.
    fn frame_box(&mut self, f: &Fragment, attrs: &[(String, String)]) -> Option<Element> {
        let el = self.doc.create_element("div").ok()?;
        let _ = el.set_attribute(FRAME_ATTR, "");
        for (k, v) in attrs {
            if matches!(k.as_str(), "class" | "id" | "title") {
                set_attr(&el, k, v);
            }
        }
        let size = f.size.unwrap_or(Size { w: 300, h: 150 });
        {
            let style = el.unchecked_ref::<web_sys::HtmlElement>().style();
            for (k, v) in [
                ("display", "inline-block".to_owned()),
                ("box-sizing", "border-box".to_owned()),
                ("overflow", "hidden".to_owned()),
                ("vertical-align", "bottom".to_owned()),
                ("width", format!("{}px", size.w.max(0))),
                ("height", format!("{}px", size.h.max(0))),
            ] {
                let _ = style.set_property(k, &v);
            }
        }
        self.shadow(&el, f);
        Some(el)
    }

    /// A grey box of the blocked element's size (or the `width`/`height` an embed asked for).
    fn placeholder(
        &self,
        tag: &str,
        block: Option<Size>,
        attrs: &[(String, String)],
    ) -> Option<Element> {
        let dim = |name: &str, default: i32| {
            attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.trim().trim_end_matches("px").parse::<i32>().ok())
                .unwrap_or(default)
        };
        let size = block.unwrap_or_else(|| Size {
            w: dim("width", 300),
            h: dim("height", 150),
        });
        let el = self.doc.create_element(tag).ok()?;
        let _ = el.set_attribute(BLOCK_ATTR, "");
        {
            // Made by `create_element` in an HTML document: an HTML element (see `as_element`).
            let style = el.unchecked_ref::<web_sys::HtmlElement>().style();
            let _ = style.set_property("display", "inline-block");
            let _ = style.set_property("box-sizing", "border-box");
            let _ = style.set_property("width", &format!("{}px", size.w.max(0)));
            let _ = style.set_property("height", &format!("{}px", size.h.max(0)));
            let _ = style.set_property(
                "background",
                "repeating-linear-gradient(45deg, #d1d5db 0 10px, #e5e7eb 10px 20px)",
            );
        }
        Some(el)
    }

    /// Drops `node` and its subtree (shadow roots included) from the id map.
    fn forget(&mut self, node: &web_sys::Node) {
        if let Some(id) = node_id(node) {
            if self.nodes.get(&id) == Some(node) {
                self.nodes.remove(&id);
            }
        }
        let kids = node.child_nodes();
        for i in 0..kids.length() {
            if let Some(k) = kids.item(i) {
                self.forget(&k);
            }
        }
        if let Some(root) = as_element(node).and_then(|el| el.shadow_root()) {
            self.forget(&root.into());
        }
    }
}

/// `node` as an element. The mirror's nodes belong to the iframe's realm, where `instanceof`
/// against this window's `Element` (what `dyn_ref` checks) is false: check the node type.
fn as_element(node: &web_sys::Node) -> Option<Element> {
    (node.node_type() == web_sys::Node::ELEMENT_NODE).then(|| node.clone().unchecked_into())
}

/// The id a mirror node was built with.
fn node_id(node: &web_sys::Node) -> Option<NodeId> {
    js_sys::Reflect::get(node, &ID_PROP.into())
        .ok()?
        .as_f64()
        .map(|f| f as NodeId)
}

/// Whether a `Placeholder` tag may show a frame's document (an `<iframe>` or `<frame>`, never an
/// `<object>` or `<embed>`).
fn tag_rule_frame(tag: &str) -> bool {
    matches!(tag, "iframe" | "frame")
}

/// Whether `el` is a placeholder (its content and attributes stay hidden).
fn is_block(el: &Element) -> bool {
    el.has_attribute(BLOCK_ATTR)
}

/// Sets one attribute when [`attr_allowed`] lets it; `xlink:` names in their namespace.
fn set_attr(el: &Element, name: &str, value: &str) {
    if !attr_allowed(name, value) {
        return;
    }
    let _ = if let Some(local) = name.strip_prefix("xlink:") {
        el.set_attribute_ns(Some(XLINK_NS), &format!("xlink:{local}"), value)
    } else {
        el.set_attribute(name, value)
    };
}

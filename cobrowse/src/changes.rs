//! MutationObserver records → one [`Mutations`] batch.
//!
//! Removed nodes that had ids are listed as removes; added subtrees are serialized whole (only
//! the topmost added node of a subtree) and listed in reverse document order, each with the id of
//! its next serialized sibling — so when the agent applies them in order, that sibling is
//! already there. Attribute and text changes are deduplicated and dropped when their node is
//! unknown, hidden, or inside an added subtree (already carried by it). A change of a privacy
//! marker (`data-parley-*`, `contenteditable`) re-sends the element whole, with the new rules
//! applied. Every attribute and text goes through [`crate::mask`] like the snapshot's.
//!
//! Shadow roots and frame documents are parents like elements (their fragment's id), and an
//! element can be sent again whole on purpose ([`batch_resending`]: a frame that loaded a new
//! document).

use js_sys::{Array, Set};
use protocol::cobrowse::{Added, AttrChange, Mutations, TextChange};
use web_sys::{Element, MutationRecord, Node};

use crate::mask::{self, Ctx};
use crate::serialize::{in_hidden_subtree, serializable, Serializer};
use crate::tree;

fn connected(n: &Node) -> bool {
    n.is_connected()
}

/// The next sibling of `n` that the agent knows (serialized), if any.
fn next_known(ser: &Serializer, n: &Node) -> Option<u32> {
    let mut s = n.next_sibling();
    while let Some(x) = s {
        if serializable(&x) {
            if let Some(id) = ser.id_of(&x) {
                return Some(id);
            }
        }
        s = x.next_sibling();
    }
    None
}

/// Whether an ancestor of `n` (across shadow roots and frames) is in `set`.
fn has_ancestor_in(n: &Node, set: &Set) -> bool {
    let mut p = tree::parent(n);
    while let Some(x) = p {
        if set.has(x.as_ref()) {
            return true;
        }
        p = tree::parent(&x);
    }
    false
}

/// Builds the batch for `records` (None when nothing the agent sees changed).
pub fn batch(ser: &mut Serializer, page: u32, records: &[MutationRecord]) -> Option<Mutations> {
    batch_resending(ser, page, records, &[])
}

/// [`batch`], with the elements of `resend` sent again whole (removed and added back with what
/// they hold now) when the agent knows them.
pub fn batch_resending(
    ser: &mut Serializer,
    page: u32,
    records: &[MutationRecord],
    resend: &[Element],
) -> Option<Mutations> {
    ser.begin();
    let mut m = Mutations {
        page,
        ..Mutations::default()
    };
    let added = Set::new(&Array::new());
    let mut order: Vec<Node> = Vec::new();
    let add = |n: Node, order: &mut Vec<Node>| {
        if !added.has(n.as_ref()) {
            added.add(n.as_ref());
            order.push(n);
        }
    };
    for el in resend {
        if let Some(id) = ser.id_of(el) {
            if !m.removes.contains(&id) {
                m.removes.push(id);
            }
            add(el.clone().into(), &mut order);
        }
    }
    for r in records {
        let Some(target) = r.target() else { continue };
        match r.type_().as_str() {
            "childList" => {
                let removed = r.removed_nodes();
                for i in 0..removed.length() {
                    if let Some(n) = removed.item(i) {
                        if let Some(id) = ser.id_of(&n) {
                            if !m.removes.contains(&id) {
                                m.removes.push(id);
                            }
                        }
                    }
                }
                let adds = r.added_nodes();
                for i in 0..adds.length() {
                    if let Some(n) = adds.item(i) {
                        add(n, &mut order);
                    }
                }
            }
            "attributes" => {
                let name = r.attribute_name().unwrap_or_default();
                if name.starts_with("data-parley-") || name == "contenteditable" {
                    // The privacy rules of this subtree changed: send it again, whole.
                    if let Some(id) = ser.id_of(&target) {
                        if !m.removes.contains(&id) {
                            m.removes.push(id);
                        }
                    }
                    add(target, &mut order);
                }
            }
            _ => {}
        }
    }
    // Topmost added nodes still in the page, under a known, visible parent.
    let mut tops: Vec<Node> = order
        .into_iter()
        .filter(|n| {
            connected(n)
                && serializable(n)
                && !in_hidden_subtree(n)
                && !has_ancestor_in(n, &added)
                && n.parent_node().is_some_and(|p| ser.id_of(&p).is_some())
        })
        .collect();
    // Reverse document order: a node's next sibling (when new too) goes in first.
    tops.sort_by(|a, b| {
        let pos = a.compare_document_position(b);
        if pos & Node::DOCUMENT_POSITION_FOLLOWING != 0 {
            std::cmp::Ordering::Greater
        } else if pos & Node::DOCUMENT_POSITION_PRECEDING != 0 {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Equal
        }
    });
    for n in &tops {
        // An element, or a shadow root / frame document (the top of a fragment).
        let Some(parent) = n.parent_node() else {
            continue;
        };
        let ctx = Ctx::inside(&parent);
        let Some(parent_id) = ser.id_of(&parent) else {
            continue;
        };
        if let Some(node) = ser.node(n, ctx) {
            m.adds.push(Added {
                parent: parent_id,
                before: next_known(ser, n),
                node,
            });
        }
    }
    let in_added = |n: &Node| added.has(n.as_ref()) || has_ancestor_in(n, &added);
    for r in records {
        let Some(target) = r.target() else { continue };
        match r.type_().as_str() {
            "attributes" => {
                let Some(name) = r.attribute_name() else {
                    continue;
                };
                let Some(el) = tree::element(&target) else {
                    continue;
                };
                let Some(id) = ser.id_of(&target) else {
                    continue;
                };
                if !connected(&target)
                    || in_added(&target)
                    || in_hidden_subtree(&target)
                    || el.has_attribute(mask::BLOCK_ATTR)
                    || m.attrs.iter().any(|a| a.id == id && a.name == name)
                {
                    continue;
                }
                let ctx = Ctx::of(el);
                let value = match el.get_attribute(&name) {
                    Some(v) => match ser.attr(el, &name, &v, ctx) {
                        Some(v) => Some(v),
                        // An attribute we never share: its change is no news.
                        None => continue,
                    },
                    None => None,
                };
                m.attrs.push(AttrChange { id, name, value });
            }
            "characterData" => {
                let Some(id) = ser.id_of(&target) else {
                    continue;
                };
                if !connected(&target)
                    || in_added(&target)
                    || in_hidden_subtree(&target)
                    || m.texts.iter().any(|t| t.id == id)
                {
                    continue;
                }
                let ctx = target
                    .parent_node()
                    .map(|p| Ctx::inside(&p))
                    .unwrap_or_default();
                let text = ctx.text(&target.text_content().unwrap_or_default());
                m.texts.push(TextChange { id, text });
            }
            _ => {}
        }
    }
    m.masked = ser.masked;
    let empty =
        m.removes.is_empty() && m.adds.is_empty() && m.attrs.is_empty() && m.texts.is_empty();
    (!empty).then_some(m)
}

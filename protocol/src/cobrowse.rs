//! Co-browse: the agent sees the visitor's page (masked on the visitor's device) and both sides
//! point at parts of it.
//!
//! Three layers, each with its own types:
//! - **Consent life-cycle**, stored as [`crate::EventBody::Cobrowse`] events in the conversation
//!   (requested → allowed | denied, then stopped), so both transcripts show what happened and a
//!   reloaded page knows whether sharing still lasts.
//! - **The stream**: [`Stream`] items (a page [`Snapshot`], then [`Mutations`], scrolls, pointer,
//!   input changes, highlights) that the widget serializes *after masking* and the relay forwards
//!   verbatim to the conversation's assigned agent only. Items never touch the store.
//! - **Highlights** ([`Highlight`]) that the agent sends back to the visitor's page.
//!
//! Elements are addressed by [`NodeId`]s the widget gives every node of a page when it first
//! serializes it; ids are unique within one `page` (a fresh random id per page load) and never
//! reused there, so they survive dynamic pages where CSS selectors break.

use serde::{Deserialize, Serialize};

/// A node's id within one page: given by the widget's serializer, never reused on that page.
pub type NodeId = u32;

/// The deepest a serialized page may nest, in [`Node`] levels (`<html>` is level 1; a
/// [`Fragment`] counts as one level between its host and its nodes). The widget leaves deeper
/// nodes out; [`decode_item`] refuses items nested deeper than this allows.
///
/// Why not more: serializing, parsing and building a tree recurse per level, and in a browser a
/// wasm call stack is bounded by the JS engine, not only by the wasm stack. Measured in a debug
/// wasm build in Chromium (`cobrowse/tests/browser.rs`): 600 levels pass, 800 exceed Chromium's
/// call stack while serializing. 512 keeps a margin there and more in release builds.
pub const MAX_DEPTH: usize = 512;

/// The deepest JSON nesting [`decode_item`] reads: every [`Node`] level is two (the node's object
/// and its `kids` array), plus the envelope of the deepest item (a mutation's `adds`, its pair
/// arrays of `attrs`).
pub const MAX_JSON_DEPTH: usize = 2 * MAX_DEPTH + 8;

/// Longest highlight note, in characters.
pub const MAX_NOTE_CHARS: usize = 140;

/// Where the consent life-cycle of a conversation stands. Stored as the `state` of a
/// `cobrowse` event; the event's author says who moved it there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CobrowseState {
    /// The assigned agent asked to see the page (author: that agent). The widget asks the visitor.
    Requested,
    /// The visitor allowed it (author: the visitor): the widget starts streaming to the agent
    /// named by the `requested` event, and keeps doing so on every page until `stopped`.
    Allowed,
    /// The visitor said no (author: the visitor).
    Denied,
    /// Sharing ended (author: whoever stopped it; the system when the conversation closed or
    /// changed hands).
    Stopped,
    /// A state added by a later revision: treat it as `stopped`.
    #[serde(other)]
    Unknown,
}

/// A rectangle in whole CSS pixels, in document coordinates (0,0 is the page's top-left corner, not
/// the viewport's) unless said otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rect {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width.
    pub w: i32,
    /// Height.
    pub h: i32,
}

/// What a highlight points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HighlightTarget {
    /// One element, by id: the highlight follows it through scrolling and layout changes.
    Node(NodeId),
    /// A dragged region of the document.
    Rect(Rect),
    /// Remove the current highlight.
    Clear,
}

/// A highlight, drawn on the other side's view of the page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Highlight {
    /// The page (snapshot) the target belongs to; a highlight for another page is ignored.
    pub page: u32,
    /// What to point at.
    pub target: HighlightTarget,
    /// Optional words shown beside it, at most [`MAX_NOTE_CHARS`] characters, plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A width and height in whole CSS pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size {
    /// Width.
    pub w: i32,
    /// Height.
    pub h: i32,
}

/// One serialized node. Elements have `tag`; text nodes have `text` and no `tag`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Its id on this page.
    pub id: NodeId,
    /// Lower-case tag name, for elements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `"svg"` for elements in the SVG namespace (absent for HTML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<String>,
    /// Attributes as `[name, value]` pairs, already cleaned by the widget: no `on*` handlers, no
    /// `javascript:` URLs, URLs made absolute, `value` masked unless the field is marked safe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attrs: Vec<(String, String)>,
    /// A text node's text (masked when inside `data-parley-mask`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Child nodes, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kids: Vec<Node>,
    /// Set for an element marked `data-parley-block`: draw a placeholder this big; it has no
    /// children and no attributes other than its tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<Size>,
    /// Set on a shadow host whose shadow root is open: that root's content, serialized with the
    /// same rules (the host's masking region goes on inside it). Closed roots are never sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Box<Fragment>>,
    /// Set on an `<iframe>` (or `<frame>`) whose document the widget can read (same origin,
    /// `srcdoc`, `about:blank`): that document's root element, serialized with the same rules,
    /// and the frame's box. A frame it cannot read comes as a `block` of its size instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<Box<Fragment>>,
}

/// What lives under a node but is not among its children: an open shadow root's content or a
/// same-origin frame's document. It has an id of its own, so mutations inside it name it as their
/// `parent` (a shadow root's top-level nodes, a frame document's root element).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fragment {
    /// The shadow root's or the frame document's id on this page.
    pub id: NodeId,
    /// Its child nodes, in order (for a frame: the document's root element).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kids: Vec<Node>,
    /// For a frame: the size of its box on the visitor's screen, so the mirror draws it as big.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
}

/// The whole page, sent first and again on every navigation or when the agent asks
/// (`cobrowse_resync`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Page id: random per page load; later items name it.
    pub page: u32,
    /// The page's URL.
    pub url: String,
    /// The page's title.
    pub title: String,
    /// The visitor's viewport.
    pub viewport: Size,
    /// The window's scroll offset.
    pub scroll_x: i32,
    /// The window's scroll offset.
    pub scroll_y: i32,
    /// The `<html>` element and everything in it (scripts and the widget left out).
    pub root: Node,
    /// How many field values were masked in this snapshot (for the visitor's "what was shared").
    pub masked: u32,
}

/// A node inserted under `parent`, before `before` (at the end when absent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Added {
    /// Parent id.
    pub parent: NodeId,
    /// Next sibling's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<NodeId>,
    /// The new subtree.
    pub node: Node,
}

/// An attribute change; `value` absent means removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrChange {
    /// The element.
    pub id: NodeId,
    /// Attribute name.
    pub name: String,
    /// New value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A text node's new text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextChange {
    /// The text node.
    pub id: NodeId,
    /// Its text.
    pub text: String,
}

/// DOM changes batched over a short window, to apply in this order: removes, adds, attrs, texts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mutations {
    /// Page id.
    pub page: u32,
    /// Removed nodes (with their subtrees).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removes: Vec<NodeId>,
    /// Inserted subtrees, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adds: Vec<Added>,
    /// Attribute changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attrs: Vec<AttrChange>,
    /// Text changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub texts: Vec<TextChange>,
    /// Field values masked in this batch.
    #[serde(default)]
    pub masked: u32,
}

/// One item of the co-browse stream, visitor → agent. New kinds may be added: skip unknown ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Stream {
    /// The whole page.
    Snapshot(Snapshot),
    /// Changes since the snapshot.
    Mutations(Mutations),
    /// The window (`id` absent) or a scrollable element scrolled.
    Scroll {
        /// Page id.
        page: u32,
        /// The element, when not the window.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<NodeId>,
        /// Offset.
        x: i32,
        /// Offset.
        y: i32,
    },
    /// The viewport was resized.
    Viewport {
        /// Page id.
        page: u32,
        /// New size.
        size: Size,
    },
    /// The visitor's pointer, in document coordinates (throttled by the widget).
    Pointer {
        /// Page id.
        page: u32,
        /// Position.
        x: i32,
        /// Position.
        y: i32,
    },
    /// A form field's value changed (masked unless the field is marked safe).
    Input {
        /// Page id.
        page: u32,
        /// The field.
        id: NodeId,
        /// The shown value.
        value: String,
        /// For checkboxes and radios.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checked: Option<bool>,
    },
    /// The visitor points at something ("Show the agent").
    Highlight(Highlight),
    /// A kind added later.
    #[serde(other)]
    Unknown,
}

/// Why a stream item's JSON text was refused by [`decode_item`].
#[derive(Debug)]
pub enum DecodeError {
    /// Nested deeper than [`MAX_JSON_DEPTH`]: refused before parsing, so hostile input cannot
    /// exhaust the stack.
    TooDeep {
        /// The limit that was passed.
        limit: usize,
    },
    /// Not a valid item.
    Json(serde_json::Error),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooDeep { limit } => {
                write!(f, "stream item nested deeper than {limit} levels")
            }
            DecodeError::Json(e) => write!(f, "invalid stream item: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Parses one stream item's JSON text (the joined `data` of its frames). Pages nest deeper than
/// serde_json's default recursion limit (128 levels, about 63 nodes), so that limit is lifted and
/// replaced by [`MAX_JSON_DEPTH`], checked first by a scan that does not recurse.
///
/// Parsing recurses per level, so the stack it needs is bounded but not small: the console's wasm
/// has 4 MiB; a native caller of an unoptimized build should give it a thread of 8 MiB or more.
pub fn decode_item(json: &str) -> Result<Stream, DecodeError> {
    if json_depth_exceeds(json, MAX_JSON_DEPTH) {
        return Err(DecodeError::TooDeep {
            limit: MAX_JSON_DEPTH,
        });
    }
    let mut de = serde_json::Deserializer::from_str(json);
    de.disable_recursion_limit();
    let item = Stream::deserialize(&mut de).map_err(DecodeError::Json)?;
    de.end().map_err(DecodeError::Json)?;
    Ok(item)
}

/// Whether the arrays and objects of `json` nest deeper than `limit` (brackets inside strings
/// do not count). Invalid JSON is left for the parser to refuse.
fn json_depth_exceeds(json: &str, limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in json.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A snapshot whose page nests `levels` elements deep.
    fn deep_snapshot(levels: usize) -> String {
        let mut node = Node {
            id: 0,
            tag: None,
            ns: None,
            attrs: Vec::new(),
            text: Some("bottom".into()),
            kids: Vec::new(),
            block: None,
            shadow: None,
            frame: None,
        };
        for i in 1..levels {
            node = Node {
                id: i as NodeId,
                tag: Some("div".into()),
                ns: None,
                attrs: vec![("class".into(), "x".into())],
                text: None,
                kids: vec![node],
                block: None,
                shadow: None,
                frame: None,
            };
        }
        serde_json::to_string(&Stream::Snapshot(Snapshot {
            page: 1,
            url: "https://x.example/".into(),
            title: String::new(),
            viewport: Size { w: 1, h: 1 },
            scroll_x: 0,
            scroll_y: 0,
            root: node,
            masked: 0,
        }))
        .unwrap()
    }

    fn depth(n: &Node) -> usize {
        // Iterative: the point is deep trees.
        let (mut d, mut cur) = (1, n);
        while let Some(k) = cur.kids.first() {
            d += 1;
            cur = k;
        }
        d
    }

    /// Runs `f` on a thread with the stack [`decode_item`] documents: an unoptimized native
    /// build spends far more stack per level than the console's wasm, and the 2 MiB of a test
    /// thread is not enough for [`MAX_DEPTH`] there.
    pub(crate) fn with_big_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_page_as_deep_as_the_widget_sends_decodes() {
        with_big_stack(|| {
            // serde_json's own limit stopped these near 63 levels.
            for levels in [200, MAX_DEPTH] {
                match decode_item(&deep_snapshot(levels)).unwrap() {
                    Stream::Snapshot(s) => assert_eq!(depth(&s.root), levels),
                    other => panic!("not a snapshot: {other:?}"),
                }
            }
        });
    }

    #[test]
    fn deeper_items_and_hostile_nesting_are_refused_with_a_typed_error() {
        with_big_stack(refused);
    }

    fn refused() {
        let too_deep = deep_snapshot(MAX_DEPTH + 10);
        assert!(matches!(
            decode_item(&too_deep),
            Err(DecodeError::TooDeep { .. })
        ));
        // A million open brackets: refused by the scan, no stack overflow.
        let hostile = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        assert!(matches!(
            decode_item(&hostile),
            Err(DecodeError::TooDeep { .. })
        ));
        // Brackets inside strings are text, not nesting.
        let in_text = format!(
            r#"{{"kind":"mutations","page":1,"texts":[{{"id":1,"text":"{}\"{}"}}]}}"#,
            "[".repeat(5_000),
            "{".repeat(5_000)
        );
        assert!(decode_item(&in_text).is_ok());
        assert!(matches!(
            decode_item("{\"kind\":"),
            Err(DecodeError::Json(_))
        ));
    }
}

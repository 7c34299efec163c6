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

//! The privacy rules, applied to every value and text *before* it is serialized: nothing in this
//! crate builds a stream item from a field's value or a masked text without passing here first.
//!
//! - Every form field value (input, textarea, select) and every text inside a `contenteditable`
//!   is masked unless the field or an ancestor carries `data-parley-unmask`.
//! - `type=password` is masked always, `data-parley-unmask` or not.
//! - Text inside `data-parley-mask` is masked (whitespace kept, so the layout stays close).
//! - `data-parley-block` elements are sent as an empty placeholder of their size.
//!
//! Masking keeps the length in characters, so the agent sees that something was typed and
//! roughly how much, never what.

use wasm_bindgen::JsCast;
use web_sys::{Element, HtmlElement};

/// The character that replaces every masked character.
pub const MASK: char = '•';

/// Marks a subtree whose fields the site declares safe to show (never passwords).
pub const UNMASK_ATTR: &str = "data-parley-unmask";
/// Marks a subtree whose text is hidden.
pub const MASK_ATTR: &str = "data-parley-mask";
/// Marks an element replaced by a placeholder of its size.
pub const BLOCK_ATTR: &str = "data-parley-block";

/// A field value, masked: one [`MASK`] per character.
pub fn value(v: &str) -> String {
    v.chars().map(|_| MASK).collect()
}

/// A text, masked: one [`MASK`] per non-whitespace character, whitespace kept.
pub fn text(t: &str) -> String {
    t.chars()
        .map(|c| if c.is_whitespace() { c } else { MASK })
        .collect()
}

/// What the rules say about one place in the page, computed from its ancestors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ctx {
    /// Inside `data-parley-unmask`.
    pub unmask: bool,
    /// Inside `data-parley-mask`.
    pub mask: bool,
    /// Inside an editable region (`contenteditable`).
    pub editable: bool,
    /// Inside a `<textarea>` (its text children are its value).
    pub textarea: bool,
}

impl Ctx {
    /// The rules in force for `el`'s own content (its text children and its value).
    pub fn of(el: &Element) -> Ctx {
        let has = |sel: &str| el.closest(sel).ok().flatten().is_some();
        Ctx {
            unmask: has("[data-parley-unmask]"),
            mask: has("[data-parley-mask]"),
            editable: el
                .dyn_ref::<HtmlElement>()
                .is_some_and(HtmlElement::is_content_editable),
            textarea: el.local_name() == "textarea",
        }
    }

    /// The rules for a child element of the place described by `self`.
    pub fn child(self, el: &Element) -> Ctx {
        Ctx {
            unmask: self.unmask || el.has_attribute(UNMASK_ATTR),
            mask: self.mask || el.has_attribute(MASK_ATTR),
            editable: el
                .dyn_ref::<HtmlElement>()
                .is_some_and(HtmlElement::is_content_editable),
            textarea: el.local_name() == "textarea",
        }
    }

    /// Whether text children here are hidden.
    pub fn hides_text(self) -> bool {
        self.mask || ((self.editable || self.textarea) && !self.unmask)
    }

    /// A text child's text as it may be shared.
    pub fn text(self, t: &str) -> String {
        if self.hides_text() {
            text(t)
        } else {
            t.to_owned()
        }
    }
}

/// Whether the value of field `el` (whose own context is `ctx`) must be masked.
pub fn masks_value(el: &Element, ctx: Ctx) -> bool {
    is_password(el) || ctx.mask || !ctx.unmask
}

/// `<input type=password>`: never shown, whatever the markup says.
pub fn is_password(el: &Element) -> bool {
    el.local_name() == "input"
        && el
            .get_attribute("type")
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("password"))
}

/// Whether `el` is a form field with a value (input, textarea, select).
pub fn is_field(el: &Element) -> bool {
    matches!(el.local_name().as_str(), "input" | "textarea" | "select")
}

/// Whether an attribute may carry what the visitor wrote or private text, so it is masked inside
/// `data-parley-mask` regions.
pub fn private_attr(name: &str) -> bool {
    matches!(
        name,
        "value" | "title" | "alt" | "placeholder" | "aria-label" | "aria-valuetext"
    ) || name.starts_with("data-")
}

//! The privacy rules, applied to every value, text and attribute *before* it is serialized:
//! nothing in this crate builds a stream item from a field's value, a text or an attribute without
//! passing here first (the snapshot, added subtrees, attribute changes, text changes and input
//! items all call [`attr`], [`Ctx::text`] or [`value`]).
//!
//! - Every form field value (input, textarea, select) and every text inside a `contenteditable`
//!   is masked unless the field or an ancestor carries `data-parley-unmask`.
//! - `type=password` is masked always, `data-parley-unmask` or not.
//! - Text inside `data-parley-mask` is masked.
//! - `data-parley-block` elements are sent as an empty placeholder of their size.
//! - Inside a masked or editable region only the layout attributes of [`LAYOUT_ATTRS`] survive
//!   (an allow-list: links, image sources, `alt`, `title`, `aria-*`, `data-*`, ids are dropped),
//!   and `style` keeps only declarations made of plain values ([`style`]).
//! - The options of a masked select keep no `value`, `label` or `selected`: nothing on the wire
//!   tells which one is chosen.
//! - A masked field whose browser-side type would refuse the mask characters (number, date,
//!   range, color, …) is sent as `type=text`, so the agent sees that it is filled.
//!
//! Masking leaks nothing by shape: a masked value or text is [`FIXED`] mask characters when it
//! has any content and empty when empty, whatever its length. The agent sees that a field is
//! filled, and sees the visitor typing as a stream of changes, never how much was typed.

use web_sys::Element;

use crate::tree;

/// The character that replaces masked content.
pub const MASK: char = '•';
/// How many [`MASK`] characters stand for any non-empty masked value or text.
pub const FIXED: usize = 8;

/// Marks a subtree whose fields the site declares safe to show (never passwords).
pub const UNMASK_ATTR: &str = "data-parley-unmask";
/// Marks a subtree whose text is hidden.
pub const MASK_ATTR: &str = "data-parley-mask";
/// Marks an element replaced by a placeholder of its size.
pub const BLOCK_ATTR: &str = "data-parley-block";

/// The attributes that survive inside a masked or editable region: they shape the layout and
/// carry no words (an allow-list: anything not named here is dropped there).
pub const LAYOUT_ATTRS: &[&str] = &[
    "class", "style", "width", "height", "dir", "type", "colspan", "rowspan", "span", "hidden",
    "disabled", "size", "cols", "rows",
];

/// The CSS functions a `style` declaration may use inside a masked region: colours and arithmetic.
/// Anything that loads (`url()`, `image-set()`) or shows text (`attr()`, `counter()`) is not here.
const STYLE_FUNCTIONS: &[&str] = &[
    "rgb",
    "rgba",
    "hsl",
    "hsla",
    "hwb",
    "lab",
    "lch",
    "oklab",
    "oklch",
    "calc",
    "min",
    "max",
    "clamp",
    "var",
    "translate",
    "translatex",
    "translatey",
    "scale",
    "rotate",
];

/// `<input type>`s whose value a browser keeps as it is given: any other type (number, date,
/// range, color, …) would turn the mask into an empty field, so a masked one is sent as `text`.
const TYPES_SHOWING_MASK: &[&str] = &[
    "text", "search", "tel", "url", "email", "password", "checkbox", "radio", "submit", "reset",
    "button", "image", "file", "hidden",
];

/// A field value, masked: [`FIXED`] mask characters when it has any, empty when empty.
pub fn value(v: &str) -> String {
    if v.is_empty() {
        String::new()
    } else {
        MASK.to_string().repeat(FIXED)
    }
}

/// A text, masked: its leading and trailing whitespace kept (so inline text still flows apart)
/// around [`FIXED`] mask characters; a text that is all whitespace stays as it is.
pub fn text(t: &str) -> String {
    let core = t.trim();
    if core.is_empty() {
        return t.to_owned();
    }
    let lead = &t[..t.len() - t.trim_start().len()];
    let trail = &t[t.trim_end().len()..];
    format!("{lead}{}{trail}", value(core))
}

/// What the rules say about one place in the page, computed from its ancestors — across shadow
/// roots and frames too ([`crate::tree`]): a host or a frame inside a region keeps its content in
/// that region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ctx {
    /// Inside `data-parley-unmask`.
    pub unmask: bool,
    /// Inside `data-parley-mask`.
    pub mask: bool,
    /// Inside an editable region (`contenteditable`).
    pub editable: bool,
    /// Inside a shadow root or frame whose host sits in an editable region: everything in it
    /// counts as editable (a browser's `isContentEditable` stops at that boundary; the rule
    /// does not).
    pub editable_host: bool,
    /// Inside a `<textarea>` (its text children are its value).
    pub textarea: bool,
    /// Inside (or on) a `<select>` whose value is masked: its options say nothing of the choice.
    pub masked_select: bool,
}

impl Ctx {
    /// The rules in force for `el`'s own content (its text children, its value, its attributes).
    pub fn of(el: &Element) -> Ctx {
        let has = |sel: &str| el.closest(sel).ok().flatten().is_some();
        let mut ctx = Ctx {
            unmask: has("[data-parley-unmask]"),
            mask: has("[data-parley-mask]"),
            editable: tree::is_content_editable(el),
            editable_host: false,
            textarea: tree::is_html_tag(el, "textarea"),
            masked_select: false,
        };
        if let Some(host) = tree::outer(el.as_ref()) {
            let out = Ctx::of(&host).across();
            ctx.unmask |= out.unmask;
            ctx.mask |= out.mask;
            ctx.editable_host = out.editable_host;
            ctx.editable |= out.editable_host;
            ctx.masked_select = out.masked_select;
        }
        if !ctx.masked_select {
            ctx.masked_select = el
                .closest("select")
                .ok()
                .flatten()
                .is_some_and(|s| masks_value(&s, ctx));
        }
        ctx
    }

    /// The rules in force directly under `parent`: an element's content, or the top of a shadow
    /// root or frame document (the rules of its host, [`Self::across`]).
    pub fn inside(parent: &web_sys::Node) -> Ctx {
        match tree::element(parent) {
            Some(el) => Ctx::of(el),
            None => tree::parent(parent)
                .as_ref()
                .and_then(tree::element)
                .map(|host| Ctx::of(host).across())
                .unwrap_or_default(),
        }
    }

    /// The rules for the content of this element's shadow root or frame document.
    pub fn across(self) -> Ctx {
        let editable = self.editable || self.editable_host;
        Ctx {
            editable,
            editable_host: editable,
            textarea: false,
            ..self
        }
    }

    /// The rules for a child element of the place described by `self`.
    pub fn child(self, el: &Element) -> Ctx {
        let mut ctx = Ctx {
            unmask: self.unmask || el.has_attribute(UNMASK_ATTR),
            mask: self.mask || el.has_attribute(MASK_ATTR),
            editable: self.editable_host || tree::is_content_editable(el),
            editable_host: self.editable_host,
            textarea: tree::is_html_tag(el, "textarea"),
            masked_select: self.masked_select,
        };
        if tree::is_html_tag(el, "select") {
            ctx.masked_select = masks_value(el, ctx);
        }
        ctx
    }

    /// Whether text children here are hidden.
    pub fn hides_text(self) -> bool {
        self.mask || ((self.editable || self.textarea) && !self.unmask)
    }

    /// Whether attributes here are cut to [`LAYOUT_ATTRS`]: masked and editable regions (a
    /// textarea's own attributes are the site's, like any field's; its value is masked apart).
    pub fn restricts_attrs(self) -> bool {
        self.mask || (self.editable && !self.unmask)
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

/// Attribute `name` (lower case) of `el`, already cleaned of scripts and made absolute by the
/// serializer, as it may be shared where the rules are `ctx`: `None` to leave it out.
///
/// Field values and checked states never come through here (they are read live and go through
/// [`value`]).
pub fn attr(el: &Element, name: &str, value: String, ctx: Ctx) -> Option<String> {
    let tag = el.local_name();
    if is_field(el) && name == "type" && masks_value(el, ctx) {
        return Some(masked_type(&value));
    }
    if ctx.masked_select
        && matches!(tag.as_str(), "option" | "optgroup")
        && matches!(name, "value" | "label" | "selected")
    {
        return None;
    }
    if !ctx.restricts_attrs() {
        return Some(value);
    }
    if !LAYOUT_ATTRS.contains(&name) {
        return None;
    }
    if name == "style" {
        return Some(style(&value));
    }
    Some(value)
}

/// The `type` a masked `<input>` is sent with: its own when a browser shows the mask in it,
/// else `text`.
pub fn masked_type(t: &str) -> String {
    let t = t.trim().to_ascii_lowercase();
    if TYPES_SHOWING_MASK.contains(&t.as_str()) {
        t
    } else {
        "text".to_owned()
    }
}

/// A `style` attribute as it may be shared inside a masked region: only declarations of a plain
/// property (not a custom `--*` one) whose value is made of numbers, words, colours and the
/// functions of [`STYLE_FUNCTIONS`]. No strings, no escapes, no comments, nothing that loads.
pub fn style(css: &str) -> String {
    css.split(';')
        .filter_map(|decl| {
            let (prop, val) = decl.split_once(':')?;
            let (prop, val) = (prop.trim().to_ascii_lowercase(), val.trim());
            let plain_prop = !prop.is_empty()
                && !prop.starts_with("--")
                && prop.chars().all(|c| c.is_ascii_lowercase() || c == '-');
            (plain_prop && plain_css_value(val)).then(|| format!("{prop}: {val}"))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether a CSS value uses only plain characters and allowed functions.
fn plain_css_value(v: &str) -> bool {
    if v.is_empty()
        || v.contains("/*")
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " #%.,()+-*/!_".contains(c))
    {
        return false;
    }
    // Every `name(` must be an allowed function; a bare `(` (grouping in calc) has no name.
    let mut word = String::new();
    for c in v.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            word.push(c);
            continue;
        }
        if c == '('
            && !word.is_empty()
            && !STYLE_FUNCTIONS.contains(&word.to_ascii_lowercase().as_str())
        {
            return false;
        }
        word.clear();
    }
    true
}

/// Whether the value of field `el` (whose own context is `ctx`) must be masked.
pub fn masks_value(el: &Element, ctx: Ctx) -> bool {
    is_password(el) || ctx.mask || !ctx.unmask
}

/// `<input type=password>`: never shown, whatever the markup says.
pub fn is_password(el: &Element) -> bool {
    tree::is_html_tag(el, "input")
        && el
            .get_attribute("type")
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("password"))
}

/// Whether `el` is a form field with a value (input, textarea, select).
pub fn is_field(el: &Element) -> bool {
    tree::is_html(el) && matches!(el.local_name().as_str(), "input" | "textarea" | "select")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_texts_have_one_length() {
        assert_eq!(value(""), "");
        assert_eq!(value("4"), value("4242 4242 4242 4242 4242"));
        assert_eq!(value("x").chars().count(), FIXED);
        assert_eq!(text("  a@b.example "), format!("  {} ", value("x")));
        assert_eq!(text(" \n "), " \n ");
        assert_eq!(text("short"), text("a much longer text with words"));
    }

    #[test]
    fn style_keeps_plain_layout_and_drops_what_loads_or_speaks() {
        assert_eq!(
            style("color: rgb(1, 2, 3); width: calc(100% - 4px)"),
            "color: rgb(1, 2, 3); width: calc(100% - 4px)"
        );
        for bad in [
            "background: url(https://x.example/?SECRET)",
            "background-image: image-set(\"a.png\" 1x)",
            "content: \"SECRET\"",
            "--who: SECRET",
            "font-family: \"SECRET\"",
            "width: attr(data-x)",
            "color: red /* SECRET */",
            "background: u\\72l(x)",
        ] {
            assert_eq!(style(bad), "", "{bad}");
        }
        assert_eq!(style("display:block;background:url(x)"), "display: block");
    }

    #[test]
    fn masked_types_show_the_mask() {
        assert_eq!(masked_type("number"), "text");
        assert_eq!(masked_type("DATE"), "text");
        assert_eq!(masked_type("password"), "password");
        assert_eq!(masked_type("checkbox"), "checkbox");
        assert_eq!(masked_type("whatever"), "text");
    }
}

//! What co-browse draws in the widget's shadow root: the sharing indicator (always visible while
//! sharing, with Stop), the highlight overlay, the "Show the agent" picker and the log of what was
//! shared. Styled by one constructed stylesheet (strict CSP works); boxes are placed through the
//! CSSOM, never with `style` attributes. Text from the agent (names, notes) is set as text.
//!
//! Stable DOM hooks (browser tests): `[data-parley-cobrowse=indicator]`, buttons
//! `[data-parley-cobrowse=stop|show|log-open|log-close]`, `[data-parley-cobrowse=picker]`,
//! `[data-parley-cobrowse=log]` (entries are its `li`), `[data-parley-highlight]` (value `agent` or
//! `visitor`; its note is `.parley-cb-note`).

use wasm_bindgen::prelude::*;
use web_sys::{CssStyleSheet, Document, Element, HtmlElement, ShadowRoot};

use crate::i18n::{self, Strings};
use crate::log::{Entry, Log};

const CSS: &str = r#"
.parley-cb-bar{position:fixed;left:50%;top:10px;transform:translateX(-50%);z-index:2147483647;
display:flex;align-items:center;gap:8px;padding:6px 8px 6px 14px;border-radius:20px;background:#1f2328;
color:#fff;font:13px/1.3 system-ui,sans-serif;box-shadow:0 4px 16px rgba(0,0,0,.3);max-width:calc(100vw - 20px);flex-wrap:wrap}
.parley-cb-bar::before{content:"";width:9px;height:9px;border-radius:50%;background:#e5322d;animation:parley-cb-blink 1.6s infinite}
.parley-cb-bar button,.parley-cb-log button{font:inherit;cursor:pointer;border:0;border-radius:14px;padding:5px 11px;background:#3a3f45;color:#fff}
.parley-cb-bar button[data-parley-cobrowse=stop]{background:#e5322d}
.parley-cb-bar button:focus-visible,.parley-cb-log button:focus-visible{outline:2px solid #8ab4f8;outline-offset:2px}
@keyframes parley-cb-blink{50%{opacity:.35}}
.parley-cb-hl{position:fixed;z-index:2147483646;pointer-events:none;box-sizing:border-box;border:3px solid #f59e0b;
border-radius:6px;box-shadow:0 0 0 4px rgba(245,158,11,.35);animation:parley-cb-pulse 1s ease-in-out infinite alternate;transition:opacity .5s}
.parley-cb-hl[data-parley-highlight=visitor]{border-color:#2563eb;box-shadow:0 0 0 4px rgba(37,99,235,.3)}
.parley-cb-fade{opacity:0}
@keyframes parley-cb-pulse{to{box-shadow:0 0 0 10px rgba(245,158,11,.1)}}
.parley-cb-note{position:absolute;left:-3px;top:100%;margin-top:6px;max-width:280px;padding:5px 9px;border-radius:6px;
background:#1f2328;color:#fff;font:13px/1.35 system-ui,sans-serif;white-space:pre-wrap;overflow-wrap:anywhere}
.parley-cb-pick{position:fixed;inset:0;z-index:2147483646;cursor:crosshair;background:rgba(37,99,235,.04)}
.parley-cb-through{pointer-events:none}
.parley-cb-hint{position:fixed;left:50%;top:56px;transform:translateX(-50%);padding:6px 12px;border-radius:8px;background:#2563eb;
color:#fff;font:13px/1.3 system-ui,sans-serif}
.parley-cb-box{position:fixed;box-sizing:border-box;border:2px dashed #2563eb;background:rgba(37,99,235,.08);pointer-events:none}
.parley-cb-log{position:fixed;left:50%;top:60px;transform:translateX(-50%);z-index:2147483647;width:min(520px,calc(100vw - 24px));
max-height:calc(100vh - 120px);overflow:auto;box-sizing:border-box;padding:14px 16px;border-radius:12px;background:#fff;color:#1f2328;
font:13px/1.45 system-ui,sans-serif;box-shadow:0 12px 40px rgba(0,0,0,.25)}
.parley-cb-log h2{margin:0 0 8px;font-size:15px}
.parley-cb-log ol{margin:0 0 10px;padding-left:18px}
.parley-cb-log li{margin:3px 0;overflow-wrap:anywhere}
.parley-cb-log .parley-cb-then{color:#57606a;list-style:none}
[hidden]{display:none!important}
"#;

/// The document (co-browse only runs in a window).
pub fn document() -> Option<Document> {
    web_sys::window().and_then(|w| w.document())
}

/// Creates `<tag class=class>` (with `text` as its text, if any) under `parent`.
pub fn add(
    parent: &web_sys::Node,
    tag: &str,
    class: &str,
    text: &str,
) -> Result<HtmlElement, JsValue> {
    let doc = document().ok_or_else(|| JsValue::from_str("no document"))?;
    let el: HtmlElement = doc.create_element(tag)?.unchecked_into();
    if !class.is_empty() {
        el.set_class_name(class);
    }
    if !text.is_empty() {
        el.set_text_content(Some(text));
    }
    parent.append_child(&el)?;
    Ok(el)
}

/// A button with a hook, under `parent`.
pub fn button(parent: &web_sys::Node, hook: &str, text: &str) -> Result<HtmlElement, JsValue> {
    let b = add(parent, "button", "", text)?;
    b.set_attribute("type", "button")?;
    b.set_attribute("data-parley-cobrowse", hook)?;
    Ok(b)
}

/// Adopts co-browse's stylesheet into `root` (once) and returns it.
pub fn adopt(root: &ShadowRoot) -> Result<CssStyleSheet, JsValue> {
    let sheet = CssStyleSheet::new()?;
    sheet.replace_sync(CSS)?;
    let sheets = js_sys::Array::from(&root.adopted_style_sheets());
    sheets.push(&sheet);
    root.set_adopted_style_sheets(&sheets);
    Ok(sheet)
}

/// Removes `sheet` from `root`'s adopted stylesheets.
pub fn unadopt(root: &ShadowRoot, sheet: &CssStyleSheet) {
    let sheets = js_sys::Array::from(&root.adopted_style_sheets());
    let target: JsValue = sheet.clone().into();
    let kept = sheets.filter(&mut |s, _, _| s != target);
    root.set_adopted_style_sheets(&kept);
}

/// Places a fixed box at viewport coordinates.
pub fn place(el: &HtmlElement, x: f64, y: f64, w: f64, h: f64) {
    let s = el.style();
    let _ = s.set_property("left", &format!("{x}px"));
    let _ = s.set_property("top", &format!("{y}px"));
    let _ = s.set_property("width", &format!("{w}px"));
    let _ = s.set_property("height", &format!("{h}px"));
}

/// "14:05" in local time.
fn clock(ms: f64) -> String {
    let d = js_sys::Date::new(&JsValue::from_f64(ms));
    format!("{:02}:{:02}", d.get_hours(), d.get_minutes())
}

/// The lines of a log, in reading order.
pub fn log_lines(t: &Strings, log: &Log) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for e in &log.entries {
        match e {
            Entry::Start { at, agent } => {
                out.push((format!("{} {}", clock(*at), (t.started)(agent)), false))
            }
            Entry::Page {
                at,
                url,
                bytes,
                masked,
                then,
            } => {
                out.push((
                    format!(
                        "{} {}",
                        clock(*at),
                        (t.page_line)(url, i18n::kilobytes(*bytes), *masked)
                    ),
                    false,
                ));
                if *then != i18n::Counts::default() {
                    out.push(((t.then_line)(then), true));
                }
            }
            Entry::Stop { at } => out.push((format!("{} {}", clock(*at), t.stopped), false)),
        }
    }
    out
}

/// Opens (or redraws) the "What was shared" dialog in `root` for `log`; `sheet`, when given, is
/// a stylesheet adopted just for the dialog, removed when it closes.
pub fn show_log(
    root: &ShadowRoot,
    t: &Strings,
    log: &Log,
    sheet: Option<CssStyleSheet>,
) -> Result<(), JsValue> {
    if let Ok(Some(old)) = root.query_selector("[data-parley-cobrowse=log]") {
        old.remove();
    }
    let dialog = add(root, "section", "parley-cb-log", "")?;
    dialog.set_attribute("data-parley-cobrowse", "log")?;
    dialog.set_attribute("role", "dialog")?;
    dialog.set_attribute("aria-label", t.log)?;
    add(&dialog, "h2", "", t.log)?;
    let lines = log_lines(t, log);
    if lines.is_empty() {
        add(&dialog, "p", "", t.empty)?;
    } else {
        let list = add(&dialog, "ol", "", "")?;
        for (line, then) in lines {
            add(&list, "li", if then { "parley-cb-then" } else { "" }, &line)?;
        }
    }
    let close = button(&dialog, "log-close", t.close)?;
    let d: Element = dialog.clone().into();
    let r = root.clone();
    let cb = Closure::<dyn FnMut()>::new(move || {
        d.remove();
        if let Some(s) = &sheet {
            unadopt(&r, s);
        }
    });
    close.set_onclick(Some(cb.as_ref().unchecked_ref()));
    // Freed with the button: the closure only holds the dialog.
    cb.forget();
    let _ = close.focus();
    Ok(())
}

//! Co-browse on the visitor's side: loaded by the widget's loader (`widget/loader/widget.js`) only
//! after the visitor allowed sharing, never before.
//!
//! ```js
//! const m = await import(base + '/widget/cobrowse.js');
//! await m.default({ module_or_path: base + '/widget/cobrowse_bg.wasm' });
//! const s = m.start(shadowRoot, { lang, agent, conversation,
//!                                 send: (n, data, index, count) => bool, stop: () => {} });
//! s.highlight(frameJson); s.resync(); s.stop();
//! m.showLog(shadowRoot, { lang, conversation });
//! ```
//! [`start`] masks and serializes the page ([`serialize`], rules in [`mask`]), then streams its
//! changes ([`changes`], paced by [`stream`]), draws the sharing indicator, the agent's highlights
//! ([`highlight`]) and the "Show the agent" picker ([`ui`], [`picker`]), and records what it sent
//! ([`log`]). [`Session::stop`] (or the indicator's Stop, which also calls `stop`) tears
//! everything down at once.

pub mod changes;
pub mod highlight;
pub mod i18n;
pub mod log;
pub mod mask;
pub mod picker;
pub mod serialize;
pub mod session;
pub mod stream;
pub mod tree;
pub mod ui;

use wasm_bindgen::prelude::*;
use web_sys::ShadowRoot;

pub use session::Session;

fn text_opt(o: &JsValue, k: &str) -> String {
    js_sys::Reflect::get(o, &JsValue::from_str(k))
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default()
}

/// Starts sharing: snapshot, stream, indicator. `options`: `{lang, agent, conversation, send,
/// stop}`; `send(n, data, index, count)` returns whether the frame went out.
#[wasm_bindgen]
pub fn start(root: ShadowRoot, options: JsValue) -> Result<Session, JsValue> {
    let func = |k: &str| {
        js_sys::Reflect::get(&options, &JsValue::from_str(k))
            .ok()
            .and_then(|v| v.dyn_into::<js_sys::Function>().ok())
    };
    let send = func("send").ok_or_else(|| JsValue::from_str("Parley co-browse: no send"))?;
    Session::start(
        root,
        session::Options {
            lang: text_opt(&options, "lang"),
            agent: text_opt(&options, "agent"),
            conversation: text_opt(&options, "conversation"),
            send,
            stop: func("stop"),
        },
    )
}

/// Opens the "What was shared" log of a conversation (also after sharing stopped).
#[wasm_bindgen(js_name = showLog)]
pub fn show_log(root: ShadowRoot, options: JsValue) -> Result<(), JsValue> {
    let t = i18n::strings(&text_opt(&options, "lang"));
    let log = log::Log::load(&text_opt(&options, "conversation"));
    let sheet = ui::adopt(&root)?;
    ui::show_log(&root, t, &log, Some(sheet))
}

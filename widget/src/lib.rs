//! Parley's visitor chat panel: a Leptos (CSR) app the loader (`loader/widget.js`) mounts into
//! its Shadow DOM on the visitor's first hover, focus or click.
//!
//! The loader does
//! ```js
//! const m = await import(base + '/widget/panel.js');
//! await m.default({ module_or_path: base + '/widget/panel_bg.wasm' });
//! const handle = m.mount(shadowRoot, { base, site, name, lang, agentsOnline,
//!                                      onUnread, onOpen, onMessage });
//! handle.open(); handle.close(); handle.toggle(); handle.reset();
//! handle.identify(token | tokenFunction | { name, email });
//! handle.cobrowseSend(n, data, index, count); handle.cobrowseStop();   // for the co-browse module
//! ```
//! (the options are described in [`host`]). Modules are cut by domain: [`chat`] is the state
//! machine, [`connection`] the socket, [`view`] the DOM, [`i18n`] the words, [`storage`] and
//! [`outbox`] what survives a reload, [`page`] the visitor's page context, [`style`] the CSS,
//! [`wire`] the decoding of relay frames.

pub mod chat;
pub mod connection;
pub mod host;
pub mod i18n;
pub mod outbox;
pub mod page;
pub mod storage;
pub mod style;
pub mod view;
pub mod wire;

use wasm_bindgen::prelude::*;
use web_sys::ShadowRoot;

use chat::Chat;
use host::MountOptions;

/// Mounts the panel into `root` (the loader's open shadow root) and returns its handle.
/// A returning visitor (stored token or unsent messages) is connected at once so the launcher
/// badge counts unread replies; anyone else connects on first open.
#[wasm_bindgen]
pub fn mount(root: ShadowRoot, options: JsValue) -> Result<PanelHandle, JsValue> {
    let opts = MountOptions::from_js(&options);
    style::adopt(&root)?;
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or_else(|| JsValue::from_str("Parley: no document"))?;
    let container = document.create_element("div")?;
    container.set_class_name("parley-root");
    root.append_child(&container)?;
    let name = opts.name.clone();
    let chat = Chat::new(opts);
    let view_chat = chat.clone();
    leptos::mount::mount_to(container.unchecked_into(), move || {
        view::panel(view_chat, name)
    })
    .forget();
    if chat.has_history() {
        chat.start();
    }
    Ok(PanelHandle { chat, root })
}

/// What the loader holds after `mount`; `window.Parley` forwards to it.
#[wasm_bindgen]
pub struct PanelHandle {
    chat: Chat,
    /// To tell whether focus is inside the panel when the page closes it.
    root: ShadowRoot,
}

#[wasm_bindgen]
impl PanelHandle {
    /// Shows the panel (connecting if needed) and focuses the composer.
    pub fn open(&self) {
        self.chat.open();
    }

    /// Hides the panel. Focus returns to the launcher if it was inside the panel.
    pub fn close(&self) {
        let focus_inside = self
            .root
            .active_element()
            .is_some_and(|el| !el.class_list().contains("parley-launcher"));
        self.chat.close(focus_inside);
    }

    /// Opens or closes.
    pub fn toggle(&self) {
        if self.chat.is_open() {
            self.close();
        } else {
            self.open();
        }
    }

    /// Whether the panel is shown.
    #[wasm_bindgen(js_name = isOpen)]
    pub fn is_open(&self) -> bool {
        self.chat.is_open()
    }

    /// Sends one co-browse stream frame (`VisitorFrame::Cobrowse`) for the co-browse module;
    /// false when it could not go (socket down or not sharing): the module then waits for a
    /// `resync`.
    #[wasm_bindgen(js_name = cobrowseSend)]
    pub fn cobrowse_send(&self, n: u32, data: String, index: u32, count: u32) -> bool {
        self.chat.cobrowse_send(n, data, index, count)
    }

    /// The visitor pressed Stop on the sharing indicator: sends `cobrowse_stop`.
    #[wasm_bindgen(js_name = cobrowseStop)]
    pub fn cobrowse_stop(&self) {
        self.chat.cobrowse_stop();
    }

    /// Opened from the loader's greeting bubble: the relay stores rule `rule`'s text as the
    /// bot's first message of the conversation (once).
    pub fn greet(&self, rule: String) {
        self.chat.greet(rule);
    }

    /// `Parley.identify(x)`: a string is a signed identity token from the site's server, a
    /// function returns one (or a promise of one) on every connect; both are verified by the
    /// relay. An object `{name, email}` is kept locally, unverified (it prefills the offline
    /// form).
    pub fn identify(&self, info: JsValue) {
        if let Some(token) = info.as_string() {
            self.chat.identify_signed(chat::Signed::Token(token));
            return;
        }
        if let Some(f) = info.dyn_ref::<js_sys::Function>() {
            self.chat.identify_signed(chat::Signed::Fetch(f.clone()));
            return;
        }
        let field = |k: &str| {
            js_sys::Reflect::get(&info, &JsValue::from_str(k))
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_default()
        };
        self.chat.identify(field("name"), field("email"));
    }

    /// `Parley.reset()`, for the site's logout: forgets this browser's chat (token, unsent
    /// messages, identity) and goes on as a new anonymous visitor.
    pub fn reset(&self) {
        self.chat.reset();
    }
}

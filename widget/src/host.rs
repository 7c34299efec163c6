//! The loader's side of the JS↔wasm interface: the options object given to `mount` and the
//! callbacks through which the panel tells the loader what changed.
//!
//! Options (a plain JS object; unknown fields ignored):
//! `{ base, site, name, lang, agentsOnline, onUnread(n), onOpen(open, restoreFocus), onMessage(detail),
//! onCobrowse(command, arg) }`.
//! Callbacks are always invoked from a fresh microtask, never from inside the panel's own
//! handlers, so a page callback that calls `Parley.open()` back cannot re-enter the panel.

use js_sys::{Function, Reflect};
use protocol::VisitorEvent;
use wasm_bindgen::prelude::*;

use crate::i18n::Lang;

/// What the loader tells the panel.
pub struct MountOptions {
    /// Relay origin the loader came from, e.g. `http://127.0.0.1:8080`.
    pub base: String,
    /// Site key (`data-site`).
    pub site: String,
    /// Site name from `/api/sites/{key}`: the dialog's title and aria-label.
    pub name: String,
    /// Language chosen by the loader (the panel re-checks it: unknown values fall back).
    pub lang: Lang,
    /// Agents online per `/api/sites/{key}`, until the socket's `welcome` says better.
    pub agents_online: Option<u32>,
    /// The loader's callbacks.
    pub host: Host,
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

impl MountOptions {
    /// Reads the options object; missing fields get harmless defaults.
    pub fn from_js(obj: &JsValue) -> Self {
        let text = |k: &str| get(obj, k).as_string().unwrap_or_default();
        let func = |k: &str| get(obj, k).dyn_into::<Function>().ok();
        let browser = web_sys::window().and_then(|w| w.navigator().language());
        let name = text("name");
        MountOptions {
            base: text("base"),
            site: text("site"),
            name: if name.is_empty() { "Chat".into() } else { name },
            lang: Lang::choose(get(obj, "lang").as_string().as_deref(), browser.as_deref()),
            agents_online: get(obj, "agentsOnline")
                .as_f64()
                .filter(|n| *n >= 0.0)
                .map(|n| n as u32),
            host: Host {
                on_unread: func("onUnread"),
                on_open: func("onOpen"),
                on_message: func("onMessage"),
                on_cobrowse: func("onCobrowse"),
            },
        }
    }
}

/// The loader's callbacks (each optional: a missing one is simply not called).
pub struct Host {
    /// `onUnread(count)`: draws the launcher badge.
    on_unread: Option<Function>,
    /// `onOpen(open, restoreFocus)`: flips the launcher's label, and focuses it when asked.
    on_open: Option<Function>,
    /// `onMessage(detail)`: feeds `Parley.on('message')` and the `parley:message` window event.
    on_message: Option<Function>,
    /// `onCobrowse(command, arg)`: drives the co-browse module, which the loader imports on the
    /// first `start` only (never before the visitor allowed sharing). Commands:
    /// `start` `{agent, conversation}`, `stop`, `highlight` (the frame's JSON text), `resync`,
    /// `log` `{conversation}` (open "What was shared").
    on_cobrowse: Option<Function>,
}

fn later(f: &Option<Function>, args: [JsValue; 2]) {
    if let Some(f) = f.clone() {
        wasm_bindgen_futures::spawn_local(async move {
            let [a, b] = args;
            if let Err(e) = f.call2(&JsValue::NULL, &a, &b) {
                web_sys::console::error_2(&JsValue::from_str("Parley: a callback failed"), &e);
            }
        });
    }
}

impl Host {
    /// Tells the loader's co-browse side `command`; `agent` and `conversation` ride in an object
    /// `{agent, conversation}` when given, `raw` is passed as is otherwise.
    pub fn cobrowse(&self, command: &str, conversation: Option<(&str, &str)>, raw: Option<&str>) {
        let arg = match (conversation, raw) {
            (Some((agent, conv)), _) => {
                let o = js_sys::Object::new();
                let _ = Reflect::set(&o, &"agent".into(), &agent.into());
                let _ = Reflect::set(&o, &"conversation".into(), &conv.into());
                o.into()
            }
            (None, Some(r)) => JsValue::from_str(r),
            _ => JsValue::UNDEFINED,
        };
        later(&self.on_cobrowse, [JsValue::from_str(command), arg]);
    }

    /// The unread count changed.
    pub fn unread(&self, count: u32) {
        later(&self.on_unread, [JsValue::from(count), JsValue::UNDEFINED]);
    }

    /// The panel opened or closed; `restore_focus` asks the loader to focus the launcher.
    pub fn opened(&self, open: bool, restore_focus: bool) {
        later(
            &self.on_open,
            [JsValue::from_bool(open), JsValue::from_bool(restore_focus)],
        );
    }

    /// A new message from an agent or a bot arrived live. The detail is
    /// `{conversation_id, seq, at, text, author: {role, id?, name?}}`.
    pub fn message(&self, event: &VisitorEvent, text: &str) {
        if self.on_message.is_none() {
            return;
        }
        let set = |o: &js_sys::Object, k: &str, v: JsValue| {
            let _ = Reflect::set(o, &JsValue::from_str(k), &v);
        };
        let author = js_sys::Object::new();
        set(
            &author,
            "role",
            JsValue::from_str(crate::chat::role_str(event.author.role)),
        );
        if let Some(id) = &event.author.id {
            set(&author, "id", JsValue::from_str(id));
        }
        if let Some(name) = &event.author.name {
            set(&author, "name", JsValue::from_str(name));
        }
        let detail = js_sys::Object::new();
        set(
            &detail,
            "conversation_id",
            JsValue::from_str(&event.conversation_id.0),
        );
        set(&detail, "seq", JsValue::from_f64(event.seq as f64));
        set(&detail, "at", JsValue::from_f64(event.at as f64));
        set(&detail, "text", JsValue::from_str(text));
        set(&detail, "author", author.into());
        let detail: JsValue = detail.into();
        later(&self.on_message, [detail, JsValue::UNDEFINED]);
    }
}

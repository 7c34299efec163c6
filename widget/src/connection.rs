//! The visitor WebSocket: opening it, its callbacks, and the reconnect delay.
//!
//! This module knows nothing about frames; [`crate::chat`] decides what to send and when to
//! reconnect. A [`Socket`] detaches its callbacks when dropped so a dead socket never calls back.

use wasm_bindgen::prelude::*;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

/// What the visitor sees about the connection (`.parley-conn[data-state]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// First attempt, not yet welcomed.
    Connecting,
    /// Welcomed by the relay.
    Online,
    /// Lost and trying again.
    Reconnecting,
    /// The browser says there is no network (or the relay refused our protocol version).
    Offline,
}

impl ConnState {
    /// The `data-state` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Online => "online",
            ConnState::Reconnecting => "reconnecting",
            ConnState::Offline => "offline",
        }
    }
}

/// The visitor socket URL for a relay base URL (`http://h:p` → `ws://h:p/ws/visitor?site=KEY`).
pub fn socket_url(base: &str, site: &str) -> String {
    let base = base.trim_end_matches('/');
    let ws_base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    let site: String = js_sys::encode_uri_component(site).into();
    format!("{ws_base}/ws/visitor?site={site}")
}

/// Delay before reconnect attempt number `attempt` (0-based): exponential from 0.5 s, capped at
/// 10 s, with "equal jitter" (between half and all of it) so that a relay restart is not met by
/// every visitor at the same instant.
pub fn backoff_ms(attempt: u32, random: f64) -> u32 {
    let full = 500u32.saturating_mul(1u32 << attempt.min(5)).min(10_000);
    let half = full / 2;
    half + (f64::from(half) * random.clamp(0.0, 1.0)) as u32
}

type Handlers = (
    Closure<dyn FnMut()>,
    Closure<dyn FnMut(MessageEvent)>,
    Closure<dyn FnMut(CloseEvent)>,
);

/// An open (or opening) WebSocket with its callbacks.
pub struct Socket {
    ws: WebSocket,
    /// Kept alive as long as the socket may call them; dropped (after detaching) with it.
    _handlers: Handlers,
}

impl Socket {
    /// Opens a socket. `on_close` receives the close code (1006 when the connection failed).
    pub fn open(
        url: &str,
        on_open: impl FnMut() + 'static,
        mut on_text: impl FnMut(String) + 'static,
        mut on_close: impl FnMut(u16) + 'static,
    ) -> Result<Socket, JsValue> {
        let ws = WebSocket::new(url)?;
        let open = Closure::<dyn FnMut()>::new(on_open);
        let message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(text) = e.data().as_string() {
                on_text(text);
            }
        });
        let close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| on_close(e.code()));
        ws.set_onopen(Some(open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(close.as_ref().unchecked_ref()));
        Ok(Socket {
            ws,
            _handlers: (open, message, close),
        })
    }

    /// Whether frames can be sent now.
    pub fn is_open(&self) -> bool {
        self.ws.ready_state() == WebSocket::OPEN
    }

    /// Sends a text frame; false when the socket is not open.
    pub fn send(&self, text: &str) -> bool {
        self.is_open() && self.ws.send_with_str(text).is_ok()
    }

    /// Stops every callback and closes the socket.
    pub fn detach(&self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.detach();
    }
}

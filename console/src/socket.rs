//! The agent WebSocket (`/ws/agent` on the page's own host): connects, decodes frames with the
//! protocol crate, and reconnects with exponential backoff and jitter until stopped.
//!
//! One socket per page, held in a thread-local (the browser is single-threaded), so components
//! can send with [`send`] without threading a handle through props.

use std::cell::RefCell;

use protocol::{decode, encode, AgentFrame, ToAgent};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

/// What happened to the connection, for the UI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketEvent {
    /// The socket opened and `hello` was sent.
    Opened,
    /// The socket closed (or never opened); a reconnect is scheduled.
    Closed {
        /// The close code (1006 when the connection failed).
        code: u16,
    },
}

/// Delay before reconnect attempt number `attempt` (0-based): 500 ms doubling up to 15 s, then
/// "equal jitter" — between half and all of it — so that many consoles dropped by one relay
/// restart do not come back in the same millisecond. `rand01` is a uniform number in [0, 1).
pub fn backoff_ms(attempt: u32, rand01: f64) -> u32 {
    let cap: u32 = 15_000;
    let base = 500u32.saturating_mul(1u32 << attempt.min(10)).min(cap);
    let half = base / 2;
    half + (f64::from(half) * rand01.clamp(0.0, 1.0)) as u32
}

type FrameHandler = Box<dyn Fn(ToAgent)>;
type EventHandler = Box<dyn Fn(SocketEvent)>;

/// One live WebSocket and the JS callbacks attached to it (kept alive as long as it is).
struct Conn {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Conn {
    /// Detaches the callbacks so a socket being dropped can no longer call into freed closures.
    fn detach(&self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
    }
}

#[derive(Default)]
struct State {
    conn: Option<Conn>,
    on_frame: Option<FrameHandler>,
    on_event: Option<EventHandler>,
    /// Failed attempts since the last `welcome`, for the backoff.
    attempt: u32,
    /// Bumped by [`start`] and [`stop`]: timers and callbacks of an older generation do nothing.
    generation: u32,
    running: bool,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Starts the socket: `on_frame` gets every decoded frame, `on_event` every open and close.
/// Replaces a socket already running.
pub fn start(on_frame: impl Fn(ToAgent) + 'static, on_event: impl Fn(SocketEvent) + 'static) {
    stop();
    let generation = STATE.with_borrow_mut(|s| {
        s.on_frame = Some(Box::new(on_frame));
        s.on_event = Some(Box::new(on_event));
        s.attempt = 0;
        s.running = true;
        s.generation
    });
    connect(generation);
}

/// Closes the socket for good (logout, unmount).
pub fn stop() {
    let old = STATE.with_borrow_mut(|s| {
        s.generation = s.generation.wrapping_add(1);
        s.running = false;
        s.on_frame = None;
        s.on_event = None;
        s.conn.take()
    });
    if let Some(conn) = old {
        conn.detach();
        let _ = conn.ws.close_with_code(1000);
    }
}

/// The connection is healthy (a `welcome` arrived): the next drop reconnects quickly again.
pub fn mark_healthy() {
    STATE.with_borrow_mut(|s| s.attempt = 0);
}

/// Sends a frame if the socket is open. Returns false when it was dropped (offline): callers
/// rely on the model re-sending what matters after the next `welcome`.
pub fn send(frame: &AgentFrame) -> bool {
    STATE.with_borrow(|s| match &s.conn {
        Some(c) if c.ws.ready_state() == WebSocket::OPEN => {
            c.ws.send_with_str(&encode(frame)).is_ok()
        }
        _ => false,
    })
}

fn socket_url() -> Option<String> {
    let location = web_sys::window()?.location();
    let scheme = if location.protocol().ok()? == "https:" {
        "wss"
    } else {
        "ws"
    };
    Some(format!("{scheme}://{}/ws/agent", location.host().ok()?))
}

fn emit(event: SocketEvent) {
    // Take the handler out while calling it, so it may call `send`/`stop` without a double borrow.
    let handler = STATE.with_borrow_mut(|s| s.on_event.take());
    if let Some(h) = handler {
        h(event);
        STATE.with_borrow_mut(|s| {
            if s.on_event.is_none() && s.running {
                s.on_event = Some(h);
            }
        });
    }
}

fn connect(generation: u32) {
    let current = STATE.with_borrow(|s| s.running && s.generation == generation);
    if !current {
        return;
    }
    let ws = socket_url().and_then(|url| WebSocket::new(&url).ok());
    let Some(ws) = ws else {
        schedule_reconnect(generation);
        return;
    };

    let on_open = Closure::<dyn FnMut()>::new(move || {
        let _ = send(&crate::state::Model::hello());
        emit(SocketEvent::Opened);
    });
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
        let Some(text) = e.data().as_string() else {
            return;
        };
        match decode::<ToAgent>(&text) {
            Ok(frame) => {
                let handler = STATE.with_borrow_mut(|s| s.on_frame.take());
                if let Some(h) = handler {
                    h(frame);
                    STATE.with_borrow_mut(|s| {
                        if s.on_frame.is_none() && s.running {
                            s.on_frame = Some(h);
                        }
                    });
                }
            }
            Err(err) => {
                web_sys::console::warn_1(&format!("parley: bad frame: {}", err.detail).into())
            }
        }
    });
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
        // The closed socket stays in STATE (detached) until the next connect replaces it: dropping
        // it here would free this very closure while it runs.
        if let Some(c) = STATE.with_borrow(|s| s.conn.as_ref().map(|c| c.ws.clone())) {
            c.set_onopen(None);
            c.set_onmessage(None);
        }
        emit(SocketEvent::Closed { code: e.code() });
        schedule_reconnect(generation);
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));

    let old = STATE.with_borrow_mut(|s| {
        s.conn.replace(Conn {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    });
    if let Some(old) = old {
        old.detach();
    }
}

fn schedule_reconnect(generation: u32) {
    let delay = STATE.with_borrow_mut(|s| {
        if !s.running || s.generation != generation {
            return None;
        }
        let d = backoff_ms(s.attempt, js_sys::Math::random());
        s.attempt = s.attempt.saturating_add(1);
        Some(d)
    });
    if let Some(d) = delay {
        gloo_timers::callback::Timeout::new(d, move || connect(generation)).forget();
    }
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        assert_eq!(backoff_ms(0, 0.0), 250);
        assert_eq!(backoff_ms(0, 0.999), 499);
        assert_eq!(backoff_ms(3, 0.0), 2_000);
        assert_eq!(backoff_ms(30, 0.0), 7_500);
        assert!(backoff_ms(30, 0.999) < 15_000);
    }
}

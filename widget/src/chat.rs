//! The visitor's conversation as a state machine: socket lifecycle, frames in and out, the
//! timeline, the outbox, unread counts and typing. The view only reads the [`Ui`] signals and
//! calls the public methods of [`Chat`].
//!
//! Borrow discipline: `State` lives in a `RefCell`; no method calls page JavaScript while it
//! holds a borrow (host callbacks are deferred to a microtask, see [`crate::host`]), and sockets
//! are dropped in a later task so a socket is never freed from inside its own callback.

use std::cell::RefCell;
use std::rc::Rc;

use gloo_timers::callback::{Interval, Timeout};
use leptos::prelude::*;
use protocol::cobrowse::CobrowseState;
use protocol::timeline::{Applied, Outbox, Timeline};
use protocol::{
    encode, validate_text, Author, ClientId, Consent, ConversationId, ErrorCode, ErrorFrame,
    PageContext, QuickReply, Role, Seq, ToVisitor, VisitorBody, VisitorEvent, VisitorFrame,
    MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use wasm_bindgen::prelude::*;

use crate::connection::{backoff_ms, socket_url, ConnState, Socket};
use crate::host::{Host, MountOptions};
use crate::i18n::Lang;
use crate::outbox;
use crate::page;
use crate::storage::{Store, READ, TOKEN};
use crate::wire;

/// How long an agent's "typing" stays shown without a refresh (their client re-sends every
/// couple of seconds while typing; a lost "stopped" frame must not leave it on forever).
const THEIR_TYPING_MS: u32 = 8_000;
/// Our "typing" goes quiet after this much idleness.
const OUR_TYPING_IDLE_MS: u32 = 3_000;
/// At most one "typing: true" per this many milliseconds.
const OUR_TYPING_EVERY_MS: f64 = 2_000.0;

/// One line of the message list, ready to render.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Stable key: a visitor message keeps its key from ack to event, so it is not redrawn.
    pub key: String,
    /// `class` attribute (`parley-msg`, plus `parley-pending` / `parley-failed` / `parley-sys`).
    pub class: &'static str,
    /// `data-role`.
    pub role: &'static str,
    /// `data-kind` for system lines (`joined`, `left`, `closed`).
    pub kind: Option<&'static str>,
    /// `data-seq`; absent while unacknowledged.
    pub seq: Option<Seq>,
    /// Sender and time ("Mina · 14:05"); absent on system lines.
    pub meta: Option<String>,
    /// The text, rendered as text.
    pub text: String,
    /// "Sending…" or why the message failed.
    pub note: Option<&'static str>,
    /// Quick replies: only on the bot's message while it is the latest thing in the
    /// conversation (an answer to an older question would be confusing).
    pub buttons: Vec<QuickReply>,
    /// "Read more" target of a bot answer, already checked by [`wire::safe_link`].
    pub link: Option<String>,
    /// Co-browse controls on this line: `ask` (the consent card's Allow / Deny) or `log`
    /// ("What was shared").
    pub cb: Option<&'static str>,
    /// Follows a message by the same sender: its sender line is not repeated (the time stays
    /// in the row's `title`).
    pub cont: bool,
}

/// The reactive state the view reads. Signals are `Copy` handles.
#[derive(Clone, Copy)]
pub struct Ui {
    /// Whether the panel is shown.
    pub open: RwSignal<bool>,
    /// Connection state for `.parley-conn`.
    pub conn: RwSignal<ConnState>,
    /// The message list.
    pub items: RwSignal<Vec<Item>>,
    /// Agents online (None until known): 0 shows `.parley-notice`.
    pub agents_online: RwSignal<Option<u32>>,
    /// "Mina is typing…" while an agent types.
    pub typing: RwSignal<Option<String>>,
    /// The latest incoming message, for the aria-live region.
    pub announce: RwSignal<String>,
    /// The conversation is closed and not rated yet: show the rating form.
    pub rate: RwSignal<bool>,
    /// "You are #2 in line · about 3 min" while waiting for a person.
    pub queue: RwSignal<Option<String>>,
    /// Nobody can answer (outside hours or no agent online; on bot-first sites only after the
    /// hand-off): the composer asks for an email and sends `leave_message`.
    pub away: RwSignal<bool>,
}

/// A send the relay has acknowledged but whose event has not arrived yet.
struct Acked {
    client_id: ClientId,
    text: String,
    seq: Seq,
    at: f64,
}

/// A send the relay refused for good.
struct Failed {
    client_id: ClientId,
    text: String,
    reason: &'static str,
}

/// Where the signed identity token comes from.
#[derive(Clone)]
pub enum Signed {
    /// One token (it expires within minutes: sent in the next `hello` only, since the relay
    /// then knows this browser as that user).
    Token(String),
    /// A page function returning a fresh token (or a promise of one), asked on every connect.
    Fetch(js_sys::Function),
}

/// How long a page's token function may take before `hello` goes without it.
const FETCH_TOKEN_MS: u32 = 5_000;

#[derive(Default)]
struct State {
    /// The socket has been started (on open, on send, or because a token was stored).
    started: bool,
    /// The visitor opened the panel or sent (or did so on an earlier visit): only then is
    /// anything written to localStorage.
    consented: bool,
    token: Option<String>,
    timeline: Timeline<VisitorEvent>,
    outbox: Outbox,
    acked: Vec<Acked>,
    failed: Vec<Failed>,
    socket: Option<Socket>,
    /// `welcome` received on the current socket: frames other than `hello` may be sent.
    welcomed: bool,
    attempt: u32,
    /// The relay refused our protocol version: stop reconnecting.
    stopped: bool,
    reconnect: Option<Timeout>,
    /// Conversation and seq the relay's `welcome` named: events up to it are replays, not news.
    replay_upto: (Option<ConversationId>, Seq),
    /// Newest event seen with the panel open.
    read: (Option<ConversationId>, Seq),
    unread: u32,
    /// The context the relay last heard.
    sent_ctx: Option<PageContext>,
    typing_on: bool,
    typing_at: f64,
    typing_idle: Option<Timeout>,
    their_typing: Option<Timeout>,
    /// Name and email from `Parley.identify({name, email})`, kept locally (unverified: they
    /// prefill the offline form and are never sent as who the visitor is).
    identity: Option<(String, String)>,
    /// The page's signed identity (`Parley.identify(token)`, `data-identity`, or a function
    /// that returns a fresh token): sent in `hello`, where the relay verifies it.
    signed: Option<Signed>,
    /// The loader was told to start co-browse (and not told to stop since).
    cb_on: bool,
    /// The visitor pressed Stop; until the relay's `stopped` event arrives, sharing stays off
    /// (and the stop is sent again after a reconnect).
    cb_stop: bool,
    /// A rating went out on this socket: the form stays hidden until its event (or the next
    /// `welcome`, which shows it again if the rating was lost).
    rated: bool,
    /// The relay's last `available: false`.
    unavailable: bool,
    /// The site's bot answers first (from `welcome`).
    bot_first: bool,
    /// The email of the visitor's `leave_message`: unsent messages are resent with it.
    leave_email: Option<String>,
    /// A greeting rule to tell the relay about once welcomed (opened from its bubble).
    greet: Option<String>,
}

struct Inner {
    lang: Lang,
    url: String,
    store: Store,
    host: Host,
    ui: Ui,
    st: RefCell<State>,
}

/// The visitor's chat. Cheap to clone (one shared state).
#[derive(Clone)]
pub struct Chat(Rc<Inner>);

fn now() -> f64 {
    js_sys::Date::now()
}

/// "14:05" in the visitor's local time.
pub fn clock(ms: f64) -> String {
    let d = js_sys::Date::new(&JsValue::from_f64(ms));
    format!("{:02}:{:02}", d.get_hours(), d.get_minutes())
}

pub(crate) fn role_str(role: Role) -> &'static str {
    match role {
        Role::Visitor => "visitor",
        Role::Agent => "agent",
        Role::Bot => "bot",
        Role::System => "system",
    }
}

/// The text of an event worth showing as a message (unknown kinds are stored as empty ones).
fn shown_text(e: &VisitorEvent) -> Option<&str> {
    e.message_text().filter(|t| !t.is_empty())
}

fn incoming(e: &VisitorEvent) -> bool {
    matches!(e.author.role, Role::Agent | Role::Bot) && shown_text(e).is_some()
        || matches!(
            e.body,
            VisitorBody::Cobrowse {
                state: CobrowseState::Requested
            }
        )
}

/// Where co-browse stands in `events`, by the one consent rule the relay and the console use
/// (`protocol::consent`: a close, a transfer, a requeue or another agent's take ends it), and
/// the name of the agent concerned (asking, or shared with).
pub fn sharing(events: &[VisitorEvent]) -> (Consent, String) {
    let consent = Consent::of(events);
    let name = consent
        .agent()
        .and_then(|agent| {
            events.iter().rev().find(|e| {
                e.author.id.as_deref() == Some(agent)
                    && matches!(
                        e.body,
                        VisitorBody::Cobrowse {
                            state: CobrowseState::Requested
                        }
                    )
            })
        })
        .and_then(|e| e.author.name.clone())
        .unwrap_or_default();
    (consent, name)
}

/// Calls the page's token function: its string (or the string its promise resolves to) within
/// [`FETCH_TOKEN_MS`], else None (the `hello` then goes without identity).
async fn fetch_token(f: &js_sys::Function) -> Option<String> {
    let v = f.call0(&JsValue::NULL).ok()?;
    if let Some(s) = v.as_string() {
        return Some(s);
    }
    let answer = js_sys::Promise::resolve(&v);
    let timeout = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(
                &resolve,
                FETCH_TOKEN_MS as i32,
            );
        }
    });
    let first = js_sys::Promise::race(&js_sys::Array::of2(&answer, &timeout));
    wasm_bindgen_futures::JsFuture::from(first)
        .await
        .ok()?
        .as_string()
}

fn encode_read(read: &(Option<ConversationId>, Seq)) -> String {
    format!(
        "{}:{}",
        read.1,
        read.0.as_ref().map(|c| c.0.as_str()).unwrap_or("")
    )
}

fn decode_read(text: &str) -> (Option<ConversationId>, Seq) {
    let (seq, conv) = text.split_once(':').unwrap_or((text, ""));
    let conv = (!conv.is_empty()).then(|| ConversationId(conv.to_owned()));
    (conv, seq.parse().unwrap_or(0))
}

impl Chat {
    /// A chat for these options; nothing connects or is stored until [`Chat::start`] / open.
    pub fn new(opts: MountOptions) -> Self {
        let store = Store::new(&opts.site);
        let token = store.get(TOKEN).filter(|t| !t.is_empty());
        let outbox = outbox::load(&store);
        let read = store.get(READ).map(|r| decode_read(&r)).unwrap_or_default();
        let ui = Ui {
            open: RwSignal::new(false),
            conn: RwSignal::new(ConnState::Connecting),
            items: RwSignal::new(Vec::new()),
            agents_online: RwSignal::new(opts.agents_online),
            typing: RwSignal::new(None),
            announce: RwSignal::new(String::new()),
            rate: RwSignal::new(false),
            queue: RwSignal::new(None),
            away: RwSignal::new(false),
        };
        let state = State {
            consented: token.is_some() || !outbox.pending().is_empty(),
            token,
            outbox,
            read,
            ..State::default()
        };
        let chat = Chat(Rc::new(Inner {
            lang: opts.lang,
            url: socket_url(&opts.base, &opts.site),
            store,
            host: opts.host,
            ui,
            st: RefCell::new(state),
        }));
        chat.refresh();
        chat
    }

    /// The signals the view reads.
    pub fn ui(&self) -> Ui {
        self.0.ui
    }

    /// The panel's language.
    pub fn lang(&self) -> Lang {
        self.0.lang
    }

    /// Whether a returning visitor should be connected at once (live messages, unread badge).
    pub fn has_history(&self) -> bool {
        let st = self.0.st.borrow();
        st.token.is_some() || !st.outbox.pending().is_empty()
    }

    /// Connects (once) and starts watching the page for navigation.
    pub fn start(&self) {
        {
            let mut st = self.0.st.borrow_mut();
            if st.started {
                return;
            }
            st.started = true;
        }
        self.watch_page();
        self.connect();
    }

    fn watch_page(&self) {
        let me = self.clone();
        Interval::new(1_000, move || me.check_context()).forget();
        let Some(window) = web_sys::window() else {
            return;
        };
        let listen = |name: &str, f: Box<dyn FnMut()>| {
            let cb = Closure::<dyn FnMut()>::wrap(f);
            let _ = window.add_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
            cb.forget();
        };
        for name in ["popstate", "hashchange", "resize"] {
            let me = self.clone();
            listen(name, Box::new(move || me.check_context()));
        }
        let me = self.clone();
        listen("online", Box::new(move || me.network_back()));
        let me = self.clone();
        listen(
            "offline",
            Box::new(move || {
                if !me.0.st.borrow().welcomed {
                    me.0.ui.conn.set(ConnState::Offline);
                }
            }),
        );
    }

    fn network_back(&self) {
        let retry = {
            let mut st = self.0.st.borrow_mut();
            let idle = st.socket.is_none() && st.started && !st.stopped;
            if idle {
                st.reconnect = None;
                st.attempt = 0;
            }
            idle
        };
        if retry {
            self.connect();
        }
    }

    fn connect(&self) {
        let mut st = self.0.st.borrow_mut();
        if st.socket.is_some() || st.stopped {
            return;
        }
        st.reconnect = None;
        let (a, b, c) = (self.clone(), self.clone(), self.clone());
        match Socket::open(
            &self.0.url,
            move || a.on_open(),
            move |text| b.on_text(&text),
            // Every close is answered alike (reconnect with backoff; 1001 from a stopping relay
            // included), so the code is not needed here.
            move |_code| c.on_closed(),
        ) {
            Ok(sock) => st.socket = Some(sock),
            Err(e) => {
                web_sys::console::error_2(&JsValue::from_str("Parley: cannot open socket"), &e);
                drop(st);
                self.on_closed();
                return;
            }
        }
        let state = if st.attempt == 0 {
            ConnState::Connecting
        } else {
            ConnState::Reconnecting
        };
        drop(st);
        if self.0.ui.conn.get_untracked() != ConnState::Offline || state == ConnState::Connecting {
            self.0.ui.conn.set(state);
        }
    }

    fn on_open(&self) {
        let signed = self.0.st.borrow().signed.clone();
        match signed {
            None => self.hello(None),
            Some(Signed::Token(t)) => self.hello(Some(t)),
            Some(Signed::Fetch(f)) => {
                let me = self.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    let token = fetch_token(&f).await;
                    me.hello(token);
                });
            }
        }
    }

    fn hello(&self, identity: Option<String>) {
        let ctx = page::current(&self.0.store);
        let mut st = self.0.st.borrow_mut();
        if st.welcomed {
            return;
        }
        let last = st.timeline.last_seq();
        let hello = VisitorFrame::Hello {
            identity,
            v: PROTOCOL_VERSION,
            token: st.token.clone(),
            conversation_id: st.timeline.conversation_id().filter(|_| last > 0).cloned(),
            last_seq: (last > 0).then_some(last),
            context: ctx.clone(),
        };
        if let Some(sock) = &st.socket {
            sock.send(&encode(&hello));
        }
        st.sent_ctx = Some(ctx);
    }

    fn on_closed(&self) {
        let delay = {
            let mut st = self.0.st.borrow_mut();
            if let Some(sock) = st.socket.take() {
                sock.detach();
                // Freed later: this may run inside the socket's own close callback.
                wasm_bindgen_futures::spawn_local(async move { drop(sock) });
            }
            st.welcomed = false;
            st.typing_on = false;
            st.their_typing = None;
            if st.stopped {
                return;
            }
            let delay = backoff_ms(st.attempt, js_sys::Math::random());
            st.attempt = st.attempt.saturating_add(1);
            delay
        };
        let online = web_sys::window().is_none_or(|w| w.navigator().on_line());
        self.0.ui.typing.set(None);
        self.0.ui.conn.set(if online {
            ConnState::Reconnecting
        } else {
            ConnState::Offline
        });
        let me = self.clone();
        let timer = Timeout::new(delay, move || me.connect());
        self.0.st.borrow_mut().reconnect = Some(timer);
    }

    /// Drops the socket and connects again at once (to fill a seq gap).
    fn reconnect_now(&self) {
        {
            let mut st = self.0.st.borrow_mut();
            if let Some(sock) = st.socket.take() {
                sock.detach();
                wasm_bindgen_futures::spawn_local(async move { drop(sock) });
            }
            st.welcomed = false;
        }
        self.connect();
    }

    fn send_frame(&self, frame: &VisitorFrame) -> bool {
        let st = self.0.st.borrow();
        match &st.socket {
            Some(sock) if st.welcomed => sock.send(&encode(frame)),
            _ => false,
        }
    }

    fn on_text(&self, text: &str) {
        let Some(frame) = wire::decode(text) else {
            web_sys::console::warn_2(
                &JsValue::from_str("Parley: ignored a frame"),
                &JsValue::from_str(text),
            );
            return;
        };
        match frame {
            ToVisitor::Welcome {
                token,
                conversation_id,
                last_seq,
                recovered,
                agents_online,
                available,
                bot_first,
                user_id,
                ..
            } => {
                {
                    let mut st = self.0.st.borrow_mut();
                    st.unavailable = !available;
                    st.bot_first = bot_first;
                    if user_id.is_some() && matches!(st.signed, Some(Signed::Token(_))) {
                        // Spent: this browser's token now leads to the user.
                        st.signed = None;
                    }
                }
                self.on_welcome(token, conversation_id, last_seq, recovered, agents_online)
            }
            ToVisitor::Event(e) => self.on_event(e),
            ToVisitor::Ack { client_id, seq, .. } => {
                {
                    let mut st = self.0.st.borrow_mut();
                    if let Some(p) = st.outbox.settle(&client_id) {
                        outbox::persist_settle(&self.0.store, &client_id);
                        let held = st.timeline.events().iter().any(|e| e.seq == seq);
                        if !held {
                            st.acked.push(Acked {
                                client_id,
                                text: p.text,
                                seq,
                                at: now(),
                            });
                        }
                    }
                }
                self.refresh();
            }
            ToVisitor::Typing { author, active } => self.on_their_typing(author, active),
            ToVisitor::Presence {
                agents_online,
                available,
                ..
            } => {
                self.0.st.borrow_mut().unavailable = !available;
                self.0.ui.agents_online.set(Some(agents_online));
                self.refresh();
            }
            ToVisitor::CobrowseHighlight { .. } => self.cobrowse_forward("highlight", text),
            ToVisitor::CobrowseResync => self.cobrowse_forward("resync", text),
            ToVisitor::Error(e) => self.on_error(e),
            ToVisitor::Queue { position, wait_ms } => {
                let line = (position > 0).then(|| self.0.lang.queue(position, wait_ms));
                self.0.ui.queue.set(line);
            }
        }
    }

    /// Hands a co-browse frame to the module, while sharing.
    fn cobrowse_forward(&self, command: &str, text: &str) {
        if self.0.st.borrow().cb_on {
            self.0.host.cobrowse(command, None, Some(text));
        }
    }

    /// Starts or stops the co-browse module to match the conversation's latest co-browse state
    /// (only once a replay is complete, so a replayed `allowed`…`stopped` never flickers).
    fn sync_cobrowse(&self) {
        let mut st = self.0.st.borrow_mut();
        let (consent, agent) = sharing(st.timeline.events());
        let want = consent.sharing_with().is_some() && !st.cb_stop;
        if want == st.cb_on {
            return;
        }
        st.cb_on = want;
        let conv = st
            .timeline
            .conversation_id()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        drop(st);
        if want {
            let agent = if agent.is_empty() {
                self.0.lang.strings().agent
            } else {
                &agent
            };
            self.0.host.cobrowse("start", Some((agent, &conv)), None);
        } else {
            self.0.host.cobrowse("stop", None, None);
        }
    }

    /// The visitor answered the consent card.
    pub fn cobrowse_answer(&self, allow: bool) {
        self.send_frame(&VisitorFrame::CobrowseAnswer { allow });
    }

    /// The visitor pressed Stop on the sharing indicator (the module already stopped itself).
    pub fn cobrowse_stop(&self) {
        {
            let mut st = self.0.st.borrow_mut();
            st.cb_stop = true;
            st.cb_on = false;
        }
        self.send_frame(&VisitorFrame::CobrowseStop);
    }

    /// Sends one co-browse stream frame for the module; false when it could not go (no socket,
    /// or not sharing).
    pub fn cobrowse_send(&self, n: u32, data: String, index: u32, count: u32) -> bool {
        self.0.st.borrow().cb_on
            && self.send_frame(&VisitorFrame::Cobrowse {
                n,
                data,
                index,
                count,
            })
    }

    /// Opens the log of what was shared in this conversation.
    pub fn cobrowse_log(&self) {
        let conv = self
            .0
            .st
            .borrow()
            .timeline
            .conversation_id()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        self.0.host.cobrowse("log", Some(("", &conv)), None);
    }

    fn on_welcome(
        &self,
        token: String,
        conversation_id: Option<ConversationId>,
        last_seq: Seq,
        recovered: bool,
        agents_online: u32,
    ) {
        let resend: Vec<VisitorFrame> = {
            let mut st = self.0.st.borrow_mut();
            if st.consented && st.token.as_deref() != Some(token.as_str()) {
                self.0.store.set(TOKEN, &token);
            }
            st.token = Some(token);
            if !recovered {
                st.timeline.reset();
                st.acked.clear();
            }
            st.replay_upto = (conversation_id, last_seq);
            st.welcomed = true;
            st.rated = false;
            st.attempt = 0;
            let email = st.leave_email.clone();
            let mut frames: Vec<VisitorFrame> = st
                .outbox
                .pending()
                .iter()
                .map(|p| message_frame(p.client_id.clone(), p.text.clone(), email.clone()))
                .collect();
            if let Some(rule) = st.greet.take() {
                frames.insert(0, VisitorFrame::Greeting { rule });
            }
            frames
        };
        self.0.ui.conn.set(ConnState::Online);
        self.0.ui.agents_online.set(Some(agents_online));
        // A `queue` frame follows while the conversation still waits.
        self.0.ui.queue.set(None);
        for f in &resend {
            self.send_frame(f);
        }
        let (cb_on, cb_stop, replayed) = {
            let st = self.0.st.borrow();
            (st.cb_on, st.cb_stop, st.timeline.last_seq() >= last_seq)
        };
        if cb_stop {
            self.send_frame(&VisitorFrame::CobrowseStop);
        }
        if cb_on {
            // The socket was down: the agent's mirror needs the whole page again.
            self.0.host.cobrowse("resync", None, None);
        }
        self.refresh();
        self.recount();
        if replayed {
            self.sync_cobrowse();
        }
    }

    fn on_event(&self, e: VisitorEvent) {
        let applied = self.0.st.borrow_mut().timeline.apply(e.clone());
        match applied {
            Applied::Appended => {}
            Applied::Duplicate => return,
            Applied::Gap { .. } => {
                self.reconnect_now();
                return;
            }
        }
        let (live, replayed) = {
            let mut st = self.0.st.borrow_mut();
            if let VisitorBody::Cobrowse { state } = e.body {
                if state != CobrowseState::Allowed {
                    st.cb_stop = false;
                }
            }
            if let (
                Role::Visitor,
                VisitorBody::Message {
                    client_id: Some(cid),
                    ..
                },
            ) = (e.author.role, &e.body)
            {
                if st.outbox.settle(cid).is_some() {
                    outbox::persist_settle(&self.0.store, cid);
                }
                st.acked.retain(|a| &a.client_id != cid);
            }
            let (conv, upto) = &st.replay_upto;
            let other = conv.as_ref() != Some(&e.conversation_id);
            (other || e.seq > *upto, other || e.seq >= *upto)
        };
        if incoming(&e) {
            if let Some(text) = shown_text(&e) {
                let who = e.author.name.clone().unwrap_or_default();
                if live {
                    self.0.ui.announce.set(if who.is_empty() {
                        text.to_owned()
                    } else {
                        format!("{who}: {text}")
                    });
                    self.0.host.message(&e, text);
                }
            }
            self.0.st.borrow_mut().their_typing = None;
            self.0.ui.typing.set(None);
        }
        self.refresh();
        self.recount();
        if replayed {
            self.sync_cobrowse();
        }
    }

    fn on_their_typing(&self, author: Author, active: bool) {
        if author.role == Role::Visitor {
            return;
        }
        if !active {
            self.0.st.borrow_mut().their_typing = None;
            self.0.ui.typing.set(None);
            return;
        }
        let t = self.0.lang.strings();
        let name = author.name.unwrap_or_else(|| {
            if author.role == Role::Bot {
                t.bot
            } else {
                t.agent
            }
            .to_owned()
        });
        self.0.ui.typing.set(Some(self.0.lang.typing(&name)));
        let ui = self.0.ui;
        let timer = Timeout::new(THEIR_TYPING_MS, move || ui.typing.set(None));
        self.0.st.borrow_mut().their_typing = Some(timer);
    }

    fn on_error(&self, e: ErrorFrame) {
        let t = self.0.lang.strings();
        match (e.code, e.client_id) {
            (ErrorCode::RateLimited | ErrorCode::Internal, Some(cid)) => {
                let ms = e.retry_after_ms.unwrap_or(1_000).clamp(50, 60_000) as u32;
                let me = self.clone();
                Timeout::new(ms, move || me.resend(&cid)).forget();
            }
            (ErrorCode::RateLimited, None) => {
                // A typing or context frame: let the next context check send it again.
                self.0.st.borrow_mut().sent_ctx = None;
            }
            (ErrorCode::HelloRequired, _) => self.on_open(),
            (ErrorCode::UnsupportedVersion, _) => {
                self.0.st.borrow_mut().stopped = true;
                self.0.ui.conn.set(ConnState::Offline);
            }
            (ErrorCode::IdentityInvalid, _) => {
                web_sys::console::warn_1(&JsValue::from_str(&format!(
                    "Parley: identity refused ({}): {}; chatting anonymously",
                    e.reason.as_deref().unwrap_or("?"),
                    e.message
                )));
                let mut st = self.0.st.borrow_mut();
                if matches!(st.signed, Some(Signed::Token(_))) {
                    st.signed = None;
                }
            }
            (ErrorCode::IdentityRequired, _) => {
                // Only a (new) signed identity from the page can open this chat.
                web_sys::console::warn_1(&JsValue::from_str(
                    "Parley: this site's chat needs a signed-in visitor (Parley.identify)",
                ));
                self.0.st.borrow_mut().stopped = true;
                self.0.ui.conn.set(ConnState::Offline);
            }
            (code, Some(cid)) => {
                let reason = match code {
                    ErrorCode::TooLarge => t.too_large,
                    ErrorCode::Invalid => t.invalid,
                    _ => t.not_sent,
                };
                {
                    let mut st = self.0.st.borrow_mut();
                    if let Some(p) = st.outbox.settle(&cid) {
                        outbox::persist_settle(&self.0.store, &cid);
                        st.failed.push(Failed {
                            client_id: cid,
                            text: p.text,
                            reason,
                        });
                    }
                }
                self.refresh();
            }
            (_, None) => web_sys::console::warn_1(&JsValue::from_str(&format!(
                "Parley: relay error {:?}: {}",
                e.code, e.message
            ))),
        }
    }

    fn resend(&self, cid: &ClientId) {
        let frame = {
            let st = self.0.st.borrow();
            st.outbox
                .pending()
                .iter()
                .find(|p| &p.client_id == cid)
                .map(|p| VisitorFrame::Send {
                    client_id: p.client_id.clone(),
                    text: p.text.clone(),
                })
        };
        if let Some(f) = frame {
            self.send_frame(&f);
        }
    }

    fn check_context(&self) {
        let ctx = page::current(&self.0.store);
        let send = {
            let mut st = self.0.st.borrow_mut();
            let changed = st
                .sent_ctx
                .as_ref()
                .is_none_or(|sent| page::changed_notably(sent, &ctx));
            if changed && st.welcomed {
                st.sent_ctx = Some(ctx.clone());
                true
            } else {
                false
            }
        };
        if send {
            self.send_frame(&VisitorFrame::Context { context: ctx });
        }
    }

    /// The visitor opened the panel or sent: from now on the token and read marker may be stored.
    fn consent(&self) {
        let mut st = self.0.st.borrow_mut();
        if st.consented {
            return;
        }
        st.consented = true;
        if let Some(token) = &st.token {
            self.0.store.set(TOKEN, token);
        }
    }

    /// Whether the panel is shown.
    pub fn is_open(&self) -> bool {
        self.0.ui.open.get_untracked()
    }

    /// Shows the panel and connects if needed.
    pub fn open(&self) {
        if self.is_open() {
            return;
        }
        self.consent();
        self.0.ui.open.set(true);
        self.0.host.opened(true, false);
        self.start();
        self.recount();
    }

    /// Hides the panel; `restore_focus` asks the loader to focus the launcher.
    pub fn close(&self, restore_focus: bool) {
        if !self.is_open() {
            return;
        }
        self.0.ui.open.set(false);
        self.0.host.opened(false, restore_focus);
    }

    /// Keeps the name and email given to `Parley.identify({name, email})` (unverified: never
    /// sent as who the visitor is).
    pub fn identify(&self, name: String, email: String) {
        self.0.st.borrow_mut().identity = Some((name, email));
    }

    /// The page signed the visitor in (`Parley.identify(token)` or a token function): the
    /// next `hello` carries it; an open connection says hello again at once.
    pub fn identify_signed(&self, signed: Signed) {
        let reconnect = {
            let mut st = self.0.st.borrow_mut();
            st.signed = Some(signed);
            // A site that refused us for lack of identity may take us now.
            let was_stopped = std::mem::take(&mut st.stopped);
            st.started && (st.socket.is_some() || was_stopped)
        };
        if reconnect {
            self.reconnect_now();
        }
    }

    /// `Parley.reset()` (the site's logout): forgets everything this browser keeps for the
    /// site — token, unsent messages, read marker, the conversation shown, any identity — and
    /// goes on as a new anonymous visitor. Sharing stops.
    pub fn reset(&self) {
        let started = {
            let mut st = self.0.st.borrow_mut();
            if let Some(sock) = st.socket.take() {
                sock.detach();
                wasm_bindgen_futures::spawn_local(async move { drop(sock) });
            }
            for key in [TOKEN, READ, crate::storage::OUTBOX] {
                self.0.store.remove(key);
            }
            let started = st.started;
            let cb_on = st.cb_on;
            *st = State {
                started,
                ..State::default()
            };
            st.cb_on = cb_on;
            started
        };
        self.0.ui.queue.set(None);
        self.0.ui.typing.set(None);
        self.0.ui.rate.set(false);
        self.0.ui.away.set(false);
        self.sync_cobrowse();
        self.refresh();
        self.recount();
        if started {
            self.connect();
        }
    }

    /// The name and email given to `Parley.identify`, if any.
    pub fn identity(&self) -> Option<(String, String)> {
        self.0.st.borrow().identity.clone()
    }

    /// Sends a message typed by the visitor. Returns false when there was nothing to send (the
    /// composer keeps its text).
    pub fn send_text(&self, text: &str) -> bool {
        self.send_as(text, None)
    }

    /// Leaves a message while nobody is available: replies are emailed to `email`.
    pub fn leave_message(&self, email: &str, text: &str) -> bool {
        self.0.st.borrow_mut().leave_email = Some(email.trim().to_owned());
        self.send_as(text, Some(email.trim().to_owned()))
    }

    /// Opened from a proactive greeting: the relay stores the rule's text as the bot's message.
    pub fn greet(&self, rule: String) {
        self.consent();
        let frame = VisitorFrame::Greeting { rule };
        if !self.send_frame(&frame) {
            if let VisitorFrame::Greeting { rule } = frame {
                self.0.st.borrow_mut().greet = Some(rule);
            }
        }
        self.start();
    }

    fn send_as(&self, text: &str, email: Option<String>) -> bool {
        if text.trim().is_empty() {
            return false;
        }
        self.consent();
        self.stop_typing();
        let client_id = outbox::new_client_id();
        let frame = message_frame(client_id.clone(), text.to_owned(), email);
        let too_big = validate_text(text).is_err() || encode(&frame).len() > MAX_FRAME_BYTES;
        {
            let mut st = self.0.st.borrow_mut();
            if too_big {
                st.failed.push(Failed {
                    client_id,
                    text: text.to_owned(),
                    reason: self.0.lang.strings().too_large,
                });
            } else {
                st.outbox.push(client_id.clone(), text.to_owned());
                outbox::persist_push(&self.0.store, &client_id, text);
            }
        }
        if !too_big {
            self.send_frame(&frame);
            self.start();
        }
        self.refresh();
        true
    }

    /// The visitor edited the composer: tell the agent (at most every 2 s), and go quiet after
    /// 3 s of idleness or when the composer is emptied.
    pub fn composing(&self, empty: bool) {
        if empty {
            self.stop_typing();
            return;
        }
        let t = now();
        let send = {
            let mut st = self.0.st.borrow_mut();
            if !st.welcomed {
                return;
            }
            let send = !st.typing_on || t - st.typing_at >= OUR_TYPING_EVERY_MS;
            if send {
                st.typing_on = true;
                st.typing_at = t;
            }
            send
        };
        if send {
            self.send_frame(&VisitorFrame::Typing { active: true });
        }
        let me = self.clone();
        let idle = Timeout::new(OUR_TYPING_IDLE_MS, move || me.stop_typing());
        self.0.st.borrow_mut().typing_idle = Some(idle);
    }

    fn stop_typing(&self) {
        let was = {
            let mut st = self.0.st.borrow_mut();
            // Not dropping the timer here: this may run inside it (it is replaced next time).
            std::mem::replace(&mut st.typing_on, false)
        };
        if was {
            self.send_frame(&VisitorFrame::Typing { active: false });
        }
    }

    /// Unread = agent/bot messages newer than what was seen with the panel open.
    fn recount(&self) {
        let open = self.is_open();
        let (count, changed) = {
            let mut st = self.0.st.borrow_mut();
            if open {
                let newest = (
                    st.timeline.conversation_id().cloned(),
                    st.timeline.last_seq(),
                );
                if newest.1 > 0 && newest != st.read {
                    if st.consented {
                        self.0.store.set(READ, &encode_read(&newest));
                    }
                    st.read = newest;
                }
            }
            let count = if open {
                0
            } else {
                let same = st.read.0.as_ref() == st.timeline.conversation_id();
                let read = if same { st.read.1 } else { 0 };
                st.timeline
                    .events()
                    .iter()
                    .filter(|e| e.seq > read && incoming(e))
                    .count() as u32
            };
            let changed = count != st.unread;
            st.unread = count;
            (count, changed)
        };
        if changed {
            self.0.host.unread(count);
        }
    }

    /// Sends the visitor's rating of the closed conversation (score 1–5, optional comment).
    pub fn rate(&self, score: u8, comment: String) {
        let comment = (!comment.trim().is_empty()).then_some(comment);
        if self.send_frame(&VisitorFrame::Rate { score, comment }) {
            self.0.st.borrow_mut().rated = true;
            self.refresh();
        }
    }

    /// Rebuilds the message list from the timeline, the acked and pending sends, and failures.
    fn refresh(&self) {
        let (items, rate, away) = {
            let st = self.0.st.borrow();
            let events = st.timeline.events();
            let closed = events.iter().any(|e| e.body == VisitorBody::Closed);
            let rated = events
                .iter()
                .any(|e| matches!(e.body, VisitorBody::Rating { .. }));
            // Bot-first: the bot answers off-hours too; only its hand-off needs people.
            let handed_off = events
                .iter()
                .any(|e| matches!(e.body, VisitorBody::Handoff));
            (
                self.build(&st),
                closed && !rated && !st.rated,
                st.unavailable && (!st.bot_first || handed_off),
            )
        };
        self.0.ui.items.set(items);
        if self.0.ui.rate.get_untracked() != rate {
            self.0.ui.rate.set(rate);
        }
        if self.0.ui.away.get_untracked() != away {
            self.0.ui.away.set(away);
        }
    }

    fn build(&self, st: &State) -> Vec<Item> {
        let lang = self.0.lang;
        let t = lang.strings();
        let mut items = Vec::new();
        let mine = |key: String, seq, at, text: &str, class, note| Item {
            key,
            class,
            role: "visitor",
            kind: None,
            seq,
            meta: Some(format!("{} · {}", t.you, clock(at))),
            text: text.to_owned(),
            note,
            buttons: Vec::new(),
            link: None,
            cb: None,
            cont: false,
        };
        // Quick replies belong to the newest event only, and vanish as soon as the visitor sends.
        let latest = st.timeline.last_seq();
        let quiet = st.acked.is_empty() && st.outbox.pending().is_empty();
        // The request still waiting for an answer, if any: it gets the consent card.
        let ask = match sharing(st.timeline.events()) {
            (Consent::Asked { .. }, _) => st
                .timeline
                .events()
                .iter()
                .rev()
                .find(|e| matches!(e.body, VisitorBody::Cobrowse { .. }))
                .map(|e| e.seq),
            _ => None,
        };
        // Something was shared before this point (the "stopped" line then offers the log).
        let mut shared = false;
        // Who asked last (named in "You shared this page with …").
        let mut asker = t.agent.to_owned();
        for e in st.timeline.events() {
            let name = || {
                e.author.name.clone().unwrap_or_else(|| {
                    match e.author.role {
                        Role::Bot => t.bot,
                        _ => t.agent,
                    }
                    .to_owned()
                })
            };
            let system = |kind, text: String| Item {
                key: format!("s{}", e.seq),
                class: "parley-msg parley-sys",
                role: "system",
                kind: Some(kind),
                seq: Some(e.seq),
                meta: None,
                text,
                note: None,
                buttons: Vec::new(),
                link: None,
                cb: None,
                cont: false,
            };
            let item = match &e.body {
                VisitorBody::Message {
                    text,
                    client_id,
                    buttons,
                    link,
                    ..
                } => {
                    if text.is_empty() {
                        continue;
                    }
                    match (e.author.role, client_id) {
                        (Role::Visitor, Some(cid)) => mine(
                            format!("c{cid}:{}", e.seq),
                            Some(e.seq),
                            e.at as f64,
                            text,
                            "parley-msg",
                            None,
                        ),
                        (role, _) => {
                            let offer = role == Role::Bot && e.seq == latest && quiet;
                            Item {
                                // A different key when the buttons come or go, so the row is redrawn.
                                key: format!("s{}{}", e.seq, if offer { "q" } else { "" }),
                                class: "parley-msg",
                                role: role_str(role),
                                kind: None,
                                seq: Some(e.seq),
                                meta: Some(format!(
                                    "{} · {}",
                                    if role == Role::Visitor {
                                        t.you.to_owned()
                                    } else {
                                        name()
                                    },
                                    clock(e.at as f64)
                                )),
                                text: text.clone(),
                                note: None,
                                buttons: if offer { buttons.clone() } else { Vec::new() },
                                link: if role == Role::Bot {
                                    link.as_deref().and_then(wire::safe_link)
                                } else {
                                    None
                                },
                                cb: None,
                                cont: false,
                            }
                        }
                    }
                }
                VisitorBody::Joined => system("joined", lang.joined(&name())),
                VisitorBody::Transferred { to, .. } => system(
                    "transferred",
                    lang.talking_to(to.name.as_deref().unwrap_or(t.agent)),
                ),
                VisitorBody::Left => system("left", lang.left(&name())),
                VisitorBody::Closed => system("closed", t.closed.to_owned()),
                // The summary is written for agents; the visitor only learns a person is coming.
                VisitorBody::Handoff => system("handoff", t.handoff.to_owned()),
                VisitorBody::Cobrowse { state } => {
                    if *state == CobrowseState::Requested {
                        asker = name();
                    }
                    match state {
                        CobrowseState::Requested if Some(e.seq) == ask => Item {
                            cb: Some("ask"),
                            ..system("cobrowse", lang.cobrowse_ask(&name()))
                        },
                        CobrowseState::Requested => {
                            system("cobrowse", lang.cobrowse_asked(&name()))
                        }
                        CobrowseState::Allowed => {
                            shared = true;
                            system("cobrowse", lang.cobrowse_allowed(&asker))
                        }
                        CobrowseState::Denied => system("cobrowse", t.declined.to_owned()),
                        _ => Item {
                            cb: shared.then_some("log"),
                            ..system("cobrowse", t.sharing_stopped.to_owned())
                        },
                    }
                }
                VisitorBody::Rating { .. } => system("rating", t.thanks.to_owned()),
                // A kind from a newer relay: kept in the timeline, shown as nothing.
                _ => continue,
            };
            items.push(item);
        }
        for a in &st.acked {
            items.push(mine(
                format!("c{}:{}", a.client_id, a.seq),
                Some(a.seq),
                a.at,
                &a.text,
                "parley-msg",
                None,
            ));
        }
        let t_now = now();
        for p in st.outbox.pending() {
            items.push(mine(
                format!("c{}", p.client_id),
                None,
                t_now,
                &p.text,
                "parley-msg parley-pending",
                Some(t.sending),
            ));
        }
        for f in &st.failed {
            items.push(mine(
                format!("f{}", f.client_id),
                None,
                t_now,
                &f.text,
                "parley-msg parley-failed",
                Some(f.reason),
            ));
        }
        group(&mut items);
        items
    }
}

/// Marks each message that follows one by the same sender (same role and name, nothing in
/// between) as a continuation: "Mina · 12:44" is said once per run.
fn group(items: &mut [Item]) {
    let sender = |i: &Item| {
        i.meta
            .as_deref()
            .and_then(|m| m.rsplit_once(" · "))
            .map(|(who, _)| (i.role, who.to_owned()))
    };
    for n in 1..items.len() {
        let same = sender(&items[n]).is_some() && sender(&items[n]) == sender(&items[n - 1]);
        items[n].cont = same;
    }
}

/// `send`, or `leave_message` when the visitor left an email because nobody was available.
fn message_frame(client_id: ClientId, text: String, email: Option<String>) -> VisitorFrame {
    match email {
        Some(email) => VisitorFrame::LeaveMessage {
            client_id,
            email,
            text,
        },
        None => VisitorFrame::Send { client_id, text },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(role: &'static str, meta: Option<&str>) -> Item {
        Item {
            key: String::new(),
            class: "parley-msg",
            role,
            kind: None,
            seq: None,
            meta: meta.map(str::to_owned),
            text: String::new(),
            note: None,
            buttons: Vec::new(),
            link: None,
            cb: None,
            cont: false,
        }
    }

    #[test]
    fn a_run_of_one_senders_messages_names_them_once() {
        let mut items = vec![
            line("agent", Some("Mina · 12:44")),
            line("agent", Some("Mina · 12:44")),
            line("agent", Some("Mina · 12:45")),
            line("agent", Some("Joon · 12:45")),
            line("system", None),
            line("agent", Some("Joon · 12:46")),
            line("visitor", Some("You · 12:46")),
            line("visitor", Some("You · 12:47")),
        ];
        group(&mut items);
        let cont: Vec<bool> = items.iter().map(|i| i.cont).collect();
        assert_eq!(
            cont,
            [false, true, true, false, false, false, false, true],
            "a new sender, or a system line between, starts a new run"
        );
    }
}

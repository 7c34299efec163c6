//! One sharing session on this page: the snapshot, the listeners that feed the stream, the
//! 100 ms pump that sends it, the indicator, and the teardown.
//!
//! The pump: every [`TICK_MS`] it checks the URL (a single-page app that changes it gets a fresh
//! snapshot), every [`BATCH_MS`] it turns the collected mutation records and field changes into
//! items, then sends what the token bucket allows ([`crate::stream`]). Pointer and scroll events
//! only overwrite a "latest" slot, so they cost nothing between ticks and at most one item each
//! per tick. A send that fails (socket down) stops the stream until the panel asks for a fresh
//! snapshot (it does on every new `welcome`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use gloo_timers::callback::Interval;
use js_sys::Function;
use protocol::cobrowse::{Highlight, HighlightTarget, NodeId, Size, Snapshot, Stream};
use wasm_bindgen::prelude::*;
use web_sys::{
    AddEventListenerOptions, CssStyleSheet, Element, Event, EventTarget, HtmlElement,
    MutationObserver, MutationObserverInit, MutationRecord, Node, PointerEvent, ShadowRoot,
};

use crate::highlight::{Overlay, Target};
use crate::i18n::{self, Strings};
use crate::log::{Entry, Log};
use crate::mask::Ctx;
use crate::serialize::Serializer;
use crate::stream::Queue;
use crate::{changes, picker, tree, ui};

/// Pump period.
pub const TICK_MS: u32 = 100;
/// Mutations and field changes are batched over this long.
pub const BATCH_MS: f64 = 250.0;
/// The log is written to sessionStorage at most this often (and at every snapshot and stop).
const LOG_SAVE_MS: f64 = 2_000.0;

/// What the loader passes to [`crate::start`].
pub struct Options {
    /// The panel's language.
    pub lang: String,
    /// The agent's display name (for the indicator and the log).
    pub agent: String,
    /// The conversation (the log's key).
    pub conversation: String,
    /// `send(n, data, index, count) → bool`: the panel's `cobrowseSend`.
    pub send: Function,
    /// `stop()`: the panel's `cobrowseStop` (the visitor pressed Stop).
    pub stop: Option<Function>,
}

pub(crate) struct State {
    pub(crate) page: u32,
    pub(crate) ser: Serializer,
    pub(crate) queue: Queue,
    records: Vec<MutationRecord>,
    /// Fields whose value changed since the last batch.
    inputs: Vec<Element>,
    /// Frames that loaded a new document since the last batch: sent again whole.
    reloaded: Vec<Element>,
    /// The last value sent per field: an unchanged value is not sent again.
    sent_inputs: HashMap<NodeId, (String, Option<bool>)>,
    sent_scroll: HashMap<Option<NodeId>, (i32, i32)>,
    sent_pointer: (i32, i32),
    sent_viewport: Size,
    url: String,
    /// A send failed: nothing more until a fresh snapshot.
    stale: bool,
    pub(crate) log: Log,
    log_saved_at: f64,
    log_dirty: bool,
    last_tick: f64,
    last_batch: f64,
    stopped: bool,
}

/// A listener added while sharing: where, which event, the callback (removed at Stop).
type Listener = (EventTarget, &'static str, Closure<dyn FnMut(Event)>);

struct Parts {
    root: ShadowRoot,
    sheet: CssStyleSheet,
    bar: HtmlElement,
    observer: MutationObserver,
    pump: Option<Interval>,
    listeners: Vec<Listener>,
    /// Shadow roots and frame documents already observed (and, for documents, listened to).
    watched: js_sys::WeakSet,
}

/// What the observer reports: every kind of change, in the whole subtree.
fn observer_init() -> MutationObserverInit {
    let init = MutationObserverInit::new();
    init.set_child_list(true);
    init.set_subtree(true);
    init.set_attributes(true);
    init.set_character_data(true);
    init
}

/// Events listened to in the capture phase (removing a listener must say so again).
fn captured(name: &str) -> bool {
    matches!(name, "scroll" | "pointermove" | "input" | "change" | "load")
}

/// Adds a passive listener for `name` on `target` and keeps it in `listeners` for Stop.
fn listen(
    listeners: &mut Vec<Listener>,
    target: &EventTarget,
    name: &'static str,
    f: Box<dyn FnMut(Event)>,
) {
    let cb = Closure::<dyn FnMut(Event)>::wrap(f);
    let o = AddEventListenerOptions::new();
    o.set_capture(captured(name));
    o.set_passive(true);
    let _ = target.add_event_listener_with_callback_and_add_event_listener_options(
        name,
        cb.as_ref().unchecked_ref(),
        &o,
    );
    listeners.push((target.clone(), name, cb));
}

pub(crate) struct Inner {
    pub(crate) st: RefCell<State>,
    parts: RefCell<Option<Parts>>,
    send: Function,
    stop_cb: Option<Function>,
    pub(crate) t: &'static Strings,
    pub(crate) overlay: Overlay,
    pub(crate) root: ShadowRoot,
    conversation: String,
}

/// A running share. Dropping the handle does not stop it: call [`Session::stop`].
#[wasm_bindgen]
#[derive(Clone)]
pub struct Session(pub(crate) Rc<Inner>);

fn now() -> f64 {
    js_sys::Date::now()
}

fn window() -> Option<web_sys::Window> {
    web_sys::window()
}

fn scroll_xy() -> (i32, i32) {
    let w = window();
    let x = w.as_ref().and_then(|w| w.scroll_x().ok()).unwrap_or(0.0);
    let y = w.as_ref().and_then(|w| w.scroll_y().ok()).unwrap_or(0.0);
    (x.round() as i32, y.round() as i32)
}

fn viewport() -> Size {
    let w = window();
    let get = |f: fn(&web_sys::Window) -> Result<JsValue, JsValue>| {
        w.as_ref()
            .and_then(|w| f(w).ok())
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0)
            .round() as i32
    };
    Size {
        w: get(web_sys::Window::inner_width),
        h: get(web_sys::Window::inner_height),
    }
}

fn href() -> String {
    window()
        .and_then(|w| w.location().href().ok())
        .unwrap_or_default()
}

/// Serializes the whole page (masked) as a snapshot of page `page`.
pub fn snapshot(ser: &mut Serializer, page: u32) -> Option<Snapshot> {
    let doc = ui::document()?;
    ser.begin();
    let html: Node = doc.document_element()?.into();
    let root = ser.node(&html, Ctx::default())?;
    let (scroll_x, scroll_y) = scroll_xy();
    Some(Snapshot {
        page,
        url: href(),
        title: doc.title(),
        viewport: viewport(),
        scroll_x,
        scroll_y,
        root,
        masked: ser.masked,
    })
}

impl Session {
    /// Starts sharing (see [`crate::start`]).
    pub fn start(root: ShadowRoot, opts: Options) -> Result<Session, JsValue> {
        let t = i18n::strings(&opts.lang);
        let mut log = Log::load(&opts.conversation);
        log.push(Entry::Start {
            at: now(),
            agent: opts.agent.clone(),
        });
        let page = (js_sys::Math::random() * 4_294_967_295.0) as u32;
        let inner = Rc::new(Inner {
            st: RefCell::new(State {
                page,
                ser: Serializer::new(),
                queue: Queue::new(),
                records: Vec::new(),
                inputs: Vec::new(),
                reloaded: Vec::new(),
                sent_inputs: HashMap::new(),
                sent_scroll: HashMap::new(),
                sent_pointer: (-1, -1),
                sent_viewport: viewport(),
                url: href(),
                stale: false,
                log,
                log_saved_at: 0.0,
                log_dirty: true,
                last_tick: now(),
                last_batch: now(),
                stopped: false,
            }),
            parts: RefCell::new(None),
            send: opts.send,
            stop_cb: opts.stop,
            t,
            overlay: Overlay::default(),
            root: root.clone(),
            conversation: opts.conversation,
        });
        let s = Session(inner);
        s.build(&root, &opts.agent)?;
        s.snapshot_now();
        s.tick();
        Ok(s)
    }

    fn build(&self, root: &ShadowRoot, agent: &str) -> Result<(), JsValue> {
        let sheet = ui::adopt(root)?;
        let t = self.0.t;
        let bar = ui::add(root, "div", "parley-cb-bar", "")?;
        bar.set_attribute("data-parley-cobrowse", "indicator")?;
        bar.set_attribute("role", "status")?;
        ui::add(&bar, "span", "", &(t.sharing_with)(agent))?;
        let show = ui::button(&bar, "show", t.show)?;
        let log = ui::button(&bar, "log-open", t.log)?;
        let stop = ui::button(&bar, "stop", t.stop)?;

        let mut listeners = Vec::new();
        let mut on = |target: &EventTarget, name: &'static str, f: Box<dyn FnMut(Event)>| {
            listen(&mut listeners, target, name, f)
        };
        let me = self.clone();
        on(&stop, "click", Box::new(move |_| me.stop_by_visitor()));
        let me = self.clone();
        on(&show, "click", Box::new(move |_| picker::pick(&me)));
        let me = self.clone();
        on(&log, "click", Box::new(move |_| me.open_log()));

        let doc = ui::document().ok_or_else(|| JsValue::from_str("no document"))?;
        let win = window().ok_or_else(|| JsValue::from_str("no window"))?;
        let doc_t: EventTarget = doc.clone().into();
        let win_t: EventTarget = win.into();
        let me = self.clone();
        on(&doc_t, "scroll", Box::new(move |e| me.on_scroll(&e)));
        let me = self.clone();
        on(&win_t, "resize", Box::new(move |_| me.on_resize()));
        let me = self.clone();
        on(&doc_t, "pointermove", Box::new(move |e| me.on_pointer(&e)));
        for name in ["input", "change"] {
            let me = self.clone();
            on(&doc_t, name, Box::new(move |e| me.on_input(&e)));
        }
        let me = self.clone();
        on(&doc_t, "load", Box::new(move |e| me.on_frame_load(&e)));
        for name in ["popstate", "hashchange"] {
            let me = self.clone();
            on(&win_t, name, Box::new(move |_| me.check_url()));
        }
        let me = self.clone();
        on(&win_t, "pagehide", Box::new(move |_| me.save_log(true)));

        let me = self.clone();
        let cb = Closure::<dyn FnMut(js_sys::Array)>::new(move |records: js_sys::Array| {
            let mut st = me.0.st.borrow_mut();
            st.records
                .extend(records.iter().map(|r| r.unchecked_into::<MutationRecord>()));
        });
        let observer = MutationObserver::new(cb.as_ref().unchecked_ref())?;
        // The observer owns the callback from here; it dies with the page.
        cb.forget();
        observer.observe_with_options(&doc, &observer_init())?;

        let me = self.clone();
        let pump = Interval::new(TICK_MS, move || me.tick());
        *self.0.parts.borrow_mut() = Some(Parts {
            root: root.clone(),
            sheet,
            bar,
            observer,
            pump: Some(pump),
            listeners,
            watched: js_sys::WeakSet::new(),
        });
        Ok(())
    }

    /// Observes the shadow roots and frame documents the serializer met since last time (a
    /// frame's document also gets the field and load listeners the page's has).
    fn watch_found(&self) {
        let found = std::mem::take(&mut self.0.st.borrow_mut().ser.found);
        if found.is_empty() {
            return;
        }
        let mut parts = self.0.parts.borrow_mut();
        let Some(p) = parts.as_mut() else {
            return;
        };
        for root in found {
            let obj: &js_sys::Object = root.unchecked_ref();
            if p.watched.has(obj) {
                continue;
            }
            p.watched.add(obj);
            let _ = p.observer.observe_with_options(&root, &observer_init());
            if root.node_type() == Node::DOCUMENT_NODE {
                let target: &EventTarget = root.unchecked_ref();
                for name in ["input", "change"] {
                    let me = self.clone();
                    listen(
                        &mut p.listeners,
                        target,
                        name,
                        Box::new(move |e| me.on_input(&e)),
                    );
                }
                let me = self.clone();
                listen(
                    &mut p.listeners,
                    target,
                    "load",
                    Box::new(move |e| me.on_frame_load(&e)),
                );
            }
        }
    }

    fn snapshot_now(&self) {
        let observer_records = self
            .0
            .parts
            .borrow()
            .as_ref()
            .map(|p| p.observer.take_records());
        let mut st = self.0.st.borrow_mut();
        drop(observer_records);
        st.records.clear();
        st.inputs.clear();
        st.reloaded.clear();
        st.sent_inputs.clear();
        st.sent_scroll.clear();
        st.queue.clear();
        st.stale = false;
        st.url = href();
        let page = st.page;
        let Some(snap) = snapshot(&mut st.ser, page) else {
            return;
        };
        let (url, masked) = (snap.url.clone(), snap.masked);
        let bytes = st.queue.push(&Stream::Snapshot(snap)) as u32;
        st.log.push(Entry::Page {
            at: now(),
            url,
            bytes,
            masked,
            then: i18n::Counts::default(),
        });
        st.log_dirty = true;
        drop(st);
        self.watch_found();
        self.save_log(true);
    }

    /// Queues an item that must arrive (a highlight from the picker).
    pub(crate) fn push(&self, item: &Stream) {
        let mut st = self.0.st.borrow_mut();
        if !st.stale && !st.stopped {
            st.queue.push(item);
            if let Some(c) = st.log.counts() {
                c.highlight += 1;
            }
            st.log_dirty = true;
        }
    }

    fn tick(&self) {
        let t = now();
        if self.0.st.borrow().stopped {
            return;
        }
        self.check_url();
        let due = {
            let mut st = self.0.st.borrow_mut();
            let elapsed = (t - st.last_tick) / 1000.0;
            st.last_tick = t;
            if t - st.last_batch >= BATCH_MS {
                st.last_batch = t;
                self.batch(&mut st);
            }
            if st.stale {
                Vec::new()
            } else {
                st.queue.due(elapsed)
            }
        };
        self.watch_found();
        for (n, data, index, count) in due {
            let ok = self
                .0
                .send
                .call4(
                    &JsValue::NULL,
                    &JsValue::from(n),
                    &JsValue::from_str(&data),
                    &JsValue::from(index),
                    &JsValue::from(count),
                )
                .map(|v| v.as_bool().unwrap_or(false))
                .unwrap_or(false);
            if !ok {
                let mut st = self.0.st.borrow_mut();
                st.stale = true;
                st.queue.clear();
                break;
            }
        }
        self.save_log(false);
    }

    fn batch(&self, st: &mut State) {
        if let Some(p) = self.0.parts.borrow().as_ref() {
            let more = p.observer.take_records();
            st.records
                .extend(more.iter().map(|r| r.unchecked_into::<MutationRecord>()));
        }
        if st.stale {
            st.records.clear();
            st.inputs.clear();
            st.reloaded.clear();
            return;
        }
        let records = std::mem::take(&mut st.records);
        let reloaded = std::mem::take(&mut st.reloaded);
        let page = st.page;
        if !records.is_empty() || !reloaded.is_empty() {
            if let Some(m) = changes::batch_resending(&mut st.ser, page, &records, &reloaded) {
                let bytes = st.queue.push(&Stream::Mutations(m)) as u32;
                if let Some(c) = st.log.counts() {
                    c.changes += 1;
                    c.change_bytes = c.change_bytes.saturating_add(bytes);
                }
                st.log_dirty = true;
            }
        }
        for el in std::mem::take(&mut st.inputs) {
            let Some(id) = st.ser.id_of(&el) else {
                continue;
            };
            if !el.is_connected() {
                continue;
            }
            st.ser.masked = 0;
            let (value, checked, masked) = st.ser.shared_value(&el);
            let toggle = matches!(
                el.get_attribute("type")
                    .map(|t| t.to_ascii_lowercase())
                    .as_deref(),
                Some("checkbox" | "radio")
            );
            if masked && toggle {
                // A masked checkbox has nothing to say.
                continue;
            }
            // A masked value always reads the same (`mask::value`): typing shows as an item per
            // pump that saw input events, never as a longer value. Plain values send changes only.
            if !masked && st.sent_inputs.get(&id) == Some(&(value.clone(), checked)) {
                continue;
            }
            st.sent_inputs.insert(id, (value.clone(), checked));
            st.queue.push(&Stream::Input {
                page,
                id,
                value,
                checked,
            });
            if let Some(c) = st.log.counts() {
                c.input += 1;
                if masked {
                    c.input_masked += 1;
                }
            }
            st.log_dirty = true;
        }
    }

    fn check_url(&self) {
        // A new fragment (`#section`) is the same page: the scroll that follows says enough.
        let page_of = |u: &str| u.split('#').next().unwrap_or_default().to_owned();
        let changed = {
            let st = self.0.st.borrow();
            !st.stopped && page_of(&st.url) != page_of(&href())
        };
        if changed {
            self.snapshot_now();
        }
    }

    fn on_scroll(&self, e: &Event) {
        let target = e.target();
        let doc_like = target
            .as_ref()
            .and_then(|t| t.dyn_ref::<Node>())
            .is_none_or(|n| n.node_type() == Node::DOCUMENT_NODE);
        let mut st = self.0.st.borrow_mut();
        let page = st.page;
        let (id, x, y) = if doc_like {
            let (x, y) = scroll_xy();
            (None, x, y)
        } else {
            let Some(el) = target
                .as_ref()
                .and_then(|t| tree::element(t.unchecked_ref()))
            else {
                return;
            };
            let Some(id) = st.ser.id_of(el) else { return };
            (Some(id), el.scroll_left(), el.scroll_top())
        };
        if st.sent_scroll.get(&id) == Some(&(x, y)) {
            return;
        }
        st.sent_scroll.insert(id, (x, y));
        let item = Stream::Scroll { page, id, x, y };
        st.queue.scrolls.retain(|(i, _)| *i != id);
        st.queue.scrolls.push((id, item));
        if let Some(c) = st.log.counts() {
            c.scroll += 1;
        }
        st.log_dirty = true;
    }

    fn on_resize(&self) {
        let size = viewport();
        let mut st = self.0.st.borrow_mut();
        if size == st.sent_viewport {
            return;
        }
        st.sent_viewport = size;
        let page = st.page;
        st.queue.viewport = Some(Stream::Viewport { page, size });
    }

    fn on_pointer(&self, e: &Event) {
        let Some(p) = e.dyn_ref::<PointerEvent>() else {
            return;
        };
        let (sx, sy) = scroll_xy();
        let (x, y) = (p.client_x() + sx, p.client_y() + sy);
        let mut st = self.0.st.borrow_mut();
        // Only a move of a few pixels is news.
        let (px, py) = st.sent_pointer;
        if (x - px).abs() + (y - py).abs() < 4 {
            return;
        }
        let fresh = st.queue.pointer.is_none();
        st.sent_pointer = (x, y);
        let page = st.page;
        st.queue.pointer = Some(Stream::Pointer { page, x, y });
        if fresh {
            if let Some(c) = st.log.counts() {
                c.pointer += 1;
            }
            st.log_dirty = true;
        }
    }

    fn on_input(&self, e: &Event) {
        // The field itself, also inside an open shadow root (where `target` is the host).
        let first = e.composed_path().get(0);
        let Some(el) = first
            .dyn_ref::<Node>()
            .or_else(|| first.is_object().then(|| first.unchecked_ref::<Node>()))
            .and_then(tree::element)
            .cloned()
        else {
            return;
        };
        if !crate::mask::is_field(&el) {
            return;
        }
        let mut st = self.0.st.borrow_mut();
        if !st.inputs.iter().any(|x| x == &el) {
            st.inputs.push(el);
        }
    }

    /// A frame loaded a document: when the agent knows the frame, it is sent again whole.
    fn on_frame_load(&self, e: &Event) {
        let Some(target) = e.target() else { return };
        let Some(el) = tree::element(target.unchecked_ref()).cloned() else {
            return;
        };
        if !tree::is_frame(&el) {
            return;
        }
        let mut st = self.0.st.borrow_mut();
        if st.ser.id_of(&el).is_some() && !st.reloaded.iter().any(|x| x == &el) {
            st.reloaded.push(el);
        }
    }

    fn save_log(&self, force: bool) {
        let mut st = self.0.st.borrow_mut();
        let t = now();
        if st.log_dirty && (force || t - st.log_saved_at >= LOG_SAVE_MS) {
            st.log.save();
            st.log_saved_at = t;
            st.log_dirty = false;
        }
    }

    fn open_log(&self) {
        self.save_log(true);
        let log = Log::load(&self.0.conversation);
        let _ = ui::show_log(&self.0.root, self.0.t, &log, None);
    }

    fn stop_by_visitor(&self) {
        self.stop();
        if let Some(f) = &self.0.stop_cb {
            let _ = f.call0(&JsValue::NULL);
        }
    }
}

#[wasm_bindgen]
impl Session {
    /// Ends sharing at once: no more frames, observer disconnected, listeners removed, indicator
    /// and overlays gone. Safe to call twice.
    pub fn stop(&self) {
        {
            let mut st = self.0.st.borrow_mut();
            if st.stopped {
                return;
            }
            st.stopped = true;
            st.queue.clear();
            st.records.clear();
            st.inputs.clear();
            st.log.push(Entry::Stop { at: now() });
            st.log_dirty = true;
        }
        self.save_log(true);
        picker::cancel(self);
        self.0.overlay.clear();
        let parts = self.0.parts.borrow_mut().take();
        if let Some(mut p) = parts {
            p.observer.disconnect();
            for (target, name, cb) in p.listeners.drain(..) {
                let _ = target.remove_event_listener_with_callback_and_bool(
                    name,
                    cb.as_ref().unchecked_ref(),
                    captured(name),
                );
                // Freed later: this may run inside one of these listeners.
                let keep = cb;
                gloo_timers::callback::Timeout::new(0, move || drop(keep)).forget();
            }
            if let Some(pump) = p.pump.take() {
                // Cancelled now, freed later (this may run inside the pump's own tick).
                let id = pump.forget();
                if let (Some(w), Some(id)) = (window(), id.as_f64()) {
                    w.clear_interval_with_handle(id as i32);
                }
            }
            p.bar.remove();
            if let Ok(Some(log)) = p.root.query_selector("[data-parley-cobrowse=log]") {
                log.remove();
            }
            ui::unadopt(&p.root, &p.sheet);
        }
    }

    /// A `cobrowse_highlight` frame from the relay (its JSON text): drawn when it names this page.
    pub fn highlight(&self, frame: &str) {
        // Only the `highlight` field is read (decoding all of `ToVisitor` would link every
        // frame's decoder into this module).
        #[derive(serde::Deserialize)]
        struct Frame {
            highlight: Highlight,
        }
        let Ok(Frame { highlight }) = serde_json::from_str(frame) else {
            return;
        };
        self.draw(&highlight, "agent");
    }

    /// The agent (or a reconnect) asks for the whole page again.
    pub fn resync(&self) {
        if !self.0.st.borrow().stopped {
            self.snapshot_now();
        }
    }

    /// Whether the session is running (for the loader and tests).
    #[wasm_bindgen(js_name = isActive)]
    pub fn is_active(&self) -> bool {
        !self.0.st.borrow().stopped
    }
}

impl Session {
    /// This page load's id (items and highlights name it).
    pub fn page(&self) -> u32 {
        self.0.st.borrow().page
    }

    /// The id `node` has on this page, if it was serialized.
    pub fn node_id(&self, node: &Node) -> Option<NodeId> {
        self.0.st.borrow().ser.id_of(node)
    }

    /// Draws `h` (from the agent, or the visitor's own pick) if it belongs to this page.
    pub(crate) fn draw(&self, h: &Highlight, who: &str) {
        let target = {
            let st = self.0.st.borrow();
            if st.stopped || h.page != st.page {
                return;
            }
            match h.target {
                HighlightTarget::Clear => None,
                HighlightTarget::Node(id) => st
                    .ser
                    .find(id)
                    .and_then(|n| tree::element(&n).cloned().or_else(|| n.parent_element()))
                    .map(Target::Element),
                HighlightTarget::Rect(r) => Some(Target::Rect(r)),
            }
        };
        match target {
            Some(t) => self.0.overlay.show(&self.0.root, t, h.note.as_deref(), who),
            None => self.0.overlay.clear(),
        }
    }
}

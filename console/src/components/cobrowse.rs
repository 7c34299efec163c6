//! The co-browse pane: the mirror of the visitor's page (a sandboxed iframe that runs no
//! scripts, scaled to fit), the visitor's pointer and highlights drawn over it, and the agent's
//! own pointing — hover outlines the element under the pointer, a click highlights it, a drag
//! marks a rectangle, each with an optional short note.
//!
//! The stream does not go through the [`crate::state::Model`] signal: items are many and never
//! stored, so the app hands `cobrowse` frames straight to [`receive`], which puts them together
//! ([`StreamState`]) and draws them ([`MirrorDoc`]) in the one mirror this page shows. The overlay
//! lives in the console's own document (over the iframe, which takes no pointer events), so
//! clicks never reach the mirrored page's links or forms.

use std::cell::RefCell;

use leptos::html;
use leptos::prelude::*;
use protocol::cobrowse::{Highlight, HighlightTarget, NodeId, Size, Stream};
use protocol::{AgentFrame, ConversationId};
use wasm_bindgen::JsCast;
use web_sys::{Element, HtmlElement, HtmlIFrameElement};

use crate::app::{now_ms, Ctx};
use crate::cobrowse::{document_to_pane, drag_rect, fit_scale, note, Step, StreamState};
use crate::mirror::MirrorDoc;
use crate::socket;

/// The static page the mirror is built in (served by the relay with `script-src 'none'`).
pub const MIRROR_SRC: &str = "/console/mirror.html";
/// The attribute that marks the visitor's highlight over the mirror (a stable test hook).
pub const VISITOR_HIGHLIGHT_ATTR: &str = "data-parley-visitor-highlight";
/// At most this many items wait for the iframe to load; past it they are dropped and a fresh
/// snapshot asked for once it has.
const QUEUE_MAX: usize = 1_000;
/// The visitor's viewport before the first snapshot says otherwise.
const DEFAULT_VIEWPORT: Size = Size { w: 1280, h: 800 };

/// The DOM handles of the mounted pane.
#[derive(Clone)]
struct Stage {
    /// The sandboxed iframe holding [`MIRROR_SRC`].
    frame: HtmlIFrameElement,
    /// The area the mirror is fitted into.
    area: HtmlElement,
    /// The layer over the scaled mirror that takes the agent's pointer and draws the boxes.
    overlay: HtmlElement,
    /// Outline of the element under the agent's pointer.
    hover: HtmlElement,
    /// The agent's own highlight (or the rectangle being dragged).
    mark: HtmlElement,
    /// The visitor's pointer.
    pointer: HtmlElement,
}

/// What the mirror shows besides the page itself.
#[derive(Default)]
struct Scene {
    /// The visitor's viewport.
    viewport: Option<Size>,
    /// The visitor's window scroll.
    scroll: (i32, i32),
    /// The scale the mirror is drawn at (set by [`Session::render`]).
    scale: f64,
    /// The visitor's pointer, document coordinates.
    pointer: Option<(i32, i32)>,
    /// What the visitor points at.
    visitor: Option<Highlight>,
    /// What the agent pointed at last.
    mine: Option<Highlight>,
}

/// The one co-browse session this page shows.
#[derive(Default)]
struct Session {
    /// The conversation whose stream is drawn; frames of any other are ignored.
    conversation: Option<ConversationId>,
    /// Pieces, order and resyncs.
    stream: StreamState,
    /// The pane's DOM, once the iframe has loaded.
    stage: Option<Stage>,
    /// The page built in the iframe.
    doc: Option<MirrorDoc>,
    /// Items that came before the iframe loaded.
    queue: Vec<Stream>,
    /// The queue overflowed: ask for a snapshot once the iframe is there.
    overflowed: bool,
    /// Pointer, scroll, highlights.
    scene: Scene,
    /// The mirrored page's URL and title, for the pane's bar (read by the component).
    info: Option<RwSignal<Option<(String, String)>>>,
}

thread_local! {
    static SESSION: RefCell<Session> = RefCell::new(Session::default());
}

/// Takes one `cobrowse` frame from the relay.
pub fn receive(conversation_id: ConversationId, n: u32, data: &str, index: u32, count: u32) {
    let (resync, info) = SESSION.with_borrow_mut(|s| {
        if s.conversation.as_ref() != Some(&conversation_id) {
            return (false, None);
        }
        match s.stream.push(n, data, index, count, now_ms()) {
            Step::Apply(item) => {
                let info = match item.as_ref() {
                    Stream::Snapshot(snap) => Some((snap.url.clone(), snap.title.clone())),
                    _ => None,
                };
                let consistent = s.apply(*item);
                (!consistent && s.stream.drifted(now_ms()), info)
            }
            Step::Resync => (true, None),
            Step::Invalid(e) => {
                web_sys::console::warn_1(&format!("parley: bad co-browse item: {e}").into());
                (false, None)
            }
            Step::Wait | Step::Skip => (false, None),
        }
    });
    if let Some(info) = info {
        let signal = SESSION.with_borrow(|s| s.info);
        if let Some(sig) = signal {
            sig.try_set(Some(info));
        }
    }
    if resync {
        socket::send(&AgentFrame::CobrowseResync { conversation_id });
    }
}

/// A `cobrowse_resync` for `id` was sent (the model asks when a sharing conversation opens).
pub fn resync_sent(id: &ConversationId) {
    SESSION.with_borrow_mut(|s| {
        if s.conversation.as_ref() == Some(id) {
            s.stream.resync_sent(now_ms());
        }
    });
}

/// The agent stopped co-browsing in `id`: drop the stream and blank the mirror at once, before
/// the relay's `stopped` event comes back.
pub fn stopped(id: &ConversationId) {
    SESSION.with_borrow_mut(|s| {
        if s.conversation.as_ref() == Some(id) {
            s.blank();
            s.conversation = None;
        }
    });
}

impl Session {
    /// Clears the mirror and everything drawn over it.
    fn blank(&mut self) {
        self.stream = StreamState::new();
        self.queue.clear();
        self.scene = Scene::default();
        self.doc = None;
        if let Some(st) = &self.stage {
            if let Some(root) = st.frame.content_document().and_then(|d| d.body()) {
                root.set_text_content(None);
            }
            if let Some(el) = visitor_box(st) {
                el.remove();
            }
            st.hover.set_hidden(true);
            st.mark.set_hidden(true);
            st.pointer.set_hidden(true);
        }
    }

    /// Draws one in-order item; false when it named nodes the mirror does not have.
    fn apply(&mut self, item: Stream) -> bool {
        let Some(stage) = self.stage.clone() else {
            if matches!(item, Stream::Snapshot(_)) {
                self.queue.clear();
                self.overflowed = false;
            }
            if self.queue.len() >= QUEUE_MAX {
                self.queue.clear();
                self.overflowed = true;
            } else if !self.overflowed {
                self.queue.push(item);
            }
            return true;
        };
        let mut ok = true;
        match item {
            Stream::Snapshot(snap) => {
                let Some(doc) = stage.frame.content_document() else {
                    return false;
                };
                self.doc = Some(MirrorDoc::build(doc, &snap));
                self.scene = Scene {
                    viewport: Some(snap.viewport),
                    scroll: (snap.scroll_x, snap.scroll_y),
                    ..Scene::default()
                };
                stage.hover.set_hidden(true);
            }
            Stream::Mutations(m) => ok = self.doc.as_mut().is_some_and(|d| d.apply(&m)),
            Stream::Scroll { id: None, x, y, .. } => self.scene.scroll = (x, y),
            Stream::Scroll {
                id: Some(id), x, y, ..
            } => {
                ok = self
                    .doc
                    .as_ref()
                    .is_some_and(|d| d.scroll_element(id, x, y))
            }
            Stream::Viewport { size, .. } => self.scene.viewport = Some(size),
            Stream::Pointer { x, y, .. } => self.scene.pointer = Some((x, y)),
            Stream::Input {
                id, value, checked, ..
            } => {
                ok = self
                    .doc
                    .as_ref()
                    .is_some_and(|d| d.input(id, &value, checked))
            }
            Stream::Highlight(h) => {
                self.scene.visitor = (h.target != HighlightTarget::Clear).then_some(h);
            }
            Stream::Unknown => {}
        }
        self.render();
        ok
    }

    /// The mirror window's actual scroll (it may differ from the visitor's when the mirror's
    /// page is shorter, e.g. before its stylesheets load).
    fn mirror_scroll(&self) -> (i32, i32) {
        self.stage
            .as_ref()
            .and_then(|st| st.frame.content_window())
            .map_or(self.scene.scroll, |w| {
                (
                    w.scroll_x().unwrap_or(0.0).round() as i32,
                    w.scroll_y().unwrap_or(0.0).round() as i32,
                )
            })
    }

    /// Sizes and scales the mirror, follows the visitor's scroll, places pointer and boxes.
    fn render(&mut self) {
        let Some(st) = self.stage.clone() else {
            return;
        };
        let vp = self.scene.viewport.unwrap_or(DEFAULT_VIEWPORT);
        let scale = fit_scale(
            vp,
            f64::from(st.area.client_width()),
            f64::from(st.area.client_height()),
        );
        self.scene.scale = scale;
        let style = HtmlElement::style(&st.frame);
        let _ = style.set_property("width", &format!("{}px", vp.w));
        let _ = style.set_property("height", &format!("{}px", vp.h));
        let _ = style.set_property("transform", &format!("scale({scale})"));
        place(
            &st.overlay,
            0.0,
            0.0,
            f64::from(vp.w) * scale,
            f64::from(vp.h) * scale,
        );
        if let Some(w) = st.frame.content_window() {
            let want = self.scene.scroll;
            if self.mirror_scroll() != want {
                w.scroll_to_with_x_and_y(f64::from(want.0), f64::from(want.1));
            }
        }
        let scroll = self.mirror_scroll();
        match self.scene.pointer {
            Some((x, y)) => {
                let (px, py) = document_to_pane(x, y, scale, scroll);
                let _ = HtmlElement::style(&st.pointer).set_property("left", &format!("{px}px"));
                let _ = HtmlElement::style(&st.pointer).set_property("top", &format!("{py}px"));
                st.pointer.set_hidden(false);
            }
            None => st.pointer.set_hidden(true),
        }
        let visitor = self
            .scene
            .visitor
            .as_ref()
            .and_then(|h| Some((self.target_box(&h.target, scale, scroll)?, h.note.clone())));
        match visitor {
            Some((b, note)) => {
                let el = visitor_box(&st).or_else(|| new_visitor_box(&st));
                if let Some(el) = el {
                    place(&el, b.0, b.1, b.2, b.3);
                    if let Some(label) = el.first_element_child() {
                        // Text only: the note is the visitor's words, never markup.
                        label.set_text_content(note.as_deref());
                        if let Some(l) = label.dyn_ref::<HtmlElement>() {
                            l.set_hidden(note.is_none());
                        }
                    }
                }
            }
            None => {
                if let Some(el) = visitor_box(&st) {
                    el.remove();
                }
            }
        }
        let mine = self
            .scene
            .mine
            .as_ref()
            .and_then(|h| self.target_box(&h.target, scale, scroll));
        match mine {
            Some(b) => {
                place(&st.mark, b.0, b.1, b.2, b.3);
                st.mark.set_hidden(false);
            }
            None => st.mark.set_hidden(true),
        }
    }

    /// Where a highlight target sits on the pane: `(left, top, width, height)`.
    fn target_box(
        &self,
        target: &HighlightTarget,
        scale: f64,
        scroll: (i32, i32),
    ) -> Option<(f64, f64, f64, f64)> {
        match target {
            HighlightTarget::Node(id) => {
                let r = self.doc.as_ref()?.element(*id)?.get_bounding_client_rect();
                Some((
                    r.x() * scale,
                    r.y() * scale,
                    r.width() * scale,
                    r.height() * scale,
                ))
            }
            HighlightTarget::Rect(r) => {
                let (x, y) = document_to_pane(r.x, r.y, scale, scroll);
                Some((x, y, f64::from(r.w) * scale, f64::from(r.h) * scale))
            }
            HighlightTarget::Clear => None,
        }
    }

    /// The mirror element under pane point `p`, with its id.
    fn hit(&self, p: (f64, f64)) -> Option<(NodeId, Element)> {
        let doc = self.doc.as_ref()?;
        let s = if self.scene.scale > 0.0 {
            self.scene.scale
        } else {
            1.0
        };
        let el = doc
            .document()
            .element_from_point((p.0 / s) as f32, (p.1 / s) as f32)?;
        let id = doc.id_at(&el)?;
        Some((id, doc.element(id)?))
    }
}

/// The visitor's highlight box, when one is drawn.
fn visitor_box(st: &Stage) -> Option<Element> {
    st.overlay
        .query_selector(&format!("[{VISITOR_HIGHLIGHT_ATTR}]"))
        .ok()
        .flatten()
}

/// Creates the visitor's highlight box (an outline with a note label) in the overlay.
fn new_visitor_box(st: &Stage) -> Option<Element> {
    let doc = st.overlay.owner_document()?;
    let el = doc.create_element("div").ok()?;
    el.set_class_name("cobrowse-visitor-highlight");
    let _ = el.set_attribute(VISITOR_HIGHLIGHT_ATTR, "");
    let label = doc.create_element("span").ok()?;
    label.set_class_name("cobrowse-visitor-note");
    let _ = el.append_child(&label);
    let _ = st.overlay.append_child(&el);
    Some(el)
}

/// Positions an absolutely placed box through the CSSOM (allowed under `style-src 'self'`,
/// unlike style attributes).
fn place(el: &Element, x: f64, y: f64, w: f64, h: f64) {
    if let Some(style) = el.dyn_ref::<HtmlElement>().map(HtmlElement::style) {
        let _ = style.set_property("left", &format!("{x}px"));
        let _ = style.set_property("top", &format!("{y}px"));
        let _ = style.set_property("width", &format!("{w}px"));
        let _ = style.set_property("height", &format!("{h}px"));
    }
}

/// The pane: bar (page, note, clear) and the fitted mirror with its overlay.
#[component]
pub fn CobrowsePane(
    /// The conversation whose visitor shares with this agent.
    id: ConversationId,
) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    // The relay serves the mirror with the site's policy: its images and fonts load only from
    // the site's own origins.
    let site = ctx
        .model
        .with_untracked(|m| m.site_of(&id))
        .unwrap_or_default();
    let mirror_src = format!(
        "{MIRROR_SRC}?site={}",
        String::from(js_sys::encode_uri_component(&site))
    );
    let info = RwSignal::new(None::<(String, String)>);
    let note_text = RwSignal::new(String::new());
    let frame = NodeRef::<html::Iframe>::new();
    let area = NodeRef::<html::Div>::new();
    let overlay = NodeRef::<html::Div>::new();
    let hover = NodeRef::<html::Div>::new();
    let mark = NodeRef::<html::Div>::new();
    let pointer = NodeRef::<html::Div>::new();
    let drag_from = StoredValue::new(None::<(f64, f64)>);

    SESSION.with_borrow_mut(|s| {
        s.blank();
        *s = Session {
            conversation: Some(id.clone()),
            info: Some(info),
            ..Session::default()
        };
    });
    // Only the session this pane started: the next pane may have set up its own already.
    let mine = id.clone();
    on_cleanup(move || {
        SESSION.with_borrow_mut(|s| {
            if s.conversation.is_none() || s.conversation.as_ref() == Some(&mine) {
                s.blank();
                *s = Session::default();
            }
        });
    });
    let resize = window_event_listener(leptos::ev::resize, |_| {
        SESSION.with_borrow_mut(Session::render);
    });
    on_cleanup(move || resize.remove());

    let loaded_id = id.clone();
    let on_load = move |_| {
        let (Some(frame), Some(area), Some(overlay), Some(hover), Some(mark), Some(pointer)) = (
            frame.get_untracked(),
            area.get_untracked(),
            overlay.get_untracked(),
            hover.get_untracked(),
            mark.get_untracked(),
            pointer.get_untracked(),
        ) else {
            return;
        };
        // The initial about:blank may report a load too: wait for the mirror page itself.
        let ready = frame
            .content_document()
            .and_then(|d| d.url().ok())
            .is_some_and(|u| u.contains(MIRROR_SRC));
        if !ready {
            return;
        }
        let stage = Stage {
            frame,
            area: area.into(),
            overlay: overlay.into(),
            hover: hover.into(),
            mark: mark.into(),
            pointer: pointer.into(),
        };
        let resync = SESSION.with_borrow_mut(|s| {
            if s.conversation.as_ref() != Some(&loaded_id) {
                return false;
            }
            s.stage = Some(stage);
            for item in std::mem::take(&mut s.queue) {
                s.apply(item);
            }
            s.render();
            std::mem::take(&mut s.overflowed)
        });
        if resync {
            socket::send(&AgentFrame::CobrowseResync {
                conversation_id: loaded_id.clone(),
            });
        }
    };

    let pos = move |ev: &web_sys::MouseEvent| -> Option<(f64, f64)> {
        let r = overlay.get_untracked()?.get_bounding_client_rect();
        Some((
            f64::from(ev.client_x()) - r.left(),
            f64::from(ev.client_y()) - r.top(),
        ))
    };
    let on_down = move |ev: web_sys::MouseEvent| {
        if ev.button() == 0 {
            ev.prevent_default();
            drag_from.set_value(pos(&ev));
        }
    };
    let on_move = move |ev: web_sys::MouseEvent| {
        let Some(p) = pos(&ev) else { return };
        SESSION.with_borrow_mut(|s| {
            let Some(st) = s.stage.clone() else { return };
            match drag_from.get_value() {
                Some(a) if drag_rect(a, p, 1.0, (0, 0)).is_some() => {
                    st.hover.set_hidden(true);
                    place(
                        &st.mark,
                        a.0.min(p.0),
                        a.1.min(p.1),
                        (a.0 - p.0).abs(),
                        (a.1 - p.1).abs(),
                    );
                    st.mark.set_hidden(false);
                }
                Some(_) => {}
                None => match s.hit(p) {
                    Some((_, el)) => {
                        let r = el.get_bounding_client_rect();
                        let k = s.scene.scale;
                        place(
                            &st.hover,
                            r.x() * k,
                            r.y() * k,
                            r.width() * k,
                            r.height() * k,
                        );
                        st.hover.set_hidden(false);
                    }
                    None => st.hover.set_hidden(true),
                },
            }
        });
    };
    let point_id = id.clone();
    let on_up = move |ev: web_sys::MouseEvent| {
        let Some(a) = drag_from.get_value() else {
            return;
        };
        drag_from.set_value(None);
        let Some(p) = pos(&ev) else { return };
        let highlight = SESSION.with_borrow_mut(|s| {
            if s.conversation.as_ref() != Some(&point_id) {
                return None;
            }
            let page = s.doc.as_ref()?.page;
            let target = match drag_rect(a, p, s.scene.scale, s.mirror_scroll()) {
                Some(rect) => HighlightTarget::Rect(rect),
                None => HighlightTarget::Node(s.hit(p)?.0),
            };
            let h = Highlight {
                page,
                target,
                note: note(&note_text.get_untracked()),
            };
            s.scene.mine = Some(h.clone());
            s.render();
            Some(h)
        });
        if let Some(h) = highlight {
            ctx.act(|m| m.cobrowse_highlight(h));
        }
    };
    let on_leave = move |_| {
        drag_from.set_value(None);
        SESSION.with_borrow_mut(|s| {
            if let Some(st) = &s.stage {
                st.hover.set_hidden(true);
            }
            s.render();
        });
    };
    let clear = move |_| {
        let page = SESSION.with_borrow_mut(|s| {
            s.scene.mine = None;
            s.render();
            s.doc.as_ref().map(|d| d.page)
        });
        if let Some(page) = page {
            ctx.act(|m| {
                m.cobrowse_highlight(Highlight {
                    page,
                    target: HighlightTarget::Clear,
                    note: None,
                })
            });
        }
    };

    view! {
        <section class="cobrowse" aria-label="Visitor's page">
            <div class="cobrowse-bar">
                <span class="cobrowse-page" title=move || info.with(|i| i.as_ref().map(|i| i.0.clone()))>
                    {move || {
                        info.with(|i| match i {
                            Some((url, title)) if !title.is_empty() => format!("{title} — {url}"),
                            Some((url, _)) => url.clone(),
                            None => "Waiting for the visitor's page…".to_owned(),
                        })
                    }}
                </span>
                <input
                    class="cobrowse-note"
                    type="text"
                    maxlength="140"
                    placeholder="Note with your highlight (optional)"
                    aria-label="Note with your highlight"
                    prop:value=move || note_text.get()
                    on:input=move |ev| note_text.set(event_target_value(&ev))
                />
                <button type="button" class="cobrowse-clear" on:click=clear>"Clear"</button>
            </div>
            <div class="cobrowse-stage" node_ref=area>
                <iframe
                    class="cobrowse-frame"
                    node_ref=frame
                    sandbox="allow-same-origin"
                    src=mirror_src
                    title="Mirror of the visitor's page"
                    tabindex="-1"
                    on:load=on_load
                ></iframe>
                <div
                    class="cobrowse-overlay"
                    node_ref=overlay
                    on:mousedown=on_down
                    on:mousemove=on_move
                    on:mouseup=on_up
                    on:mouseleave=on_leave
                >
                    <div class="cobrowse-hover" node_ref=hover hidden></div>
                    <div class="cobrowse-mark" node_ref=mark hidden></div>
                    <div class="cobrowse-pointer" node_ref=pointer hidden></div>
                </div>
            </div>
        </section>
    }
}

//! "Show the agent": the visitor clicks an element or drags over a region, and it goes to the
//! agent as a [`Stream::Highlight`] (and is outlined locally so the visitor sees what was shown).
//!
//! A transparent layer in the shadow root catches the pointer while picking; to find the page
//! element under it, the layer lets the pointer through for one `elementFromPoint` call.

use std::cell::RefCell;

use protocol::cobrowse::{Highlight, HighlightTarget, Rect, Stream};
use wasm_bindgen::prelude::*;
use web_sys::{Element, Event, EventTarget, HtmlElement, KeyboardEvent, PointerEvent};

use crate::session::Session;
use crate::ui;

/// A drag shorter than this (px, each way) is a click.
const CLICK_SLOP: i32 = 6;

struct Picking {
    layer: HtmlElement,
    key: Closure<dyn FnMut(Event)>,
    _down: Closure<dyn FnMut(Event)>,
    _up: Closure<dyn FnMut(Event)>,
    _moved: Closure<dyn FnMut(Event)>,
    start: Option<(i32, i32)>,
    boxed: HtmlElement,
}

thread_local! {
    static PICKING: RefCell<Option<Picking>> = const { RefCell::new(None) };
}

/// The page element under viewport point `(x, y)`, seen through the picking layer.
fn element_at(layer: &HtmlElement, x: i32, y: i32) -> Option<Element> {
    let doc = ui::document()?;
    let _ = layer.class_list().add_1("parley-cb-through");
    let el = doc.element_from_point(x as f32, y as f32);
    let _ = layer.class_list().remove_1("parley-cb-through");
    el.filter(|e| {
        e.closest("parley-chat,[data-parley-host]")
            .ok()
            .flatten()
            .is_none()
    })
}

/// Starts picking (a second press cancels).
pub fn pick(s: &Session) {
    if PICKING.with(|p| p.borrow().is_some()) {
        cancel(s);
        return;
    }
    let Ok(layer) = ui::add(&s.0.root, "div", "parley-cb-pick", "") else {
        return;
    };
    let _ = layer.set_attribute("data-parley-cobrowse", "picker");
    let _ = ui::add(&layer, "div", "parley-cb-hint", s.0.t.pick_hint);
    let Ok(boxed) = ui::add(&layer, "div", "parley-cb-box", "") else {
        return;
    };
    boxed.set_hidden(true);

    let me = s.clone();
    let key = Closure::<dyn FnMut(Event)>::new(move |e: Event| {
        if e.dyn_ref::<KeyboardEvent>()
            .is_some_and(|k| k.key() == "Escape")
        {
            cancel(&me);
        }
    });
    let down = Closure::<dyn FnMut(Event)>::new(move |e: Event| {
        if let Some(p) = e.dyn_ref::<PointerEvent>() {
            e.prevent_default();
            PICKING.with(|c| {
                if let Some(pk) = c.borrow_mut().as_mut() {
                    pk.start = Some((p.client_x(), p.client_y()));
                }
            });
        }
    });
    let moved = Closure::<dyn FnMut(Event)>::new(move |e: Event| {
        let Some(p) = e.dyn_ref::<PointerEvent>() else {
            return;
        };
        PICKING.with(|c| {
            let c = c.borrow();
            let Some(pk) = c.as_ref() else { return };
            let (x, y) = (p.client_x(), p.client_y());
            let (bx, by, bw, bh) = match pk.start {
                Some((sx, sy)) => (sx.min(x), sy.min(y), (sx - x).abs(), (sy - y).abs()),
                None => match element_at(&pk.layer, x, y) {
                    Some(el) => {
                        let r = el.get_bounding_client_rect();
                        (
                            r.left() as i32,
                            r.top() as i32,
                            r.width() as i32,
                            r.height() as i32,
                        )
                    }
                    None => return,
                },
            };
            pk.boxed.set_hidden(false);
            ui::place(&pk.boxed, bx as f64, by as f64, bw as f64, bh as f64);
        });
    });
    let me = s.clone();
    let up = Closure::<dyn FnMut(Event)>::new(move |e: Event| {
        let Some(p) = e.dyn_ref::<PointerEvent>() else {
            return;
        };
        let (x, y) = (p.client_x(), p.client_y());
        let picked = PICKING.with(|c| {
            let c = c.borrow();
            let pk = c.as_ref()?;
            let (sx, sy) = pk.start?;
            if (sx - x).abs() <= CLICK_SLOP && (sy - y).abs() <= CLICK_SLOP {
                Some(Err(element_at(&pk.layer, x, y)?))
            } else {
                let w = web_sys::window()?;
                let ox = w.scroll_x().ok()?.round() as i32;
                let oy = w.scroll_y().ok()?.round() as i32;
                Some(Ok(Rect {
                    x: sx.min(x) + ox,
                    y: sy.min(y) + oy,
                    w: (sx - x).abs(),
                    h: (sy - y).abs(),
                }))
            }
        });
        cancel(&me);
        let target = match picked {
            Some(Ok(r)) => HighlightTarget::Rect(r),
            Some(Err(el)) => {
                // The nearest element the agent knows (text and hidden parts have none).
                let st = me.0.st.borrow();
                let mut cur = Some(el);
                let mut id = None;
                while let Some(e) = cur {
                    if let Some(i) = st.ser.id_of(&e) {
                        id = Some(i);
                        break;
                    }
                    cur = e.parent_element();
                }
                match id {
                    Some(i) => HighlightTarget::Node(i),
                    None => return,
                }
            }
            None => return,
        };
        let page = me.0.st.borrow().page;
        let h = Highlight {
            page,
            target,
            note: None,
        };
        me.push(&Stream::Highlight(h.clone()));
        me.draw(&h, "visitor");
    });
    let t: &EventTarget = layer.as_ref();
    let _ = t.add_event_listener_with_callback("pointerdown", down.as_ref().unchecked_ref());
    let _ = t.add_event_listener_with_callback("pointermove", moved.as_ref().unchecked_ref());
    let _ = t.add_event_listener_with_callback("pointerup", up.as_ref().unchecked_ref());
    if let Some(doc) = ui::document() {
        let _ = doc.add_event_listener_with_callback_and_bool(
            "keydown",
            key.as_ref().unchecked_ref(),
            true,
        );
    }
    PICKING.with(|c| {
        *c.borrow_mut() = Some(Picking {
            layer,
            key,
            _down: down,
            _up: up,
            _moved: moved,
            start: None,
            boxed,
        })
    });
}

/// Stops picking, if picking.
pub fn cancel(_s: &Session) {
    let Some(pk) = PICKING.with(|c| c.borrow_mut().take()) else {
        return;
    };
    pk.layer.remove();
    if let Some(doc) = ui::document() {
        let _ = doc.remove_event_listener_with_callback_and_bool(
            "keydown",
            pk.key.as_ref().unchecked_ref(),
            true,
        );
    }
    // Freed later: this runs inside one of these closures.
    gloo_timers::callback::Timeout::new(0, move || drop(pk)).forget();
}

//! The highlight overlay: an animated outline (with an optional note, as text) drawn in the
//! widget's shadow root over an element or a document rectangle. It follows scrolling and layout
//! changes with `requestAnimationFrame` while shown, scrolls its target into view once, and
//! fades out after [`SHOW_MS`].

use std::cell::RefCell;
use std::rc::Rc;

use gloo_timers::callback::Timeout;
use protocol::cobrowse::Rect;
use wasm_bindgen::prelude::*;
use web_sys::{Element, HtmlElement, ScrollIntoViewOptions, ScrollLogicalPosition, ShadowRoot};

use crate::ui;

/// How long a highlight stays.
pub const SHOW_MS: u32 = 8_000;

/// What the outline surrounds.
pub enum Target {
    /// An element of the page (followed through layout changes).
    Element(Element),
    /// A rectangle in document coordinates.
    Rect(Rect),
}

struct Shown {
    el: HtmlElement,
    target: Target,
    /// Bumped per highlight: an old rAF loop or fade timer sees it changed and stops.
    generation: u32,
}

/// The one highlight currently drawn (a new one replaces it).
#[derive(Clone, Default)]
pub struct Overlay(Rc<RefCell<OverlayState>>);

#[derive(Default)]
struct OverlayState {
    shown: Option<Shown>,
    generation: u32,
    fade: Option<Timeout>,
    gone: Option<Timeout>,
}

fn viewport() -> (f64, f64, f64, f64) {
    let w = web_sys::window();
    let get = |f: fn(&web_sys::Window) -> Result<JsValue, JsValue>| {
        w.as_ref()
            .and_then(|w| f(w).ok())
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0)
    };
    let sx = w.as_ref().and_then(|w| w.scroll_x().ok()).unwrap_or(0.0);
    let sy = w.as_ref().and_then(|w| w.scroll_y().ok()).unwrap_or(0.0);
    (
        sx,
        sy,
        get(web_sys::Window::inner_width),
        get(web_sys::Window::inner_height),
    )
}

/// The target's box in viewport coordinates.
fn target_box(t: &Target) -> (f64, f64, f64, f64) {
    match t {
        Target::Element(el) => {
            let r = el.get_bounding_client_rect();
            (r.left(), r.top(), r.width(), r.height())
        }
        Target::Rect(r) => {
            let (sx, sy, _, _) = viewport();
            (r.x as f64 - sx, r.y as f64 - sy, r.w as f64, r.h as f64)
        }
    }
}

impl Overlay {
    /// Draws a highlight in `root` (`who`: `agent` or `visitor`), replacing the current one.
    pub fn show(&self, root: &ShadowRoot, target: Target, note: Option<&str>, who: &str) {
        self.clear();
        let Ok(el) = ui::add(root, "div", "parley-cb-hl", "") else {
            return;
        };
        let _ = el.set_attribute("data-parley-highlight", who);
        let _ = el.set_attribute("aria-hidden", "true");
        if let Some(n) = note.map(str::trim).filter(|n| !n.is_empty()) {
            let n: String = n.chars().take(protocol::cobrowse::MAX_NOTE_CHARS).collect();
            let _ = ui::add(&el, "div", "parley-cb-note", &n);
        }
        // Into view once, if it is off-screen.
        let (x, y, w, h) = target_box(&target);
        let (sx, sy, vw, vh) = viewport();
        if y + h < 0.0 || y > vh || x + w < 0.0 || x > vw {
            match &target {
                Target::Element(e) => {
                    let o = ScrollIntoViewOptions::new();
                    o.set_block(ScrollLogicalPosition::Center);
                    e.scroll_into_view_with_scroll_into_view_options(&o);
                }
                Target::Rect(r) => {
                    if let Some(win) = web_sys::window() {
                        let _ = (sx, sy);
                        win.scroll_to_with_x_and_y(
                            (r.x as f64 - vw / 4.0).max(0.0),
                            (r.y as f64 - vh / 3.0).max(0.0),
                        );
                    }
                }
            }
        }
        let generation = {
            let mut st = self.0.borrow_mut();
            st.generation += 1;
            st.shown = Some(Shown {
                el: el.clone(),
                target,
                generation: st.generation,
            });
            st.generation
        };
        self.frame(generation);
        let me = self.clone();
        let el2 = el.clone();
        let fade = Timeout::new(SHOW_MS - 500, move || {
            let _ = el2.class_list().add_1("parley-cb-fade");
        });
        let gone = Timeout::new(SHOW_MS, move || {
            if me.0.borrow().generation == generation {
                me.clear();
            }
        });
        let mut st = self.0.borrow_mut();
        st.fade = Some(fade);
        st.gone = Some(gone);
    }

    /// Places the outline, then again on the next animation frame while it is shown.
    fn frame(&self, generation: u32) {
        {
            let st = self.0.borrow();
            let Some(s) = st.shown.as_ref().filter(|s| s.generation == generation) else {
                return;
            };
            let (x, y, w, h) = target_box(&s.target);
            ui::place(&s.el, x - 4.0, y - 4.0, w + 8.0, h + 8.0);
        }
        let me = self.clone();
        let cb = Closure::once_into_js(move || me.frame(generation));
        if let Some(w) = web_sys::window() {
            let _ = w.request_animation_frame(cb.unchecked_ref());
        }
    }

    /// Removes the highlight (if any) and stops following it.
    pub fn clear(&self) {
        let mut st = self.0.borrow_mut();
        st.generation += 1;
        if let Some(s) = st.shown.take() {
            s.el.remove();
        }
        // Not dropping the timers here: this may run inside one (they are replaced next time).
    }
}

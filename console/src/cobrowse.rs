//! Co-browse, the pure parts: putting the stream back together (pieces → items, gaps → resync),
//! the mirror's geometry (fit the visitor's viewport into the pane, pane ↔ document coordinates),
//! the highlight note, and which tags and attributes of a snapshot the mirror may build.
//!
//! No browser APIs here: [`crate::mirror`] (the DOM) and `components::cobrowse` (the pane) use
//! these, and `cargo test -p parley-console` checks them natively.

use protocol::cobrowse::{Rect, Size, Stream, MAX_NOTE_CHARS};

/// How long to wait for the snapshot a resync asked for before asking again. Items that arrive
/// meanwhile are dropped: they only make sense on top of that snapshot.
pub const RESYNC_RETRY_MS: i64 = 3_000;

/// The most bytes one item may take once its pieces are joined. A bigger item is dropped (and a
/// fresh snapshot asked for) instead of growing the console's memory without bound.
pub const MAX_ITEM_BYTES: usize = 32 * 1024 * 1024;

/// A pointer that moved less than this many pane pixels between press and release clicked; more
/// is a drag that draws a rectangle.
pub const DRAG_MIN_PX: f64 = 5.0;

/// What to do with one `cobrowse` frame.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// A piece of a longer item: wait for the rest.
    Wait,
    /// A whole item, in order: draw it.
    Apply(Box<Stream>),
    /// Nothing to draw (an unknown kind, or an item dropped while a resync is under way).
    Skip,
    /// The stream lost something (a gap in `n`, a lost piece, another page): send
    /// `cobrowse_resync` and drop items until the snapshot comes.
    Resync,
    /// The item did not decode: log it (the stream goes on; the agent may resync by hand).
    Invalid(String),
}

/// An item being put together from its pieces.
#[derive(Debug, Clone)]
struct Partial {
    /// The item's number.
    n: u32,
    /// The index the next piece must have.
    next: u32,
    /// How many pieces it has.
    count: u32,
    /// The pieces so far, joined.
    data: String,
}

/// Where the mirror's stream stands: pieces, page, last item number, resync asked.
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    /// Pieces of an item not complete yet.
    partial: Option<Partial>,
    /// The page of the last snapshot applied (`None` before the first one).
    page: Option<u32>,
    /// The number of the last item applied on that page: the next must be one more.
    last_n: u32,
    /// When a resync was last asked for (Unix ms), while its snapshot has not come.
    resync_at: Option<i64>,
}

impl StreamState {
    /// A stream that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The page the mirror shows, once a snapshot came.
    pub fn page(&self) -> Option<u32> {
        self.page
    }

    /// Notes that a resync was sent at `now` by someone else (opening a conversation that is
    /// sharing), so the stream does not ask a second time while that snapshot is on its way.
    pub fn resync_sent(&mut self, now: i64) {
        self.resync_at = Some(now);
    }

    /// The mirror found it no longer matches the visitor's page (a mutation named a node it
    /// lacks): true when a resync should be sent now (not while one is already under way).
    pub fn drifted(&mut self, now: i64) -> bool {
        self.resync(now) == Step::Resync
    }

    /// Takes one frame (`n`, `data`, `index`, `count` as on the wire) received at `now`.
    pub fn push(&mut self, n: u32, data: &str, index: u32, count: u32, now: i64) -> Step {
        let whole = if count <= 1 && index == 0 {
            self.partial = None;
            data.to_owned()
        } else if index >= count {
            self.partial = None;
            return self.resync(now);
        } else if index == 0 {
            self.partial = Some(Partial {
                n,
                next: 1,
                count,
                data: data.to_owned(),
            });
            return Step::Wait;
        } else {
            let Some(mut p) = self.partial.take() else {
                return self.resync(now);
            };
            if p.n != n || p.next != index || p.count != count {
                return self.resync(now);
            }
            if p.data.len() + data.len() > MAX_ITEM_BYTES {
                return self.resync(now);
            }
            p.data.push_str(data);
            p.next += 1;
            if p.next < p.count {
                self.partial = Some(p);
                return Step::Wait;
            }
            p.data
        };
        // Not `serde_json::from_str`: its recursion limit stops pages deeper than ~63 elements;
        // `decode_item` bounds the depth itself, with a typed error.
        let item = match protocol::cobrowse::decode_item(&whole) {
            Ok(item) => item,
            Err(e) => {
                self.advance(n);
                return Step::Invalid(e.to_string());
            }
        };
        match item_page(&item) {
            // A snapshot starts a page's stream afresh, whatever came before.
            None if matches!(item, Stream::Snapshot(_)) => {
                if let Stream::Snapshot(s) = &item {
                    self.page = Some(s.page);
                }
                self.last_n = n;
                self.resync_at = None;
                Step::Apply(Box::new(item))
            }
            // A kind this console does not know: keep counting, draw nothing.
            None => {
                self.advance(n);
                Step::Skip
            }
            Some(page) => {
                let in_order = self.page == Some(page)
                    && self.resync_at.is_none()
                    && n == self.last_n.wrapping_add(1);
                if in_order {
                    self.last_n = n;
                    Step::Apply(Box::new(item))
                } else {
                    self.resync(now)
                }
            }
        }
    }

    /// Counts item `n` as seen when it follows the last one (an item that was skipped on
    /// purpose must not look like a gap to the next).
    fn advance(&mut self, n: u32) {
        if self.page.is_some() && n == self.last_n.wrapping_add(1) {
            self.last_n = n;
        }
    }

    fn resync(&mut self, now: i64) -> Step {
        match self.resync_at {
            Some(t) if now.saturating_sub(t) < RESYNC_RETRY_MS => Step::Skip,
            _ => {
                self.resync_at = Some(now);
                Step::Resync
            }
        }
    }
}

/// The page an item belongs to (`None` for snapshots, which start one, and unknown kinds).
pub fn item_page(item: &Stream) -> Option<u32> {
    match item {
        Stream::Snapshot(_) | Stream::Unknown => None,
        Stream::Mutations(m) => Some(m.page),
        Stream::Scroll { page, .. }
        | Stream::Viewport { page, .. }
        | Stream::Pointer { page, .. }
        | Stream::Input { page, .. } => Some(*page),
        Stream::Highlight(h) => Some(h.page),
    }
}

/// The scale that fits a `viewport` into a pane of `pane_w` × `pane_h` pixels keeping its
/// aspect, never enlarging (a phone's page is not blown up) and never zero.
pub fn fit_scale(viewport: Size, pane_w: f64, pane_h: f64) -> f64 {
    if viewport.w <= 0 || viewport.h <= 0 || pane_w <= 0.0 || pane_h <= 0.0 {
        return 1.0;
    }
    let s = (pane_w / f64::from(viewport.w)).min(pane_h / f64::from(viewport.h));
    s.clamp(0.05, 1.0)
}

/// A point of the pane (pixels from the scaled mirror's top-left corner) in the visitor's
/// document coordinates: undo the scale, add the window's scroll.
pub fn pane_to_document(x: f64, y: f64, scale: f64, scroll: (i32, i32)) -> (i32, i32) {
    let s = if scale > 0.0 { scale } else { 1.0 };
    (
        (x / s).round() as i32 + scroll.0,
        (y / s).round() as i32 + scroll.1,
    )
}

/// A point of the visitor's document on the pane (the inverse of [`pane_to_document`]).
pub fn document_to_pane(x: i32, y: i32, scale: f64, scroll: (i32, i32)) -> (f64, f64) {
    (
        f64::from(x - scroll.0) * scale,
        f64::from(y - scroll.1) * scale,
    )
}

/// The document rectangle an agent dragged from `a` to `b` (pane pixels), or `None` when the
/// pointer barely moved (that was a click).
pub fn drag_rect(a: (f64, f64), b: (f64, f64), scale: f64, scroll: (i32, i32)) -> Option<Rect> {
    if (a.0 - b.0).abs() < DRAG_MIN_PX && (a.1 - b.1).abs() < DRAG_MIN_PX {
        return None;
    }
    let (x0, y0) = pane_to_document(a.0.min(b.0), a.1.min(b.1), scale, scroll);
    let (x1, y1) = pane_to_document(a.0.max(b.0), a.1.max(b.1), scale, scroll);
    Some(Rect {
        x: x0,
        y: y0,
        w: (x1 - x0).max(1),
        h: (y1 - y0).max(1),
    })
}

/// The note to send with a highlight: trimmed, cut to [`MAX_NOTE_CHARS`] characters, `None` when
/// empty.
pub fn note(input: &str) -> Option<String> {
    let t = input.trim();
    (!t.is_empty()).then(|| t.chars().take(MAX_NOTE_CHARS).collect())
}

/// What the mirror does with an element of a given tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagRule {
    /// Build it.
    Build,
    /// Leave it (and its subtree) out: scripts, and elements that would load or run something
    /// on their own (`<base>` re-targets URLs, `<meta http-equiv>` may refresh).
    Drop,
    /// Draw a grey placeholder instead: embedded documents and plugins.
    Placeholder,
}

/// The rule for an element with lower-case `tag` (`http_equiv`: it has that attribute).
pub fn tag_rule(tag: &str, http_equiv: bool) -> TagRule {
    match tag {
        // SVG `set`/`animate` can rewrite an `href` after the checks below.
        "script" | "noscript" | "base" | "template" | "set" | "animate" => TagRule::Drop,
        "meta" if http_equiv => TagRule::Drop,
        "iframe" | "frame" | "frameset" | "object" | "embed" | "applet" | "portal" => {
            TagRule::Placeholder
        }
        _ => TagRule::Build,
    }
}

/// Whether attribute `name` = `value` may be set on a mirror element. The widget already cleans
/// them; this checks again (defence in depth): no event handlers, no `javascript:`/`vbscript:`
/// or `data:text/html` URLs, no `srcdoc`, no `autofocus`/`autoplay`, nothing with a name a browser would refuse.
pub fn attr_allowed(name: &str, value: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if name.is_empty()
        || name.starts_with("on")
        || name == "srcdoc"
        || name == "http-equiv"
        || name == "nonce"
        // Would take the agent's keyboard focus or play sound in the console.
        || name == "autofocus"
        || name == "autoplay"
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
    {
        return false;
    }
    // Browsers ignore whitespace and control characters inside a scheme (`java\tscript:`).
    let squeezed: String = value
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .take(32)
        .collect::<String>()
        .to_ascii_lowercase();
    !(squeezed.starts_with("javascript:")
        || squeezed.starts_with("vbscript:")
        || squeezed.starts_with("data:text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::cobrowse::{Highlight, HighlightTarget, Mutations, Node, Snapshot};

    fn snapshot(page: u32) -> String {
        serde_json::to_string(&Stream::Snapshot(Snapshot {
            page,
            url: "https://shop.example/".into(),
            title: "Shop".into(),
            viewport: Size { w: 1280, h: 800 },
            scroll_x: 0,
            scroll_y: 0,
            root: Node {
                id: 1,
                tag: Some("html".into()),
                ns: None,
                attrs: vec![],
                text: None,
                kids: vec![],
                block: None,
                shadow: None,
                frame: None,
            },
            masked: 0,
        }))
        .unwrap()
    }

    fn pointer(page: u32) -> String {
        serde_json::to_string(&Stream::Pointer { page, x: 1, y: 2 }).unwrap()
    }

    fn applied(step: &Step) -> bool {
        matches!(step, Step::Apply(_))
    }

    /// A snapshot whose page nests `levels` nodes deep.
    fn deep_snapshot(levels: u32) -> String {
        let mut node = Node {
            id: 0,
            tag: None,
            ns: None,
            attrs: vec![],
            text: Some("deep".into()),
            kids: vec![],
            block: None,
            shadow: None,
            frame: None,
        };
        for id in 1..levels {
            node = Node {
                id,
                tag: Some("div".into()),
                ns: None,
                attrs: vec![],
                text: None,
                kids: vec![node],
                block: None,
                shadow: None,
                frame: None,
            };
        }
        serde_json::to_string(&Stream::Snapshot(Snapshot {
            page: 9,
            url: "https://shop.example/".into(),
            title: "Deep".into(),
            viewport: Size { w: 1280, h: 800 },
            scroll_x: 0,
            scroll_y: 0,
            root: node,
            masked: 0,
        }))
        .unwrap()
    }

    #[test]
    fn deep_pages_are_drawn_and_deeper_ones_refused_with_a_reason() {
        // An unoptimized native build needs more stack per level than the console's wasm, and a
        // test thread has 2 MiB: run where `decode_item` says it should.
        std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(deep_pages)
            .unwrap()
            .join()
            .unwrap();
    }

    fn deep_pages() {
        // serde_json's default limit refused these from about 63 levels on.
        for levels in [64, 250, protocol::cobrowse::MAX_DEPTH as u32] {
            let mut s = StreamState::new();
            assert!(
                applied(&s.push(1, &deep_snapshot(levels), 0, 1, 0)),
                "{levels} levels"
            );
        }
        let mut s = StreamState::new();
        let too_deep = deep_snapshot(protocol::cobrowse::MAX_DEPTH as u32 + 20);
        match s.push(1, &too_deep, 0, 1, 0) {
            Step::Invalid(why) => assert!(why.contains("deeper"), "{why}"),
            other => panic!("not refused: {other:?}"),
        }
        let hostile = "[".repeat(2_000_000);
        assert!(matches!(s.push(2, &hostile, 0, 1, 0), Step::Invalid(_)));
    }

    #[test]
    fn pieces_are_joined_in_order() {
        let mut s = StreamState::new();
        let data = snapshot(7);
        let (a, b) = data.split_at(data.len() / 2);
        let (b, c) = b.split_at(b.len() / 2);
        assert_eq!(s.push(1, a, 0, 3, 0), Step::Wait);
        assert_eq!(s.push(1, b, 1, 3, 0), Step::Wait);
        let step = s.push(1, c, 2, 3, 0);
        assert!(
            matches!(&step, Step::Apply(item) if matches!(**item, Stream::Snapshot(ref sn) if sn.page == 7))
        );
        assert_eq!(s.page(), Some(7));
        assert!(applied(&s.push(2, &pointer(7), 0, 1, 0)));
    }

    #[test]
    fn a_lost_piece_asks_for_a_resync_once() {
        let mut s = StreamState::new();
        assert!(applied(&s.push(1, &snapshot(7), 0, 1, 0)));
        assert_eq!(s.push(2, "{\"kind\":", 0, 3, 10), Step::Wait);
        assert_eq!(
            s.push(2, "x", 2, 3, 10),
            Step::Resync,
            "piece 1 went missing"
        );
        // Items after it are dropped without asking again until the retry delay passed.
        assert_eq!(s.push(3, &pointer(7), 0, 1, 20), Step::Skip);
        assert_eq!(
            s.push(4, &pointer(7), 0, 1, 20 + RESYNC_RETRY_MS),
            Step::Resync
        );
        // The snapshot ends the wait; its number starts the count again.
        assert!(applied(&s.push(9, &snapshot(7), 0, 1, 30)));
        assert!(applied(&s.push(10, &pointer(7), 0, 1, 30)));
    }

    #[test]
    fn gaps_and_other_pages_resync() {
        let mut s = StreamState::new();
        assert_eq!(
            s.push(1, &pointer(7), 0, 1, 0),
            Step::Resync,
            "nothing to draw on before a snapshot"
        );
        assert!(applied(&s.push(1, &snapshot(7), 0, 1, 1)));
        assert!(applied(&s.push(2, &pointer(7), 0, 1, 1)));
        assert_eq!(
            s.push(4, &pointer(7), 0, 1, 5_000),
            Step::Resync,
            "3 is missing"
        );
        assert!(applied(&s.push(1, &snapshot(8), 0, 1, 5_001)), "navigation");
        assert_eq!(s.page(), Some(8));
        assert_eq!(
            s.push(2, &pointer(7), 0, 1, 9_000),
            Step::Resync,
            "an item of the old page"
        );
    }

    #[test]
    fn unknown_kinds_count_and_bad_json_is_reported() {
        let mut s = StreamState::new();
        assert!(applied(&s.push(1, &snapshot(7), 0, 1, 0)));
        assert_eq!(
            s.push(2, r#"{"kind":"telepathy","page":7}"#, 0, 1, 0),
            Step::Skip
        );
        assert!(matches!(s.push(3, "{nope", 0, 1, 0), Step::Invalid(_)));
        let m = Stream::Mutations(Mutations {
            page: 7,
            ..Mutations::default()
        });
        assert!(applied(&s.push(
            4,
            &serde_json::to_string(&m).unwrap(),
            0,
            1,
            0
        )));
        let h = Stream::Highlight(Highlight {
            page: 7,
            target: HighlightTarget::Clear,
            note: None,
        });
        assert!(applied(&s.push(
            5,
            &serde_json::to_string(&h).unwrap(),
            0,
            1,
            0
        )));
    }

    #[test]
    fn a_resync_sent_on_open_is_not_repeated() {
        let mut s = StreamState::new();
        s.resync_sent(100);
        assert_eq!(s.push(5, &pointer(7), 0, 1, 200), Step::Skip);
        assert!(applied(&s.push(6, &snapshot(7), 0, 1, 300)));
    }

    #[test]
    fn fit_keeps_aspect_and_never_enlarges() {
        let vp = Size { w: 1280, h: 800 };
        assert_eq!(fit_scale(vp, 640.0, 800.0), 0.5);
        assert_eq!(fit_scale(vp, 1280.0, 400.0), 0.5);
        assert_eq!(fit_scale(Size { w: 375, h: 667 }, 1000.0, 1000.0), 1.0);
        assert_eq!(fit_scale(Size { w: 0, h: 0 }, 100.0, 100.0), 1.0);
    }

    #[test]
    fn pane_and_document_coordinates_round_trip() {
        // Half size, scrolled down 300: pane (100, 50) is document (200, 400).
        assert_eq!(pane_to_document(100.0, 50.0, 0.5, (0, 300)), (200, 400));
        assert_eq!(document_to_pane(200, 400, 0.5, (0, 300)), (100.0, 50.0));
        assert_eq!(
            drag_rect((120.0, 80.0), (20.0, 30.0), 0.5, (10, 300)),
            Some(Rect {
                x: 50,
                y: 360,
                w: 200,
                h: 100
            })
        );
        assert_eq!(drag_rect((10.0, 10.0), (12.0, 13.0), 0.5, (0, 0)), None);
    }

    #[test]
    fn notes_are_trimmed_and_cut() {
        assert_eq!(note("   "), None);
        assert_eq!(note(" this one ").as_deref(), Some("this one"));
        let long = "가".repeat(200);
        assert_eq!(note(&long).unwrap().chars().count(), MAX_NOTE_CHARS);
    }

    #[test]
    fn tag_and_attribute_rules() {
        assert_eq!(tag_rule("script", false), TagRule::Drop);
        assert_eq!(tag_rule("meta", true), TagRule::Drop);
        assert_eq!(tag_rule("meta", false), TagRule::Build);
        assert_eq!(tag_rule("iframe", false), TagRule::Placeholder);
        assert_eq!(tag_rule("div", false), TagRule::Build);
        assert!(attr_allowed("href", "https://shop.example/a"));
        assert!(attr_allowed("class", "btn"));
        assert!(attr_allowed("style", "color: red"));
        assert!(attr_allowed("xlink:href", "#icon"));
        assert!(!attr_allowed("onclick", "alert(1)"));
        assert!(!attr_allowed("ONLOAD", "x"));
        assert!(!attr_allowed("href", " JavaScript:alert(1)"));
        assert!(!attr_allowed("href", "java\tscript:alert(1)"));
        assert!(!attr_allowed("src", "data:text/html,<script>"));
        assert!(!attr_allowed("srcdoc", "<p>"));
        assert!(!attr_allowed("a\"b", "x"));
    }
}

//! Browser-side tests of the co-browse mirror builder: a snapshot and mutations fed into
//! [`MirrorDoc`] build the right DOM in a sandboxed iframe, and nothing that could run — a
//! `<script>`, an `on*` handler, a `javascript:` URL — ever reaches it.
//! Run with `wasm-bindgen-test-runner` + chromedriver, as `cargo xtask test` does:
//! `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner CHROMEDRIVER=/usr/bin/chromedriver
//!  cargo test -p parley-console --target wasm32-unknown-unknown --test mirror`.
#![allow(missing_docs)]
// `allow-unwrap-in-tests` covers `#[test]` only, not `#[wasm_bindgen_test]` and its helpers.
#![allow(clippy::unwrap_used)]

use parley_console::mirror::{MirrorDoc, BLOCK_ATTR, FRAME_ATTR};
use protocol::cobrowse::{
    Added, AttrChange, Fragment, Mutations, Node, Size, Snapshot, TextChange,
};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::{Document, HtmlIFrameElement};

wasm_bindgen_test_configure!(run_in_browser);

fn el(id: u32, tag: &str, attrs: &[(&str, &str)], kids: Vec<Node>) -> Node {
    Node {
        id,
        tag: Some(tag.into()),
        ns: None,
        attrs: attrs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        text: None,
        kids,
        block: None,
        shadow: None,
        frame: None,
    }
}

fn text(id: u32, t: &str) -> Node {
    Node {
        id,
        tag: None,
        ns: None,
        attrs: vec![],
        text: Some(t.into()),
        kids: vec![],
        block: None,
        shadow: None,
        frame: None,
    }
}

/// A sandboxed, script-less iframe like the console's, and its document.
fn mirror_frame() -> Document {
    let doc = web_sys::window().unwrap().document().unwrap();
    let frame: HtmlIFrameElement = doc.create_element("iframe").unwrap().unchecked_into();
    frame.set_attribute("sandbox", "allow-same-origin").unwrap();
    doc.body().unwrap().append_child(&frame).unwrap();
    frame.content_document().expect("same-origin sandbox")
}

fn page() -> Snapshot {
    let mut svg = el(30, "svg", &[("viewBox", "0 0 10 10")], vec![]);
    svg.ns = Some("svg".into());
    let mut circle = el(31, "circle", &[("r", "4"), ("onload", "alert(1)")], vec![]);
    circle.ns = Some("svg".into());
    svg.kids.push(circle);
    let mut card = el(40, "div", &[], vec![]);
    card.block = Some(Size { w: 120, h: 40 });
    Snapshot {
        page: 9,
        url: "https://shop.example/cart".into(),
        title: "Cart".into(),
        viewport: Size { w: 1024, h: 700 },
        scroll_x: 0,
        scroll_y: 0,
        root: el(
            1,
            "html",
            &[("lang", "en")],
            vec![
                el(
                    2,
                    "head",
                    &[],
                    vec![
                        el(3, "style", &[], vec![text(4, "p { color: rgb(1, 2, 3); }")]),
                        el(5, "script", &[], vec![text(6, "window.pwned = 1")]),
                        el(
                            7,
                            "meta",
                            &[("http-equiv", "refresh"), ("content", "0;url=/x")],
                            vec![],
                        ),
                    ],
                ),
                el(
                    10,
                    "body",
                    &[],
                    vec![
                        el(
                            11,
                            "p",
                            &[("class", "lead"), ("onclick", "alert(1)")],
                            vec![text(12, "Hello")],
                        ),
                        el(
                            13,
                            "a",
                            &[("href", "java\tscript:alert(1)"), ("id", "bad")],
                            vec![text(14, "bad link")],
                        ),
                        el(
                            15,
                            "a",
                            &[("href", "https://shop.example/help"), ("id", "good")],
                            vec![],
                        ),
                        svg,
                        card,
                        el(
                            50,
                            "iframe",
                            &[("src", "https://evil.example/"), ("width", "200")],
                            vec![],
                        ),
                        el(60, "input", &[("id", "qty"), ("value", "1")], vec![]),
                    ],
                ),
            ],
        ),
        masked: 0,
    }
}

#[wasm_bindgen_test]
fn snapshot_builds_a_clean_document() {
    let doc = mirror_frame();
    let m = MirrorDoc::build(doc.clone(), &page());
    let html = doc.document_element().unwrap();
    assert_eq!(html.get_attribute("lang").as_deref(), Some("en"));
    assert_eq!(doc.title(), "Cart");
    assert!(
        doc.query_selector("script").unwrap().is_none(),
        "no script element"
    );
    assert!(
        doc.query_selector("meta[http-equiv]").unwrap().is_none(),
        "no refresh"
    );
    let p = doc.query_selector("p").unwrap().unwrap();
    assert_eq!(p.text_content().as_deref(), Some("Hello"));
    assert_eq!(p.get_attribute("class").as_deref(), Some("lead"));
    assert!(!p.has_attribute("onclick"));
    assert!(!doc
        .query_selector("#bad")
        .unwrap()
        .unwrap()
        .has_attribute("href"));
    assert_eq!(
        doc.query_selector("#good")
            .unwrap()
            .unwrap()
            .get_attribute("href")
            .as_deref(),
        Some("https://shop.example/help")
    );
    let circle = doc.query_selector("circle").unwrap().unwrap();
    assert_eq!(
        circle.namespace_uri().as_deref(),
        Some("http://www.w3.org/2000/svg")
    );
    assert!(!circle.has_attribute("onload"));
    assert!(
        doc.query_selector("iframe").unwrap().is_none(),
        "embeds become boxes"
    );
    assert_eq!(
        doc.query_selector_all(&format!("[{BLOCK_ATTR}]"))
            .unwrap()
            .length(),
        2
    );
    assert!(m.element(11).is_some() && m.element(5).is_none());
    assert!(
        js_sys::Reflect::get(&web_sys::window().unwrap(), &"pwned".into())
            .unwrap()
            .is_undefined()
    );
}

#[wasm_bindgen_test]
fn mutations_inputs_and_drift() {
    let doc = mirror_frame();
    let mut m = MirrorDoc::build(doc.clone(), &page());
    let ok = m.apply(&Mutations {
        page: 9,
        removes: vec![13],
        adds: vec![
            Added {
                parent: 11,
                before: Some(12),
                node: el(70, "b", &[("onmouseover", "x")], vec![text(71, "New: ")]),
            },
            Added {
                parent: 10,
                before: None,
                node: el(72, "script", &[], vec![text(73, "window.pwned = 2")]),
            },
            Added {
                parent: 10,
                before: Some(72),
                node: el(74, "footer", &[], vec![]),
            },
        ],
        attrs: vec![
            AttrChange {
                id: 11,
                name: "class".into(),
                value: Some("lead big".into()),
            },
            AttrChange {
                id: 11,
                name: "onclick".into(),
                value: Some("alert(2)".into()),
            },
            AttrChange {
                id: 15,
                name: "href".into(),
                value: Some("javascript:alert(3)".into()),
            },
        ],
        texts: vec![TextChange {
            id: 12,
            text: "Hello again".into(),
        }],
        masked: 0,
    });
    assert!(ok);
    let p = doc.query_selector("p").unwrap().unwrap();
    assert_eq!(p.text_content().as_deref(), Some("New: Hello again"));
    assert_eq!(p.first_element_child().unwrap().tag_name(), "B");
    assert!(!p
        .first_element_child()
        .unwrap()
        .has_attribute("onmouseover"));
    assert_eq!(p.get_attribute("class").as_deref(), Some("lead big"));
    assert!(!p.has_attribute("onclick"));
    assert_eq!(
        doc.query_selector("#good")
            .unwrap()
            .unwrap()
            .get_attribute("href")
            .as_deref(),
        Some("https://shop.example/help"),
        "a javascript: URL never replaces a good one"
    );
    assert!(doc.query_selector("#bad").unwrap().is_none());
    assert!(doc.query_selector("script").unwrap().is_none());
    // The footer went before the dropped script's place holder, i.e. at the end of the body.
    assert_eq!(
        doc.body().unwrap().last_element_child().unwrap().tag_name(),
        "FOOTER"
    );
    assert!(m.input(60, "3", None));
    let qty = doc.query_selector("#qty").unwrap().unwrap();
    assert_eq!(
        js_sys::Reflect::get(&qty, &"value".into())
            .unwrap()
            .as_string()
            .as_deref(),
        Some("3")
    );
    // A batch naming nodes the mirror lacks says so: the console then asks for a snapshot.
    assert!(!m.apply(&Mutations {
        page: 9,
        removes: vec![999],
        ..Mutations::default()
    }));
    assert_eq!(m.id_at(&p.first_child().unwrap()), Some(70));
}

/// A shadow host (`x-card`, its root holding a style and a slot), a same-origin frame's document
/// and a frame the widget could not read.
fn page_with_fragments() -> Snapshot {
    let mut host = el(20, "x-card", &[], vec![text(21, "light child")]);
    host.shadow = Some(Box::new(Fragment {
        id: 22,
        kids: vec![
            el(
                23,
                "style",
                &[],
                vec![text(24, "p { color: rgb(9, 8, 7); }")],
            ),
            el(
                25,
                "p",
                &[("id", "inside")],
                vec![text(26, "in the shadow")],
            ),
            el(27, "slot", &[], vec![]),
            el(28, "script", &[], vec![text(29, "window.pwned = 3")]),
        ],
        size: None,
    }));
    let mut frame = el(30, "iframe", &[("class", "embed")], vec![]);
    frame.frame = Some(Box::new(Fragment {
        id: 31,
        kids: vec![el(
            32,
            "html",
            &[],
            vec![el(
                33,
                "body",
                &[],
                vec![el(
                    34,
                    "h2",
                    &[("onclick", "x()")],
                    vec![text(35, "Framed")],
                )],
            )],
        )],
        size: Some(Size { w: 240, h: 90 }),
    }));
    let mut foreign = el(40, "iframe", &[], vec![]);
    foreign.block = Some(Size { w: 200, h: 70 });
    Snapshot {
        page: 4,
        url: "https://shop.example/".into(),
        title: "Parts".into(),
        viewport: Size { w: 1024, h: 700 },
        scroll_x: 0,
        scroll_y: 0,
        root: el(
            1,
            "html",
            &[],
            vec![
                el(2, "head", &[], vec![]),
                el(3, "body", &[], vec![host, frame, foreign]),
            ],
        ),
        masked: 0,
    }
}

#[wasm_bindgen_test]
fn shadow_roots_and_frames_are_built_in_their_own_roots() {
    let doc = mirror_frame();
    let mut m = MirrorDoc::build(doc.clone(), &page_with_fragments());
    let host = doc.query_selector("x-card").unwrap().unwrap();
    let root = host.shadow_root().expect("an open shadow root on the host");
    let inside = root.query_selector("#inside").unwrap().unwrap();
    assert_eq!(inside.text_content().as_deref(), Some("in the shadow"));
    assert!(
        doc.query_selector("#inside").unwrap().is_none(),
        "shadow content stays in its root"
    );
    assert!(root.query_selector("script").unwrap().is_none());
    assert_eq!(host.text_content().as_deref(), Some("light child"));
    // The frame: a box of its size holding the frame's document; no nested browsing context.
    assert!(doc.query_selector("iframe").unwrap().is_none());
    let frame_box = doc
        .query_selector(&format!("[{FRAME_ATTR}]"))
        .unwrap()
        .unwrap();
    let style = frame_box.get_attribute("style").unwrap_or_default();
    assert!(
        style.contains("width: 240px") && style.contains("height: 90px"),
        "{style}"
    );
    let framed = frame_box
        .shadow_root()
        .unwrap()
        .query_selector("h2")
        .unwrap()
        .unwrap();
    assert_eq!(framed.text_content().as_deref(), Some("Framed"));
    assert!(!framed.has_attribute("onclick"));
    let foreign = m.element(40).unwrap();
    assert!(
        foreign.has_attribute(BLOCK_ATTR),
        "an unreadable frame is a grey box"
    );
    // Mutations address the fragments by their ids.
    assert!(m.apply(&Mutations {
        page: 4,
        removes: vec![26],
        adds: vec![
            Added {
                parent: 22,
                before: Some(27),
                node: el(50, "em", &[], vec![text(51, "added in the shadow")]),
            },
            Added {
                parent: 33,
                before: None,
                node: el(52, "p", &[], vec![text(53, "added in the frame")]),
            },
        ],
        attrs: vec![],
        texts: vec![TextChange {
            id: 35,
            text: "Framed again".into(),
        }],
        masked: 0,
    }));
    assert_eq!(
        root.query_selector("em")
            .unwrap()
            .unwrap()
            .text_content()
            .as_deref(),
        Some("added in the shadow")
    );
    assert_eq!(inside.text_content().as_deref(), Some(""));
    assert_eq!(framed.text_content().as_deref(), Some("Framed again"));
    assert!(m.element(52).is_some());
    // Removing the host forgets what its shadow root held: a later add there is drift.
    assert!(m.apply(&Mutations {
        page: 4,
        removes: vec![20],
        ..Mutations::default()
    }));
    assert!(m.element(50).is_none() && m.element(25).is_none());
    assert!(!m.apply(&Mutations {
        page: 4,
        adds: vec![Added {
            parent: 22,
            before: None,
            node: text(60, "late"),
        }],
        ..Mutations::default()
    }));
    assert!(
        js_sys::Reflect::get(&web_sys::window().unwrap(), &"pwned".into())
            .unwrap()
            .is_undefined()
    );
}

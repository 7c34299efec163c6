//! Masking proofs, in a real browser: canary strings put into every kind of field never appear in
//! a snapshot, a mutation batch or an input item; passwords stay masked even when marked safe;
//! block and mask placeholders keep their size and length; the widget, scripts and comments are
//! never serialized; node ids survive mutations; a running session streams only masked data and
//! sends nothing after Stop.
//! Run: `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
//! CHROMEDRIVER=/usr/bin/chromedriver cargo test -p parley-cobrowse --target wasm32-unknown-unknown`.
#![allow(missing_docs)]
// A test that cannot set up its page should stop right there; `expect` texts would add nothing.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use parley_cobrowse::changes;
use parley_cobrowse::mask::{self, Ctx};
use parley_cobrowse::serialize::Serializer;
use parley_cobrowse::session::snapshot;
use parley_cobrowse::stream::split;
use protocol::cobrowse::{Node, Snapshot, Stream};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;
use web_sys::{
    Document, Element, HtmlElement, HtmlInputElement, HtmlSelectElement, HtmlTextAreaElement,
};

wasm_bindgen_test_configure!(run_in_browser);

/// Every canary typed or written into private places of the fixture.
const CANARIES: &[&str] = &[
    "CARDCANARY4242",
    "CVVCANARY",
    "MARKUPCANARY",
    "EMAILCANARY",
    "PWCANARY",
    "PWTWOCANARY",
    "TEXTAREADEFAULTCANARY",
    "TEXTAREATYPEDCANARY",
    "EDITABLECANARY",
    "BLOCKCANARY",
    "MASKEDCANARY",
    "SCRIPTCANARY",
    "NOSCRIPTCANARY",
    "COMMENTCANARY",
    "HOSTCANARY",
    "JSURLCANARY",
    "ONCLICKCANARY",
];

const FIXTURE: &str = r#"
<form id="f">
  <input id="card" type="text">
  <input id="cvv" type="text" value="MARKUPCANARY">
  <input id="email" type="email">
  <input id="pw" type="password" data-parley-unmask>
  <div data-parley-unmask><input id="pw2" type="password"><input id="coupon" type="text"></div>
  <textarea id="ta">TEXTAREADEFAULTCANARY</textarea>
  <div id="ce" contenteditable="true">EDITABLECANARY <b>bold</b></div>
  <select id="sel"><option value="a">Alpha</option><option value="b">Beta</option></select>
  <input id="cb" type="checkbox">
</form>
<div id="blk" data-parley-block><p>BLOCKCANARY</p><span>more</span></div>
<p id="msk" data-parley-mask>MASKEDCANARY text</p>
<p id="plain">Plain words stay</p>
<script>var SCRIPTCANARY = 1;</script>
<noscript>NOSCRIPTCANARY</noscript>
<!-- COMMENTCANARY -->
<parley-chat data-parley-host>HOSTCANARY</parley-chat>
<a id="js" href="javascript:alert('JSURLCANARY')" onclick="ONCLICKCANARY()">x</a>
<img id="img" src="img/pic.png">
"#;

fn doc() -> Document {
    web_sys::window().unwrap().document().unwrap()
}

fn el<T: JsCast>(id: &str) -> T {
    doc()
        .get_element_by_id(id)
        .unwrap()
        .dyn_into::<T>()
        .unwrap()
}

/// Sets up the fixture (in its own element: the test runner's output lives in the body too) and
/// types canaries into every field.
fn fixture() {
    if let Some(old) = doc().get_element_by_id("fixture") {
        old.remove();
    }
    let holder = doc().create_element("div").unwrap();
    holder.set_id("fixture");
    holder.set_inner_html(FIXTURE);
    doc().body().unwrap().append_child(&holder).unwrap();
    let blk: HtmlElement = el("blk");
    blk.style().set_property("display", "block").unwrap();
    blk.style().set_property("width", "120px").unwrap();
    blk.style().set_property("height", "40px").unwrap();
    el::<HtmlInputElement>("card").set_value("CARDCANARY4242");
    el::<HtmlInputElement>("cvv").set_value("CVVCANARY");
    el::<HtmlInputElement>("email").set_value("EMAILCANARY@example.com");
    el::<HtmlInputElement>("pw").set_value("PWCANARY");
    el::<HtmlInputElement>("pw2").set_value("PWTWOCANARY");
    el::<HtmlInputElement>("coupon").set_value("COUPON-OK-7");
    el::<HtmlTextAreaElement>("ta").set_value("TEXTAREATYPEDCANARY");
    el::<HtmlSelectElement>("sel").set_value("b");
    el::<HtmlInputElement>("cb").set_checked(true);
}

fn assert_no_canary(json: &str, what: &str) {
    for c in CANARIES {
        if let Some(i) = json.find(c) {
            let around: String = json[i.saturating_sub(200)..].chars().take(300).collect();
            panic!("{c} leaked into {what}: …{around}…");
        }
    }
}

/// The node whose HTML `id` attribute is `id`.
fn by_html_id<'a>(n: &'a Node, id: &str) -> Option<&'a Node> {
    if n.attrs.iter().any(|(k, v)| k == "id" && v == id) {
        return Some(n);
    }
    n.kids.iter().find_map(|k| by_html_id(k, id))
}

fn attr<'a>(n: &'a Node, name: &str) -> Option<&'a str> {
    n.attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn all_tags(n: &Node, out: &mut Vec<String>) {
    if let Some(t) = &n.tag {
        out.push(t.clone());
    }
    for k in &n.kids {
        all_tags(k, out);
    }
}

fn text_of(n: &Node) -> String {
    let mut s = n.text.clone().unwrap_or_default();
    for k in &n.kids {
        s.push_str(&text_of(k));
    }
    s
}

fn snap(ser: &mut Serializer) -> Snapshot {
    snapshot(ser, 7).expect("snapshot")
}

#[wasm_bindgen_test]
fn snapshot_masks_every_field_and_leaves_out_what_must_not_leave() {
    fixture();
    let mut ser = Serializer::new();
    let s = snap(&mut ser);
    let json = serde_json::to_string(&Stream::Snapshot(s.clone())).unwrap();
    assert_no_canary(&json, "the snapshot");

    let root = &s.root;
    let value = |id: &str| attr(by_html_id(root, id).unwrap(), "value").map(str::to_owned);
    assert_eq!(
        value("card").as_deref(),
        Some("••••••••••••••"),
        "same length, masked"
    );
    assert_eq!(
        value("cvv").as_deref(),
        Some("•••••••••"),
        "the live value, not the markup's"
    );
    assert_eq!(
        value("pw").as_deref(),
        Some("••••••••"),
        "a password is masked even if marked safe"
    );
    assert_eq!(
        value("pw2").as_deref(),
        Some("•••••••••••"),
        "inside an unmasked region too"
    );
    assert_eq!(
        value("coupon").as_deref(),
        Some("COUPON-OK-7"),
        "a field marked safe is shown"
    );
    assert_eq!(
        value("sel").as_deref(),
        Some("•"),
        "which option is chosen is private"
    );
    assert!(
        !json.contains("\"selected\""),
        "no option is marked selected"
    );
    assert!(
        attr(by_html_id(root, "cb").unwrap(), "checked").is_none(),
        "checked state is private"
    );
    assert!(s.masked >= 7, "masked fields counted: {}", s.masked);

    let ta = by_html_id(root, "ta").unwrap();
    assert_eq!(text_of(ta), mask::text("TEXTAREADEFAULTCANARY"));
    let ce = by_html_id(root, "ce").unwrap();
    assert_eq!(
        text_of(ce),
        mask::text("EDITABLECANARY bold"),
        "editable text masked, tags kept"
    );
    assert_eq!(ce.kids[1].tag.as_deref(), Some("b"));

    let blk = by_html_id(root, "blk");
    assert!(
        blk.is_none(),
        "a blocked element keeps no attributes (not even its id)"
    );
    let blocked = find(root, &|n| n.block.is_some()).expect("the block placeholder");
    let size = blocked.block.unwrap();
    assert_eq!(
        (size.w, size.h),
        (120, 40),
        "placeholder has the element's size"
    );
    assert!(blocked.kids.is_empty() && blocked.attrs.is_empty());

    let msk = by_html_id(root, "msk").unwrap();
    let shown = text_of(msk);
    assert_eq!(shown.chars().count(), "MASKEDCANARY text".chars().count());
    assert_eq!(shown, mask::text("MASKEDCANARY text"), "whitespace kept");
    assert_eq!(
        text_of(by_html_id(root, "plain").unwrap()),
        "Plain words stay"
    );

    let mut tags = Vec::new();
    all_tags(root, &mut tags);
    for t in ["script", "noscript", "parley-chat"] {
        assert!(!tags.iter().any(|x| x == t), "{t} serialized");
    }
    let js = by_html_id(root, "js").unwrap();
    assert!(attr(js, "href").is_none() && attr(js, "onclick").is_none());
    let src = attr(by_html_id(root, "img").unwrap(), "src").unwrap();
    assert!(
        src.starts_with("http") && src.ends_with("/img/pic.png"),
        "absolute: {src}"
    );
}

fn find<'a>(n: &'a Node, f: &dyn Fn(&Node) -> bool) -> Option<&'a Node> {
    if f(n) {
        return Some(n);
    }
    n.kids.iter().find_map(|k| find(k, f))
}

fn observer() -> web_sys::MutationObserver {
    let cb = Closure::<dyn FnMut()>::new(|| {});
    let o = web_sys::MutationObserver::new(cb.as_ref().unchecked_ref()).unwrap();
    cb.forget();
    let init = web_sys::MutationObserverInit::new();
    init.set_child_list(true);
    init.set_subtree(true);
    init.set_attributes(true);
    init.set_character_data(true);
    o.observe_with_options(&doc(), &init).unwrap();
    o
}

fn records(o: &web_sys::MutationObserver) -> Vec<web_sys::MutationRecord> {
    o.take_records()
        .iter()
        .map(|r| r.unchecked_into())
        .collect()
}

#[wasm_bindgen_test]
fn mutations_are_masked_and_ids_are_stable() {
    fixture();
    let mut ser = Serializer::new();
    let first = snap(&mut ser);
    let form_id = by_html_id(&first.root, "f").unwrap().id;
    let plain_id = by_html_id(&first.root, "plain").unwrap().id;
    let o = observer();

    // New fields with values, attribute values, editable text, text in masked and blocked parts.
    let d = doc();
    let input: HtmlInputElement = d.create_element("input").unwrap().unchecked_into();
    input.set_id("late");
    input.set_attribute("value", "ATTRCANARY").unwrap();
    input.set_value("MUTCANARY");
    let form: Element = el("f");
    form.append_child(&input).unwrap();
    el::<Element>("card")
        .set_attribute("value", "CARDATTRCANARY")
        .unwrap();
    el::<Element>("ce")
        .append_child(&d.create_text_node("CEMUTCANARY"))
        .unwrap();
    el::<Element>("msk")
        .first_child()
        .unwrap()
        .set_text_content(Some("MASKMUTCANARY"));
    el::<Element>("blk")
        .append_child(&d.create_text_node("BLOCKMUTCANARY"))
        .unwrap();
    let pw2: Element = el("pw2");
    pw2.set_attribute("value", "PWATTRCANARY").unwrap();
    let p = d.create_element("p").unwrap();
    p.set_text_content(Some("new words"));
    el::<Element>("plain").after_with_node_1(&p).unwrap();

    let m = changes::batch(&mut ser, 7, &records(&o)).expect("a batch");
    let json = serde_json::to_string(&Stream::Mutations(m.clone())).unwrap();
    for c in [
        "MUTCANARY",
        "ATTRCANARY",
        "CARDATTRCANARY",
        "CEMUTCANARY",
        "MASKMUTCANARY",
        "BLOCKMUTCANARY",
        "PWATTRCANARY",
    ] {
        assert!(!json.contains(c), "{c} leaked into mutations: {json}");
    }
    assert!(
        json.contains("new words"),
        "plain additions are sent: {json}"
    );
    let late = m
        .adds
        .iter()
        .find(|a| attr(&a.node, "id") == Some("late"))
        .expect("added field");
    assert_eq!(late.parent, form_id, "added under the form's snapshot id");
    assert_eq!(attr(&late.node, "value"), Some("•••••••••"));

    // A fresh snapshot keeps the ids of nodes that were there.
    let second = snap(&mut ser);
    assert_eq!(by_html_id(&second.root, "f").unwrap().id, form_id);
    assert_eq!(by_html_id(&second.root, "plain").unwrap().id, plain_id);
    assert_eq!(by_html_id(&second.root, "late").unwrap().id, late.node.id);
    let json2 = serde_json::to_string(&second).unwrap();
    assert_no_canary(&json2, "the second snapshot");
    assert!(!json2.contains("MUTCANARY"));
    o.disconnect();
}

#[wasm_bindgen_test]
fn field_values_for_input_items_are_masked() {
    fixture();
    let mut ser = Serializer::new();
    let _ = snap(&mut ser);
    for id in ["card", "cvv", "email", "pw", "pw2", "ta"] {
        let (v, checked, masked) = ser.shared_value(&el(id));
        assert!(masked, "{id} masked");
        assert!(v.chars().all(|c| c == mask::MASK), "{id}: {v}");
        assert_eq!(checked, None);
    }
    let (v, _, masked) = ser.shared_value(&el("coupon"));
    assert_eq!((v.as_str(), masked), ("COUPON-OK-7", false));
    let ctx = Ctx::of(&el("pw"));
    assert!(
        mask::masks_value(&el("pw"), ctx),
        "password with data-parley-unmask still masked"
    );
}

#[wasm_bindgen_test]
fn split_pieces_fit_and_join_back() {
    let json = format!(
        "{{\"kind\":\"snapshot\",\"x\":\"{}\"}}",
        "a\"b•c".repeat(40_000)
    );
    let pieces = split(&json, 48 * 1024);
    assert!(pieces.len() > 1);
    assert_eq!(pieces.concat(), json);
    for p in &pieces {
        let escaped = serde_json::to_string(p).unwrap().len() - 2;
        assert!(escaped <= 48 * 1024, "piece escapes to {escaped}");
    }
    assert_eq!(split("{}", 10), vec!["{}".to_owned()]);
}

async fn sleep(ms: u64) {
    gloo_timers::future::sleep(Duration::from_millis(ms)).await;
}

#[wasm_bindgen_test]
async fn a_session_streams_masked_items_and_stops_at_once() {
    fixture();
    let host = doc().create_element("div").unwrap();
    doc().body().unwrap().append_child(&host).unwrap();
    let root = host
        .attach_shadow(&web_sys::ShadowRootInit::new(web_sys::ShadowRootMode::Open))
        .unwrap();
    let frames = js_sys::Array::new();
    let sink = frames.clone();
    let send = Closure::<dyn FnMut(u32, String, u32, u32) -> bool>::new(
        move |n: u32, data: String, i: u32, c: u32| {
            let f = js_sys::Array::of4(&n.into(), &data.into(), &i.into(), &c.into());
            sink.push(&f);
            true
        },
    );
    let opts = js_sys::Object::new();
    let set = |k: &str, v: &JsValue| js_sys::Reflect::set(&opts, &k.into(), v).unwrap();
    set("lang", &"en".into());
    set("agent", &"Mina".into());
    set("conversation", &"conv-test".into());
    set("send", send.as_ref());
    let session = parley_cobrowse::start(root.clone(), opts.into()).unwrap();
    assert!(root
        .query_selector("[data-parley-cobrowse=indicator]")
        .unwrap()
        .is_some());
    assert!(root
        .query_selector("[data-parley-cobrowse=stop]")
        .unwrap()
        .is_some());

    // The visitor types into fields and the editable region.
    for (id, v) in [
        ("card", "CARDCANARY4242 more"),
        ("ta", "TEXTAREATYPEDCANARY more"),
        ("pw", "PWCANARY more"),
    ] {
        let e: Element = el(id);
        if let Some(i) = e.dyn_ref::<HtmlInputElement>() {
            i.set_value(v);
        } else {
            e.unchecked_ref::<HtmlTextAreaElement>().set_value(v);
        }
        e.dispatch_event(&web_sys::Event::new("input").unwrap())
            .unwrap();
    }
    el::<Element>("ce")
        .append_child(&doc().create_text_node("EDITABLECANARY again"))
        .unwrap();
    sleep(700).await;

    let mut items = Vec::new();
    let mut n_prev = 0;
    let mut buf = String::new();
    for f in frames.iter() {
        let f = js_sys::Array::from(&f);
        let n = f.get(0).as_f64().unwrap() as u32;
        let (i, c) = (
            f.get(2).as_f64().unwrap() as u32,
            f.get(3).as_f64().unwrap() as u32,
        );
        assert!(
            n == n_prev + 1 || (n == n_prev && i > 0),
            "n grows by one: {n_prev} → {n}"
        );
        n_prev = n;
        buf.push_str(&f.get(1).as_string().unwrap());
        if i + 1 == c {
            items.push(std::mem::take(&mut buf));
        }
    }
    assert!(
        items[0].starts_with("{\"kind\":\"snapshot\""),
        "snapshot first"
    );
    for it in &items {
        assert_no_canary(it, "the stream");
        assert!(
            serde_json::from_str::<Stream>(it).is_ok(),
            "a valid item: {it}"
        );
    }
    let inputs = items
        .iter()
        .filter(|i| i.contains("\"kind\":\"input\""))
        .count();
    assert!(inputs >= 3, "three field updates streamed: {items:?}");
    assert!(
        items.iter().any(|i| i.contains("\"kind\":\"mutations\"")),
        "editable change streamed"
    );

    // The agent points at a paragraph: an outline with the note (as text) over it.
    let plain: Element = el("plain");
    let id = session.node_id(&plain).expect("plain has an id");
    let frame = |page: u32, target: &str| {
        format!(
            r#"{{"type":"cobrowse_highlight","author":{{"role":"agent","name":"Mina"}},"highlight":{{"page":{page},"target":{target},"note":"<b>here</b>"}}}}"#
        )
    };
    session.highlight(&frame(
        session.page().wrapping_add(1),
        &format!("{{\"node\":{id}}}"),
    ));
    assert!(
        root.query_selector("[data-parley-highlight]")
            .unwrap()
            .is_none(),
        "another page's highlight is ignored"
    );
    session.highlight(&frame(session.page(), &format!("{{\"node\":{id}}}")));
    let hl: HtmlElement = root
        .query_selector("[data-parley-highlight=agent]")
        .unwrap()
        .expect("overlay drawn")
        .unchecked_into();
    sleep(100).await;
    let (a, b) = (
        hl.get_bounding_client_rect(),
        plain.get_bounding_client_rect(),
    );
    assert!(
        (a.left() - (b.left() - 4.0)).abs() < 1.5 && (a.top() - (b.top() - 4.0)).abs() < 1.5,
        "over the element"
    );
    assert!(a.width() >= b.width(), "wraps it");
    let note = root
        .query_selector(".parley-cb-note")
        .unwrap()
        .expect("note");
    assert_eq!(
        note.text_content().as_deref(),
        Some("<b>here</b>"),
        "the note is text, not HTML"
    );
    session.highlight(&frame(session.page(), "\"clear\""));
    assert!(
        root.query_selector("[data-parley-highlight]")
            .unwrap()
            .is_none(),
        "cleared"
    );

    session.stop();
    assert!(!session.is_active());
    assert!(
        root.query_selector("[data-parley-cobrowse=indicator]")
            .unwrap()
            .is_none(),
        "indicator gone"
    );
    let sent = frames.length();
    el::<HtmlInputElement>("email").set_value("after stop");
    el::<Element>("email")
        .dispatch_event(&web_sys::Event::new("input").unwrap())
        .unwrap();
    doc()
        .body()
        .unwrap()
        .append_child(&doc().create_element("p").unwrap())
        .unwrap();
    sleep(500).await;
    assert_eq!(frames.length(), sent, "nothing is sent after Stop");

    // The log survives the session, in sessionStorage.
    let log = parley_cobrowse::log::Log::load("conv-test");
    assert!(
        log.entries.len() >= 3,
        "start, page, stop logged: {:?}",
        log.entries
    );
    send.forget();
    host.remove();
}

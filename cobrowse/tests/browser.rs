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

/// The node with wire id `id`.
fn by_wire_id(n: &Node, id: u32) -> Option<&Node> {
    if n.id == id {
        return Some(n);
    }
    n.kids.iter().find_map(|k| by_wire_id(k, id))
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
    let eight = mask::value("x");
    assert_eq!(eight, "••••••••");
    assert_eq!(
        value("card").as_deref(),
        Some(eight.as_str()),
        "masked, fixed length"
    );
    assert_eq!(
        value("cvv").as_deref(),
        Some(eight.as_str()),
        "the live value, not the markup's"
    );
    assert_eq!(
        value("pw").as_deref(),
        Some(eight.as_str()),
        "a password is masked even if marked safe"
    );
    assert_eq!(
        value("pw2").as_deref(),
        Some(eight.as_str()),
        "inside an unmasked region too"
    );
    assert_eq!(
        value("coupon").as_deref(),
        Some("COUPON-OK-7"),
        "a field marked safe is shown"
    );
    assert_eq!(
        value("sel").as_deref(),
        Some(eight.as_str()),
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
    // Ids are not among the attributes an editable or masked region keeps: find it by node id.
    let ce = by_wire_id(root, ser.id_of(&el("ce")).unwrap()).unwrap();
    assert_eq!(
        text_of(ce),
        format!("{eight} {eight}"),
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

    let msk = by_wire_id(root, ser.id_of(&el("msk")).unwrap()).unwrap();
    let shown = text_of(msk);
    assert_eq!(shown, eight, "a masked text has the fixed length");
    assert!(attr(msk, "id").is_none() && attr(msk, "data-parley-mask").is_none());
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
    assert_eq!(attr(&late.node, "value"), Some("••••••••"));

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

/// Waits until `cond` holds, checking every 20 ms, failing after 5 s (never a fixed sleep).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = js_sys::Date::now();
    while !cond() {
        assert!(
            js_sys::Date::now() - start < 5_000.0,
            "timed out waiting for {what}"
        );
        gloo_timers::future::TimeoutFuture::new(20).await;
    }
}

/// The stream items captured in `frames` (`[n, data, index, count]` each), pieces joined.
fn joined(frames: &js_sys::Array) -> Vec<String> {
    let mut items = Vec::new();
    let mut buf = String::new();
    for f in frames.iter() {
        let f = js_sys::Array::from(&f);
        buf.push_str(&f.get(1).as_string().unwrap());
        let (i, c) = (
            f.get(2).as_f64().unwrap() as u32,
            f.get(3).as_f64().unwrap() as u32,
        );
        if i + 1 == c {
            items.push(std::mem::take(&mut buf));
        }
    }
    items
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
    until("three field updates and the editable change", || {
        let items = joined(&frames);
        items
            .iter()
            .filter(|i| i.contains("\"kind\":\"input\""))
            .count()
            >= 3
            && items.iter().any(|i| i.contains("\"kind\":\"mutations\""))
    })
    .await;

    // Typing more into a masked field shows as another input item with the same fixed mask:
    // the agent sees typing, never how much.
    let card: Element = el("card");
    let card_id = session.node_id(&card).expect("card has an id");
    let card_inputs = || {
        joined(&frames)
            .iter()
            .filter_map(|i| match serde_json::from_str::<Stream>(i) {
                Ok(Stream::Input { id, value, .. }) if id == card_id => Some(value),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let before = card_inputs().len();
    assert!(before >= 1, "the first typing was sent");
    card.unchecked_ref::<HtmlInputElement>()
        .set_value("CARDCANARY4242 more and more");
    card.dispatch_event(&web_sys::Event::new("input").unwrap())
        .unwrap();
    until("a second input item for the card", || {
        card_inputs().len() > before
    })
    .await;
    let values = card_inputs();
    assert!(
        values.iter().all(|v| *v == mask::value("x")),
        "same mask each time: {values:?}"
    );

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

/// Markup whose attributes each carry a canary of one kind (the suffix names the kind), with
/// layout attributes that must survive masking.
const ATTR_MARKUP: &str = r#"<a class="keep" href="https://shop.example/ATTRCANARY-href" title="ATTRCANARY-title" data-who="ATTRCANARY-data" aria-label="ATTRCANARY-aria" style="color: red; background-image: url(https://x.example/ATTRCANARY-style.png)"><img src="https://x.example/ATTRCANARY-src.png" alt="ATTRCANARY-alt" width="10" height="12"></a>"#;

/// Every kind of attribute canary in [`ATTR_MARKUP`].
const ATTR_KINDS: &[&str] = &["href", "title", "data", "aria", "style", "src", "alt"];

/// The masked region, the editable region and the plain (control) region, each holding
/// [`ATTR_MARKUP`].
fn attr_fixture() -> [Element; 3] {
    if let Some(old) = doc().get_element_by_id("attrs") {
        old.remove();
    }
    let holder = doc().create_element("div").unwrap();
    holder.set_id("attrs");
    holder.set_inner_html(&format!(
        r#"<div id="mreg" data-parley-mask>{ATTR_MARKUP}</div><div id="ereg" contenteditable="true">{ATTR_MARKUP}</div><div id="creg">{ATTR_MARKUP}</div>"#
    ));
    doc().body().unwrap().append_child(&holder).unwrap();
    [el("mreg"), el("ereg"), el("creg")]
}

/// Which canary kinds appear in `json`.
fn attr_leaks(json: &str, prefix: &str) -> Vec<&'static str> {
    ATTR_KINDS
        .iter()
        .copied()
        .filter(|k| json.contains(&format!("{prefix}-{k}")))
        .collect()
}

#[wasm_bindgen_test]
fn masked_and_editable_regions_keep_only_layout_attributes() {
    let regions = attr_fixture();
    let mut ser = Serializer::new();
    let s = snap(&mut ser);
    let subtree = |r: &Element| {
        let n = by_wire_id(&s.root, ser.id_of(r).unwrap()).expect("region serialized");
        (serde_json::to_string(n).unwrap(), n.clone())
    };
    let (control, _) = subtree(&regions[2]);
    // Positive control: the same markup outside the regions shows every canary, so the check
    // below can see each kind of leak.
    assert_eq!(attr_leaks(&control, "ATTRCANARY"), ATTR_KINDS, "{control}");
    for r in &regions[..2] {
        let (json, node) = subtree(r);
        assert_eq!(
            attr_leaks(&json, "ATTRCANARY"),
            Vec::<&str>::new(),
            "{json}"
        );
        let a = &node.kids[0];
        assert_eq!(attr(a, "class"), Some("keep"), "layout kept: {json}");
        assert_eq!(attr(a, "style"), Some("color: red"), "plain style kept");
        let img = &a.kids[0];
        assert_eq!(
            (attr(img, "width"), attr(img, "height")),
            (Some("10"), Some("12"))
        );
    }

    // The same through mutations: changed attributes and added subtrees.
    let o = observer();
    for r in &regions {
        let a = r.query_selector("a").unwrap().unwrap();
        a.set_attribute("title", "MUTCANARY-title").unwrap();
        a.set_attribute("href", "https://shop.example/MUTCANARY-href")
            .unwrap();
        a.set_attribute("data-who", "MUTCANARY-data").unwrap();
        a.set_attribute("aria-label", "MUTCANARY-aria").unwrap();
        a.set_attribute("style", "background: url(/MUTCANARY-style.png)")
            .unwrap();
        let img = a.query_selector("img").unwrap().unwrap();
        img.set_attribute("src", "/MUTCANARY-src.png").unwrap();
        img.set_attribute("alt", "MUTCANARY-alt").unwrap();
        let extra = doc().create_element("span").unwrap();
        extra.set_inner_html(&ATTR_MARKUP.replace("ATTRCANARY", "ADDCANARY"));
        r.append_child(&extra).unwrap();
    }
    let m = changes::batch(&mut ser, 7, &records(&o)).expect("a batch");
    o.disconnect();
    let region_json = |r: &Element| {
        let rid = ser.id_of(r).unwrap();
        let a = r.query_selector("a").unwrap().unwrap();
        let img = a.query_selector("img").unwrap().unwrap();
        let ids = [ser.id_of(&a).unwrap(), ser.id_of(&img).unwrap()];
        let adds: Vec<_> = m.adds.iter().filter(|x| x.parent == rid).collect();
        let attrs: Vec<_> = m.attrs.iter().filter(|x| ids.contains(&x.id)).collect();
        format!(
            "{} {}",
            serde_json::to_string(&adds).unwrap(),
            serde_json::to_string(&attrs).unwrap()
        )
    };
    let control = region_json(&regions[2]);
    assert_eq!(attr_leaks(&control, "MUTCANARY"), ATTR_KINDS, "{control}");
    assert_eq!(attr_leaks(&control, "ADDCANARY"), ATTR_KINDS, "{control}");
    for r in &regions[..2] {
        let json = region_json(r);
        assert!(
            json.contains("\"keep\""),
            "the added subtree is sent: {json}"
        );
        assert_eq!(attr_leaks(&json, "MUTCANARY"), Vec::<&str>::new(), "{json}");
        assert_eq!(attr_leaks(&json, "ADDCANARY"), Vec::<&str>::new(), "{json}");
    }
    doc().get_element_by_id("attrs").unwrap().remove();
}

#[wasm_bindgen_test]
fn masked_values_have_one_length_and_number_fields_show_filled() {
    if let Some(old) = doc().get_element_by_id("lens") {
        old.remove();
    }
    let holder = doc().create_element("div").unwrap();
    holder.set_id("lens");
    holder.set_inner_html(
        r#"<input id="l1"><input id="l2"><input id="l0"><input id="num" type="number"><input id="day" type="date"><div data-parley-unmask><input id="numctl" type="number"></div>"#,
    );
    doc().body().unwrap().append_child(&holder).unwrap();
    el::<HtmlInputElement>("l1").set_value("4");
    el::<HtmlInputElement>("l2").set_value("4242424242424242 LENCANARY@example.com");
    el::<HtmlInputElement>("num").set_value("31337");
    el::<HtmlInputElement>("day").set_value("1990-04-01");
    el::<HtmlInputElement>("numctl").set_value("31337");
    let mut ser = Serializer::new();
    let s = snap(&mut ser);
    let node = |id: &str| by_html_id(&s.root, id).unwrap().clone();
    let eight = mask::value("x");
    assert_eq!(attr(&node("l1"), "value"), Some(eight.as_str()));
    assert_eq!(
        attr(&node("l2"), "value"),
        Some(eight.as_str()),
        "a long value masks to the same length as a short one"
    );
    assert_eq!(attr(&node("l0"), "value"), Some(""), "empty stays empty");
    for id in ["num", "day"] {
        let n = node(id);
        assert_eq!(attr(&n, "value"), Some(eight.as_str()), "{id}");
        assert_eq!(
            attr(&n, "type"),
            Some("text"),
            "{id}: sent as text so the mask shows"
        );
    }
    // Positive control: an unmasked number field keeps its value and type.
    let ctl = node("numctl");
    assert_eq!(
        (attr(&ctl, "value"), attr(&ctl, "type")),
        (Some("31337"), Some("number"))
    );
    let json = serde_json::to_string(&s).unwrap();
    assert!(!json.contains("LENCANARY") && !json.contains("1990-04-01"));
    // Input items: the same fixed mask, whatever the length.
    for (id, v) in [("l1", "1"), ("l2", "a much longer value than one digit")] {
        el::<HtmlInputElement>(id).set_value(v);
        let (shown, _, masked) = ser.shared_value(&el(id));
        assert!(masked);
        assert_eq!(shown, eight, "{id}");
    }
    el::<HtmlInputElement>("num").set_value("");
    assert_eq!(
        ser.shared_value(&el("num")).0,
        "",
        "an emptied field reads empty"
    );
    holder.remove();
}

#[wasm_bindgen_test]
fn a_masked_select_says_nothing_of_the_choice() {
    if let Some(old) = doc().get_element_by_id("sels") {
        old.remove();
    }
    let holder = doc().create_element("div").unwrap();
    holder.set_id("sels");
    let options = r#"<option value="SELCANARY-a" label="Visa">Visa</option><optgroup label="More"><option value="SELCANARY-b" selected>Mastercard</option></optgroup>"#;
    holder.set_inner_html(&format!(
        r#"<select id="ms">{options}</select><div data-parley-unmask><select id="cs">{options}</select></div>"#
    ));
    doc().body().unwrap().append_child(&holder).unwrap();
    let mut ser = Serializer::new();
    let s = snap(&mut ser);
    let json_of = |id: &str| serde_json::to_string(by_html_id(&s.root, id).unwrap()).unwrap();
    // Positive control: an unmasked select names its options and the choice.
    let ctl = json_of("cs");
    assert!(
        ctl.contains("SELCANARY-a") && ctl.contains("SELCANARY-b"),
        "{ctl}"
    );
    let masked = json_of("ms");
    assert!(!masked.contains("SELCANARY"), "{masked}");
    assert!(!masked.contains("\"selected\"") && !masked.contains("\"label\""));
    assert!(masked.contains("Mastercard"), "the choices' text is kept");
    // Whichever option is chosen, the value reads the same.
    let sel: HtmlSelectElement = el("ms");
    let shown = |ser: &mut Serializer| ser.shared_value(&el("ms")).0;
    sel.set_value("SELCANARY-a");
    let a = shown(&mut ser);
    sel.set_value("SELCANARY-b");
    assert_eq!(shown(&mut ser), a);
    assert_eq!(a, mask::value("x"));
    // Changing an option's value is no news for the masked select; it is for the control.
    let o = observer();
    for id in ["ms", "cs"] {
        el::<Element>(id)
            .query_selector("option")
            .unwrap()
            .unwrap()
            .set_attribute("value", "SELCANARY-new")
            .unwrap();
    }
    let m = changes::batch(&mut ser, 7, &records(&o)).expect("a batch");
    o.disconnect();
    let opt_id = |id: &str| {
        ser.id_of(&el::<Element>(id).query_selector("option").unwrap().unwrap())
            .unwrap()
    };
    assert!(m.attrs.iter().any(|a| a.id == opt_id("cs")), "control sent");
    assert!(!m.attrs.iter().any(|a| a.id == opt_id("ms")), "{m:?}");
    holder.remove();
}

/// A chain of `levels` nested divs under the body, with a text at the bottom.
fn deep_fixture(levels: usize) -> Element {
    if let Some(old) = doc().get_element_by_id("deep") {
        old.remove();
    }
    let top = doc().create_element("div").unwrap();
    top.set_id("deep");
    let mut cur = top.clone();
    for _ in 1..levels {
        let d = doc().create_element("div").unwrap();
        cur.append_child(&d).unwrap();
        cur = d;
    }
    cur.set_text_content(Some("DEEPBOTTOM"));
    doc().body().unwrap().append_child(&top).unwrap();
    top
}

#[wasm_bindgen_test]
fn pages_nested_hundreds_deep_mirror_and_deeper_ones_are_cut() {
    let top = deep_fixture(300);
    let mut ser = Serializer::new();
    let json = serde_json::to_string(&Stream::Snapshot(snap(&mut ser))).unwrap();
    assert!(json.contains("DEEPBOTTOM"), "the bottom is serialized");
    // Positive control: the console's old decoding (serde_json's limit) refused this page.
    assert!(serde_json::from_str::<Stream>(&json).is_err());
    let item = protocol::cobrowse::decode_item(&json).expect("decodes");
    assert!(serde_json::to_string(&item).unwrap().contains("DEEPBOTTOM"));
    top.remove();

    // Deeper than the limit: cut at MAX_DEPTH, and what is sent still decodes.
    let top = deep_fixture(protocol::cobrowse::MAX_DEPTH + 50);
    let s = snap(&mut ser);
    let json = serde_json::to_string(&Stream::Snapshot(s)).unwrap();
    assert!(
        !json.contains("DEEPBOTTOM"),
        "nodes past the limit are left out"
    );
    let item = protocol::cobrowse::decode_item(&json).expect("decodes at the limit");
    let Stream::Snapshot(s) = item else {
        panic!("not a snapshot")
    };
    let mut cur = by_wire_id(&s.root, ser.id_of(&top).unwrap()).expect("the chain's top");
    let mut depth = parley_cobrowse::serialize::depth_of(&top);
    while let Some(k) = cur.kids.first() {
        depth += 1;
        cur = k;
    }
    assert_eq!(
        depth,
        protocol::cobrowse::MAX_DEPTH,
        "cut exactly at the limit"
    );
    top.remove();
}

/// Every node of `n` in order, with what its shadow roots and frames hold.
fn all_nodes<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
    out.push(n);
    for k in &n.kids {
        all_nodes(k, out);
    }
    for f in [&n.shadow, &n.frame].into_iter().flatten() {
        for k in &f.kids {
            all_nodes(k, out);
        }
    }
}

/// Private text and values put inside shadow roots and frames: none may leave the page.
const FRAGMENT_CANARIES: &[&str] = &[
    "SHADOWMASKCANARY",
    "SHADOWATTRCANARY",
    "SHADOWINPUTCANARY",
    "SHADOWFIELDCANARY",
    "CLOSEDCANARY",
    "EDITSHADOWCANARY",
    "FRAMEINPUTCANARY",
    "FRAMEMASKCANARY",
    "FRAMEREGIONCANARY",
    "SHADOWADDCANARY",
    "FRAMEADDCANARY",
];

/// A shadow root with `html` attached to a new `<div>` (open or closed) under `parent`.
fn shadow_host(parent: &Element, id: &str, html: &str, mode: web_sys::ShadowRootMode) -> Element {
    let host = doc().create_element("div").unwrap();
    host.set_id(id);
    parent.append_child(&host).unwrap();
    let root = host
        .attach_shadow(&web_sys::ShadowRootInit::new(mode))
        .unwrap();
    root.set_inner_html(html);
    host
}

/// A same-origin (`about:blank`) frame under `parent` whose body is `html`.
fn frame_with(parent: &Element, id: &str, html: &str) -> Document {
    let frame = doc().create_element("iframe").unwrap();
    frame.set_id(id);
    frame
        .set_attribute("style", "width: 240px; height: 90px; border: 0")
        .unwrap();
    parent.append_child(&frame).unwrap();
    let fdoc = parley_cobrowse::tree::frame_document(&frame).unwrap();
    fdoc.body().unwrap().set_inner_html(html);
    fdoc
}

#[wasm_bindgen_test]
fn shadow_roots_and_frames_are_masked_like_the_page() {
    use web_sys::ShadowRootMode::{Closed, Open};
    if let Some(old) = doc().get_element_by_id("frags") {
        old.remove();
    }
    let holder = doc().create_element("div").unwrap();
    holder.set_id("frags");
    holder.set_inner_html(
        r#"<div id="sh-mreg" data-parley-mask></div><div id="sh-ereg" contenteditable="true"></div><div id="sh-freg" data-parley-mask></div><iframe id="xframe" sandbox style="width: 150px; height: 60px; border: 0"></iframe>"#,
    );
    doc().body().unwrap().append_child(&holder).unwrap();
    let region = |id: &str| doc().get_element_by_id(id).unwrap();
    // Inside a masked region: text, attributes and a field, all in a shadow root.
    let mhost = shadow_host(
        &region("sh-mreg"),
        "mhost",
        r#"<p>SHADOWMASKCANARY</p><a href="https://x.example/SHADOWATTRCANARY" title="SHADOWATTRCANARY">x</a><input id="sin">"#,
        Open,
    );
    let sin: HtmlInputElement = mhost
        .shadow_root()
        .unwrap()
        .get_element_by_id("sin")
        .unwrap()
        .unchecked_into();
    sin.set_value("SHADOWINPUTCANARY");
    // Outside any region: the text shows (positive control), the field's value does not.
    let phost = shadow_host(
        &holder,
        "phost",
        r#"<p>SHADOWPLAINTEXT</p><input id="pin"><slot></slot>"#,
        Open,
    );
    phost
        .shadow_root()
        .unwrap()
        .get_element_by_id("pin")
        .unwrap()
        .unchecked_into::<HtmlInputElement>()
        .set_value("SHADOWFIELDCANARY");
    shadow_host(&holder, "chost", "<p>CLOSEDCANARY</p>", Closed);
    // Inside an editable region: a shadow root's text counts as edited text.
    shadow_host(&region("sh-ereg"), "ehost", "<p>EDITSHADOWCANARY</p>", Open);
    // Same-origin frames: one plain, one inside a masked region.
    let fdoc = frame_with(
        &holder,
        "sframe",
        r#"<p>FRAMEPLAINTEXT</p><input id="fin"><div data-parley-mask>FRAMEMASKCANARY</div>"#,
    );
    fdoc.get_element_by_id("fin")
        .unwrap()
        .unchecked_into::<HtmlInputElement>()
        .set_value("FRAMEINPUTCANARY");
    let rdoc = frame_with(&region("sh-freg"), "rframe", "<p>FRAMEREGIONCANARY</p>");

    let mut ser = Serializer::new();
    let s = snap(&mut ser);
    let json = serde_json::to_string(&s).unwrap();
    // Positive controls: content outside every region does come through, inside both kinds of
    // boundary, so the absence checks below can see a leak.
    for shown in ["SHADOWPLAINTEXT", "FRAMEPLAINTEXT"] {
        assert!(
            json.contains(shown),
            "{shown} missing: the check sees nothing"
        );
    }
    for c in FRAGMENT_CANARIES {
        assert!(!json.contains(c), "{c} leaked into the snapshot");
    }
    let mut nodes = Vec::new();
    all_nodes(&s.root, &mut nodes);
    let by_id = |id: &str| {
        *nodes
            .iter()
            .find(|n| attr(n, "id") == Some(id))
            .unwrap_or_else(|| panic!("#{id} serialized"))
    };
    assert!(by_id("phost").shadow.is_some() && by_id("chost").shadow.is_none());
    let frame = by_id("sframe")
        .frame
        .as_ref()
        .expect("the frame's document");
    assert_eq!(frame.size.map(|s| (s.w, s.h)), Some((240, 90)));
    // A block carries no attributes: found by its wire id.
    let xid = ser
        .id_of(&doc().get_element_by_id("xframe").unwrap())
        .unwrap();
    let foreign = *nodes.iter().find(|n| n.id == xid).unwrap();
    assert!(foreign.frame.is_none());
    assert_eq!(foreign.block.map(|s| (s.w, s.h)), Some((150, 60)));
    // Masked fields in both kinds of boundary still say they are filled.
    // (`#sin` sits in a masked region, where ids are dropped: found by its wire id.)
    let sin_id = ser.id_of(&sin).unwrap();
    let sin_node = *nodes.iter().find(|n| n.id == sin_id).unwrap();
    assert_eq!(attr(sin_node, "value"), Some(mask::value("x").as_str()));
    assert_eq!(attr(by_id("fin"), "value"), Some(mask::value("x").as_str()));
    assert!(
        ser.found.len() >= 4,
        "shadow roots and frame documents to observe"
    );

    // Changes inside the fragments, seen by an observer on each found root.
    let o = observer();
    let init = web_sys::MutationObserverInit::new();
    init.set_child_list(true);
    init.set_subtree(true);
    init.set_attributes(true);
    init.set_character_data(true);
    for root in std::mem::take(&mut ser.found) {
        o.observe_with_options(&root, &init).unwrap();
    }
    let mroot = mhost.shadow_root().unwrap();
    let span = doc().create_element("span").unwrap();
    span.set_text_content(Some("SHADOWADDCANARY"));
    mroot.append_child(&span).unwrap();
    mroot
        .query_selector("a")
        .unwrap()
        .unwrap()
        .set_attribute("title", "SHADOWATTRCANARY again")
        .unwrap();
    let proot = phost.shadow_root().unwrap();
    let b = doc().create_element("b").unwrap();
    b.set_text_content(Some("SHADOWADDPLAIN"));
    proot.append_child(&b).unwrap();
    let fp = fdoc.create_element("p").unwrap();
    fp.set_text_content(Some("FRAMEADDPLAIN"));
    fdoc.body().unwrap().append_child(&fp).unwrap();
    let rp = rdoc.create_element("p").unwrap();
    rp.set_text_content(Some("FRAMEADDCANARY"));
    rdoc.body().unwrap().append_child(&rp).unwrap();
    let m = changes::batch(&mut ser, 7, &records(&o)).expect("a batch");
    o.disconnect();
    let mjson = serde_json::to_string(&m).unwrap();
    for shown in ["SHADOWADDPLAIN", "FRAMEADDPLAIN"] {
        assert!(mjson.contains(shown), "{shown} missing from {mjson}");
    }
    for c in FRAGMENT_CANARIES {
        assert!(!mjson.contains(c), "{c} leaked into a batch: {mjson}");
    }
    let proot_id = ser.id_of(proot.as_ref()).unwrap();
    assert_eq!(by_id("phost").shadow.as_ref().unwrap().id, proot_id);
    assert!(
        m.adds.iter().any(|a| a.parent == proot_id),
        "an add in the shadow root names the root: {mjson}"
    );
    // A frame sent again whole (it loaded a new document) keeps its id and its rules.
    let rframe = doc().get_element_by_id("rframe").unwrap();
    let again =
        changes::batch_resending(&mut ser, 7, &[], std::slice::from_ref(&rframe)).expect("resent");
    let rid = ser.id_of(&rframe).unwrap();
    assert!(again.removes.contains(&rid));
    let ajson = serde_json::to_string(&again).unwrap();
    assert!(
        again
            .adds
            .iter()
            .any(|a| a.node.id == rid && a.node.frame.is_some()),
        "{ajson}"
    );
    for c in FRAGMENT_CANARIES {
        assert!(!ajson.contains(c), "{c} leaked into a resend: {ajson}");
    }
    // Input items for fields in both kinds of boundary are masked.
    for field in [
        sin.clone().unchecked_into::<Element>(),
        fdoc.get_element_by_id("fin").unwrap(),
    ] {
        let (value, _, masked) = ser.shared_value(&field);
        assert!(masked, "masked");
        assert_eq!(value, mask::value("x"));
    }
    // Found by id for highlights, across both boundaries.
    let fin_id = ser.id_of(&fdoc.get_element_by_id("fin").unwrap()).unwrap();
    assert!(ser.find(fin_id).is_some());
    assert!(ser.find(ser.id_of(&sin).unwrap()).is_some());
    holder.remove();
}

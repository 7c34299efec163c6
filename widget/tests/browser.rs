//! Browser-side unit tests of the panel's parts that stand alone: language choice, the stored
//! outbox, frame decoding (bot buttons, links and handoffs included), link safety, reconnect delays, context change detection and the clock.
//! Run with `wasm-bindgen-test-runner` + chromedriver (see the widget's notes in the report):
//! `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner CHROMEDRIVER=/usr/bin/chromedriver
//!  cargo test -p parley-widget --target wasm32-unknown-unknown`.
#![allow(missing_docs)]

use parley_widget::connection::{backoff_ms, socket_url};
use parley_widget::i18n::Lang;
use parley_widget::storage::{Store, OUTBOX};
use parley_widget::{chat, outbox, page, wire};
use protocol::{
    ClientId, ErrorCode, PageContext, QuickReply, Role, ToVisitor, Viewport, VisitorBody,
};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn language_choice() {
    assert_eq!(Lang::choose(Some("ko"), Some("en-US")), Lang::Ko);
    assert_eq!(Lang::choose(Some("en"), Some("ko-KR")), Lang::En);
    assert_eq!(Lang::choose(Some("fr"), Some("ko-KR")), Lang::Ko);
    assert_eq!(Lang::choose(None, Some("ko")), Lang::Ko);
    assert_eq!(Lang::choose(None, Some("de-DE")), Lang::En);
    assert_eq!(Lang::choose(None, None), Lang::En);
    assert_eq!(Lang::Ko.strings().message, "메시지");
    assert_eq!(Lang::En.typing("Mina"), "Mina is typing…");
}

#[wasm_bindgen_test]
fn outbox_storage_round_trip() {
    let store = Store::new("wasm-test-site");
    store.remove(OUTBOX);
    let a = outbox::new_client_id();
    let b = outbox::new_client_id();
    assert!(a.is_valid() && a.0.len() >= 16 && a != b);
    outbox::persist_push(&store, &a, "first");
    outbox::persist_push(&store, &b, "second");
    outbox::persist_push(&store, &a, "first"); // same id twice: kept once
    let loaded = outbox::load(&store);
    let ids: Vec<_> = loaded
        .pending()
        .iter()
        .map(|p| p.client_id.clone())
        .collect();
    assert_eq!(ids, vec![a.clone(), b.clone()]);
    assert_eq!(loaded.pending()[1].text, "second");
    outbox::persist_settle(&store, &a);
    outbox::persist_settle(&store, &b);
    assert!(outbox::load(&store).pending().is_empty());
    assert_eq!(
        store.get(OUTBOX),
        None,
        "an empty outbox leaves nothing behind"
    );
}

#[wasm_bindgen_test]
fn outbox_survives_garbage() {
    assert!(outbox::decode("not json").pending().is_empty());
    assert!(outbox::decode(r#"{"client_id":"x"}"#).pending().is_empty());
    let o = outbox::decode(
        r#"[{"client_id":"bad id!","text":"x"},{"client_id":"ok1","text":"hi"},{"text":"no id"}]"#,
    );
    assert_eq!(o.pending().len(), 1);
    assert_eq!(o.pending()[0].client_id, ClientId::from("ok1"));
    assert_eq!(outbox::decode(&outbox::encode(&o)).pending(), o.pending());
}

#[wasm_bindgen_test]
fn decodes_relay_frames() {
    let w = wire::decode(
        r#"{"type":"welcome","v":1,"token":"T","visitor_id":"V","last_seq":0,"recovered":true,"agents_online":0,"later":"ignored"}"#,
    );
    assert!(
        matches!(w, Some(ToVisitor::Welcome { agents_online: 0, recovered: true, ref token, .. }) if token == "T")
    );
    let e = wire::decode(
        r#"{"type":"event","conversation_id":"c","seq":3,"at":5,"author":{"role":"agent","id":"a","name":"Mina"},"body":{"kind":"message","text":"<b>hi</b>"}}"#,
    );
    match e {
        Some(ToVisitor::Event(e)) => {
            assert_eq!(e.seq, 3);
            assert_eq!(e.author.role, Role::Agent);
            assert_eq!(e.message_text(), Some("<b>hi</b>"));
        }
        other => panic!("{other:?}"),
    }
    // An unknown kind keeps its seq but shows nothing.
    let u = wire::decode(
        r#"{"type":"event","conversation_id":"c","seq":4,"at":5,"author":{"role":"system"},"body":{"kind":"rated","stars":5}}"#,
    );
    assert!(
        matches!(u, Some(ToVisitor::Event(ref e)) if e.seq == 4 && e.body == VisitorBody::Unknown)
    );
    let err = wire::decode(
        r#"{"type":"error","code":"rate_limited","message":"slow","client_id":"k1","retry_after_ms":400}"#,
    );
    assert!(
        matches!(err, Some(ToVisitor::Error(ref f)) if f.code == ErrorCode::RateLimited && f.retry_after_ms == Some(400))
    );
    assert!(wire::decode("nope").is_none());
    assert!(wire::decode(r#"{"type":"ack","client_id":"k"}"#).is_none());
    assert!(wire::decode(r#"{"type":"launch"}"#).is_none());
}

#[wasm_bindgen_test]
fn reconnect_delays_and_urls() {
    for attempt in 0..20 {
        for r in [0.0, 0.5, 1.0] {
            let d = backoff_ms(attempt, r);
            assert!((250..=10_000).contains(&d), "{attempt} {r} {d}");
        }
    }
    assert_eq!(backoff_ms(0, 1.0), 500);
    assert_eq!(backoff_ms(10, 1.0), 10_000);
    assert_eq!(
        socket_url("http://127.0.0.1:8080", "demo"),
        "ws://127.0.0.1:8080/ws/visitor?site=demo"
    );
    assert_eq!(
        socket_url("https://chat.example/", "a b"),
        "wss://chat.example/ws/visitor?site=a%20b"
    );
}

#[wasm_bindgen_test]
fn context_changes_and_clock() {
    let ctx = |url: &str, w| PageContext {
        url: url.into(),
        viewport: Some(Viewport {
            width: w,
            height: 700,
        }),
        ..Default::default()
    };
    assert!(!page::changed_notably(&ctx("/a", 1000), &ctx("/a", 1050)));
    assert!(page::changed_notably(&ctx("/a", 1000), &ctx("/a", 1200)));
    assert!(page::changed_notably(&ctx("/a", 1000), &ctx("/b", 1000)));
    let store = Store::new("wasm-test-site");
    let now = page::current(&store);
    assert!(now.url.starts_with("http"));
    let c = chat::clock(js_sys::Date::now());
    assert_eq!(c.len(), 5);
    assert_eq!(&c[2..3], ":");
}

#[wasm_bindgen_test]
fn decodes_bot_buttons_and_link() {
    let e = wire::decode(
        r#"{"type":"event","conversation_id":"c","seq":2,"at":5,"author":{"role":"bot","name":"Parley Bot"},"body":{"kind":"message","text":"Returns are free","buttons":[{"label":"Talk to a person","text":"Talk to a person"},{"label":"Refunds","text":"When do I get my refund?"},{"label":"broken"},7],"link":"/help.html#returns"}}"#,
    );
    match e {
        Some(ToVisitor::Event(e)) => {
            assert_eq!(e.author.role, Role::Bot);
            assert_eq!(e.author.name.as_deref(), Some("Parley Bot"));
            match e.body {
                VisitorBody::Message {
                    text,
                    client_id,
                    buttons,
                    link,
                    ..
                } => {
                    assert_eq!(text, "Returns are free");
                    assert_eq!(client_id, None);
                    assert_eq!(
                        buttons,
                        vec![
                            QuickReply {
                                label: "Talk to a person".into(),
                                text: "Talk to a person".into()
                            },
                            QuickReply {
                                label: "Refunds".into(),
                                text: "When do I get my refund?".into()
                            },
                        ],
                        "malformed buttons are skipped, the good ones kept"
                    );
                    assert_eq!(link.as_deref(), Some("/help.html#returns"));
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    // A plain message still decodes with no buttons and no link; `buttons` of the wrong type too.
    let p = wire::decode(
        r#"{"type":"event","conversation_id":"c","seq":3,"at":5,"author":{"role":"agent"},"body":{"kind":"message","text":"hi","buttons":"nope"}}"#,
    );
    assert!(matches!(
        p,
        Some(ToVisitor::Event(ref e)) if e.body == VisitorBody::message("hi", None)
    ));
}

#[wasm_bindgen_test]
fn decodes_handoff() {
    let h = wire::decode(
        r#"{"type":"event","conversation_id":"c","seq":5,"at":5,"author":{"role":"bot","name":"Parley Bot"},"body":{"kind":"handoff","reason":"not_understood","summary":"Asked about refunds; shown: returns; mood: annoyed"}}"#,
    );
    // The reason and summary are agent-only: a visitor's event has neither, even if a relay
    // sent them.
    match h {
        Some(ToVisitor::Event(e)) => assert_eq!(e.body, VisitorBody::Handoff),
        other => panic!("{other:?}"),
    }
    assert_eq!(Lang::En.strings().handoff, "Connecting you with a person…");
    assert_eq!(Lang::Ko.strings().read_more, "자세히 보기");
}

#[wasm_bindgen_test]
fn refuses_unsafe_links() {
    for ok in [
        "/help.html#returns",
        "help.html",
        "#faq",
        "?q=1",
        "https://example.com/a?b=c:d",
        "HTTP://example.com",
        "./a:b",
    ] {
        assert_eq!(wire::safe_link(ok).as_deref(), Some(ok), "{ok}");
    }
    assert_eq!(wire::safe_link("  /a  ").as_deref(), Some("/a"));
    for bad in [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:x",
        "mailto:a@b.c",
        "",
        "/a b",
    ] {
        assert_eq!(wire::safe_link(bad), None, "{bad:?}");
    }
}

#[wasm_bindgen_test]
fn decodes_cobrowse_frames_and_consent_state() {
    use protocol::cobrowse::{CobrowseState, Highlight, HighlightTarget, Rect};
    let ev = |seq: u64, role: &str, state: &str| {
        wire::decode(&format!(
            r#"{{"type":"event","conversation_id":"c","seq":{seq},"at":1,"author":{{"role":"{role}","id":"{id}","name":"Mina"}},"body":{{"kind":"cobrowse","state":"{state}"}}}}"#,
            id = if role == "agent" { "mina" } else { "v" }
        ))
        .and_then(|f| match f {
            ToVisitor::Event(e) => Some(e),
            _ => None,
        })
        .expect("a cobrowse event")
    };
    let asked = ev(1, "agent", "requested");
    assert_eq!(
        asked.body,
        VisitorBody::Cobrowse {
            state: CobrowseState::Requested
        }
    );
    // A state of a later revision reads as stopped.
    assert_eq!(
        ev(9, "system", "paused").body,
        VisitorBody::Cobrowse {
            state: CobrowseState::Stopped
        }
    );
    let (consent, agent) = chat::sharing(std::slice::from_ref(&asked));
    assert_eq!((consent.asked_by(), agent.as_str()), (Some("mina"), "Mina"));
    let allowed = ev(2, "visitor", "allowed");
    assert_eq!(
        chat::sharing(&[asked.clone(), allowed.clone()])
            .0
            .sharing_with(),
        Some("mina")
    );
    // The one consent rule: a close or a transfer ends sharing, with no `stopped` event.
    for ender in [
        r#"{"kind":"closed"}"#,
        r#"{"kind":"transferred","to":{"role":"agent","id":"joon","name":"Joon"}}"#,
        r#"{"kind":"requeued","from":{"role":"agent","id":"mina","name":"Mina"}}"#,
    ] {
        let end = wire::decode(&format!(
            r#"{{"type":"event","conversation_id":"c","seq":3,"at":1,"author":{{"role":"agent","id":"mina"}},"body":{ender}}}"#
        ));
        let Some(ToVisitor::Event(end)) = end else {
            panic!("{ender}")
        };
        assert_eq!(
            chat::sharing(&[asked.clone(), allowed.clone(), end]).0,
            protocol::Consent::Off,
            "{ender} ends sharing"
        );
    }

    let h = wire::decode(
        r#"{"type":"cobrowse_highlight","author":{"role":"agent","name":"Mina"},"highlight":{"page":7,"target":{"node":42},"note":"here"}}"#,
    );
    assert!(matches!(
        h,
        Some(ToVisitor::CobrowseHighlight { highlight: Highlight { page: 7, target: HighlightTarget::Node(42), ref note }, .. }) if note.as_deref() == Some("here")
    ));
    let r = wire::decode(
        r#"{"type":"cobrowse_highlight","author":{"role":"agent"},"highlight":{"page":7,"target":{"rect":{"x":1,"y":2,"w":30,"h":40}}}}"#,
    );
    assert!(matches!(
        r,
        Some(ToVisitor::CobrowseHighlight {
            highlight: Highlight {
                target: HighlightTarget::Rect(Rect {
                    x: 1,
                    y: 2,
                    w: 30,
                    h: 40
                }),
                ..
            },
            ..
        })
    ));
    let c = wire::decode(
        r#"{"type":"cobrowse_highlight","author":{"role":"agent"},"highlight":{"page":7,"target":"clear"}}"#,
    );
    assert!(matches!(
        c,
        Some(ToVisitor::CobrowseHighlight {
            highlight: Highlight {
                target: HighlightTarget::Clear,
                ..
            },
            ..
        })
    ));
    assert!(wire::decode(r#"{"type":"cobrowse_highlight","author":{"role":"agent"},"highlight":{"page":7,"target":{"rect":{"x":1}}}}"#).is_none());
    assert!(matches!(
        wire::decode(r#"{"type":"cobrowse_resync"}"#),
        Some(ToVisitor::CobrowseResync)
    ));
    assert!(Lang::En.cobrowse_ask("Mina").contains("hidden as ••••"));
    assert!(Lang::Ko.cobrowse_ask("Mina").starts_with("Mina 님이"));
}

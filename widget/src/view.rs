//! The panel's DOM: header with connection state, notice, message list, typing line, composer
//! and the aria-live region. Class names and aria-labels here are hooks the browser tests use
//! (see notes/CONTEXT.md); all untrusted text is inserted as text nodes.

use gloo_timers::callback::Timeout;
use leptos::html;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Element, KeyboardEvent, MouseEvent};

use crate::chat::{Chat, Item};
use crate::i18n::Strings;

/// One message row. A bot answer may carry a "Read more" link (already checked to be relative or
/// http(s); set as an attribute, never as markup) and, while it is the latest event, quick
/// replies: real buttons whose text rides in `data-text`; one click handler on the list (see
/// [`panel`]) sends it through the same path as the composer. Delegation keeps the panel small
/// and the row free of the (non-`Send`) chat handle.
fn row(t: &'static Strings, item: Item) -> impl IntoView {
    let link = item.link.map(|href| {
        view! {
            <a class="parley-link" href=href target="_blank" rel="noopener noreferrer">{t.read_more}</a>
        }
    });
    let quick = (!item.buttons.is_empty()).then(|| {
        let buttons = item
            .buttons
            .into_iter()
            .map(|b| view! { <button type="button" class="parley-quick" data-text=b.text>{b.label}</button> })
            .collect_view();
        view! { <div class="parley-quicks" role="group" aria-label=t.quick_replies>{buttons}</div> }
    });
    // Co-browse: the consent card's Allow / Deny, or "What was shared" under "Sharing stopped".
    // Handled by the list's click handler through `data-cb`, like the quick replies.
    let cb = item.cb.map(|cb| {
        let (first, second) = if cb == "ask" {
            (("allow", t.allow), Some(("deny", t.deny)))
        } else {
            (("log", t.what_shared), None)
        };
        let button = |(v, label): (&'static str, &'static str)| {
            view! { <button type="button" class="parley-quick" data-cb=v>{label}</button> }
        };
        view! { <div class="parley-quicks">{button(first)}{second.map(button)}</div> }
    });
    // A continuation keeps its sender and time in `title`, not in a repeated line.
    let (meta, title) = if item.cont {
        (None, item.meta)
    } else {
        (item.meta, None)
    };
    view! {
        <li class=item.class data-role=item.role data-kind=item.kind data-seq=item.seq.map(|s| s.to_string())
            data-cont=item.cont.then_some("") title=title>
            {meta.map(|m| view! { <div class="parley-meta">{m}</div> })}
            <div class="parley-text">{item.text}</div>
            {link}
            {item.note.map(|n| view! { <div class="parley-note">{n}</div> })}
            {quick}
            {cb}
        </li>
    }
}

/// The conversation as plain text, for the visitor to keep: the site's name, then each line
/// they see, in order, as they see it (sender and time, then the text; system lines marked
/// with a dash). Built from the panel's own rows, so it holds exactly what the visitor was
/// shown and nothing agent-only.
pub fn transcript(site: &str, items: &[Item]) -> String {
    let mut out = format!("{site}\n\n");
    for item in items {
        match &item.meta {
            Some(meta) => out.push_str(&format!("{meta}\n{}\n", item.text)),
            None => out.push_str(&format!("— {}\n", item.text)),
        }
        if let Some(note) = item.note {
            out.push_str(&format!("({note})\n"));
        }
        out.push('\n');
    }
    out
}

/// Offers `text` as a download named `file` (a Blob URL on a detached link, revoked later).
fn save_text(file: &str, text: &str) -> Option<()> {
    let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(text));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("text/plain;charset=utf-8");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options).ok()?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).ok()?;
    let link: web_sys::HtmlAnchorElement = web_sys::window()?
        .document()?
        .create_element("a")
        .ok()?
        .dyn_into()
        .ok()?;
    link.set_href(&url);
    link.set_download(file);
    link.click();
    // The browser has started the download from the URL; let it finish before revoking.
    Timeout::new(60_000, move || {
        let _ = web_sys::Url::revoke_object_url(&url);
    })
    .forget();
    Some(())
}

/// On a phone the panel fills the *visual* viewport: when the on-screen keyboard opens (or the
/// phone turns) the panel shrinks to what is visible, and the newest message stays in view.
/// The CSS reads `--parley-vv-h` / `--parley-vv-top` only on small screens.
fn follow_visual_viewport(list: NodeRef<html::Ol>) {
    let Some(vv) = web_sys::window().and_then(|w| w.visual_viewport()) else {
        return;
    };
    let target = vv.clone();
    let fit = wasm_bindgen::closure::Closure::<dyn FnMut(web_sys::Event)>::new(
        move |e: web_sys::Event| {
            // The list's parent is the panel.
            let Some(l) = list.get_untracked() else {
                return;
            };
            let Some(p) = l.parent_element() else {
                return;
            };
            // Whole pixels: formatting an f64 would link float printing into the panel.
            let vars = format!(
                "--parley-vv-h:{}px;--parley-vv-top:{}px",
                target.height().round() as i64,
                target.offset_top().round() as i64
            );
            let _ = p.set_attribute("style", &vars);
            // A keyboard opening or a turn (not a pan): the newest message back in view.
            if e.type_() == "resize" {
                l.set_scroll_top(l.scroll_height());
            }
        },
    );
    for name in ["resize", "scroll"] {
        let _ = vv.add_event_listener_with_callback(name, fit.as_ref().unchecked_ref());
    }
    // Lives as long as the page (the panel is never unmounted).
    fit.forget();
}

/// The whole panel. `name` is the site's name (dialog title and label).
pub fn panel(chat: Chat, name: String) -> impl IntoView {
    let label = name.clone();
    let ui = chat.ui();
    let lang = chat.lang();
    let t = lang.strings();
    let list: NodeRef<html::Ol> = NodeRef::new();
    let input: NodeRef<html::Textarea> = NodeRef::new();
    follow_visual_viewport(list);

    // Newest message in view, and the composer focused when the panel opens. Deferred by a
    // timeout so the DOM (the `hidden` attribute, new rows) is up to date first.
    Effect::new(move |_| {
        ui.items.track();
        ui.typing.track();
        ui.open.track();
        Timeout::new(0, move || {
            if let Some(el) = list.get_untracked() {
                el.set_scroll_top(el.scroll_height());
            }
        })
        .forget();
    });
    Effect::new(move |prev: Option<bool>| {
        let open = ui.open.get();
        if open && prev != Some(true) {
            Timeout::new(0, move || {
                if let Some(el) = input.get_untracked() {
                    let _ = el.focus();
                }
            })
            .forget();
        }
        open
    });

    let email: NodeRef<html::Input> = NodeRef::new();
    let submit = {
        let chat = chat.clone();
        move || {
            let Some(el) = input.get_untracked() else {
                return;
            };
            // Away: with an email the message goes to the console marked offline and replies
            // are mailed (the address is checked by the relay; here only that it looks like
            // one). The email is an offer: without one the message is sent as usual.
            let sent = match email
                .get_untracked()
                .filter(|f| ui.away.get_untracked() && !f.value().trim().is_empty())
            {
                Some(field) if !field.value().contains('@') => {
                    let _ = field.focus();
                    false
                }
                Some(field) => chat.leave_message(&field.value(), &el.value()),
                None => chat.send_text(&el.value()),
            };
            if sent {
                el.set_value("");
            }
        }
    };
    let on_key = {
        let submit = submit.clone();
        move |ev: KeyboardEvent| {
            // 229 / isComposing: Enter that confirms a Korean (IME) syllable is not a send.
            if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() && ev.key_code() != 229
            {
                ev.prevent_default();
                submit();
            }
        }
    };
    let on_input = {
        let chat = chat.clone();
        move |_| {
            let empty = input
                .get_untracked()
                .is_none_or(|el| el.value().trim().is_empty());
            chat.composing(empty);
        }
    };
    let on_panel_key = {
        let chat = chat.clone();
        move |ev: KeyboardEvent| {
            if ev.key() == "Escape" {
                ev.stop_propagation();
                chat.close(true);
            }
        }
    };
    // A quick reply was clicked (or pressed with Enter/Space): send its text like typed text.
    let on_quick = {
        let chat = chat.clone();
        move |ev: MouseEvent| {
            let button = ev
                .target()
                .and_then(|t| t.dyn_into::<Element>().ok())
                .and_then(|el| el.closest("button.parley-quick").ok().flatten());
            let cb = button.as_ref().and_then(|b| b.get_attribute("data-cb"));
            match cb.as_deref() {
                Some("log") => return chat.cobrowse_log(),
                Some(v) => return chat.cobrowse_answer(v == "allow"),
                None => {}
            }
            if let Some(text) = button.and_then(|b| b.get_attribute("data-text")) {
                chat.send_text(&text);
                // The buttons go away with the send; keep the keyboard user in the composer.
                if let Some(el) = input.get_untracked() {
                    let _ = el.focus();
                }
            }
        }
    };
    let on_save = {
        let site = name.clone();
        move |_| {
            let text = ui.items.with_untracked(|items| transcript(&site, items));
            let _ = save_text("conversation.txt", &text);
        }
    };
    let on_close = {
        let chat = chat.clone();
        move |_| chat.close(true)
    };
    // The rating form (CSAT), shown once the conversation is closed: a native radio group of
    // five scores (accessible without any state of ours), an optional comment and a submit.
    // Everything is read from the form's DOM on submit, which keeps the panel small.
    let comment: NodeRef<html::Textarea> = NodeRef::new();
    let on_rate = {
        let chat = chat.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let Some(form) = ev.target().and_then(|t| t.dyn_into::<Element>().ok()) else {
                return;
            };
            // The checked radio's value is "1"…"5".
            let score = form
                .query_selector("input:checked")
                .ok()
                .flatten()
                .and_then(|i| i.get_attribute("value"))
                .and_then(|v| v.bytes().next())
                .map(|b| b.wrapping_sub(b'0'));
            if let Some(score) = score {
                let text = comment
                    .get_untracked()
                    .map(|el| el.value())
                    .unwrap_or_default();
                chat.rate(score, text);
            }
        }
    };
    let scores = t
        .scores
        .iter()
        .zip(["1", "2", "3", "4", "5"])
        .map(|(label, n)| {
            view! { <label class="parley-score"><input type="radio" name="score" value=n aria-label=*label/>{n}</label> }
        })
        .collect_view();

    view! {
        <section class="parley-panel" role="dialog" aria-label=label
            hidden=move || !ui.open.get() on:keydown=on_panel_key>
            <header class="parley-head">
                <div class="parley-heading">
                    <h2 class="parley-title">{name}</h2>
                    <span class="parley-conn" data-state=move || ui.conn.get().as_str()>
                        {move || {
                            use crate::connection::ConnState::*;
                            match ui.conn.get() {
                                Connecting => t.connecting,
                                Online => t.online,
                                Reconnecting => t.reconnecting,
                                Offline => t.offline,
                            }
                        }}
                    </span>
                </div>
                <button type="button" class="parley-save" aria-label=t.save_transcript
                    title=t.save_transcript hidden=move || ui.items.with(Vec::is_empty)
                    on:click=on_save>
                    "⤓"
                </button>
                <button type="button" class="parley-close" aria-label=t.close on:click=on_close>
                    "×"
                </button>
            </header>
            <Show when=move || ui.agents_online.get() == Some(0) && !ui.away.get()>
                <p class="parley-notice">{t.no_agents}</p>
            </Show>
            <Show when=move || ui.queue.get().is_some()>
                <p class="parley-queue" role="status">{move || ui.queue.get().unwrap_or_default()}</p>
            </Show>
            <Show when=move || ui.away.get()>
                <p class="parley-notice parley-away">{t.away}</p>
            </Show>
            <ol class="parley-messages" node_ref=list tabindex="0" aria-label=t.history on:click=on_quick>
                <For each=move || ui.items.get() key=|i| i.key.clone()
                    children=move |item| row(t, item) />
            </ol>
            <Show when=move || ui.typing.get().is_some()>
                <p class="parley-typing">{move || ui.typing.get().unwrap_or_default()}</p>
            </Show>
            <form class="parley-composer" on:submit=move |ev| {
                ev.prevent_default();
                submit();
            }>
                <input node_ref=email type="email" class="parley-email" hidden=move || !ui.away.get()
                    autocomplete="email" aria-label=t.email placeholder=t.email />
                <textarea node_ref=input rows="2" aria-label=t.message placeholder=t.placeholder
                    on:keydown=on_key on:input=on_input></textarea>
                <button type="submit" class="parley-send" aria-label=t.send>
                    <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true">
                        <path fill="currentColor" d="M3 20.5 21 12 3 3.5 3 10l12 2-12 2z"></path>
                    </svg>
                </button>
            </form>
            <form class="parley-rate" aria-label=t.rate hidden=move || !ui.rate.get() on:submit=on_rate>
                <p>{t.rate}</p>
                <div role="radiogroup" aria-label=t.rate>{scores}</div>
                <textarea node_ref=comment rows="2" maxlength="500" aria-label=t.comment placeholder=t.comment></textarea>
                <button type="submit" class="parley-send-rating">{t.send_rating}</button>
            </form>
        </section>
        <div class="parley-sr" aria-live="polite">{move || ui.announce.get()}</div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(meta: Option<&str>, text: &str, note: Option<&'static str>) -> Item {
        Item {
            key: text.to_owned(),
            class: "parley-msg",
            role: "visitor",
            kind: None,
            seq: None,
            meta: meta.map(str::to_owned),
            text: text.to_owned(),
            note,
            buttons: Vec::new(),
            link: None,
            cb: None,
            cont: false,
        }
    }

    #[test]
    fn the_transcript_holds_what_the_visitor_saw_in_order() {
        let items = [
            line(Some("You · 14:02"), "Where is my order <b>#12</b>?", None),
            line(None, "Mina joined", None),
            line(Some("Mina · 14:03"), "It ships today.", None),
            line(Some("You · 14:04"), "Thanks", Some("Not sent")),
        ];
        let text = transcript("Demo Shop", &items);
        assert_eq!(
            text,
            "Demo Shop\n\nYou · 14:02\nWhere is my order <b>#12</b>?\n\n— Mina joined\n\n\
             Mina · 14:03\nIt ships today.\n\nYou · 14:04\nThanks\n(Not sent)\n\n"
        );
        assert_eq!(transcript("Demo Shop", &[]), "Demo Shop\n\n");
    }
}

//! Middle column: the shown conversation's header (take / close / co-browse), the co-browse
//! mirror while the visitor shares, transcript and composer.

use std::collections::HashMap;

use leptos::html;
use leptos::prelude::*;
use leptos::task::spawn_local;
use protocol::{ConversationId, ConversationStatus};

use crate::app::{new_client_id, now_ms, Ctx};
use crate::components::cobrowse::CobrowsePane;
use crate::format::clock_time;
use crate::state::{status_key, Line, LineState};

/// The middle column. Reads everything from the [`Ctx`] context; no props.
#[component]
pub fn ConversationPane() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let header = Memo::new(move |_| ctx.model.with(|m| m.header()));
    let selected = Memo::new(move |_| ctx.model.with(|m| m.selected.is_some()));
    // The conversation whose visitor shares with me: keyed by id, so switching between two
    // sharing conversations builds a fresh mirror.
    let sharing = Memo::new(move |_| {
        ctx.model.with(|m| {
            m.cobrowse()
                .filter(|c| c.sharing)
                .and_then(|_| m.selected.clone())
        })
    });

    view! {
        <main class="conversation-pane">
            <Show
                when=move || selected.get()
                fallback=|| {
                    view! {
                        <div class="no-selection">
                            <p>"Pick a conversation from the list."</p>
                        </div>
                    }
                }
            >
                <ConversationHeader header=header/>
                {move || sharing.get().map(|id| view! { <CobrowsePane id=id/> })}
                <Transcript/>
                <Show when=move || ctx.model.with(|m| m.visitor_typing(ctx.tick.get()))>
                    <div class="visitor-typing" aria-live="polite">"Visitor is typing…"</div>
                </Show>
                <Composer closed=Signal::derive(move || {
                    header.with(|h| h.as_ref().is_some_and(|h| h.status == ConversationStatus::Closed))
                })/>
            </Show>
        </main>
    }
}

/// Title, status and actions of the shown conversation.
///
/// * `header` — the shown conversation's summary (None until the list has it).
#[component]
fn ConversationHeader(header: Memo<Option<crate::state::Header>>) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let status = Memo::new(move |_| header.with(|h| h.as_ref().map(|h| h.status)));
    let take = move |_| ctx.act(|m| m.take());
    let close = move |_| ctx.act(|m| m.close());
    let cobrowse = Memo::new(move |_| ctx.model.with(|m| m.cobrowse()));
    let cobrowse_request = move |_| ctx.act(|m| m.cobrowse_request());
    let cobrowse_stop = move |_| ctx.act(|m| m.cobrowse_stop());
    // Offered on conversations I hold: enabled when nothing is asked or shared right now.
    let cobrowse_offered = move || {
        header.with(|h| {
            h.as_ref()
                .is_some_and(|h| h.mine && h.status != ConversationStatus::Closed)
        })
    };
    let targets = Memo::new(move |_| ctx.model.with(|m| m.transfer_targets()));
    let mine = Memo::new(move |_| {
        header.with(|h| {
            h.as_ref()
                .is_some_and(|h| h.mine && h.status == ConversationStatus::Assigned)
        })
    });
    let target: NodeRef<html::Select> = NodeRef::new();
    let note: NodeRef<html::Input> = NodeRef::new();
    let transfer = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let to = target
            .get_untracked()
            .map(|el| el.value())
            .unwrap_or_default();
        let text = note
            .get_untracked()
            .map(|el| el.value())
            .unwrap_or_default();
        ctx.act(|m| match m.transfer(&to, &text) {
            Ok(effects) => effects,
            Err(why) => {
                m.notice = Some(why);
                Vec::new()
            }
        });
        if let Some(el) = note.get_untracked() {
            el.set_value("");
        }
    };
    // Labels: chips with × and a field that adds one; each change sends the whole list.
    let labels =
        Memo::new(move |_| header.with(|h| h.as_ref().map(|h| (h.id.clone(), h.labels.clone()))));
    let set_labels = move |list: Vec<String>| {
        if let Some((conversation_id, _)) = labels.get_untracked() {
            ctx.run(vec![crate::state::Effect::Send(
                protocol::AgentFrame::Label {
                    conversation_id,
                    labels: list,
                },
            )]);
        }
    };
    let new_label: NodeRef<html::Input> = NodeRef::new();
    let add_label = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(el) = new_label.get_untracked() else {
            return;
        };
        let text = el.value();
        let mut list = labels.get_untracked().map(|(_, l)| l).unwrap_or_default();
        match protocol::agent::clean_labels(&[list.clone(), vec![text]].concat()) {
            Ok(cleaned) => {
                list = cleaned;
                set_labels(list);
                el.set_value("");
            }
            Err(why) => ctx.model.update(|m| m.notice = Some(why)),
        }
    };
    view! {
        <header class="conv-header">
            <div class="conv-title">
                <h1>{move || header.with(|h| h.as_ref().map(|h| h.visitor.clone()))}</h1>
                <div class="conv-labels">
                    {move || {
                        labels
                            .get()
                            .map(|(_, list)| {
                                list.iter()
                                    .map(|l| {
                                        let without: Vec<String> = list
                                            .iter()
                                            .filter(|x| *x != l)
                                            .cloned()
                                            .collect();
                                        let name = l.clone();
                                        view! {
                                            <span class="label-chip" data-label=name.clone()>
                                                {name.clone()}
                                                <button
                                                    type="button"
                                                    class="label-remove"
                                                    aria-label=format!("Remove label {name}")
                                                    on:click=move |_| set_labels(without.clone())
                                                >
                                                    "×"
                                                </button>
                                            </span>
                                        }
                                    })
                                    .collect_view()
                            })
                    }}
                    <form class="label-add" on:submit=add_label>
                        <input
                            node_ref=new_label
                            type="text"
                            maxlength="32"
                            aria-label="Add a label"
                            placeholder="+ label"
                        />
                    </form>
                </div>
                <span class="conv-sub">
                    {move || header.with(|h| h.as_ref().map(|h| h.site_name.clone()))}
                    {move || {
                        header
                            .with(|h| {
                                h.as_ref()
                                    .and_then(|h| {
                                        h.assignee
                                            .clone()
                                            .map(|a| if h.mine { " · assigned to you".to_owned() } else { format!(" · assigned to {a}") })
                                    })
                            })
                    }}
                    {move || {
                        header.with(|h| {
                            h.as_ref().and_then(|h| h.offline_email.clone()).map(|email| {
                                view! {
                                    <span class="offline-note">
                                        " · left offline — replies are emailed to " {email}
                                    </span>
                                }
                            })
                        })
                    }}
                </span>
            </div>
            <span
                class="badge"
                data-status=move || status.get().map(status_key).unwrap_or("open")
            >
                {move || status.get().map(status_key).unwrap_or("")}
            </span>
            <div class="conv-actions">
                <Show when=move || cobrowse_offered() && !cobrowse.with(|c| c.is_some_and(|c| c.sharing))>
                    <button
                        type="button"
                        class="cobrowse-request"
                        disabled=move || !cobrowse.with(|c| c.is_some_and(|c| c.can_request))
                        on:click=cobrowse_request
                    >
                        {move || {
                            if cobrowse.with(|c| c.is_some_and(|c| !c.can_request)) {
                                "Co-browse requested…"
                            } else {
                                "Co-browse"
                            }
                        }}
                    </button>
                </Show>
                <Show when=move || cobrowse.with(|c| c.is_some_and(|c| c.sharing))>
                    <button type="button" class="cobrowse-stop" on:click=cobrowse_stop>
                        "Stop co-browsing"
                    </button>
                </Show>
                <Show when=move || status.get().is_some_and(crate::state::is_waiting)>
                    <button type="button" class="take primary" on:click=take>"Take"</button>
                </Show>
                <Show when=move || {
                    status.get().is_some_and(|s| s != ConversationStatus::Closed)
                }>
                    <button type="button" class="close-conversation" on:click=close>"Close"</button>
                </Show>
                <Show when=move || mine.get() && targets.with(|t| !t.is_empty())>
                    <form class="transfer" on:submit=transfer>
                        <select node_ref=target aria-label="Transfer to">
                            <For each=move || targets.get() key=|t| t.clone() let:t>
                                <option value=t.0>{t.1}</option>
                            </For>
                        </select>
                        <input node_ref=note type="text" aria-label="Note for the next agent"
                            placeholder="Note (agents only)"/>
                        <button type="submit" class="transfer-button">"Transfer"</button>
                    </form>
                </Show>
            </div>
        </header>
        <Show when=move || cobrowse.with(|c| c.and_then(|c| c.key()).is_some())>
            <div
                class="cobrowse-status"
                role="status"
                data-state=move || cobrowse.with(|c| c.and_then(|c| c.key()))
            >
                {move || cobrowse.with(|c| c.map(|c| c.label()).unwrap_or_default())}
            </div>
        </Show>
        <Show when=move || ctx.model.with(|m| m.notice.is_some())>
            <div class="conv-notice" role="alert">
                {move || ctx.model.with(|m| m.notice.clone()).unwrap_or_default()}
            </div>
        </Show>
    }
}

/// The event list, kept scrolled to the newest line.
#[component]
fn Transcript() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let lines = Memo::new(move |_| ctx.model.with(|m| m.transcript()));
    let list = NodeRef::<html::Ol>::new();
    Effect::new(move |_| {
        lines.track();
        if let Some(el) = list.get() {
            request_animation_frame(move || el.set_scroll_top(el.scroll_height()));
        }
    });
    view! {
        <ol class="transcript" node_ref=list aria-live="polite">
            <For each=move || lines.get() key=|line| line.clone() let:line>
                <EventLine line=line/>
            </For>
        </ol>
    }
}

/// One transcript line: a message (text only, never HTML) or a system line. A bot message also
/// shows its "read more" link (already checked by `safe_link`) and the labels of its quick
/// replies as read-only chips; the bot's hand-over is a highlighted notice.
///
/// * `line` — what to show.
#[component]
fn EventLine(line: Line) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let time = line.at.map(|at| clock_time(at, ctx.tz_offset));
    let (pending, failed) = match &line.state {
        LineState::Pending => (true, None),
        LineState::Failed(why) => (false, Some(why.clone())),
        LineState::Stored | LineState::Delivered => (false, None),
    };
    let is_failed = failed.is_some();
    let dismiss = move |_| ctx.model.update(|m| m.dismiss_failed());
    let mood = line.mood;
    view! {
        <li
            class="event"
            class:notice=line.is_notice
            class:handoff=line.is_handoff
            class:pending=pending
            class:failed=is_failed
            class:note=line.is_note
            data-seq=line.seq.map(|s| s.to_string())
            data-role=line.role
            data-cobrowse=line.cobrowse
            data-mood=mood
        >
            {(!line.is_notice)
                .then(|| {
                    view! {
                        <div class="meta">
                            <span class="who">{line.who.clone()}</span>
                            {line
                                .is_note
                                .then(|| {
                                    view! {
                                        <span class="note-tag" title="Only agents see internal notes">
                                            "Internal note"
                                        </span>
                                    }
                                })}
                            {mood
                                .map(|m| {
                                    view! {
                                        <span class="mood" data-mood=m title="Tone of this message, scored by the relay">
                                            {m}
                                        </span>
                                    }
                                })}
                            <span class="at">
                                {time.clone().unwrap_or_else(|| if pending { "sending…".into() } else { String::new() })}
                            </span>
                        </div>
                    }
                })}
            <div class="text">{line.text}</div>
            {line
                .link
                .map(|href| {
                    view! {
                        <a class="bot-link" href=href target="_blank" rel="noopener noreferrer">
                            "Read more"
                        </a>
                    }
                })}
            {(!line.buttons.is_empty())
                .then(|| {
                    view! {
                        <ul class="quick-replies" aria-label="Quick replies offered to the visitor">
                            {line
                                .buttons
                                .into_iter()
                                .map(|label| view! { <li class="chip">{label}</li> })
                                .collect_view()}
                        </ul>
                    }
                })}
            {line.is_notice.then(|| view! { <span class="at">{time.unwrap_or_default()}</span> })}
            {failed
                .map(|why| {
                    view! {
                        <div class="send-error" role="alert">
                            {why}
                            " "
                            <button type="button" class="link" on:click=dismiss>"Dismiss"</button>
                        </div>
                    }
                })}
        </li>
    }
}

/// Reply box: Enter sends, Shift+Enter adds a line; typing frames are throttled. "Internal
/// note" switches it to notes, which only agents see (no typing frames are sent for them; a
/// note needs no take).
///
/// * `closed` — the conversation is closed: replies are disabled.
#[component]
fn Composer(#[prop(into)] closed: Signal<bool>) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let draft = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let noting = RwSignal::new(false);
    // One draft per conversation, so switching never carries a half-written reply to the wrong
    // visitor.
    let drafts = StoredValue::new(HashMap::<ConversationId, String>::new());
    let selected = Memo::new(move |_| ctx.model.with(|m| m.selected.clone()));
    Effect::new(move |previous: Option<Option<ConversationId>>| {
        let current = selected.get();
        drafts.update_value(|d| {
            if let Some(Some(old)) = previous {
                d.insert(old, draft.get_untracked());
            }
            let text = current
                .as_ref()
                .and_then(|id| d.remove(id))
                .unwrap_or_default();
            draft.set(text);
        });
        error.set(None);
        current
    });
    let send = move || {
        let text = draft.get_untracked();
        let note = noting.get_untracked();
        let result = ctx.model.try_update(|m| {
            if note {
                m.note(&text, new_client_id())
            } else {
                m.compose(&text, new_client_id())
            }
        });
        match result {
            Some(Ok(fx)) => {
                ctx.run(fx);
                draft.set(String::new());
                error.set(None);
                if !note {
                    ctx.stop_typing();
                }
            }
            Some(Err(why)) => error.set(Some(why)),
            None => {}
        }
    };
    let on_input = move |ev| {
        draft.set(event_target_value(&ev));
        error.set(None);
        if noting.get_untracked() {
            // The visitor never learns that someone is writing a note.
            return;
        }
        if let Some(Some(active)) = ctx.typing.try_update_value(|t| t.on_input(now_ms())) {
            ctx.send_typing(active);
        }
    };
    // Canned replies: typing `/` and a few letters offers the matching ones (this site's and
    // every site's); Tab or Enter takes the first, a click takes any.
    let site = Memo::new(move |_| {
        ctx.model
            .with(|m| m.header().map(|h| (h.site, h.visitor_id)))
    });
    let suggestions = Memo::new(move |_| {
        let typed = draft.get();
        let Some(q) = typed.strip_prefix('/') else {
            return Vec::new();
        };
        if q.contains(char::is_whitespace) {
            return Vec::new();
        }
        let q = q.to_ascii_lowercase();
        let here = site.get().map(|(s, _)| s);
        ctx.canned.with(|all| {
            all.iter()
                .filter(|r| r.shortcut.starts_with(&q))
                .filter(|r| r.site.is_none() || r.site == here)
                .take(6)
                .cloned()
                .collect::<Vec<_>>()
        })
    });
    let insert = move |reply: crate::api::CannedReply| {
        let me = ctx
            .model
            .with_untracked(|m| m.me.as_ref().map(|a| a.display_name.clone()))
            .unwrap_or_default();
        let text = reply.text.replace("{agent.name}", &me);
        if !text.contains("{visitor.name}") {
            draft.set(text);
            return;
        }
        // Only a verified name (the site's server signed it) is used; else a neutral word.
        let visitor = site.get_untracked().map(|(_, v)| v).unwrap_or_default();
        spawn_local(async move {
            let name = crate::api::visitor(&visitor)
                .await
                .ok()
                .and_then(|p| p.identity)
                .and_then(|i| i.name)
                .unwrap_or_else(|| "there".to_owned());
            draft.try_set(text.replace("{visitor.name}", &name));
        });
    };
    let on_key = move |ev: leptos::ev::KeyboardEvent| {
        let first = suggestions.with_untracked(|s| s.first().cloned());
        if let Some(reply) = first {
            if (ev.key() == "Tab" || ev.key() == "Enter") && !ev.shift_key() && !ev.is_composing() {
                ev.prevent_default();
                insert(reply);
                return;
            }
        }
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            send();
        }
    };
    view! {
        <div class="composer" class:noting=move || noting.get()>
            <div class="composer-mode" role="group" aria-label="Write a">
                <button
                    type="button"
                    class="mode"
                    aria-pressed=move || (!noting.get()).to_string()
                    on:click=move |_| noting.set(false)
                >
                    "Reply"
                </button>
                <button
                    type="button"
                    class="mode mode-note"
                    aria-pressed=move || noting.get().to_string()
                    on:click=move |_| {
                        if !noting.get_untracked() {
                            ctx.stop_typing();
                        }
                        noting.set(true)
                    }
                >
                    "Internal note"
                </button>
            </div>
            <Show when=move || error.get().is_some()>
                <div class="composer-error" role="alert">{move || error.get().unwrap_or_default()}</div>
            </Show>
            <Show when=move || !suggestions.get().is_empty()>
                <ul class="canned-suggestions" aria-label="Canned replies (Tab takes the first)">
                    {move || {
                        suggestions
                            .get()
                            .into_iter()
                            .map(|r| {
                                let shortcut = format!("/{}", r.shortcut);
                                let preview: String = r.text.chars().take(80).collect();
                                let pick = r.clone();
                                view! {
                                    <li>
                                        <button
                                            type="button"
                                            class="canned-pick"
                                            on:click=move |_| insert(pick.clone())
                                        >
                                            <span class="canned-shortcut">{shortcut}</span>
                                            " "
                                            <span class="canned-preview">{preview}</span>
                                        </button>
                                    </li>
                                }
                            })
                            .collect_view()
                    }}
                </ul>
            </Show>
            <div class="composer-row">
                <textarea
                    aria-label=move || if noting.get() { "Internal note" } else { "Reply" }
                    rows="3"
                    placeholder=move || {
                        if closed.get() {
                            "This conversation is closed."
                        } else if noting.get() {
                            "Internal note: only agents see it (Enter to add)"
                        } else {
                            "Write a reply… (Enter to send, Shift+Enter for a new line)"
                        }
                    }
                    disabled=move || closed.get()
                    prop:value=move || draft.get()
                    on:input=on_input
                    on:keydown=on_key
                ></textarea>
                <button
                    type="button"
                    class="send primary"
                    disabled=move || closed.get()
                    on:click=move |_| send()
                >
                    {move || if noting.get() { "Add note" } else { "Send" }}
                </button>
            </div>
        </div>
    }
}

//! Right column: who the visitor is (as the site's server vouched, or anonymous), their other
//! conversations, and what the widget reported about their page and browser.

use leptos::prelude::*;
use protocol::ConversationId;

use crate::api;
use crate::app::Ctx;
use crate::format::{duration_short, relative_time, safe_href};

/// The visitor context of the shown conversation. Reads from the [`Ctx`] context; no props.
#[component]
pub fn ContextPanel() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let header = Memo::new(move |_| ctx.model.with(|m| m.header()));
    // Only a change of visitor or conversation reads the profile again (not every context
    // update of the same conversation).
    let who = Memo::new(move |_| header.get().map(|h| (h.visitor_id, h.id)));
    let row = |label: &'static str, class: &'static str, value: String| {
        view! {
            <dt>{label}</dt>
            <dd class=class>{if value.is_empty() { "—".to_owned() } else { value }}</dd>
        }
    };
    view! {
        <aside class="visitor-context" aria-label="Visitor">
            <CannedPanel/>
            <h2>"Visitor"</h2>
            {move || {
                who.get()
                    .map(|(visitor_id, current)| {
                        view! { <VisitorCard visitor_id=visitor_id current=current/> }
                    })
            }}
            {move || match header.get() {
                None => view! { <p class="muted">"No conversation selected."</p> }.into_any(),
                Some(h) => {
                    let c = h.context;
                    let href = safe_href(&c.url).map(str::to_owned);
                    let viewport = c
                        .viewport
                        .map(|v| format!("{} × {}", v.width, v.height))
                        .unwrap_or_default();
                    let entered = c.entered_at;
                    view! {
                        <dl>
                            <dt>"Page"</dt>
                            <dd class="ctx-url">
                                <span class="url-text">
                                    {if c.url.is_empty() { "—".to_owned() } else { c.url.clone() }}
                                </span>
                                {href
                                    .map(|href| {
                                        view! {
                                            <a
                                                href=href
                                                target="_blank"
                                                rel="noopener noreferrer"
                                                class="open-page"
                                            >
                                                "Open page ↗"
                                            </a>
                                        }
                                    })}
                            </dd>
                            {row("Title", "ctx-title", c.title)}
                            {row("Referrer", "ctx-referrer", c.referrer)}
                            {row("Language", "ctx-language", c.language)}
                            {row("User agent", "ctx-user-agent", c.user_agent)}
                            {row("Viewport", "ctx-viewport", viewport)}
                            <dt>"Time on site"</dt>
                            <dd class="ctx-time-on-site">
                                {move || {
                                    entered
                                        .map(|at| duration_short(ctx.now.get() - at))
                                        .unwrap_or_else(|| "—".to_owned())
                                }}
                            </dd>
                            {row("Site", "ctx-site", format!("{} ({})", h.site_name, h.site))}
                        </dl>
                    }
                        .into_any()
                }
            }}
        </aside>
    }
}

/// What a JSON attribute value reads as.
fn attribute_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Who the visitor is — a verified identity (the site's server signed it) or "anonymous" — and
/// their other conversations. Every value is rendered as text.
#[component]
fn VisitorCard(
    /// The visitor whose profile is read.
    visitor_id: String,
    /// The conversation shown (left out of "other conversations").
    current: ConversationId,
) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let profile = LocalResource::new(move || {
        let id = visitor_id.clone();
        async move { api::visitor(&id).await }
    });
    view! {
        <section class="visitor-card" aria-label="Who the visitor is">
            {move || match profile.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="muted">{e}</p> }.into_any(),
                Some(Ok(p)) => {
                    let who = match p.identity {
                        Some(i) => {
                            let shown = i.name.clone().unwrap_or_else(|| i.user_id.clone());
                            view! {
                                <p class="visitor-who">
                                    <span
                                        class="verified-badge"
                                        title="Signed in on the site: the site's server vouched for this"
                                    >
                                        "✓ Verified"
                                    </span>
                                    " "
                                    <strong class="visitor-name">{shown}</strong>
                                </p>
                                <dl class="visitor-identity">
                                    <dt>"User id"</dt>
                                    <dd class="visitor-user-id">{i.user_id}</dd>
                                    {i
                                        .email
                                        .map(|e| {
                                            view! {
                                                <dt>"Email"</dt>
                                                <dd class="visitor-email">{e}</dd>
                                            }
                                        })}
                                    {i
                                        .attributes
                                        .iter()
                                        .map(|(k, v)| {
                                            view! {
                                                <dt>{k.clone()}</dt>
                                                <dd class="visitor-attribute">{attribute_text(v)}</dd>
                                            }
                                        })
                                        .collect_view()}
                                </dl>
                            }
                                .into_any()
                        }
                        None => {
                            view! {
                                <p class="visitor-who muted">"Anonymous visitor (not signed in)"</p>
                            }
                                .into_any()
                        }
                    };
                    let others: Vec<protocol::ConversationSummary> = p
                        .conversations
                        .into_iter()
                        .filter(|c| c.id != current)
                        .collect();
                    let count = others.len();
                    view! {
                        {who}
                        <h3 class="visitor-history-head">
                            {format!("Other conversations ({count})")}
                        </h3>
                        <ul class="visitor-history">
                            {others
                                .into_iter()
                                .map(|c| {
                                    let status = format!("{:?}", c.status).to_lowercase();
                                    let at = c.updated_at;
                                    view! {
                                        <li>
                                            <span class="history-status">{status}</span>
                                            " · "
                                            <span class="history-when">
                                                {move || relative_time(ctx.now.get(), at)}
                                            </span>
                                            <span class="history-preview">
                                                {c.preview.unwrap_or_default()}
                                            </span>
                                        </li>
                                    }
                                })
                                .collect_view()}
                        </ul>
                    }
                        .into_any()
                }
            }}
        </section>
    }
}

/// The agent's canned replies: the shared ones of their sites and their own, with delete
/// buttons where they may delete, and a form to add one (admins may share it with every agent).
/// Used in the composer by typing `/` and a few letters of the shortcut.
#[component]
fn CannedPanel() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let shortcut = RwSignal::new(String::new());
    let text = RwSignal::new(String::new());
    let shared = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = serde_json::json!({
            "shortcut": shortcut.get_untracked(),
            "text": text.get_untracked(),
            "shared": shared.get_untracked(),
        });
        leptos::task::spawn_local(async move {
            match api::create_canned(&body).await {
                Ok(()) => {
                    shortcut.try_set(String::new());
                    text.try_set(String::new());
                    error.try_set(None);
                    ctx.reload_canned();
                }
                Err(why) => {
                    error.try_set(Some(why));
                }
            }
        });
    };
    let remove = move |id: String| {
        leptos::task::spawn_local(async move {
            match api::delete_canned(&id).await {
                Ok(()) => ctx.reload_canned(),
                Err(why) => {
                    error.try_set(Some(why));
                }
            }
        });
    };
    view! {
        <details class="canned-panel">
            <summary>{move || format!("Canned replies ({})", ctx.canned.with(Vec::len))}</summary>
            <ul class="canned-list">
                {move || {
                    let admin = ctx.admin.get();
                    ctx.canned
                        .get()
                        .into_iter()
                        .map(|r| {
                            let id = r.id.clone();
                            let deletable = !r.shared || admin;
                            view! {
                                <li class="canned-item" data-shortcut=r.shortcut.clone()>
                                    <span class="canned-shortcut">{format!("/{}", r.shortcut)}</span>
                                    {r.shared.then(|| view! { <span class="canned-shared">"shared"</span> })}
                                    <span class="canned-text">{r.text.clone()}</span>
                                    {deletable
                                        .then(|| {
                                            view! {
                                                <button
                                                    type="button"
                                                    class="link canned-delete"
                                                    on:click=move |_| remove(id.clone())
                                                >
                                                    "Delete"
                                                </button>
                                            }
                                        })}
                                </li>
                            }
                        })
                        .collect_view()
                }}
            </ul>
            <form class="canned-add" on:submit=add>
                <input
                    type="text"
                    name="shortcut"
                    aria-label="Shortcut"
                    placeholder="shortcut (after /)"
                    maxlength="32"
                    prop:value=move || shortcut.get()
                    on:input=move |ev| shortcut.set(event_target_value(&ev))
                />
                <textarea
                    name="text"
                    aria-label="Reply text"
                    rows="2"
                    placeholder="Hi {visitor.name}, this is {agent.name}…"
                    prop:value=move || text.get()
                    on:input=move |ev| text.set(event_target_value(&ev))
                ></textarea>
                <Show when=move || ctx.admin.get()>
                    <label class="canned-share">
                        <input
                            type="checkbox"
                            prop:checked=move || shared.get()
                            on:change=move |ev| shared.set(event_target_checked(&ev))
                        />
                        " Share with every agent"
                    </label>
                </Show>
                <button type="submit">"Add"</button>
                <Show when=move || error.get().is_some()>
                    <p class="canned-error" role="alert">{move || error.get().unwrap_or_default()}</p>
                </Show>
            </form>
        </details>
    }
}

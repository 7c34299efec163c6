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

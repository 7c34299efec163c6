//! Right column: what the widget reported about the visitor's page and browser.

use leptos::prelude::*;

use crate::app::Ctx;
use crate::format::{duration_short, safe_href};

/// The visitor context of the shown conversation. Reads from the [`Ctx`] context; no props.
#[component]
pub fn ContextPanel() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let header = Memo::new(move |_| ctx.model.with(|m| m.header()));
    let row = |label: &'static str, class: &'static str, value: String| {
        view! {
            <dt>{label}</dt>
            <dd class=class>{if value.is_empty() { "—".to_owned() } else { value }}</dd>
        }
    };
    view! {
        <aside class="visitor-context" aria-label="Visitor">
            <h2>"Visitor"</h2>
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

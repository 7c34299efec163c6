//! The "Numbers" view in the left column: how visitors rated each agent's conversations
//! (mean and count, from `GET /api/ratings`), loaded when the agent opens it and on refresh.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, AgentNumbers};

/// A collapsible section; fetches the numbers each time it is opened.
#[component]
pub fn Numbers() -> impl IntoView {
    let open = RwSignal::new(false);
    let numbers: RwSignal<Option<Result<Vec<AgentNumbers>, String>>> = RwSignal::new(None);
    let load = move || {
        spawn_local(async move {
            let result = api::ratings().await;
            numbers.try_set(Some(result));
        })
    };
    let toggle = move |_| {
        let now_open = !open.get_untracked();
        open.set(now_open);
        if now_open {
            load();
        }
    };
    view! {
        <section class="numbers" aria-label="Numbers">
            <button type="button" class="numbers-toggle" aria-expanded=move || open.get().to_string()
                on:click=toggle>
                "Numbers"
            </button>
            <Show when=move || open.get()>
                {move || match numbers.get() {
                    None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                    Some(Err(why)) => view! { <p class="muted">{why}</p> }.into_any(),
                    Some(Ok(rows)) if rows.is_empty() => {
                        view! { <p class="muted">"No ratings yet."</p> }.into_any()
                    }
                    Some(Ok(rows)) => {
                        view! {
                            <table class="numbers-table">
                                <thead>
                                    <tr><th>"Agent"</th><th>"Rating"</th><th>"Rated"</th></tr>
                                </thead>
                                <tbody>
                                    {rows
                                        .into_iter()
                                        .map(|r| {
                                            let name = r
                                                .agent
                                                .map(|a| a.display_name)
                                                .unwrap_or_else(|| "No agent".to_owned());
                                            view! {
                                                <tr class="numbers-row">
                                                    <td class="numbers-agent">{name}</td>
                                                    <td class="numbers-average">{format!("{:.2}", r.average)}</td>
                                                    <td class="numbers-count">{r.count}</td>
                                                </tr>
                                            }
                                        })
                                        .collect_view()}
                                </tbody>
                            </table>
                        }
                            .into_any()
                    }
                }}
                <button type="button" class="link numbers-refresh" on:click=move |_| load()>
                    "Refresh"
                </button>
            </Show>
        </section>
    }
}

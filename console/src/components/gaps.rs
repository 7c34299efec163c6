//! The "Knowledge gaps" page: what the bot could not answer (similar questions grouped, with
//! counts) and which answers were followed by a hand-off, so a manager sees what to add or fix
//! in the knowledge base. Shown instead of the conversation columns while [`GapsView`] is on.

use leptos::prelude::*;
use leptos::task::spawn_local;
use protocol::{EntryMisses, GapReport, QuestionGroup};

use crate::api;
use crate::app::Ctx;
use crate::format::relative_time;

/// Whether the knowledge-gaps page is shown (provided as context by the workspace; the sidebar
/// button toggles it and opening a conversation turns it off).
#[derive(Clone, Copy)]
pub struct GapsView(pub RwSignal<bool>);

/// Where the report stands.
#[derive(Clone, Debug, PartialEq)]
enum Load {
    /// `GET /api/gaps` in flight.
    Loading,
    /// The report.
    Ready(GapReport),
    /// The sentence to show instead.
    Failed(String),
}

/// The page. Loads the report when shown and on "Refresh".
#[component]
pub fn GapsPage() -> impl IntoView {
    let view_on = expect_context::<GapsView>();
    let load = RwSignal::new(Load::Loading);
    let fetch = move || {
        load.set(Load::Loading);
        spawn_local(async move {
            let next = match api::gaps().await {
                Ok(report) => Load::Ready(report),
                Err(why) => Load::Failed(why),
            };
            load.try_set(next);
        });
    };
    fetch();
    view! {
        <main class="gaps-page" aria-label="Knowledge gaps">
            <header class="gaps-header">
                <div class="gaps-title">
                    <h1>"Knowledge gaps"</h1>
                    <span class="conv-sub">
                        "What the bot could not answer in the last 30 days, similar questions together."
                    </span>
                </div>
                <button type="button" class="gaps-refresh" on:click=move |_| fetch()>"Refresh"</button>
                <button type="button" class="gaps-close" on:click=move |_| view_on.0.set(false)>
                    "Back to conversations"
                </button>
            </header>
            {move || match load.get() {
                Load::Loading => view! { <p class="gaps-status">"Loading…"</p> }.into_any(),
                Load::Failed(why) => {
                    view! { <p class="gaps-status gaps-error" role="alert">{why}</p> }.into_any()
                }
                Load::Ready(report) => view! { <Report report=report/> }.into_any(),
            }}
        </main>
    }
}

/// Both lists of a loaded report.
///
/// * `report` — what `/api/gaps` returned.
#[component]
fn Report(report: GapReport) -> impl IntoView {
    let unanswered = report.unanswered;
    let questions = report.questions;
    let entries = report.entries;
    let no_questions = questions.is_empty();
    let no_entries = entries.is_empty();
    view! {
        <section class="gap-section gap-questions">
            <h2>
                "Unanswered questions "
                <span class="count" data-total=unanswered.to_string()>{unanswered.to_string()}</span>
            </h2>
            {no_questions.then(|| view! { <p class="empty-list">"The bot answered everything."</p> })}
            <ol class="gap-groups">
                {questions.into_iter().map(|g| view! { <GroupItem group=g/> }).collect_view()}
            </ol>
        </section>
        <section class="gap-section gap-entries">
            <h2>"Answers followed by a hand-off"</h2>
            {no_entries.then(|| view! { <p class="empty-list">"No answer was followed by a hand-off."</p> })}
            <ol class="gap-entry-list">
                {entries.into_iter().map(|e| view! { <EntryItem entry=e/> }).collect_view()}
            </ol>
        </section>
    }
}

/// One group of similar unanswered questions: its count, wordings, sites, pages and when.
///
/// * `group` — the group to show.
#[component]
fn GroupItem(group: QuestionGroup) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let latest = group.latest_at;
    let mut examples = group.examples.into_iter();
    let first = examples.next().unwrap_or_default();
    let more: Vec<String> = examples.collect();
    let sites = group.sites.join(", ");
    view! {
        <li class="gap-group" data-count=group.count.to_string()>
            <span class="gap-count" title="Times asked">{group.count.to_string()}</span>
            <div class="gap-body">
                <div class="gap-question">{first}</div>
                {(!more.is_empty())
                    .then(|| {
                        view! {
                            <ul class="gap-examples" aria-label="Also asked as">
                                {more.into_iter().map(|q| view! { <li>{q}</li> }).collect_view()}
                            </ul>
                        }
                    })}
                <div class="gap-meta">
                    <span class="gap-sites">{sites}</span>
                    " · last asked "
                    <span class="time">{move || relative_time(ctx.now.get(), latest)}</span>
                </div>
                {(!group.pages.is_empty())
                    .then(|| {
                        view! {
                            <ul class="gap-pages" aria-label="Pages">
                                {group
                                    .pages
                                    .into_iter()
                                    .map(|p| view! { <li class="url-text">{p}</li> })
                                    .collect_view()}
                            </ul>
                        }
                    })}
            </div>
        </li>
    }
}

/// One entry that was followed by hand-offs: its title, count and the questions it was shown for.
///
/// * `entry` — the entry to show.
#[component]
fn EntryItem(entry: EntryMisses) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let latest = entry.latest_at;
    view! {
        <li class="gap-entry" data-entry=entry.entry_id.clone() data-count=entry.count.to_string()>
            <span class="gap-count" title="Hand-offs right after this answer">{entry.count.to_string()}</span>
            <div class="gap-body">
                <div class="gap-question">{entry.title}</div>
                <ul class="gap-examples" aria-label="Shown for">
                    {entry.questions.into_iter().map(|q| view! { <li>{q}</li> }).collect_view()}
                </ul>
                <div class="gap-meta">
                    <span class="gap-sites">{format!("{} · {}", entry.site, entry.entry_id)}</span>
                    " · last "
                    <span class="time">{move || relative_time(ctx.now.get(), latest)}</span>
                </div>
            </div>
        </li>
    }
}

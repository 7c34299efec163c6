//! Left column: who is online, the list tabs and the conversation list.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api;
use crate::app::Ctx;
use crate::components::gaps::GapsView;
use crate::components::numbers::Numbers;
use crate::format::relative_time;
use crate::state::{ListRow, Tab};

/// The left column. Reads everything from the [`Ctx`] context; no props.
#[component]
pub fn Sidebar() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let gaps = expect_context::<GapsView>();
    let me = Memo::new(move |_| {
        ctx.model
            .with(|m| m.me.as_ref().map(|a| a.display_name.clone()))
            .unwrap_or_default()
    });
    let agents = Memo::new(move |_| {
        ctx.model.with(|m| {
            m.agents_online
                .iter()
                .map(|a| (a.id.clone(), a.display_name.clone(), m.load_label(&a.id)))
                .collect::<Vec<_>>()
        })
    });
    let counts = Memo::new(move |_| ctx.model.with(|m| m.counts()));
    // "Filter by label": rows with a label containing the text (any case).
    let label_filter = RwSignal::new(String::new());
    let rows = Memo::new(move |_| {
        let tab = ctx.tab.get();
        let wanted = label_filter.get().trim().to_lowercase();
        let mut rows = ctx.model.with(|m| m.rows(tab));
        if !wanted.is_empty() {
            rows.retain(|r| r.labels.iter().any(|l| l.to_lowercase().contains(&wanted)));
        }
        rows
    });
    let logout = move |_| {
        spawn_local(async move {
            api::logout().await;
            ctx.logout.run(());
        });
    };

    view! {
        <aside class="sidebar">
            <header class="brand">
                <div class="brand-row">
                    <span class="logo">"Parley"</span>
                    <span
                        class="conn-state"
                        data-state=move || ctx.conn.get().key()
                        title=move || ctx.conn.get().label()
                    >
                        <span class="conn-dot"></span>
                        {move || ctx.conn.get().label()}
                    </span>
                </div>
                <div class="me-row">
                    <span class="me">{move || me.get()}</span>
                    <button
                        class="gaps-toggle"
                        type="button"
                        class:active=move || gaps.0.get()
                        aria-pressed=move || gaps.0.get().to_string()
                        on:click=move |_| gaps.0.update(|on| *on = !*on)
                    >
                        "Knowledge gaps"
                    </button>
                    <Show when=move || ctx.admin.get()>
                        <button class="routing-open" type="button" on:click=move |_| { ctx.agents_page.set(false); ctx.routing.set(true) }>
                            "Routing"
                        </button>
                        <button class="agents-open" type="button" on:click=move |_| { ctx.routing.set(false); ctx.agents_page.set(true) }>
                            "Agents"
                        </button>
                    </Show>
                    <button class="logout" type="button" on:click=logout>"Log out"</button>
                </div>
            </header>
            <section class="agents-online" aria-label="Agents online">
                <h2>"Agents online"</h2>
                <ul>
                    <For each=move || agents.get() key=|a| a.0.clone() let:agent>
                        <li class="agent">
                            <span class="presence-dot"></span>
                            <span class="agent-name">{agent.1}</span>
                            {agent.2.map(|load| view! { <span class="agent-load" title="Conversations / most given automatically">{load}</span> })}
                        </li>
                    </For>
                </ul>
            </section>
            <p class="queue-summary" aria-live="polite">
                {move || match ctx.model.with(|m| m.queue_waiting) {
                    0 => "Nobody waiting".to_owned(),
                    1 => "1 waiting in the queue".to_owned(),
                    n => format!("{n} waiting in the queue"),
                }}
            </p>
            <nav class="tabs" role="tablist">
                {Tab::ALL
                    .into_iter()
                    .enumerate()
                    .map(|(i, tab)| {
                        view! {
                            <button
                                type="button"
                                role="tab"
                                data-tab=tab.key()
                                class:active=move || ctx.tab.get() == tab
                                aria-selected=move || (ctx.tab.get() == tab).to_string()
                                on:click=move |_| ctx.tab.set(tab)
                            >
                                {tab.label()}
                                <span class="count">{move || counts.get()[i]}</span>
                            </button>
                        }
                    })
                    .collect_view()}
            </nav>
            <Numbers/>
            <input
                class="label-filter"
                type="search"
                aria-label="Filter by label"
                placeholder="Filter by label"
                prop:value=move || label_filter.get()
                on:input=move |ev| label_filter.set(event_target_value(&ev))
            />
            <ul class="conversations">
                <For each=move || rows.get() key=|row| row.clone() let:row>
                    <ConversationItem row=row/>
                </For>
            </ul>
            <Show when=move || rows.with(Vec::is_empty)>
                <p class="empty-list">"No conversations here."</p>
            </Show>
            <Show when=move || ctx.tab.get() == Tab::All && ctx.model.with(|m| m.more_closed)>
                <OlderConversations/>
            </Show>
        </aside>
    }
}

/// "Older conversations": the next page of closed conversations, below the All tab's list
/// (`welcome` lists only the latest closed ones).
#[component]
fn OlderConversations() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let loading = RwSignal::new(false);
    let failed = RwSignal::new(None::<String>);
    let load = move |_| {
        let Some((at, id)) = ctx.model.with_untracked(|m| m.oldest_closed()) else {
            return;
        };
        loading.set(true);
        spawn_local(async move {
            match api::older_closed((at, id.0)).await {
                Ok(page) => {
                    failed.set(None);
                    ctx.model
                        .update(|m| m.add_older(page.conversations, page.more));
                }
                Err(why) => failed.set(Some(why)),
            }
            loading.set(false);
        });
    };
    view! {
        <div class="older">
            <button class="load-older" type="button" disabled=move || loading.get() on:click=load>
                {move || if loading.get() { "Loading…" } else { "Older conversations" }}
            </button>
            {move || failed.get().map(|why| view! { <p class="older-error">{why}</p> })}
        </div>
    }
}

/// One entry of the conversation list.
///
/// * `row` — what to show; selecting it opens the conversation in the middle column.
#[component]
fn ConversationItem(row: ListRow) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let id = row.id.clone();
    let select = {
        let id = id.clone();
        move || ctx.select(id.clone())
    };
    let on_key = {
        let select = select.clone();
        move |ev: leptos::ev::KeyboardEvent| {
            if ev.key() == "Enter" || ev.key() == " " {
                ev.prevent_default();
                select();
            }
        }
    };
    let updated = row.updated_at;
    let status = row.status;
    view! {
        <li
            class="conversation"
            class:unread=row.unread
            class:selected=row.selected
            data-id=id.0.clone()
            data-status=status
            tabindex="0"
            on:click=move |_| select()
            on:keydown=on_key
        >
            <div class="conv-top">
                <span class="unread-dot" aria-label=if row.unread { "Unread" } else { "" }></span>
                <span class="visitor-name">{row.visitor}</span>
                <span class="time">{move || relative_time(ctx.now.get(), updated)}</span>
            </div>
            <div class="conv-site">
                <span class="site-name">{row.site_name}</span>
                <span class="badge" data-status=status>{status}</span>
                {row.offline_email.map(|email| view! {
                    <span class="badge offline" title="Left while nobody was available; replies are emailed">
                        "offline · " {email}
                    </span>
                })}
            </div>
            <div class="preview">{row.preview}</div>
            {(!row.labels.is_empty())
                .then(|| {
                    view! {
                        <div class="labels">
                            {row
                                .labels
                                .iter()
                                .map(|l| view! { <span class="label-chip">{l.clone()}</span> })
                                .collect_view()}
                        </div>
                    }
                })}
            {row.queue_position.map(|p| view! { <div class="queue-position">{format!("#{p} in queue")}</div> })}
            {row.auto_assigned.then(|| view! { <div class="auto-assigned">"Assigned to you automatically"</div> })}
            {row.assignee.map(|name| view! { <div class="assignee">{name}</div> })}
            {row
                .rating
                .map(|r| {
                    view! {
                        <div class="rating" aria-label=format!("Rated {r} of 5")>
                            {format!("★ {r} / 5")}
                        </div>
                    }
                })}
        </li>
    }
}

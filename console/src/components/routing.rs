//! The routing page (admins only): per site, who answers first, business hours in the site's
//! time zone, and how many chats one agent may hold. Saved through `/api/admin/sites/{key}`;
//! what the relay refuses (an unknown zone, overlapping hours) is shown under the site.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, Hours, SiteSettings};

/// Day keys and labels, Monday first.
const DAYS: [(&str, &str); 7] = [
    ("mon", "Mon"),
    ("tue", "Tue"),
    ("wed", "Wed"),
    ("thu", "Thu"),
    ("fri", "Fri"),
    ("sat", "Sat"),
    ("sun", "Sun"),
];

fn day_mut<'a>(h: &'a mut Hours, key: &str) -> &'a mut Option<String> {
    match key {
        "mon" => &mut h.mon,
        "tue" => &mut h.tue,
        "wed" => &mut h.wed,
        "thu" => &mut h.thu,
        "fri" => &mut h.fri,
        "sat" => &mut h.sat,
        _ => &mut h.sun,
    }
}

/// The page: one card per site.
#[component]
pub fn RoutingPage(
    /// Back to the conversations.
    on_close: Callback<()>,
) -> impl IntoView {
    let sites = LocalResource::new(api::admin_sites);
    view! {
        <section class="routing-page" aria-label="Routing">
            <header class="routing-head">
                <h1>"Routing"</h1>
                <button type="button" class="routing-close" on:click=move |_| on_close.run(())>
                    "Back to conversations"
                </button>
            </header>
            {move || match sites.get() {
                None => view! { <p>"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="routing-error" role="alert">{e}</p> }.into_any(),
                Some(Ok(list)) => list
                    .into_iter()
                    .map(|s| view! { <SiteCard site=s/> })
                    .collect_view()
                    .into_any(),
            }}
        </section>
    }
}

/// One site's form.
#[component]
fn SiteCard(site: SiteSettings) -> impl IntoView {
    let key = site.key.clone();
    let draft = RwSignal::new(site.clone());
    let status = RwSignal::new(None::<Result<String, String>>);
    let has_kb = site.has_kb;
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let settings = draft.get_untracked();
        status.set(None);
        spawn_local(async move {
            match api::save_site(&settings).await {
                Ok(saved) => {
                    let who = saved.updated_by.clone().unwrap_or_default();
                    draft.set(saved);
                    status.set(Some(Ok(format!("Saved by {who}."))));
                }
                Err(e) => status.set(Some(Err(e))),
            }
        });
    };
    let hours_on = move || draft.with(|d| d.hours.is_some());
    view! {
        <form class="site-card" data-site=key on:submit=save>
            <h2>{site.name.clone()} " " <span class="site-key">"(" {site.key.clone()} ")"</span></h2>
            <p class="site-available">
                {move || if draft.with(|d| d.available) { "Available now" } else { "Away now" }}
            </p>
            <label>
                "Who answers first "
                <select
                    class="routing-select"
                    prop:value=move || draft.with(|d| d.routing.clone())
                    on:change=move |ev| draft.update(|d| d.routing = event_target_value(&ev))
                >
                    <option value="agents_first">"Agents first"</option>
                    <option value="bot_first" disabled=!has_kb>"Bot first"</option>
                </select>
            </label>
            <label>
                <input
                    type="checkbox"
                    class="hours-on"
                    prop:checked=hours_on
                    on:change=move |ev| {
                        let on = event_target_checked(&ev);
                        draft.update(|d| {
                            d.hours = on.then(|| Hours { tz: "UTC".into(), ..Hours::default() });
                        })
                    }
                />
                " Business hours (outside them visitors can leave a message)"
            </label>
            <Show when=hours_on>
                <div class="hours-grid">
                    <label>
                        "Time zone "
                        <input
                            class="tz"
                            placeholder="Asia/Seoul"
                            prop:value=move || draft.with(|d| d.hours.as_ref().map(|h| h.tz.clone()).unwrap_or_default())
                            on:input=move |ev| {
                                let v = event_target_value(&ev);
                                draft.update(|d| if let Some(h) = &mut d.hours { h.tz = v })
                            }
                        />
                    </label>
                    {DAYS
                        .iter()
                        .map(|&(day, label)| {
                            view! {
                                <label>
                                    {label} " "
                                    <input
                                        class="day"
                                        data-day=day
                                        placeholder="09:00-18:00"
                                        prop:value=move || draft.with(|d| {
                                            d.hours.clone().and_then(|mut h| day_mut(&mut h, day).clone()).unwrap_or_default()
                                        })
                                        on:input=move |ev| {
                                            let v = event_target_value(&ev);
                                            draft.update(|d| if let Some(h) = &mut d.hours {
                                                *day_mut(h, day) = (!v.trim().is_empty()).then_some(v);
                                            })
                                        }
                                    />
                                </label>
                            }
                        })
                        .collect_view()}
                </div>
            </Show>
            <label>
                "Max chats per agent "
                <input
                    type="number"
                    class="max-chats"
                    min="1"
                    max="100"
                    placeholder="no limit"
                    prop:value=move || draft.with(|d| d.max_chats_per_agent.map(|n| n.to_string()).unwrap_or_default())
                    on:input=move |ev| {
                        let v = event_target_value(&ev);
                        draft.update(|d| d.max_chats_per_agent = v.trim().parse().ok())
                    }
                />
            </label>
            <button type="submit" class="primary save-site">"Save"</button>
            {move || status.get().map(|s| match s {
                Ok(m) => view! { <p class="routing-ok" role="status">{m}</p> }.into_any(),
                Err(e) => view! { <p class="routing-error" role="alert">{e}</p> }.into_any(),
            })}
        </form>
    }
}

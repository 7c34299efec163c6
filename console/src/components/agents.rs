//! The agents page (admins only): add agents, disable and enable them, set a new password, and
//! choose each one's role, the sites they serve (their team) and their own chat limit. Agents
//! listed in the config file are shown read-only except for disable/enable: the file owns them.
//! What the relay refuses (a taken username, the last admin) is shown under the agent.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, AgentAccount};

/// Site keys and names, for the site checkboxes.
type SiteList = Vec<(String, String)>;

/// The page: the form to add an agent, then one card per agent.
#[component]
pub fn AgentsPage(
    /// Back to the conversations.
    on_close: Callback<()>,
) -> impl IntoView {
    // Bumped after each change: the list is read again from the relay.
    let version = RwSignal::new(0u32);
    let agents = LocalResource::new(move || {
        version.track();
        api::admin_agents()
    });
    let sites = LocalResource::new(|| async {
        api::admin_sites()
            .await
            .map(|list| {
                list.into_iter()
                    .map(|s| (s.key, s.name))
                    .collect::<SiteList>()
            })
            .unwrap_or_default()
    });
    let reload = Callback::new(move |()| version.update(|v| *v += 1));
    view! {
        <section class="agents-page" aria-label="Agents">
            <header class="routing-head">
                <h1>"Agents"</h1>
                <button type="button" class="routing-close" on:click=move |_| on_close.run(())>
                    "Back to conversations"
                </button>
            </header>
            {move || sites.get().map(|sites| view! { <AddAgent sites=sites on_added=reload/> })}
            {move || match (agents.get(), sites.get()) {
                (Some(Ok(list)), Some(sites)) => list
                    .into_iter()
                    .map(|a| view! { <AgentCard agent=a sites=sites.clone() on_changed=reload/> })
                    .collect_view()
                    .into_any(),
                (Some(Err(e)), _) => view! { <p class="routing-error" role="alert">{e}</p> }.into_any(),
                _ => view! { <p>"Loading…"</p> }.into_any(),
            }}
        </section>
    }
}

/// "Every site" or some sites, as checkboxes.
#[component]
fn SitesPicker(
    /// The choice: `None` for every site.
    chosen: RwSignal<Option<Vec<String>>>,
    /// The sites to choose from.
    sites: SiteList,
    /// Read-only (an agent from the config file).
    #[prop(optional)]
    locked: bool,
) -> impl IntoView {
    let every = move || chosen.with(Option::is_none);
    view! {
        <fieldset class="sites-picker" disabled=locked>
            <legend>"Sites"</legend>
            <label>
                <input
                    type="checkbox"
                    class="every-site"
                    prop:checked=every
                    on:change=move |ev| {
                        let on = event_target_checked(&ev);
                        chosen.set(if on { None } else { Some(Vec::new()) });
                    }
                />
                " Every site"
            </label>
            {sites
                .into_iter()
                .map(|(key, name)| {
                    let k = key.clone();
                    let k2 = key.clone();
                    view! {
                        <label>
                            <input
                                type="checkbox"
                                class="site-choice"
                                data-site=key.clone()
                                prop:disabled=every
                                prop:checked=move || chosen.with(|c| c.as_ref().is_some_and(|c| c.contains(&k)))
                                on:change=move |ev| {
                                    let on = event_target_checked(&ev);
                                    let key = k2.clone();
                                    chosen.update(|c| {
                                        let list = c.get_or_insert_with(Vec::new);
                                        list.retain(|s| *s != key);
                                        if on {
                                            list.push(key);
                                        }
                                    });
                                }
                            />
                            " " {name}
                        </label>
                    }
                })
                .collect_view()}
        </fieldset>
    }
}

/// The limit field's value: empty is the site's limit.
fn parse_limit(text: &str) -> Result<Option<u32>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<u32>()
        .ok()
        .filter(|n| (1..=100).contains(n))
        .map(Some)
        .ok_or_else(|| "The chat limit must be 1-100, or empty for the site's limit.".to_owned())
}

/// The form that adds an agent.
#[component]
fn AddAgent(
    /// The sites to choose from.
    sites: SiteList,
    /// Called once the relay created the agent.
    on_added: Callback<()>,
) -> impl IntoView {
    let username = RwSignal::new(String::new());
    let display_name = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let admin = RwSignal::new(false);
    let chosen = RwSignal::new(None::<Vec<String>>);
    let limit = RwSignal::new(String::new());
    let status = RwSignal::new(None::<Result<String, String>>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let max_chats = match parse_limit(&limit.get_untracked()) {
            Ok(m) => m,
            Err(e) => return status.set(Some(Err(e))),
        };
        let body = serde_json::json!({
            "username": username.get_untracked().trim(),
            "display_name": display_name.get_untracked().trim(),
            "password": password.get_untracked(),
            "admin": admin.get_untracked(),
            "sites": chosen.get_untracked(),
            "max_chats": max_chats,
        });
        status.set(None);
        spawn_local(async move {
            match api::create_agent(&body).await {
                Ok(a) => {
                    status.set(Some(Ok(format!("Added {}.", a.username))));
                    username.set(String::new());
                    display_name.set(String::new());
                    password.set(String::new());
                    on_added.run(());
                }
                Err(e) => status.set(Some(Err(e))),
            }
        });
    };
    view! {
        <form class="site-card add-agent" on:submit=submit>
            <h2>"Add an agent"</h2>
            <label>"Username " <input class="new-username" autocomplete="off" placeholder="mina" prop:value=username on:input=move |ev| username.set(event_target_value(&ev))/></label>
            <label>"Name shown to visitors " <input class="new-display-name" placeholder="Mina" prop:value=display_name on:input=move |ev| display_name.set(event_target_value(&ev))/></label>
            <label>"Password (12+ characters) " <input class="new-password" type="password" autocomplete="new-password" prop:value=password on:input=move |ev| password.set(event_target_value(&ev))/></label>
            <label><input type="checkbox" class="new-admin" prop:checked=admin on:change=move |ev| admin.set(event_target_checked(&ev))/> " Admin (may change routing and agents)"</label>
            <SitesPicker chosen=chosen sites=sites/>
            <label>"Own chat limit " <input class="new-max-chats" type="number" min="1" max="100" placeholder="the site's" prop:value=limit on:input=move |ev| limit.set(event_target_value(&ev))/></label>
            <button type="submit" class="primary add-agent-submit">"Add agent"</button>
            <Status status=status/>
        </form>
    }
}

/// The outcome of the last action on a form.
#[component]
fn Status(status: RwSignal<Option<Result<String, String>>>) -> impl IntoView {
    move || {
        status.get().map(|s| match s {
            Ok(m) => view! { <p class="routing-ok" role="status">{m}</p> }.into_any(),
            Err(e) => view! { <p class="routing-error" role="alert">{e}</p> }.into_any(),
        })
    }
}

/// One agent: what they are, and what an admin may change.
#[component]
fn AgentCard(
    /// The agent as the relay listed them.
    agent: AgentAccount,
    /// The sites to choose from.
    sites: SiteList,
    /// Called after a change the relay accepted.
    on_changed: Callback<()>,
) -> impl IntoView {
    let locked = agent.from_config();
    let id = StoredValue::new(agent.id.clone());
    let display_name = RwSignal::new(agent.display_name.clone());
    let admin = RwSignal::new(agent.admin);
    let chosen = RwSignal::new(agent.sites.clone());
    let limit = RwSignal::new(agent.max_chats.map(|n| n.to_string()).unwrap_or_default());
    let password = RwSignal::new(String::new());
    let status = RwSignal::new(None::<Result<String, String>>);
    let disabled = agent.disabled;
    let run = move |patch: serde_json::Value, done: &'static str| {
        status.set(None);
        spawn_local(async move {
            match api::update_agent(&id.get_value(), &patch).await {
                Ok(_) => {
                    status.set(Some(Ok(done.to_owned())));
                    on_changed.run(());
                }
                Err(e) => status.set(Some(Err(e))),
            }
        });
    };
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let max_chats = match parse_limit(&limit.get_untracked()) {
            Ok(m) => m,
            Err(e) => return status.set(Some(Err(e))),
        };
        let patch = serde_json::json!({
            "display_name": display_name.get_untracked().trim(),
            "admin": admin.get_untracked(),
            "sites": chosen.get_untracked(),
            "max_chats": max_chats,
        });
        run(patch, "Saved.");
    };
    let toggle = move |_| {
        let patch = serde_json::json!({ "disabled": !disabled });
        run(
            patch,
            if disabled {
                "Enabled."
            } else {
                "Disabled: signed out everywhere."
            },
        );
    };
    let set_password = move |_| {
        let pw = password.get_untracked();
        status.set(None);
        spawn_local(async move {
            match api::set_agent_password(&id.get_value(), &pw).await {
                Ok(_) => {
                    password.set(String::new());
                    status.set(Some(Ok("Password set: signed out everywhere.".to_owned())));
                }
                Err(e) => status.set(Some(Err(e))),
            }
        });
    };
    let state = if agent.disabled {
        "Disabled"
    } else if agent.online {
        "Online"
    } else {
        "Offline"
    };
    view! {
        <form class="site-card agent-card" data-username=agent.username.clone() on:submit=save>
            <h2>
                {agent.display_name.clone()} " "
                <span class="site-key">"(" {agent.username.clone()} ")"</span>
                " " <span class="agent-state">{state}</span>
                {agent.admin.then(|| view! { " " <span class="agent-badge">"admin"</span> })}
                {locked.then(|| view! { " " <span class="agent-badge">"config file"</span> })}
            </h2>
            {locked.then(|| view! {
                <p class="hint">"Listed in the config file: its name, role, sites and limit are set there. Here it can only be disabled or enabled."</p>
            })}
            <label>"Name shown to visitors " <input class="display-name" prop:disabled=locked prop:value=display_name on:input=move |ev| display_name.set(event_target_value(&ev))/></label>
            <label><input type="checkbox" class="is-admin" prop:disabled=locked prop:checked=admin on:change=move |ev| admin.set(event_target_checked(&ev))/> " Admin"</label>
            <SitesPicker chosen=chosen sites=sites locked=locked/>
            <label>"Own chat limit " <input class="max-chats" type="number" min="1" max="100" placeholder="the site's" prop:disabled=locked prop:value=limit on:input=move |ev| limit.set(event_target_value(&ev))/></label>
            <div class="agent-actions">
                {(!locked).then(|| view! { <button type="submit" class="primary save-agent">"Save"</button> })}
                <button type="button" class="toggle-agent" on:click=toggle>
                    {if disabled { "Enable" } else { "Disable" }}
                </button>
            </div>
            {(!locked).then(|| view! {
                <div class="agent-password">
                    <label>"New password " <input class="password" type="password" autocomplete="new-password" prop:value=password on:input=move |ev| password.set(event_target_value(&ev))/></label>
                    <button type="button" class="set-password" on:click=set_password>"Set password"</button>
                </div>
            })}
            <Status status=status/>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::parse_limit;

    #[test]
    fn the_limit_field_is_checked_before_sending() {
        assert_eq!(parse_limit(""), Ok(None));
        assert_eq!(parse_limit(" 3 "), Ok(Some(3)));
        assert!(parse_limit("0").is_err());
        assert!(parse_limit("101").is_err());
        assert!(parse_limit("two").is_err());
    }
}

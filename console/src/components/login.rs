//! The login page: `form.login` posting to `/api/login`.

use leptos::prelude::*;
use leptos::task::spawn_local;
use protocol::AgentInfo;

use crate::api;

/// Username and password form.
#[component]
pub fn Login(
    /// Called with the agent once the relay accepted the credentials (the session cookie is set
    /// by then).
    #[prop(into)]
    on_login: Callback<AgentInfo>,
) -> impl IntoView {
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        error.set(None);
        let (user, pass) = (username.get_untracked(), password.get_untracked());
        spawn_local(async move {
            let result = api::login(user.trim(), &pass).await;
            busy.try_set(false);
            match result {
                Ok(agent) => on_login.run(agent),
                Err(message) => {
                    password.try_set(String::new());
                    error.try_set(Some(message));
                }
            }
        });
    };

    view! {
        <main class="login-page">
            <form class="login" on:submit=submit>
                <h1>"Parley console"</h1>
                <p class="login-sub">"Sign in to answer your visitors."</p>
                <label>
                    <span>"Username"</span>
                    <input
                        name="username"
                        autocomplete="username"
                        required
                        prop:value=move || username.get()
                        on:input=move |ev| username.set(event_target_value(&ev))
                    />
                </label>
                <label>
                    <span>"Password"</span>
                    <input
                        name="password"
                        type="password"
                        autocomplete="current-password"
                        required
                        prop:value=move || password.get()
                        on:input=move |ev| password.set(event_target_value(&ev))
                    />
                </label>
                <Show when=move || error.get().is_some()>
                    <p class="login-error" role="alert">{move || error.get().unwrap_or_default()}</p>
                </Show>
                <button type="submit" disabled=move || busy.get()>
                    {move || if busy.get() { "Signing in…" } else { "Sign in" }}
                </button>
            </form>
        </main>
    }
}

//! The application shell: decides between the login page and the workspace, owns the shared
//! [`Ctx`] (model, connection state, clocks) and wires the agent socket to the model.

use std::collections::HashMap;
use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use protocol::{AgentFrame, AgentInfo, ClientId, ConversationId, Seq, ToAgent};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;

use crate::api;
use crate::components::agents::AgentsPage;
use crate::components::cobrowse;
use crate::components::context_panel::ContextPanel;
use crate::components::conversation::ConversationPane;
use crate::components::gaps::{GapsPage, GapsView};
use crate::components::login::Login;
use crate::components::routing::RoutingPage;
use crate::components::sidebar::Sidebar;
use crate::format::{title_with_count, APP_TITLE};
use crate::socket::{self, SocketEvent};
use crate::state::{Effect as ModelEffect, Model, Tab};
use crate::typing::TypingThrottle;

/// The agent socket's state as shown in `.conn-state[data-state]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// First connection under way.
    Connecting,
    /// `welcome` received; frames flow.
    Online,
    /// Dropped; a reconnect is scheduled.
    Reconnecting,
}

impl ConnState {
    /// The `data-state` value.
    pub fn key(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Online => "online",
            ConnState::Reconnecting => "reconnecting",
        }
    }

    /// Wording for people.
    pub fn label(self) -> &'static str {
        match self {
            ConnState::Connecting => "Connecting…",
            ConnState::Online => "Online",
            ConnState::Reconnecting => "Reconnecting…",
        }
    }
}

/// Everything the workspace components share, provided as context. All fields are cheap handles.
#[derive(Clone, Copy)]
pub struct Ctx {
    /// The whole console state; see [`crate::state`].
    pub model: RwSignal<Model>,
    /// Socket state.
    pub conn: RwSignal<ConnState>,
    /// The list tab shown.
    pub tab: RwSignal<Tab>,
    /// Wall clock (Unix ms), refreshed every 30 s: relative times and time on site.
    pub now: RwSignal<i64>,
    /// Wall clock refreshed every second: expiry of "Visitor is typing…".
    pub tick: RwSignal<i64>,
    /// The agent's own typing frames.
    pub typing: StoredValue<TypingThrottle>,
    /// `Date.getTimezoneOffset()` in minutes, for message times.
    pub tz_offset: i64,
    /// Leave the workspace (after logout or an expired session).
    pub logout: Callback<()>,
    /// The agent may use the admin pages (from `/api/me`).
    pub admin: RwSignal<bool>,
    /// The routing page is shown instead of the conversation.
    pub routing: RwSignal<bool>,
    /// The agents page is shown instead of the conversation.
    pub agents_page: RwSignal<bool>,
    /// Canned replies this agent may use (`GET /api/canned`), read after each `welcome` and
    /// after each change.
    pub canned: RwSignal<Vec<api::CannedReply>>,
}

impl Ctx {
    /// Reads the canned replies again.
    pub fn reload_canned(&self) {
        let canned = self.canned;
        spawn_local(async move {
            if let Ok(list) = api::canned().await {
                canned.try_set(list);
            }
        });
    }
}

impl Ctx {
    /// Carries out the model's effects on the socket.
    pub fn run(&self, effects: Vec<ModelEffect>) {
        for fx in effects {
            match fx {
                ModelEffect::Send(frame) => {
                    match &frame {
                        AgentFrame::CobrowseResync { conversation_id } => {
                            cobrowse::resync_sent(conversation_id)
                        }
                        // Stopping drops the stream here at once, not when the event returns.
                        AgentFrame::CobrowseStop { conversation_id } => {
                            cobrowse::stopped(conversation_id)
                        }
                        _ => {}
                    }
                    socket::send(&frame);
                }
                ModelEffect::SendAfter(ms, frame) => {
                    let ms = u32::try_from(ms).unwrap_or(u32::MAX);
                    gloo_timers::callback::Timeout::new(ms, move || {
                        socket::send(&frame);
                    })
                    .forget();
                }
            }
        }
    }

    /// Shows conversation `id` (stopping the typing indicator of the one left).
    pub fn select(&self, id: ConversationId) {
        self.stop_typing();
        let fx = self.model.try_update(|m| m.select(id)).unwrap_or_default();
        self.run(fx);
    }

    /// Applies a model action and runs its effects.
    pub fn act(&self, action: impl FnOnce(&mut Model) -> Vec<ModelEffect>) {
        let fx = self.model.try_update(action).unwrap_or_default();
        self.run(fx);
    }

    /// Tells the relay the agent stopped typing, if it thought otherwise.
    pub fn stop_typing(&self) {
        if let Some(Some(active)) = self.typing.try_update_value(|t| t.stop()) {
            self.send_typing(active);
        }
    }

    /// Sends a typing frame for the shown conversation.
    pub fn send_typing(&self, active: bool) {
        let fx = self
            .model
            .try_with_untracked(|m| m.typing(active))
            .flatten();
        self.run(fx.into_iter().collect());
    }
}

/// Current time, Unix ms.
pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// A fresh idempotency key for a reply: `a-` + time + randomness, within `[A-Za-z0-9_-]{1,64}`.
pub fn new_client_id() -> ClientId {
    let rand = (js_sys::Math::random() * 2f64.powi(40)) as u64;
    ClientId(format!("a-{:x}-{:x}", now_ms(), rand))
}

/// Whether the login is known yet.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Auth {
    /// `GET /api/me` in flight.
    Checking,
    /// Show the login page.
    LoggedOut,
    /// Show the workspace for this agent.
    LoggedIn(AgentInfo),
}

/// The root component: login page or workspace.
#[component]
pub fn App() -> impl IntoView {
    let auth = RwSignal::new(Auth::Checking);
    spawn_local(async move {
        let next = match api::me().await {
            Ok(agent) => Auth::LoggedIn(agent),
            Err(_) => Auth::LoggedOut,
        };
        auth.set(next);
    });
    let on_login = Callback::new(move |agent: AgentInfo| auth.set(Auth::LoggedIn(agent)));
    let on_logout = Callback::new(move |()| auth.set(Auth::LoggedOut));
    move || match auth.get() {
        Auth::Checking => view! { <div class="boot">"Loading…"</div> }.into_any(),
        Auth::LoggedOut => view! { <Login on_login=on_login/> }.into_any(),
        Auth::LoggedIn(agent) => view! { <Workspace agent=agent on_logout=on_logout/> }.into_any(),
    }
}

const SEEN_KEY: &str = "parley.console.seen.";

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

fn load_seen(agent_id: &str) -> HashMap<ConversationId, Seq> {
    storage()
        .and_then(|s| s.get_item(&format!("{SEEN_KEY}{agent_id}")).ok().flatten())
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default()
}

fn save_seen(agent_id: &str, seen: &HashMap<ConversationId, Seq>) {
    if let (Some(s), Ok(json)) = (storage(), serde_json::to_string(seen)) {
        let _ = s.set_item(&format!("{SEEN_KEY}{agent_id}"), &json);
    }
}

fn set_title(text: &str) {
    if let Some(doc) = web_sys::window().and_then(|w| w.document()) {
        doc.set_title(text);
    }
}

fn document_hidden() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .is_some_and(|d| d.hidden())
}

/// The three-column console for a logged-in agent. Owns the socket for its lifetime.
#[component]
pub fn Workspace(
    /// Who is logged in (from `/api/login` or `/api/me`), shown until `welcome` says more.
    agent: AgentInfo,
    /// Called when the agent logs out or the session turns out to have expired.
    #[prop(into)]
    on_logout: Callback<()>,
) -> impl IntoView {
    let agent_id = agent.id.clone();
    let mut initial = Model::new();
    initial.seen = load_seen(&agent_id);
    initial.hidden = document_hidden();
    initial.me = Some(agent);
    let ctx = Ctx {
        model: RwSignal::new(initial),
        conn: RwSignal::new(ConnState::Connecting),
        tab: RwSignal::new(Tab::Unassigned),
        now: RwSignal::new(now_ms()),
        tick: RwSignal::new(now_ms()),
        typing: StoredValue::new(TypingThrottle::default()),
        tz_offset: js_sys::Date::new_0().get_timezone_offset() as i64,
        logout: on_logout,
        admin: RwSignal::new(false),
        routing: RwSignal::new(false),
        agents_page: RwSignal::new(false),
        canned: RwSignal::new(Vec::new()),
    };
    provide_context(ctx);
    // Whether a `welcome` came on the current connection; a close without one may mean the
    // session expired (the upgrade answers 401, which the browser reports only as a close).
    let welcomed = StoredValue::new(false);
    socket::start(
        move |frame: ToAgent| {
            // Co-browse stream items go straight to the mirror, not through the model signal.
            if let ToAgent::Cobrowse {
                conversation_id,
                n,
                data,
                index,
                count,
            } = frame
            {
                cobrowse::receive(conversation_id, n, &data, index, count);
                return;
            }
            let is_welcome = matches!(frame, ToAgent::Welcome { .. });
            let fx = ctx
                .model
                .try_update(|m| m.receive(frame, now_ms()))
                .unwrap_or_default();
            if is_welcome {
                welcomed.set_value(true);
                socket::mark_healthy();
                ctx.conn.set(ConnState::Online);
                // After an admin changed this agent (close 4403 and reconnect), the role may
                // have changed too: the admin pages follow it.
                ctx.reload_canned();
                spawn_local(async move {
                    let admin = api::is_admin().await;
                    ctx.admin.try_set(admin);
                    if !admin {
                        ctx.routing.try_set(false);
                        ctx.agents_page.try_set(false);
                    }
                });
            }
            ctx.run(fx);
        },
        move |event| match event {
            SocketEvent::Opened => welcomed.set_value(false),
            SocketEvent::Closed { .. } => {
                ctx.conn.try_set(ConnState::Reconnecting);
                ctx.model.try_update(|m| m.disconnected());
                ctx.typing.try_update_value(|t| t.stop());
                if !welcomed.try_get_value().unwrap_or(true) {
                    spawn_local(async move {
                        if api::me().await == Err(api::MeError::Unauthorized) {
                            socket::stop();
                            ctx.logout.run(());
                        }
                    });
                }
                welcomed.try_set_value(false);
            }
        },
    );

    let slow = set_interval_with_handle(move || ctx.now.set(now_ms()), Duration::from_secs(30));
    let fast = set_interval_with_handle(
        move || {
            let now = now_ms();
            ctx.tick.set(now);
            if let Some(Some(active)) = ctx.typing.try_update_value(|t| t.on_tick(now)) {
                ctx.send_typing(active);
            }
        },
        Duration::from_secs(1),
    );

    // Tab visibility: counts in the title while hidden, cleared when the agent comes back.
    let on_visibility = Closure::<dyn FnMut()>::new(move || {
        ctx.model.try_update(|m| m.set_hidden(document_hidden()));
    });
    let document = web_sys::window().and_then(|w| w.document());
    if let Some(doc) = &document {
        let _ = doc.add_event_listener_with_callback(
            "visibilitychange",
            on_visibility.as_ref().unchecked_ref(),
        );
    }
    // The listener is removed on cleanup; the closure must outlive it, so it is leaked once per
    // login (a few bytes) rather than freed while the browser may still hold it.
    let listener: js_sys::Function = on_visibility
        .as_ref()
        .unchecked_ref::<js_sys::Function>()
        .clone();
    on_visibility.forget();
    let listener = StoredValue::new_local(listener);

    let attention = Memo::new(move |_| ctx.model.with(|m| m.attention));
    Effect::new(move |_| set_title(&title_with_count(attention.get())));
    let seen = Memo::new(move |_| ctx.model.with(|m| m.seen.clone()));
    Effect::new(move |_| seen.with(|s| save_seen(&agent_id, s)));

    on_cleanup(move || {
        socket::stop();
        if let Ok(h) = slow {
            h.clear();
        }
        if let Ok(h) = fast {
            h.clear();
        }
        if let Some(doc) = web_sys::window().and_then(|w| w.document()) {
            listener.try_with_value(|f| {
                let _ = doc.remove_event_listener_with_callback("visibilitychange", f);
            });
            doc.set_title(APP_TITLE);
        }
    });

    // The knowledge-gaps page replaces the conversation columns; opening a conversation from
    // the list brings them back.
    let gaps = GapsView(RwSignal::new(false));
    provide_context(gaps);
    let selected = Memo::new(move |_| ctx.model.with(|m| m.selected.clone()));
    Effect::new(move |previous: Option<Option<ConversationId>>| {
        let current = selected.get();
        if previous.is_some_and(|p| p != current) {
            gaps.0.set(false);
        }
        current
    });

    view! {
        <div class="console">
            <Sidebar/>
            <Show
                when=move || gaps.0.get()
                fallback=move || view! {
                    <Show
                        when=move || ctx.routing.get()
                        fallback=move || view! {
                            <Show
                                when=move || ctx.agents_page.get()
                                fallback=|| view! { <ConversationPane/> <ContextPanel/> }
                            >
                                <AgentsPage on_close=Callback::new(move |()| ctx.agents_page.set(false))/>
                            </Show>
                        }
                    >
                        <RoutingPage on_close=Callback::new(move |()| ctx.routing.set(false))/>
                    </Show>
                }
            >
                <GapsPage/>
            </Show>
        </div>
    }
}

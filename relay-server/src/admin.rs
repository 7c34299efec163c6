//! The admin API behind the console's routing page: per site, who answers first, business hours
//! with their time zone, and how many chats one agent may hold. Saved in the store
//! ([`SiteSettingsRecord`]); a saved site's settings replace the config file's.
//!
//! `GET /api/admin/sites` and `PUT /api/admin/sites/{key}`: the session cookie, admin agents
//! only (`403 forbidden` for others), and the same-origin check on the write.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::auth::AdminAgent;
use crate::config::{Routing, SiteConfig};
use crate::hours::{Hours, HoursSpec};
use crate::http::AppError;
use crate::logsafe::Untrusted;
use crate::store::{now_ms, SiteSettingsRecord};
use crate::App;

/// One site as the admin page shows and edits it.
#[derive(Debug, Serialize)]
pub struct SiteView {
    /// Site key.
    pub key: String,
    /// Display name (from the config; not editable here).
    pub name: String,
    /// `bot_first` or `agents_first`.
    pub routing: &'static str,
    /// Business hours; `null`: always open.
    pub hours: Option<HoursSpec>,
    /// Chats one agent may hold at once; `null`: no limit.
    pub max_chats_per_agent: Option<i64>,
    /// Whether the site has a knowledge base (needed for `bot_first`).
    pub has_kb: bool,
    /// Whether people can answer right now (hours and agents online).
    pub available: bool,
    /// Who saved these settings last; absent: the config file's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    /// When (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
}

/// Body of `PUT /api/admin/sites/{key}`: the complete settings (what is absent is cleared).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSettingsBody {
    /// Who answers first.
    pub routing: Routing,
    /// Business hours; absent or `null`: always open.
    #[serde(default)]
    pub hours: Option<HoursSpec>,
    /// 1–100; absent or `null`: no limit.
    #[serde(default)]
    pub max_chats_per_agent: Option<i64>,
}

fn routing_str(r: Routing) -> &'static str {
    match r {
        Routing::AgentsFirst => "agents_first",
        Routing::BotFirst => "bot_first",
    }
}

/// A site's config with a saved row applied. `Err` says why the row cannot be used.
pub fn apply(base: &SiteConfig, row: &SiteSettingsRecord) -> Result<SiteConfig, String> {
    let mut site = base.clone();
    site.routing = match row.routing.as_str() {
        "bot_first" => Routing::BotFirst,
        "agents_first" => Routing::AgentsFirst,
        other => return Err(format!("unknown routing {other:?}")),
    };
    site.hours = match &row.hours {
        None => None,
        Some(json) => Some(serde_json::from_str::<Hours>(json).map_err(|e| e.to_string())?),
    };
    if let Some(max) = row.max_chats_per_agent {
        site.max_chats_per_agent =
            u32::try_from(max).map_err(|_| format!("max_chats_per_agent {max} out of range"))?;
    }
    Ok(site)
}

/// Reads saved settings at start. A row that no longer applies (a site removed from the config,
/// a time zone unknown to this build) is logged and skipped: the config's settings hold.
pub async fn load_overrides(app: &App) -> anyhow::Result<()> {
    for row in app.store.site_settings().await? {
        let Some(base) = app.sites.get(&row.site) else {
            tracing::warn!(site = %Untrusted(&row.site), "saved settings for a site not in the config: ignored");
            continue;
        };
        match apply(base, &row) {
            Ok(site) => app.set_site(site),
            Err(e) => {
                tracing::warn!(site = %row.site, error = %e, "saved settings unusable: config used")
            }
        }
    }
    // Agents' own limits and sites, which an admin may have changed on any node.
    app.queue.set_agents(&app.store.agents().await?);
    Ok(())
}

/// Re-reads the saved settings (and agents' limits and sites) whenever another node says they changed (a `settings` nudge, or
/// a resync after lost nudges), until shutdown: without it a node would keep the settings it
/// read at start, and two nodes would route one site's visitors differently.
pub async fn follow_saves(app: Arc<App>) {
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = app.hub.settings_changed.notified() => {}
        }
        match load_overrides(&app).await {
            Ok(()) => {
                tracing::debug!("site settings re-read after a change on another node");
                // A new limit per agent may let this node's queue assign more.
                app.hub.queue_changed.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "could not re-read site settings"),
        }
    }
}

async fn view(app: &App, key: &str, saved: Option<&SiteSettingsRecord>) -> Option<SiteView> {
    let site = app.site(key)?;
    Some(SiteView {
        key: site.key.clone(),
        name: site.name.clone(),
        routing: routing_str(site.routing),
        hours: site.hours.clone().map(HoursSpec::from),
        max_chats_per_agent: saved.and_then(|s| s.max_chats_per_agent),
        has_kb: app.has_bot(key),
        available: app.availability(&site).available,
        updated_by: saved.map(|s| s.updated_by.clone()),
        updated_at: saved.map(|s| s.updated_at),
    })
}

fn internal(e: crate::store::StoreError) -> AppError {
    AppError::Internal(e.into())
}

/// `GET /api/admin/sites`: every site's effective settings.
pub async fn list_sites(
    State(app): State<Arc<App>>,
    _admin: AdminAgent,
) -> Result<Json<serde_json::Value>, AppError> {
    let saved = app.store.site_settings().await.map_err(internal)?;
    let mut keys: Vec<&String> = app.sites.keys().collect();
    keys.sort();
    let mut sites = Vec::with_capacity(keys.len());
    for key in keys {
        let row = saved.iter().find(|r| &r.site == key);
        if let Some(v) = view(&app, key, row).await {
            sites.push(v);
        }
    }
    Ok(Json(serde_json::json!({ "sites": sites })))
}

/// `PUT /api/admin/sites/{key}`: saves a site's settings; answers with the site as now in force.
pub async fn save_site(
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    AdminAgent(admin): AdminAgent,
    body: Result<Json<SiteSettingsBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SiteView>, AppError> {
    app.public.check_origin(&headers)?;
    let base = app.sites.get(&key).ok_or(AppError::UnknownSite)?;
    let Json(body) = body.map_err(AppError::from_json)?;
    if body.routing == Routing::BotFirst && !app.has_bot(&key) {
        return Err(AppError::Invalid(format!(
            "site {key:?} has no bot: set `kb` or `bot_url` in the config before bot_first"
        )));
    }
    if let Some(n) = body.max_chats_per_agent {
        if !(1..=100).contains(&n) {
            return Err(AppError::Invalid(
                "max_chats_per_agent must be 1-100 (or null: no limit)".into(),
            ));
        }
    }
    let hours = match body.hours {
        None => None,
        Some(spec) => Some(Hours::try_from(spec).map_err(AppError::Invalid)?),
    };
    let row = SiteSettingsRecord {
        site: key.clone(),
        routing: routing_str(body.routing).to_owned(),
        hours: hours
            .map(|h| serde_json::to_string(&h))
            .transpose()
            .map_err(|e| AppError::Internal(e.into()))?,
        max_chats_per_agent: body.max_chats_per_agent,
        updated_at: now_ms(),
        updated_by: admin.username.clone(),
    };
    let site = apply(base, &row).map_err(AppError::Invalid)?;
    app.store.put_site_settings(&row).await.map_err(internal)?;
    app.set_site(site);
    // After the store has it: the other nodes re-read it on this nudge, and a new limit may let
    // the queue assign more here and there.
    app.hub.publish_settings_changed();
    app.hub.publish_queue_changed();
    tracing::info!(site = %Untrusted(&key), by = %Untrusted(&admin.username), "site settings saved");
    view(&app, &key, Some(&row))
        .await
        .map(Json)
        .ok_or(AppError::UnknownSite)
}

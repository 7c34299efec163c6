//! The visitor's data rights (issue #18 "Privacy by construction"): what the relay keeps about
//! a visitor, for how long, and how an admin exports or erases it.
//!
//! - **Export / erase** (`GET /api/admin/visitors/{id}/export`, `DELETE /api/admin/visitors/{id}`,
//!   admins only): everything the store has about one visitor as JSON, or all of it deleted in
//!   one transaction with an audit row (`GET /api/admin/audit`) and a log line naming who erased
//!   what and when. Which tables that covers is listed in [`crate::store::rights`].
//! - **Retention** ([`run_retention`]): a site's closed conversations older than its
//!   `retention_days` are deleted by a background pass on every node, at most
//!   [`PER_PASS`] conversations per site per pass, so a first run over years of data never
//!   holds the store for long.
//! - **Page URLs** ([`stored_context`]): the visitor's page URL and referrer lose their query
//!   string and fragment (except the site's `keep_query_params`) before anything stores or
//!   forwards them, through the one function in `protocol::url`.
//!
//! Why a module of its own: the socket handlers only call [`stored_context`]; everything else
//! about retention and erasure lives here, so the rules are read in one place.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use protocol::url::{check_keep_params, stored_url, BadKeepParam};
use protocol::PageContext;
use serde::{Deserialize, Serialize};

use crate::auth::AdminAgent;
use crate::config::SiteConfig;
use crate::http::AppError;
use crate::logsafe::Untrusted;
use crate::store::{now_ms, Erased, Store, StoreError, StoreResult, VisitorData};
use crate::App;

/// Most conversations one retention pass deletes per site.
pub const PER_PASS: i64 = 500;
/// Conversations deleted per transaction within a pass: short write transactions, so appends
/// (which share SQLite's one writer) wait milliseconds, not seconds.
pub const PER_BATCH: i64 = 100;
/// Time between retention passes. Retention is counted in days: an hour late is nothing.
pub const EVERY: Duration = Duration::from_secs(3600);
/// Longest accepted `retention_days` (100 years): beyond it, use no retention at all.
pub const MAX_RETENTION_DAYS: i64 = 36_500;
const DAY_MS: i64 = 86_400_000;

/// A site's privacy settings (`[[site]]` keys `retention_days` and `keep_query_params`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Privacy {
    /// Closed conversations last changed more than this many days ago are deleted; absent:
    /// kept until erased.
    #[serde(default)]
    pub retention_days: Option<i64>,
    /// Query parameters kept in stored page URLs (e.g. `utm_source`); every other parameter and
    /// the fragment are dropped.
    #[serde(default)]
    pub keep_query_params: Vec<String>,
}

/// Why a site's privacy settings are refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrivacyError {
    /// `retention_days` is 0, negative or too large.
    #[error("retention_days must be 1-36500 (or absent: keep until erased), not {0}")]
    RetentionDays(i64),
    /// A name in `keep_query_params` is not a parameter name.
    #[error("{0}")]
    KeepParams(#[from] BadKeepParam),
}

impl Privacy {
    /// Checks the settings; the relay refuses to start with bad ones (nothing is deleted or
    /// stored under a setting that was a typo).
    pub fn check(&self) -> Result<(), PrivacyError> {
        if let Some(days) = self.retention_days {
            if !(1..=MAX_RETENTION_DAYS).contains(&days) {
                return Err(PrivacyError::RetentionDays(days));
            }
        }
        check_keep_params(&self.keep_query_params)?;
        Ok(())
    }
}

/// Checks every site's privacy settings (at start, before the store is opened).
pub fn check_sites(sites: &[SiteConfig]) -> anyhow::Result<()> {
    for site in sites {
        site.privacy
            .check()
            .map_err(|e| anyhow::anyhow!("site {:?}: {e}", site.key))?;
    }
    Ok(())
}

/// The page context as the relay keeps it: fields cut to size, and the URL and referrer
/// without query string and fragment (except the site's kept parameters). Every context a
/// visitor sends goes through here before it is stored or shown to an agent.
pub fn stored_context(site: &SiteConfig, context: PageContext) -> PageContext {
    let mut context = context.truncated();
    let keep = &site.privacy.keep_query_params;
    context.url = stored_url(&context.url, keep);
    context.referrer = stored_url(&context.referrer, keep);
    context
}

/// One retention pass at `now` (Unix ms) over `sites`: for each site with `retention_days`,
/// deletes its closed conversations last changed before `now - days`, at most `per_pass`
/// ([`PER_PASS`] in the relay), [`PER_BATCH`] per transaction. `now` and `per_pass` are
/// parameters so tests can run a pass "years later" over a handful of rows.
pub async fn retention_pass(
    store: &dyn Store,
    sites: &[Arc<SiteConfig>],
    now: i64,
    per_pass: i64,
) -> StoreResult<Vec<Erased>> {
    let mut done = Vec::new();
    for site in sites {
        let Some(days) = site.privacy.retention_days else {
            continue;
        };
        let before = now.saturating_sub(days.saturating_mul(DAY_MS));
        let mut total = Erased {
            site: site.key.clone(),
            ..Erased::default()
        };
        while (total.conversations as i64) < per_pass {
            let batch = PER_BATCH.min(per_pass - total.conversations as i64);
            let erased = store.expire_closed(&site.key, before, batch).await?;
            total.conversations += erased.conversations;
            total.events += erased.events;
            total.gaps += erased.gaps;
            if (erased.conversations as i64) < batch {
                break;
            }
        }
        // Then the visitors left with nothing (bounded like the conversations).
        let visitors = store
            .expire_idle_visitors(&site.key, before, per_pass)
            .await?;
        if total.conversations > 0 || visitors > 0 {
            tracing::info!(
                target: "audit",
                site = %site.key,
                retention_days = days,
                conversations = total.conversations,
                events = total.events,
                gaps = total.gaps,
                visitors,
                "retention: closed conversations and idle visitors deleted"
            );
        }
        done.push(total);
    }
    Ok(done)
}

/// Runs [`retention_pass`] now and every [`EVERY`] until shutdown. Every node runs it: on
/// PostgreSQL the passes of two nodes take different conversations (`SKIP LOCKED`).
pub async fn run_retention(app: Arc<App>) {
    if !app
        .sites
        .values()
        .any(|s| s.privacy.retention_days.is_some())
    {
        return;
    }
    loop {
        let sites: Vec<Arc<SiteConfig>> = app.sites.values().cloned().collect();
        if let Err(e) = retention_pass(app.store.as_ref(), &sites, now_ms(), PER_PASS).await {
            tracing::warn!(error = %e, "retention pass failed; retried at the next one");
        }
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// What the data-rights endpoints answer besides [`AppError`]'s errors (same JSON shape).
#[derive(Debug, thiserror::Error)]
pub enum RightsError {
    /// No visitor has this id (never existed, or erased already): nothing was changed.
    #[error("no visitor has this id")]
    UnknownVisitor,
    /// The shared errors (login, admin, origin, internal).
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<StoreError> for RightsError {
    fn from(e: StoreError) -> Self {
        RightsError::App(AppError::Internal(e.into()))
    }
}

impl IntoResponse for RightsError {
    fn into_response(self) -> Response {
        match self {
            RightsError::UnknownVisitor => (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({
                    "error": "unknown_visitor",
                    "message": self.to_string(),
                })),
            )
                .into_response(),
            RightsError::App(e) => e.into_response(),
        }
    }
}

/// The routes of this module (merged into the relay's router).
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/admin/visitors/{id}/export", get(export))
        .route("/api/admin/visitors/{id}", axum::routing::delete(erase))
        .route("/api/admin/audit", get(audit))
}

/// One conversation in an export.
#[derive(Serialize)]
struct ConversationExport<'a> {
    id: &'a str,
    site: &'a str,
    status: protocol::ConversationStatus,
    created_at: i64,
    updated_at: i64,
    context: &'a PageContext,
    #[serde(skip_serializing_if = "Option::is_none")]
    offline_email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rating: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rating_comment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rated_at: Option<i64>,
    events: &'a [protocol::Event],
    knowledge_gaps: Vec<GapExport<'a>>,
}

/// One knowledge-gap row in an export.
#[derive(Serialize)]
struct GapExport<'a> {
    seq: protocol::Seq,
    kind: &'static str,
    question: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    page_url: Option<&'a str>,
    at: i64,
}

fn export_json(data: &VisitorData) -> serde_json::Value {
    let conversations: Vec<ConversationExport<'_>> = data
        .conversations
        .iter()
        .map(|c| ConversationExport {
            id: &c.record.id.0,
            site: &c.record.site,
            status: c.record.status,
            created_at: c.record.created_at,
            updated_at: c.record.updated_at,
            context: &c.record.context,
            offline_email: c.record.offline_email.as_deref(),
            rating: c.record.rating,
            rating_comment: c.rating_comment.as_deref(),
            rated_at: c.rated_at,
            events: &c.events,
            knowledge_gaps: c
                .gaps
                .iter()
                .map(|g| GapExport {
                    seq: g.seq,
                    kind: g.kind.as_str(),
                    question: &g.question,
                    page_url: g.page_url.as_deref(),
                    at: g.at,
                })
                .collect(),
        })
        .collect();
    let mut visitor = serde_json::json!({
        "id": data.id,
        "site": data.site,
        "created_at": data.created_at,
        "browsers": data.browsers,
    });
    // Absent for an anonymous visitor (optional fields are omitted, never null).
    if let Some(identity) = &data.identity {
        visitor["identity"] = serde_json::json!(identity);
    }
    serde_json::json!({
        "visitor": visitor,
        "conversations": conversations,
        "exported_at": now_ms(),
    })
}

/// `GET /api/admin/visitors/{id}/export`: everything stored about the visitor.
async fn export(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    AdminAgent(admin): AdminAgent,
) -> Result<Json<serde_json::Value>, RightsError> {
    let data = app
        .store
        .visitor_data(&id)
        .await?
        .ok_or(RightsError::UnknownVisitor)?;
    tracing::info!(target: "audit", visitor = %Untrusted(&id), by = %Untrusted(&admin.username), "visitor data exported");
    Ok(Json(export_json(&data)))
}

/// `DELETE /api/admin/visitors/{id}`: erases everything stored about the visitor.
async fn erase(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    AdminAgent(admin): AdminAgent,
) -> Result<Json<serde_json::Value>, RightsError> {
    app.public.check_origin(&headers)?;
    let erased = app
        .store
        .erase_visitor(&id, &admin.username)
        .await?
        .ok_or(RightsError::UnknownVisitor)?;
    tracing::info!(
        target: "audit",
        visitor = %Untrusted(&id),
        site = %Untrusted(&erased.site),
        by = %Untrusted(&admin.username),
        conversations = erased.conversations,
        events = erased.events,
        gaps = erased.gaps,
        "visitor erased"
    );
    // Their open tabs, on every node, close now: nothing more is stored for them.
    app.hub.publish_gone(Arc::new(crate::hub::Gone {
        visitor_id: id.clone(),
        merged: false,
    }));
    Ok(Json(serde_json::json!({
        "visitor_id": id,
        "erased": erased,
        "by": admin.username,
    })))
}

/// Query of `GET /api/admin/audit`.
#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default)]
    limit: Option<i64>,
}

/// `GET /api/admin/audit?limit=N`: the newest audit rows (default 100, at most 1000).
async fn audit(
    State(app): State<Arc<App>>,
    _admin: AdminAgent,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, RightsError> {
    let Query(query) = query.map_err(|e| AppError::Invalid(e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::Invalid("limit must be 1-1000".into()).into());
    }
    let entries: Vec<serde_json::Value> = app
        .store
        .audit_log(limit)
        .await?
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "at": r.at,
                "actor": r.actor,
                "action": r.action,
                "subject": r.subject,
                "detail": serde_json::from_str::<serde_json::Value>(&r.detail)
                    .unwrap_or(serde_json::Value::Null),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "entries": entries })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privacy_settings_are_checked() {
        let ok = Privacy {
            retention_days: Some(30),
            keep_query_params: vec!["utm_source".into()],
        };
        assert_eq!(ok.check(), Ok(()));
        for days in [0, -1, MAX_RETENTION_DAYS + 1] {
            let bad = Privacy {
                retention_days: Some(days),
                ..Privacy::default()
            };
            assert_eq!(bad.check(), Err(PrivacyError::RetentionDays(days)));
        }
        let bad = Privacy {
            keep_query_params: vec!["utm source".into()],
            ..Privacy::default()
        };
        assert!(matches!(bad.check(), Err(PrivacyError::KeepParams(_))));
    }

    #[test]
    fn privacy_keys_are_read_from_a_site_of_the_config_file() {
        let file: crate::config::FileConfig = toml::from_str(
            r#"
            [[site]]
            key = "shop"
            name = "Shop"
            retention_days = 90
            keep_query_params = ["utm_source", "utm_campaign"]

            [[site]]
            key = "plain"
            name = "Plain"
            "#,
        )
        .expect("parses");
        assert_eq!(file.sites[0].privacy.retention_days, Some(90));
        assert_eq!(
            file.sites[0].privacy.keep_query_params,
            vec!["utm_source".to_owned(), "utm_campaign".to_owned()]
        );
        assert_eq!(file.sites[1].privacy, Privacy::default());
        let bad: Result<crate::config::FileConfig, _> = toml::from_str(
            r#"
            [[site]]
            key = "shop"
            name = "Shop"
            keep_query_params = "utm_source"
            "#,
        );
        assert!(bad.is_err(), "a string where a list belongs is refused");
    }

    #[test]
    fn stored_context_strips_url_and_referrer() {
        let mut site = crate::config::demo_site(vec![]);
        site.privacy.keep_query_params = vec!["utm_source".into()];
        let stored = stored_context(
            &site,
            PageContext {
                url: "https://shop.example/reset?token=s3cret&utm_source=mail#frag".into(),
                referrer: "https://mail.example/?u=me@example.com".into(),
                title: "Reset".into(),
                ..PageContext::default()
            },
        );
        assert_eq!(stored.url, "https://shop.example/reset?utm_source=mail");
        assert_eq!(stored.referrer, "https://mail.example/");
        assert_eq!(stored.title, "Reset");
    }
}

//! The HTTP surface besides the sockets: routes, static bundles, the public site settings, health,
//! and [`AppError`], which logs details and never leaks them.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::{admin, agent, auth, csat, gaps, login, visitor, App};

/// Every error an HTTP handler returns. The body is `{"error": code, "message": text}`.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No site has that key.
    #[error("unknown site")]
    UnknownSite,
    /// The request's origin is not allowed.
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// No valid session.
    #[error("login required")]
    Unauthorized,
    /// Wrong username or password.
    #[error("wrong username or password")]
    BadCredentials,
    /// Too many attempts; retry after this many milliseconds.
    #[error("too many attempts")]
    RateLimited(u64),
    /// The request is not what the endpoint takes (e.g. a plain GET on a socket URL).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Something failed inside; logged, not shown.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
    /// Logged in, but not allowed (an admin page for a non-admin agent).
    #[error("admins only")]
    Forbidden,
    /// A field of the request body is wrong; the text says which.
    #[error("{0}")]
    Invalid(String),
    /// The relay is at a limit for this kind of work (e.g. password checks); retry shortly.
    #[error("busy, retry shortly")]
    Busy,
    /// The request body is over the relay's limit.
    #[error("request body too large")]
    TooLarge,
    /// The thing named in the path does not exist; the text says what.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what is stored (a taken name, the last admin, an agent the
    /// config file owns): `409` with this code; the text says what to do.
    #[error("{1}")]
    Conflict(&'static str, String),
}

impl AppError {
    /// The error for a JSON body that could not be read: too large (413) or not what the
    /// endpoint takes (400 `invalid`, with serde's reason).
    pub fn from_json(rejection: axum::extract::rejection::JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::TooLarge
        } else {
            AppError::Invalid(rejection.body_text())
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            AppError::UnknownSite => (StatusCode::NOT_FOUND, "unknown_site"),
            AppError::OriginNotAllowed => (StatusCode::FORBIDDEN, "origin_not_allowed"),
            AppError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::BadCredentials => (StatusCode::UNAUTHORIZED, "bad_credentials"),
            AppError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AppError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            AppError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            AppError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::Conflict(code, _) => (StatusCode::CONFLICT, *code),
            AppError::Internal(e) => {
                tracing::error!(error = ?e, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let mut body = serde_json::json!({ "error": code, "message": self.to_string() });
        if let AppError::RateLimited(ms) = self {
            body["retry_after_ms"] = ms.into();
        }
        (status, Json(body)).into_response()
    }
}

/// Every HTTP error is JSON (PROTOCOL.md §1). Errors our handlers shape are already
/// (`AppError`); the others — axum's extractor rejections, unknown routes, wrong methods, the
/// body limit (413), the handler timeout (408) — get `{"error", "message"}` here, with a code
/// for their status.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let code = match status.as_u16() {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        413 => "too_large",
        415 => "unsupported_media_type",
        422 => "invalid",
        429 => "rate_limited",
        503 => "unavailable",
        _ if status.is_server_error() => "internal",
        _ => "bad_request",
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    // The parts' headers are applied over the new body's: the old type would win.
    parts.headers.remove(header::CONTENT_TYPE);
    let body = serde_json::json!({
        "error": code,
        "message": status.canonical_reason().unwrap_or("error"),
    });
    (parts, Json(body)).into_response()
}

/// `GET /api/sites/{key}`: what the loader needs before drawing the launcher. Public.
async fn site_info(
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
) -> Result<Response, AppError> {
    let site = app.site(&key).ok_or(AppError::UnknownSite)?;
    let now = app.availability(&site);
    let mut body = serde_json::json!({
        "key": site.key,
        "name": site.name,
        "color": site.color,
        "agents_online": app.hub.agents_online().len(),
        "available": now.available,
    });
    if let Some(at) = now.opens_at {
        body["opens_at"] = at.into();
    }
    if !site.greetings.is_empty() {
        body["greetings"] = serde_json::to_value(&site.greetings).unwrap_or_default();
    }
    Ok(Json(body).into_response())
}

/// `GET /metrics`: Prometheus text exposition.
async fn metrics(State(app): State<Arc<App>>) -> Response {
    let (visitors, agents) = app.hub.connection_counts();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(visitors, agents),
    )
        .into_response()
}

/// The empty page the console's co-browse mirror is built in (by the console's script, from the
/// parent frame: the iframe is sandboxed without `allow-scripts`).
const MIRROR_HTML: &str =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>Mirror</title>\
</head><body></body></html>";

/// Query of `GET /console/mirror.html`.
#[derive(serde::Deserialize)]
struct MirrorQuery {
    /// The site whose page is mirrored.
    site: Option<String>,
}

/// The mirror page's Content-Security-Policy for a site. Nothing may run (`script-src
/// 'none'`), and styles, images and fonts load only from the site's own origins (its
/// `allowed_origins`) and `data:`: a visitor's page must not make the agent's browser fetch
/// any URL it names (that would hand the agent's address, and their intranet, to whoever wrote
/// the page). A site that allows any origin (`*`), or an unknown site, gets no origin at all:
/// the mirror then shows the layout without the site's images and fonts.
pub fn mirror_policy(site: Option<&crate::config::SiteConfig>) -> String {
    let origins: Vec<&str> = site
        .map(|s| {
            s.allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/'))
                // Only plain origins: nothing that could end the directive or add a source.
                .filter(|o| {
                    (o.starts_with("https://") || o.starts_with("http://"))
                        && !o.contains(|c: char| c.is_whitespace() || ";,'\"*".contains(c))
                })
                .collect()
        })
        .unwrap_or_default();
    let with = |extra: &str| {
        let mut sources = origins.clone();
        sources.push(extra);
        sources.join(" ")
    };
    format!(
        "default-src 'none'; script-src 'none'; style-src {}; img-src {}; font-src {}; \
         frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
        with("'unsafe-inline'"),
        with("data:"),
        with("data:"),
    )
}

/// `GET /console/mirror.html?site=KEY`: the mirror page, with its own policy
/// ([`mirror_policy`]); only the console itself may frame it.
async fn mirror_page(
    State(app): State<Arc<App>>,
    query: Result<axum::extract::Query<MirrorQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let site = query
        .ok()
        .and_then(|q| q.0.site)
        .and_then(|key| app.site(&key));
    let policy = HeaderValue::from_str(&mirror_policy(site.as_deref()))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; frame-ancestors 'self'"));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, policy),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            // The visitor's image and font hosts learn nothing about the console.
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        MIRROR_HTML,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

/// How long `/readyz` waits for the store to commit its probe.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /readyz`: ready when the store commits a write within [`READY_WITHIN`] (a relay that
/// can read but not write would take sockets and then refuse every message).
async fn readyz(State(app): State<Arc<App>>) -> Response {
    let why = match tokio::time::timeout(READY_WITHIN, app.store.ping()).await {
        Ok(Ok(())) => return (StatusCode::OK, "ready").into_response(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no commit within {} s", READY_WITHIN.as_secs()),
    };
    tracing::warn!(error = %why, "not ready: the store cannot commit");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "error": "not_ready", "message": "the store cannot commit" })),
    )
        .into_response()
}

/// All routes.
pub fn router(app: Arc<App>) -> Router {
    let assets = app.assets_dir.clone();
    // The loader and panel are fetched cross-origin by customers' pages (module scripts and wasm
    // are CORS requests), so they and the public site settings allow any origin.
    let public_cors = CorsLayer::new().allow_origin(Any).allow_methods(Any);
    let no_cache = SetResponseHeaderLayer::overriding(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );

    let widget = Router::new()
        .route_service(
            "/widget.js",
            ServeFile::new(assets.join("widget.js"))
                .precompressed_br()
                .precompressed_gzip(),
        )
        .nest_service(
            "/widget",
            ServeDir::new(assets.join("widget"))
                .precompressed_br()
                .precompressed_gzip(),
        )
        .route("/api/sites/{key}", get(site_info))
        .layer(public_cors)
        .layer(no_cache.clone());

    // The console holds agent sessions: no framing by other sites (clickjacking), no inline or
    // foreign scripts (XSS through a visitor message would have nowhere to run).
    let console_csp = SetResponseHeaderLayer::overriding(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
             img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    let console_dir = assets.join("console");
    let console = Router::new()
        .route_service("/console", ServeFile::new(console_dir.join("index.html")))
        .nest_service(
            "/console/",
            ServeDir::new(&console_dir)
                .precompressed_br()
                .precompressed_gzip()
                .fallback(ServeFile::new(console_dir.join("index.html"))),
        )
        .layer(no_cache)
        .layer(console_csp)
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ));

    let mut router = Router::new()
        .route("/ws/visitor", get(visitor::upgrade))
        .route("/ws/agent", get(agent::upgrade))
        .route("/api/login", post(login::login))
        .route("/api/logout", post(auth::logout))
        .route("/api/me", get(auth::me))
        .route("/api/gaps", get(gaps::report))
        .route("/api/ratings", get(csat::ratings))
        .route("/api/conversations", get(crate::history::closed))
        .route("/api/visitors/{id}", get(crate::visitors::profile))
        .route("/api/admin/sites", get(admin::list_sites))
        .route(
            "/api/admin/sites/{key}",
            axum::routing::put(admin::save_site),
        )
        .merge(crate::rights::routes())
        .merge(crate::agents::routes())
        .merge(crate::canned::routes())
        // Outside the console router: its CSP (`frame-ancestors 'none'`) must not apply.
        .route("/console/mirror.html", get(mirror_page))
        .merge(widget)
        .merge(console);
    if let Some(demo) = &app.demo_dir {
        router = router.fallback_service(ServeDir::new(demo));
    }
    let limits = &app.limits;
    // Until the response head: a socket upgrade answers at once, so only slow handlers hit it.
    let timeout =
        TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout);
    // One budget for the whole router (a global semaphore: `Router::layer` clones the layer
    // into every route), shed at once when spent rather than queued.
    let in_flight = tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(
            |_: tower::BoxError| async { AppError::Busy },
        ))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.max_requests_in_flight,
        ));
    router
        .layer(in_flight)
        // Operators' probes are outside the budget: a relay shedding load is alive, and its
        // metrics must show why.
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(timeout)
        .layer(axum::middleware::map_response(json_errors))
        .with_state(app)
}

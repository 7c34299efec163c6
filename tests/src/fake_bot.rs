//! A real HTTP bot for the external-bot tests: axum on 127.0.0.1:0 speaking the Rasa REST
//! channel shape (`POST {"sender","message"}` → `[{"recipient_id","text","buttons"?}]`). Each
//! test decides per message what it answers (JSON, a status, garbage, or nothing for a while),
//! and can read back every request the relay made.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::task::JoinHandle;

/// What the bot does with one message.
#[derive(Clone, Debug)]
pub enum BotReply {
    /// `200` with this JSON body.
    Json(serde_json::Value),
    /// This status with an empty body.
    Status(u16),
    /// `200` with a body that is not JSON.
    Garbage,
    /// Waits this long, then answers `[]` (long past any sane timeout in the tests).
    Slow(Duration),
    /// Waits this long, then answers `200` with this JSON body (a bot that thinks a while).
    After(Duration, serde_json::Value),
}

/// One request the relay made, as received.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct BotRequest {
    /// The visitor id.
    pub sender: String,
    /// The visitor's message.
    pub message: String,
}

type Script = Arc<dyn Fn(&str) -> BotReply + Send + Sync>;

#[derive(Clone)]
struct Shared {
    script: Script,
    seen: Arc<Mutex<Vec<BotRequest>>>,
}

/// A running fake bot; stops when dropped.
pub struct FakeBot {
    url: String,
    seen: Arc<Mutex<Vec<BotRequest>>>,
    server: JoinHandle<()>,
}

impl FakeBot {
    /// Starts a bot that answers each message as `script` says.
    pub async fn start(
        script: impl Fn(&str) -> BotReply + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the fake bot")?;
        let addr = listener.local_addr()?;
        let shared = Shared {
            script: Arc::new(script),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let seen = shared.seen.clone();
        let router = Router::new()
            .route("/webhooks/rest/webhook", post(webhook))
            .with_state(shared);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            url: format!("http://{addr}/webhooks/rest/webhook"),
            seen,
            server,
        })
    }

    /// The webhook URL to put in `bot_url`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<BotRequest> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for FakeBot {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn webhook(State(shared): State<Shared>, Json(req): Json<BotRequest>) -> Response {
    let reply = (shared.script)(&req.message);
    if let Ok(mut seen) = shared.seen.lock() {
        seen.push(req.clone());
    }
    match reply {
        BotReply::Json(v) => Json(v).into_response(),
        BotReply::Status(code) => StatusCode::from_u16(code)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        BotReply::Garbage => (StatusCode::OK, "<html>oops</html>").into_response(),
        BotReply::Slow(d) => {
            tokio::time::sleep(d).await;
            Json(serde_json::json!([])).into_response()
        }
        BotReply::After(d, v) => {
            tokio::time::sleep(d).await;
            Json(v).into_response()
        }
    }
}

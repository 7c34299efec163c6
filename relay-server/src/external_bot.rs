//! External bots: a bot-first site with `bot_url` is answered by the site's own bot over HTTP,
//! in the Rasa REST channel shape, so Rasa, Botpress or an LLM service can plug in.
//!
//! After a visitor's message in a bot conversation is stored, acked and published, [`reply`]
//! (a task of its own, like the knowledge-base bot's) POSTs `{"sender", "message"}` and stores
//! each answer `{"text", "buttons"?: [{"title", "payload"}]}` as a bot message with quick
//! replies. The bot hands over with `"custom": {"handoff": true}` in an answer (or the visitor
//! clicks a button whose payload is `/handoff`). A bot that times out, fails, answers non-2xx or
//! anything but that JSON hands over with `bot_failed`: the visitor goes to the queue and is
//! told so, never left waiting. Like [`crate::bot`], every word goes through [`App::append`]
//! with [`Effect::BotReply`] / [`Effect::Handoff`], so a bot silenced by a hand-off or a take
//! learns it from the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::{Author, ConversationId, EventBody, HandoffReason, QuickReply, Role, Seq};
use serde::{Deserialize, Serialize};

use crate::config::{SiteConfig, DEFAULT_BOT_TIMEOUT_MS};
use crate::logsafe::Untrusted;
use crate::store::{Effect, NewEvent, StoreError};
use crate::App;

/// A button payload (and so a visitor message) that asks for a person without asking the bot.
pub const HANDOFF_PAYLOAD: &str = "/handoff";
/// Largest answer body read from a bot; a bigger one is a failure, not a message.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Quick replies kept per message (the widget has room for a few, not a menu).
const MAX_BUTTONS: usize = 6;
/// Events read back to write the agent's hand-off line.
const HISTORY_LIMIT: i64 = 200;

/// One site's external bot.
pub struct ExternalBot {
    /// Where answers are asked for (`http://…`).
    url: String,
    /// Carries the per-request timeout, so a slow bot costs at most that.
    client: reqwest::Client,
    /// The timeout, for the agent's hand-off line.
    timeout_ms: u64,
    /// Shown as the author of bot messages.
    name: String,
    /// One turn at a time per conversation, as the knowledge-base bot: answers come in the
    /// order of the messages they answer, never interleaved.
    turns: crate::bot::Turns,
}

/// What the relay POSTs: the Rasa REST channel's request.
#[derive(Serialize)]
struct Request<'a> {
    /// The visitor's id: stable across their conversations, so the bot can keep its state.
    sender: &'a str,
    /// The visitor's message.
    message: &'a str,
}

/// One answer of the bot (the Rasa REST channel's response is a list of these). Unknown
/// fields (`recipient_id`, `image`…) are ignored.
#[derive(Deserialize)]
struct Answer {
    /// The text to show; answers without one show nothing.
    #[serde(default)]
    text: Option<String>,
    /// Quick replies.
    #[serde(default)]
    buttons: Vec<Button>,
    /// Free-form data; `{"handoff": true}` hands the conversation to people.
    #[serde(default)]
    custom: Option<serde_json::Value>,
}

/// A Rasa button: `title` is shown, `payload` is what a click sends.
#[derive(Deserialize)]
struct Button {
    /// Shown on the button.
    title: String,
    /// Sent as the visitor's message when clicked.
    payload: String,
}

impl ExternalBot {
    /// The external bot of a site with `bot_url`; `None` without one. Only `http://` URLs:
    /// this build's HTTP client has no TLS (run the bot beside the relay, or behind a local
    /// proxy). A bad URL is an error naming the site, so the relay does not start with it.
    pub fn load(site: &SiteConfig) -> anyhow::Result<Option<Self>> {
        let Some(url) = &site.bot_url else {
            return Ok(None);
        };
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| anyhow::anyhow!("site {:?}: bad bot_url {url:?}: {e}", site.key))?;
        if parsed.scheme() != "http" {
            anyhow::bail!(
                "site {:?}: bot_url {url:?} must be http:// (no TLS client in this build)",
                site.key
            );
        }
        let timeout_ms = site.bot_timeout_ms.unwrap_or(DEFAULT_BOT_TIMEOUT_MS).max(1);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Some(Self {
            url: url.clone(),
            client,
            timeout_ms,
            name: site.bot_name(),
            turns: Default::default(),
        }))
    }

    fn author(&self) -> Author {
        Author {
            role: Role::Bot,
            id: Some("bot".into()),
            name: Some(self.name.clone()),
        }
    }

    /// Asks the bot; `Err` says why it failed, for the agent's hand-off line and the log.
    async fn ask(&self, sender: &str, message: &str) -> Result<Vec<Answer>, String> {
        let response = self
            .client
            .post(&self.url)
            .json(&Request { sender, message })
            .send()
            .await
            .map_err(|e| self.describe(e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err("answer too large".into());
        }
        let body = response.bytes().await.map_err(|e| self.describe(e))?;
        if body.len() > MAX_RESPONSE_BYTES {
            return Err("answer too large".into());
        }
        serde_json::from_slice(&body).map_err(|e| format!("not a list of answers: {e}"))
    }

    fn describe(&self, e: reqwest::Error) -> String {
        if e.is_timeout() {
            format!("no answer within {} ms", self.timeout_ms)
        } else if e.is_connect() {
            "unreachable".into()
        } else {
            format!("request failed: {e}")
        }
    }
}

/// Loads the external bots of every site with `bot_url`, by site key.
pub fn load_all(sites: &[SiteConfig]) -> anyhow::Result<HashMap<String, Arc<ExternalBot>>> {
    let mut bots = HashMap::new();
    for site in sites {
        if let Some(bot) = ExternalBot::load(site)? {
            tracing::info!(site = %site.key, url = %bot.url, "external bot configured");
            bots.insert(site.key.clone(), Arc::new(bot));
        }
    }
    Ok(bots)
}

/// What one exchange with the bot comes to.
struct Outcome {
    /// Bot messages to store, in order.
    say: Vec<EventBody>,
    /// A hand-off to store after them, with the detail for the agent's line.
    handoff: Option<(HandoffReason, String)>,
}

/// Turns the bot's answers into messages and maybe a hand-off.
fn outcome(answers: Vec<Answer>) -> Outcome {
    let mut say = Vec::new();
    let mut asked = false;
    for a in answers {
        asked |= a
            .custom
            .as_ref()
            .and_then(|c| c.get("handoff"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        let Some(text) = a.text.map(|t| cut(t.trim())).filter(|t| !t.is_empty()) else {
            continue;
        };
        let buttons = a
            .buttons
            .into_iter()
            .map(|b| QuickReply {
                label: cut(b.title.trim()),
                text: cut(b.payload.trim()),
            })
            .filter(|b| !b.label.is_empty() && !b.text.is_empty())
            .take(MAX_BUTTONS)
            .collect();
        say.push(EventBody::Message {
            text,
            client_id: None,
            buttons,
            link: None,
            sentiment: None,
        });
    }
    let handoff = if asked {
        Some((
            HandoffReason::Asked,
            "the bot asked for a person".to_owned(),
        ))
    } else if say.is_empty() {
        // Nothing to show would leave the visitor waiting: people take over.
        Some((
            HandoffReason::NotUnderstood,
            "the bot had no answer".to_owned(),
        ))
    } else {
        None
    };
    Outcome { say, handoff }
}

/// Answers the visitor message `text` just stored as `seq` in `conversation` (a bot
/// conversation of a site with an external bot). Every outcome is stored and published, or
/// logged; a failing bot hands over (`bot_failed`) rather than leaving the visitor waiting.
pub async fn reply(
    app: Arc<App>,
    bot: Arc<ExternalBot>,
    conversation: ConversationId,
    seq: Seq,
    sender: String,
    text: String,
) {
    // Held until this message's answers are stored: a quick second message waits for it.
    let _turn = bot.turns.begin(&conversation).await;
    let outcome = if text.trim() == HANDOFF_PAYLOAD {
        Outcome {
            say: Vec::new(),
            handoff: Some((
                HandoffReason::Asked,
                "the visitor asked for a person".into(),
            )),
        }
    } else {
        match bot.ask(&sender, &text).await {
            Ok(answers) => outcome(answers),
            Err(why) => {
                tracing::warn!(conversation = %conversation.0, url = %bot.url, why = %Untrusted(&why.to_string()), "external bot failed; handing over");
                Outcome {
                    say: Vec::new(),
                    handoff: Some((HandoffReason::BotFailed, format!("bot failed: {why}"))),
                }
            }
        }
    };
    for body in outcome.say {
        let new = NewEvent {
            author: bot.author(),
            body,
            client_id: None,
            effect: Effect::BotReply,
        };
        if !store(&app, &conversation, new).await {
            return;
        }
    }
    if let Some((reason, detail)) = outcome.handoff {
        let new = NewEvent {
            author: Author::system(),
            body: EventBody::Handoff {
                reason,
                summary: summary(&app, &conversation, seq, &text, &detail).await,
            },
            client_id: None,
            effect: Effect::Handoff,
        };
        store(&app, &conversation, new).await;
    }
}

/// Appends and publishes; false once the bot has been silenced (or the store failed), so the
/// rest of its answer is dropped.
async fn store(app: &App, conversation: &ConversationId, new: NewEvent) -> bool {
    match app.append(conversation, new).await {
        Ok(appended) => {
            app.publish(&appended).await;
            true
        }
        // A hand-off or an agent's take got there first: the bot is silent from now on.
        Err(StoreError::Forbidden) | Err(StoreError::Closed) => {
            tracing::debug!(conversation = %conversation.0, "external bot silenced before it spoke");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, conversation = %conversation.0, "could not store the external bot's answer");
            false
        }
    }
}

/// The agent's hand-off line: the visitor's first question, how many answers the bot gave,
/// and why it handed over. The whole transcript is in the conversation above it.
async fn summary(
    app: &App,
    conversation: &ConversationId,
    seq: Seq,
    current: &str,
    detail: &str,
) -> String {
    let from = seq.saturating_sub(HISTORY_LIMIT as u64);
    let history = app
        .store
        .events_after(conversation, from, HISTORY_LIMIT)
        .await
        .unwrap_or_default();
    let first = history
        .iter()
        .filter(|e| e.author.role == Role::Visitor)
        .find_map(|e| e.message_text())
        .unwrap_or(current);
    let first: String = first.split_whitespace().collect::<Vec<_>>().join(" ");
    let first: String = if first.chars().count() > 120 {
        first
            .chars()
            .take(120)
            .chain(std::iter::once('…'))
            .collect()
    } else {
        first
    };
    let answers = history
        .iter()
        .filter(|e| e.author.role == Role::Bot)
        .count();
    format!("Asked about: {first}; bot answers: {answers}; {detail}")
}

/// A text cut to what a message may carry.
fn cut(text: &str) -> String {
    if text.len() <= protocol::MAX_TEXT_BYTES {
        return text.to_owned();
    }
    let mut end = protocol::MAX_TEXT_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(json: &str) -> Vec<Answer> {
        serde_json::from_str(json).expect("valid answers")
    }

    #[test]
    fn rasa_buttons_become_quick_replies() {
        let o = outcome(answers(
            r#"[{"recipient_id":"v","text":"Pick one","buttons":[{"title":"Shipping","payload":"/shipping"},{"title":"","payload":"/x"}]}]"#,
        ));
        assert!(o.handoff.is_none());
        match &o.say[..] {
            [EventBody::Message { text, buttons, .. }] => {
                assert_eq!(text, "Pick one");
                assert_eq!(
                    buttons,
                    &vec![QuickReply {
                        label: "Shipping".into(),
                        text: "/shipping".into()
                    }]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn custom_handoff_hands_over_after_the_text() {
        let o = outcome(answers(
            r#"[{"text":"Let me get a colleague."},{"custom":{"handoff":true}}]"#,
        ));
        assert_eq!(o.say.len(), 1);
        assert!(matches!(o.handoff, Some((HandoffReason::Asked, _))));
    }

    #[test]
    fn nothing_to_show_hands_over() {
        let o = outcome(answers("[]"));
        assert!(matches!(o.handoff, Some((HandoffReason::NotUnderstood, _))));
    }
}

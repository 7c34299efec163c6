//! Offline messages by email: when an agent answers a conversation a visitor left while nobody
//! was available (`leave_message`), the reply and the transcript so far are mailed to the
//! visitor's address over SMTP (lettre, tokio transport).
//!
//! The outcome of every attempt — sent, refused by the server, unreachable server, or no SMTP
//! configured at all — is stored as a system `email` event in the conversation, so the agent
//! sees it in the console (and after a reload); nothing fails silently, and nothing panics.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use protocol::{Author, ConversationId, EventBody, Role, Seq, VisitorBody, VisitorEvent};

use crate::store::{Effect, NewEvent};
use crate::App;

/// Longest email address accepted (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// How to reach the mail server (`--smtp-url`, `--smtp-from`). Its `Debug` leaves the URL's
/// credentials out (configs are logged).
#[derive(Clone)]
pub struct SmtpSettings {
    /// `smtp://HOST:PORT` (plain SMTP), optionally with `USER:PASS@`.
    pub url: String,
    /// The sender, `Name <addr@host>` or `addr@host`.
    pub from: String,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = match url::Url::parse(&self.url) {
            Ok(u) => format!(
                "smtp://{}:{}",
                u.host_str().unwrap_or(""),
                u.port().unwrap_or(25)
            ),
            Err(_) => "(unparsable)".into(),
        };
        f.debug_struct("SmtpSettings")
            .field("url", &url)
            .field("from", &self.from)
            .finish()
    }
}

/// A configured SMTP transport.
pub struct Mailer {
    /// Pooled connections to the server.
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// The sender of every mail.
    from: Mailbox,
}

impl Mailer {
    /// Checks the settings (URL, sender address) without connecting: a typo fails at start.
    pub fn new(settings: &SmtpSettings) -> anyhow::Result<Self> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("bad --smtp-from {:?}: {e}", settings.from))?;
        let url = url::Url::parse(&settings.url)
            // Not the URL itself: it may hold a password, and this error is printed.
            .map_err(|e| anyhow::anyhow!("bad --smtp-url: {e}"))?;
        if url.scheme() != "smtp" {
            anyhow::bail!("--smtp-url must be smtp://HOST:PORT (plain SMTP to a local relay)");
        }
        let host = url
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("--smtp-url has no host"))?;
        // Plain SMTP: this build has no TLS stack; the mail relay it talks to does TLS onwards.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(url.port().unwrap_or(25))
            .timeout(Some(Duration::from_secs(15)));
        if !url.username().is_empty() {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            builder = builder.credentials(Credentials::new(
                decode(url.username()),
                decode(url.password().unwrap_or_default()),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// Sends one plain-text mail. The error is a short line for the agent.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("bad address: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| format!("could not build the mail: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("mail server: {e}"))
    }
}

/// Whether `email` is an address we can mail (syntax only, as lettre parses it).
pub fn valid_email(email: &str) -> bool {
    email.len() <= MAX_EMAIL_BYTES && email.parse::<Address>().is_ok()
}

/// The mail for an agent's reply: the reply first, then the whole conversation so far, from
/// the visitor's projection of it (the mail goes to the visitor: nothing agent-only is there).
pub fn compose(site_name: &str, reply: &str, events: &[VisitorEvent]) -> (String, String) {
    let subject = format!("Re: your message to {site_name}");
    let mut body = format!("{reply}\n\n-- \nConversation so far:\n\n");
    for event in events {
        if let VisitorBody::Message { text, .. } = &event.body {
            let who = match (&event.author.role, &event.author.name) {
                (Role::Visitor, _) => "You".to_owned(),
                (_, Some(name)) => name.clone(),
                (Role::Bot, None) => "Assistant".to_owned(),
                _ => site_name.to_owned(),
            };
            let when = jiff::Timestamp::from_millisecond(event.at)
                .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default();
            body.push_str(&format!("[{when}] {who}:\n{text}\n\n"));
        }
    }
    body.push_str(&format!(
        "Reply by opening the chat on {site_name} again; this address does not read replies.\n"
    ));
    (subject, body)
}

/// Mails an agent's reply (event `reply_seq`) to the address the conversation was left with,
/// then stores the outcome as an `email` event. Runs as a task: the agent's `ack` never waits
/// for the mail server.
pub async fn send_reply(app: Arc<App>, id: ConversationId, to: String, reply_seq: Seq) {
    let outcome = attempt(&app, &id, &to, reply_seq).await;
    if let Err(e) = &outcome {
        tracing::warn!(conversation = %id.0, error = %e, "offline reply not emailed");
    }
    let new = NewEvent {
        author: Author::system(),
        body: EventBody::Email {
            to,
            sent: outcome.is_ok(),
            error: outcome.err(),
        },
        client_id: None,
        effect: Effect::None,
    };
    match app.append(&id, new).await {
        Ok(appended) => app.publish(&appended).await,
        Err(e) => {
            tracing::error!(conversation = %id.0, error = %e, "could not store the email outcome")
        }
    }
}

async fn attempt(app: &App, id: &ConversationId, to: &str, reply_seq: Seq) -> Result<(), String> {
    let Some(mailer) = &app.mailer else {
        return Err("email is not configured on this relay (--smtp-url)".into());
    };
    let events = app
        .store
        .events_after(id, 0, reply_seq as i64)
        .await
        .map_err(|e| format!("could not read the conversation: {e}"))?;
    let events: Vec<VisitorEvent> = events.into_iter().map(VisitorEvent::project).collect();
    let reply = events
        .iter()
        .find(|e| e.seq == reply_seq)
        .and_then(|e| e.message_text())
        .ok_or("the reply is not stored")?;
    let site_name = match app.store.conversation(id).await {
        Ok(Some(c)) => app
            .sites
            .get(&c.site)
            .map(|s| s.name.clone())
            .unwrap_or(c.site),
        _ => "us".to_owned(),
    };
    let (subject, body) = compose(&site_name, reply, &events);
    mailer.send(to, &subject, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_syntax() {
        assert!(valid_email("ada@example.com"));
        assert!(valid_email("a.b+tag@sub.example.co.kr"));
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "a b@example.com",
            "<a@b.c>",
        ] {
            assert!(!valid_email(bad), "{bad:?}");
        }
        assert!(!valid_email(&format!("{}@example.com", "a".repeat(250))));
    }

    #[test]
    fn settings_and_errors_never_show_the_password() {
        let settings = SmtpSettings {
            url: "smtp://mailer:hunter2@10.0.0.5:2525".into(),
            from: "Shop <chat@shop.example>".into(),
        };
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("mailer"),
            "{shown}"
        );
        assert!(shown.contains("10.0.0.5:2525"), "positive control: {shown}");
        let bad = SmtpSettings {
            url: "smtp://mailer:hunter2@[bad".into(),
            from: "chat@shop.example".into(),
        };
        let error = Mailer::new(&bad)
            .err()
            .expect("unparsable URL refused")
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn transcript_lists_messages_in_order() {
        let event = |seq, role, name: Option<&str>, text: &str| VisitorEvent {
            conversation_id: ConversationId("c".into()),
            seq,
            at: 1_764_000_000_000,
            author: Author {
                role,
                id: None,
                name: name.map(str::to_owned),
            },
            body: VisitorBody::message(text, None),
        };
        let events = [
            event(1, Role::Visitor, None, "Where is my order?"),
            event(2, Role::Agent, Some("Mina"), "It ships today."),
        ];
        let (subject, body) = compose("Demo Shop", "It ships today.", &events);
        assert_eq!(subject, "Re: your message to Demo Shop");
        assert!(body.starts_with("It ships today.\n"));
        let you = body.find("You:\nWhere is my order?").expect("visitor line");
        let mina = body.find("Mina:\nIt ships today.").expect("agent line");
        assert!(you < mina);
    }
}

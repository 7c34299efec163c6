//! External bots over real HTTP: a Rasa-shaped bot (axum on loopback, [`FakeBot`]) answers a
//! bot-first site's visitors with text and quick replies, asks for a hand-off (and is never
//! called again), and — slow, failing or talking nonsense — sends the visitor to the queue
//! (`bot_failed`) within a bounded time instead of leaving them waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use parley_tests::fake_bot::{BotReply, FakeBot};
use parley_tests::{AgentClient, TestRelay, VisitorClient, AGENTS};
use protocol::{
    ConversationId, ConversationStatus, Event, EventBody, HandoffReason, QuickReply, Role, ToAgent,
    ToVisitor, VisitorBody, VisitorEvent,
};
use serde_json::json;

/// How long to listen for a bot reply that must NOT arrive.
const QUIET: Duration = Duration::from_millis(800);
/// The relay's per-message timeout in these tests.
const TIMEOUT_MS: u64 = 400;

fn is_bot_message(e: &VisitorEvent) -> bool {
    e.author.role == Role::Bot && matches!(e.body, VisitorBody::Message { .. })
}

fn handoff_reason(e: &Event) -> Option<(HandoffReason, &str)> {
    match &e.body {
        EventBody::Handoff { reason, summary } => Some((*reason, summary.as_str())),
        _ => None,
    }
}

fn is_handoff(e: &VisitorEvent) -> bool {
    e.body == VisitorBody::Handoff
}

/// The hand-off as stored, with its reason and summary, which only agents read: the first
/// agent opens the conversation and takes it from the history.
async fn stored_handoff(relay: &TestRelay, conversation: &ConversationId) -> anyhow::Result<Event> {
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(relay, user, pass).await?;
    agent
        .open(conversation, None)
        .await?
        .into_iter()
        .find(|e| handoff_reason(e).is_some())
        .context("the hand-off in the agent's history")
}

/// Sends `text` and waits for its ack; returns the conversation.
async fn ask(v: &mut VisitorClient, client_id: &str, text: &str) -> anyhow::Result<ConversationId> {
    v.send(client_id, text).await?;
    v.expect_ack(client_id).await?;
    v.conversation_id
        .clone()
        .context("an ack names the conversation")
}

#[tokio::test]
async fn answers_with_text_and_buttons_in_the_rasa_shape() -> anyhow::Result<()> {
    let bot = FakeBot::start(|message| {
        BotReply::Json(json!([{
            "recipient_id": "ignored",
            "text": format!("You said: {message}"),
            "buttons": [
                {"title": "Shipping", "payload": "/shipping"},
                {"title": "Talk to a person", "payload": "/handoff"}
            ]
        }]))
    })
    .await?;
    let relay = TestRelay::builder()
        .external_bot(bot.url(), TIMEOUT_MS)
        .start()
        .await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    let conversation = ask(&mut v, "c1", "Do you ship to Busan?").await?;
    let reply = v.expect_event("the bot's answer", is_bot_message).await?;
    let VisitorBody::Message { text, buttons, .. } = &reply.body else {
        bail!("not a message: {reply:?}");
    };
    assert_eq!(text, "You said: Do you ship to Busan?");
    assert_eq!(
        buttons,
        &vec![
            QuickReply {
                label: "Shipping".into(),
                text: "/shipping".into()
            },
            QuickReply {
                label: "Talk to a person".into(),
                text: "/handoff".into()
            },
        ]
    );
    assert_eq!(reply.author.name.as_deref(), Some("Demo Shop assistant"));
    let requests = bot.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].sender, v.visitor_id, "sender is the visitor id");
    assert_eq!(requests[0].message, "Do you ship to Busan?");

    // The `/handoff` payload hands over without asking the bot.
    ask(&mut v, "c2", "/handoff").await?;
    v.expect_event("the hand-off", is_handoff).await?;
    let handoff = stored_handoff(&relay, &conversation).await?;
    assert_eq!(
        handoff_reason(&handoff).map(|h| h.0),
        Some(HandoffReason::Asked)
    );
    assert_eq!(
        bot.requests().len(),
        1,
        "the bot was not asked about /handoff"
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_bot_asking_for_a_handoff_is_silent_afterwards() -> anyhow::Result<()> {
    let bot = FakeBot::start(|_| {
        BotReply::Json(json!([
            {"recipient_id": "v", "text": "Let me get a colleague."},
            {"recipient_id": "v", "custom": {"handoff": true}}
        ]))
    })
    .await?;
    let relay = TestRelay::builder()
        .external_bot(bot.url(), TIMEOUT_MS)
        .start()
        .await?;
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    let conversation = ask(&mut v, "c1", "I want a refund for order 1234").await?;
    let said = v.expect_event("the bot's words", is_bot_message).await?;
    assert_eq!(said.message_text(), Some("Let me get a colleague."));
    v.expect_event("the hand-off", is_handoff).await?;
    let handoff = stored_handoff(&relay, &conversation).await?;
    let (reason, summary) = handoff_reason(&handoff).context("a hand-off")?;
    assert_eq!(reason, HandoffReason::Asked);
    assert!(
        summary.contains("I want a refund for order 1234"),
        "{summary}"
    );
    assert!(handoff.seq > said.seq, "the words come before the hand-off");
    agent
        .expect("the conversation in the queue", |f| {
            matches!(f, ToAgent::Conversation(c) if c.id == conversation && c.status == ConversationStatus::Open)
        })
        .await?;

    ask(&mut v, "c2", "hello?").await?;
    v.expect_none(
        "no bot after the hand-off",
        QUIET,
        |f| matches!(f, ToVisitor::Event(e) if e.author.role == Role::Bot || is_handoff(e)),
    )
    .await?;
    assert_eq!(
        bot.requests().len(),
        1,
        "the bot is not called after a hand-off"
    );
    relay.shutdown().await;
    Ok(())
}

/// Starts a relay whose bot answers every message with `reply`, sends one message and returns
/// the hand-off it must cause, with how long it took.
async fn handoff_for(reply: BotReply) -> anyhow::Result<(HandoffReason, String, Duration)> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let bot = FakeBot::start(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        reply.clone()
    })
    .await?;
    let relay = TestRelay::builder()
        .external_bot(bot.url(), TIMEOUT_MS)
        .start()
        .await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    let started = Instant::now();
    let conversation = ask(&mut v, "c1", "Where is my parcel?").await?;
    let seen = v.expect_event("the hand-off", is_handoff).await?;
    let took = started.elapsed();
    assert_eq!(seen.author.role, Role::System);
    let handoff = stored_handoff(&relay, &conversation).await?;
    assert_eq!(handoff.author.role, Role::System);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let (reason, summary) = handoff_reason(&handoff).context("a hand-off")?;
    let out = (reason, summary.to_owned(), took);
    relay.shutdown().await;
    Ok(out)
}

#[tokio::test]
async fn a_slow_bot_sends_the_visitor_to_the_queue_in_bounded_time() -> anyhow::Result<()> {
    let (reason, summary, took) = handoff_for(BotReply::Slow(Duration::from_secs(20))).await?;
    assert_eq!(reason, HandoffReason::BotFailed);
    assert!(summary.contains("no answer within 400 ms"), "{summary}");
    assert!(
        took < Duration::from_secs(5),
        "handed over after {took:?}, with a 400 ms timeout"
    );
    Ok(())
}

#[tokio::test]
async fn a_failing_bot_sends_the_visitor_to_the_queue() -> anyhow::Result<()> {
    let (reason, summary, _) = handoff_for(BotReply::Status(500)).await?;
    assert_eq!(reason, HandoffReason::BotFailed);
    assert!(summary.contains("HTTP 500"), "{summary}");
    Ok(())
}

#[tokio::test]
async fn a_bot_talking_nonsense_sends_the_visitor_to_the_queue() -> anyhow::Result<()> {
    let (reason, summary, _) = handoff_for(BotReply::Garbage).await?;
    assert_eq!(reason, HandoffReason::BotFailed);
    assert!(summary.contains("not a list of answers"), "{summary}");
    // Valid JSON of the wrong shape is nonsense too.
    let (reason, _, _) = handoff_for(BotReply::Json(json!({"text": "hi"}))).await?;
    assert_eq!(reason, HandoffReason::BotFailed);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_bot_sends_the_visitor_to_the_queue() -> anyhow::Result<()> {
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let relay = TestRelay::builder()
        .external_bot(format!("http://127.0.0.1:{port}/webhook"), TIMEOUT_MS)
        .start()
        .await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    let conversation = ask(&mut v, "c1", "hi").await?;
    v.expect_event("the hand-off", is_handoff).await?;
    let handoff = stored_handoff(&relay, &conversation).await?;
    assert_eq!(
        handoff_reason(&handoff).map(|h| h.0),
        Some(HandoffReason::BotFailed)
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_bot_url_that_is_not_http_is_refused_at_start() -> anyhow::Result<()> {
    match TestRelay::builder()
        .external_bot("ftp://bot.example/x".into(), TIMEOUT_MS)
        .start()
        .await
    {
        Ok(relay) => {
            relay.shutdown().await;
            bail!("a relay with an ftp:// bot started");
        }
        Err(e) => {
            let e = format!("{e:#}");
            assert!(
                e.contains("demo") && e.contains("ftp://bot.example/x"),
                "{e}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn answers_come_in_the_order_of_the_messages() -> anyhow::Result<()> {
    // The first message takes the bot a while, the second none: answered side by side, the
    // second's answer would come first. One turn at a time per conversation keeps the order.
    let bot = FakeBot::start(|message| {
        let answer = json!([{ "recipient_id": "x", "text": format!("About {message}") }]);
        if message == "first" {
            // Well inside the relay's timeout for this test (below), yet long enough that an
            // unserialized second answer would overtake it.
            BotReply::After(Duration::from_millis(300), answer)
        } else {
            BotReply::Json(answer)
        }
    })
    .await?;
    let relay = TestRelay::builder()
        .external_bot(bot.url(), 5_000)
        .start()
        .await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    v.send("c1", "first").await?;
    v.send("c2", "second").await?;
    let mut answers = Vec::new();
    let mut seen = Vec::new();
    while answers.len() < 2 {
        let frame = v
            .next_frame()
            .await
            .with_context(|| format!("two answers; saw {seen:?}"))?;
        if let ToVisitor::Event(e) = &frame {
            if is_bot_message(e) {
                answers.push(e.message_text().unwrap_or_default().to_owned());
            }
        }
        seen.push(frame);
    }
    assert_eq!(answers, ["About first", "About second"]);
    relay.shutdown().await;
    Ok(())
}

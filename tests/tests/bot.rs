//! Bot-first routing over real sockets: the demo shop's knowledge-base bot answers visitors in
//! their language, offers a person, hands over (asked, not understood) with a summary for the
//! agent, and never speaks again after a hand-off or an agent's take; and the store's bot flag
//! rules on SQLite and PostgreSQL.

use std::time::Duration;

use anyhow::{bail, Context as _};
use parley_tests::pg::TestDatabase;
use parley_tests::{AgentClient, TestRelay, VisitorClient, AGENTS};
use protocol::{
    Author, ConversationId, ConversationStatus, EventBody, HandoffReason, Mood, Role, ToAgent,
    ToVisitor, VisitorBody, VisitorEvent,
};
use relay_server::store::{self, Effect, NewEvent, Store, StoreError};

/// How long to listen for a bot reply that must NOT arrive.
const QUIET: Duration = Duration::from_millis(800);

async fn bot_relay() -> anyhow::Result<TestRelay> {
    TestRelay::builder().bot_first().start().await
}

fn is_bot_message(e: &VisitorEvent) -> bool {
    e.author.role == Role::Bot && matches!(e.body, VisitorBody::Message { .. })
}

fn is_handoff(e: &VisitorEvent) -> bool {
    e.body == VisitorBody::Handoff
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
async fn answers_an_english_question_with_a_link_and_a_person_button() -> anyhow::Result<()> {
    let relay = bot_relay().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    ask(&mut v, "c1", "How long does shipping take?").await?;
    let reply = v.expect_event("the bot's answer", is_bot_message).await?;
    let VisitorBody::Message {
        text,
        buttons,
        link,
        ..
    } = &reply.body
    else {
        bail!("not a message: {reply:?}");
    };
    assert!(!text.is_empty());
    assert_eq!(reply.author.id.as_deref(), Some("bot"));
    assert_eq!(reply.author.name.as_deref(), Some("Demo Shop assistant"));
    assert!(
        link.as_deref().is_some_and(|l| !l.is_empty()),
        "a link: {reply:?}"
    );
    assert!(
        buttons.iter().any(|b| b.text == "Talk to a person"),
        "a Talk-to-a-person button: {buttons:?}"
    );
    assert!(
        buttons.len() <= 3,
        "at most 2 suggestions + the person: {buttons:?}"
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn answers_a_korean_question_in_korean() -> anyhow::Result<()> {
    let relay = bot_relay().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    ask(&mut v, "c1", "반품은 어떻게 하나요?").await?;
    let reply = v.expect_event("the bot's answer", is_bot_message).await?;
    let VisitorBody::Message { text, buttons, .. } = &reply.body else {
        bail!("not a message: {reply:?}");
    };
    assert!(
        text.chars().any(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c)),
        "a Korean answer: {text}"
    );
    assert!(
        buttons.iter().any(|b| b.text == "상담원 연결"),
        "a Korean person button: {buttons:?}"
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn asking_for_a_person_hands_over_and_silences_the_bot() -> anyhow::Result<()> {
    let relay = bot_relay().await?;
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    let mut v = VisitorClient::connect(&relay, None).await?;

    let conversation = ask(&mut v, "c1", "How long does shipping take?").await?;
    v.expect_event("the bot's answer", is_bot_message).await?;
    let summary = agent
        .expect("the conversation listed as bot", |f| {
            matches!(f, ToAgent::Conversation(c) if c.id == conversation && c.status == ConversationStatus::Bot)
        })
        .await?;
    drop(summary);

    ask(&mut v, "c2", "Talk to a person").await?;
    let handoff = v.expect_event("the hand-off", is_handoff).await?;
    assert_eq!(handoff.author.role, Role::System);
    // Agents read why and the summary...
    let history = agent.open(&conversation, None).await?;
    let stored = history
        .iter()
        .find(|e| matches!(e.body, EventBody::Handoff { .. }))
        .context("the hand-off in the agent's history")?;
    match &stored.body {
        EventBody::Handoff { reason, summary } => {
            assert_eq!(*reason, HandoffReason::Asked);
            assert!(
                summary.contains("How long does shipping take?"),
                "{summary}"
            );
            assert!(summary.contains("mood:"), "{summary}");
        }
        other => bail!("not a hand-off: {other:?}"),
    }
    // ...the visitor never does: not live, not in a replay. Read as raw text, so a field the
    // typed decoder would ignore still shows.
    let mut replay = VisitorClient::raw(&relay).await?;
    replay
        .send_json(&protocol::VisitorFrame::Hello {
            identity: None,
            v: protocol::PROTOCOL_VERSION,
            token: Some(v.token.clone()),
            conversation_id: None,
            last_seq: None,
            context: Default::default(),
        })
        .await?;
    loop {
        let text = replay.next_text().await?;
        assert!(
            !text.contains(r#""sentiment""#),
            "a visitor frame carries the tone: {text}"
        );
        if text.contains(r#""kind":"handoff""#) {
            assert!(
                text.ends_with(r#""body":{"kind":"handoff"}}"#),
                "a visitor's hand-off carries more than its kind: {text}"
            );
            break;
        }
    }
    // Agents see it in the people's queue: open, not bot.
    agent
        .expect("the conversation now open", |f| {
            matches!(f, ToAgent::Conversation(c) if c.id == conversation && c.status == ConversationStatus::Open)
        })
        .await?;

    ask(&mut v, "c3", "How much does shipping cost?").await?;
    v.expect_none(
        "no bot reply after the hand-off",
        QUIET,
        |f| matches!(f, ToVisitor::Event(e) if e.author.role == Role::Bot),
    )
    .await?;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn two_questions_not_understood_hand_over() -> anyhow::Result<()> {
    let relay = bot_relay().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    ask(&mut v, "c1", "zxqv blorf wibble").await?;
    let first = v.expect_event("not sure", is_bot_message).await?;
    assert!(
        first
            .message_text()
            .is_some_and(|t| t.starts_with("I'm not sure")),
        "{first:?}"
    );
    let conversation = ask(&mut v, "c2", "quux flimflam gronk").await?;
    v.expect_event("the hand-off", is_handoff).await?;
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    let stored = agent
        .open(&conversation, None)
        .await?
        .into_iter()
        .find(|e| matches!(e.body, EventBody::Handoff { .. }))
        .context("the hand-off in the agent's history")?;
    assert!(
        matches!(
            stored.body,
            EventBody::Handoff {
                reason: HandoffReason::NotUnderstood,
                ..
            }
        ),
        "{stored:?}"
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_agent_taking_the_conversation_silences_the_bot() -> anyhow::Result<()> {
    let relay = bot_relay().await?;
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    let conversation = ask(&mut v, "c1", "How long does shipping take?").await?;
    v.expect_event("the bot's answer", is_bot_message).await?;

    agent.open(&conversation, None).await?;
    agent.take(&conversation).await?;
    agent
        .expect("the conversation assigned", |f| {
            matches!(f, ToAgent::Conversation(c) if c.id == conversation && c.status == ConversationStatus::Assigned)
        })
        .await?;
    v.expect_event("the agent joined", |e| {
        matches!(e.body, VisitorBody::Joined)
    })
    .await?;

    ask(&mut v, "c2", "How much does shipping cost?").await?;
    v.expect_none("no bot reply after a take", QUIET, |f| {
        matches!(f, ToVisitor::Event(e) if e.author.role == Role::Bot || e.body == VisitorBody::Handoff)
    })
    .await?;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn agents_first_sites_have_no_bot() -> anyhow::Result<()> {
    let relay = TestRelay::builder().start().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    ask(&mut v, "c1", "How long does shipping take?").await?;
    v.expect_none(
        "no bot on an agents-first site",
        QUIET,
        |f| matches!(f, ToVisitor::Event(e) if e.author.role == Role::Bot),
    )
    .await?;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_knowledge_base_that_does_not_load_names_the_site() -> anyhow::Result<()> {
    let err = match TestRelay::builder()
        .bot_first()
        .config(|c| c.sites[0].kb = Some("/nonexistent/kb".into()))
        .start()
        .await
    {
        Ok(relay) => {
            relay.shutdown().await;
            bail!("a relay with a missing knowledge base started");
        }
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("demo") && err.contains("/nonexistent/kb"),
        "{err}"
    );
    Ok(())
}

/// The store's side of the bot flag, on one engine: bot conversations read as `bot`; bot
/// replies and hand-offs are refused once a hand-off or a take cleared the flag.
async fn bot_flag_rules(store: std::sync::Arc<dyn Store>) -> anyhow::Result<()> {
    let context = protocol::PageContext::default();
    let bot_author = || Author {
        role: Role::Bot,
        id: Some("bot".into()),
        name: Some("Demo Shop assistant".into()),
    };
    let reply = || NewEvent {
        author: bot_author(),
        body: EventBody::message("Returns are free.", None),
        client_id: None,
        effect: Effect::BotReply,
    };
    let handoff = || NewEvent {
        author: Author::system(),
        body: EventBody::Handoff {
            reason: HandoffReason::Asked,
            summary: "Asked about: returns; shown: nothing; mood: neutral".into(),
        },
        client_id: None,
        effect: Effect::Handoff,
    };

    // Hand-off: bot → open, then the bot is refused.
    let visitor = store.create_visitor("demo", &store::new_id()).await?;
    let (c, created) = store
        .open_conversation_as("demo", &visitor.id, &context, true, true)
        .await?;
    assert!(created);
    assert_eq!(c.status, ConversationStatus::Bot);
    let a = store.append(&c.id, reply()).await?;
    assert_eq!(a.conversation.status, ConversationStatus::Bot);
    let a = store.append(&c.id, handoff()).await?;
    assert_eq!(a.conversation.status, ConversationStatus::Open);
    assert!(matches!(
        store.append(&c.id, reply()).await,
        Err(StoreError::Forbidden)
    ));
    assert!(matches!(
        store.append(&c.id, handoff()).await,
        Err(StoreError::Forbidden)
    ));
    let read = store.conversation(&c.id).await?.context("stored")?;
    assert_eq!(read.status, ConversationStatus::Open);
    assert_eq!(read.last_seq, 2, "refused appends store nothing");

    // Take: bot → assigned, then the bot is refused.
    let agent = store.upsert_agent("mina", "Mina", "x").await?;
    let visitor = store.create_visitor("demo", &store::new_id()).await?;
    let (c, _) = store
        .open_conversation_as("demo", &visitor.id, &context, true, true)
        .await?;
    let take = NewEvent {
        author: Author {
            role: Role::Agent,
            id: Some(agent.id.clone()),
            name: Some("Mina".into()),
        },
        body: EventBody::Joined,
        client_id: None,
        effect: Effect::Assign(agent.id.clone()),
    };
    let a = store.append(&c.id, take).await?;
    assert_eq!(a.conversation.status, ConversationStatus::Assigned);
    assert!(matches!(
        store.append(&c.id, reply()).await,
        Err(StoreError::Forbidden)
    ));

    // Agents-first conversations never had the bot.
    let visitor = store.create_visitor("demo", &store::new_id()).await?;
    let (c, _) = store
        .open_conversation("demo", &visitor.id, &context)
        .await?;
    assert_eq!(c.status, ConversationStatus::Open);
    assert!(matches!(
        store.append(&c.id, reply()).await,
        Err(StoreError::Forbidden)
    ));
    Ok(())
}

#[tokio::test]
async fn store_bot_flag_sqlite() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("parley.db").display());
    let store = store::connect(&url).await?;
    let result = bot_flag_rules(store.clone()).await;
    store.close().await;
    result
}

#[tokio::test]
async fn store_bot_flag_postgres() -> anyhow::Result<()> {
    // Dropped with the guard, also when an assert below panics.
    let db = TestDatabase::create().await?;
    let store = store::connect(db.url())
        .await
        .map_err(|e| e.context("PgStore::connect"))?;
    let result = bot_flag_rules(store.clone()).await;
    store.close().await;
    result
}

#[tokio::test]
async fn visitor_messages_carry_their_tone_to_agents_only() -> anyhow::Result<()> {
    let relay = parley_tests::start_server().await?;
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    let conversation = ask(&mut v, "c1", "This is terrible, my order is late!!").await?;
    let history = agent.open(&conversation, None).await?;
    let EventBody::Message { sentiment, .. } = &history[0].body else {
        bail!("not a message: {history:?}");
    };
    assert_eq!(*sentiment, Some(Mood::Negative), "agents see the tone");

    ask(&mut v, "c2", "정말 감사합니다").await?;
    let live = agent
        .expect_event("the second message, live", |e| e.seq == 2)
        .await?;
    assert!(
        matches!(
            &live.body,
            EventBody::Message {
                sentiment: Some(Mood::Positive),
                ..
            }
        ),
        "{live:?}"
    );
    // The visitor's replay (a reconnect from scratch) leaves it out.
    let token = v.token.clone();
    drop(v);
    let mut again = VisitorClient::connect(&relay, Some(token.as_str())).await?;
    for seq in [1, 2] {
        let replayed = again
            .expect_event("a replayed message", |e| e.seq == seq)
            .await?;
        // A visitor's event has no tone field at all (VisitorBody); the raw-frame check is in
        // `asking_for_a_person_hands_over_and_silences_the_bot`.
        assert!(
            matches!(&replayed.body, VisitorBody::Message { .. }),
            "visitors never receive the tone: {replayed:?}"
        );
    }
    relay.shutdown().await;
    Ok(())
}

/// `GET /api/gaps` with the given cookie and origin.
async fn gaps(
    relay: &TestRelay,
    query: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut request = reqwest::Client::new().get(relay.url(&format!("/api/gaps{query}")));
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or_default()))
}

#[tokio::test]
async fn unanswered_questions_and_unhelpful_answers_are_reported() -> anyhow::Result<()> {
    let relay = bot_relay().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    ask(&mut v, "c1", "write me a poem about cats").await?;
    let unsure = v.expect_event("not sure", is_bot_message).await?;
    assert_eq!(
        unsure.message_text(),
        Some(relay_server::bot::not_sure_text(parley_bot::Lang::En))
    );
    ask(&mut v, "c2", "How long does shipping take?").await?;
    v.expect_event("the answer", |e| is_bot_message(e) && e.seq > unsure.seq)
        .await?;
    ask(&mut v, "c3", "Talk to a person").await?;
    v.expect_event("the hand-off", is_handoff).await?;
    // Another visitor, a rephrasing of the same unanswerable question.
    let mut w = VisitorClient::connect(&relay, None).await?;
    ask(&mut w, "d1", "could you write a poem about my cats?").await?;
    w.expect_event("not sure", is_bot_message).await?;

    let (user, _, pass) = AGENTS[0];
    let cookie = parley_tests::ws::login_cookie(&relay, user, pass).await?;
    let origin = relay.origin();
    // The report is written right after the bot's reply is stored: wait until it is there.
    let deadline = tokio::time::Instant::now() + parley_tests::TIMEOUT;
    let report = loop {
        let (status, report) = gaps(&relay, "", Some(&cookie), Some(&origin)).await?;
        assert_eq!(status, 200, "{report}");
        if report["unanswered"] == 2 && report["entries"].as_array().is_some_and(|e| !e.is_empty())
        {
            break report;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the report never listed both gaps: {report}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let questions = report["questions"].as_array().context("questions")?;
    assert_eq!(questions.len(), 1, "one group of rephrasings: {report}");
    assert_eq!(questions[0]["count"], 2);
    assert_eq!(
        questions[0]["examples"],
        serde_json::json!([
            "could you write a poem about my cats?",
            "write me a poem about cats"
        ]),
        "newest first"
    );
    assert_eq!(questions[0]["sites"], serde_json::json!(["demo"]));
    let entries = report["entries"].as_array().context("entries")?;
    assert_eq!(entries.len(), 1, "{report}");
    assert_eq!(entries[0]["entry_id"], "shipping-times");
    assert_eq!(entries[0]["count"], 1);
    assert_eq!(
        entries[0]["questions"],
        serde_json::json!(["How long does shipping take?"])
    );

    // The same with the site named; and the typed refusals.
    let (status, one_site) = gaps(&relay, "?site=demo&days=7", Some(&cookie), None).await?;
    assert_eq!(
        (status, &one_site["unanswered"]),
        (200, &serde_json::json!(2))
    );
    let (status, body) = gaps(&relay, "", None, None).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, body) = gaps(&relay, "", Some(&cookie), Some("https://evil.example")).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("origin_not_allowed"))
    );
    let (status, body) = gaps(&relay, "?site=nope", Some(&cookie), None).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_site"))
    );
    for bad in ["?days=0", "?days=9999", "?days=soon"] {
        let (status, body) = gaps(&relay, bad, Some(&cookie), None).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn two_quick_messages_get_one_turn_at_a_time() -> anyhow::Result<()> {
    let relay = bot_relay().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    // Both sent before either is answered: without a turn per conversation both searches ran
    // on the same history and both said "not sure". In turn, the second sees the first's
    // "not sure" and hands over (or, had the second turn run first, the first is dropped).
    v.send("c1", "write me a poem about cats").await?;
    v.send("c2", "who won the game last night").await?;
    // The first answer may come before the second ack: read in any order, dropping nothing.
    let (mut acks, mut answered) = (0, false);
    while acks < 2 || !answered {
        match v
            .next_frame()
            .await
            .context("acks and the first not sure")?
        {
            ToVisitor::Ack {
                conversation_id, ..
            } => {
                acks += 1;
                v.conversation_id = Some(conversation_id);
            }
            ToVisitor::Event(e) if is_bot_message(&e) => {
                assert!(!answered, "a second bot message: {e:?}");
                answered = true;
            }
            _ => {}
        }
    }
    v.expect_none(
        "a second bot message",
        QUIET,
        |f| matches!(f, ToVisitor::Event(e) if is_bot_message(e)),
    )
    .await?;
    let conversation = v.conversation_id.clone().context("conversation")?;
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    let history = agent.open(&conversation, None).await?;
    let bot_messages = history
        .iter()
        .filter(|e| e.author.role == Role::Bot && matches!(e.body, EventBody::Message { .. }))
        .count();
    assert_eq!(bot_messages, 1, "one answer at a time: {history:?}");
    relay.shutdown().await;
    Ok(())
}

//! Bot-first routing over real sockets: the demo shop's knowledge-base bot answers visitors in
//! their language, offers a person, hands over (asked, not understood) with a summary for the
//! agent, and never speaks again after a hand-off or an agent's take; and the store's bot flag
//! rules on SQLite and PostgreSQL.

use std::time::Duration;

use anyhow::{bail, Context as _};
use parley_tests::pg::TestDatabase;
use parley_tests::{AgentClient, TestRelay, VisitorClient, AGENTS};
use protocol::{
    Author, ConversationId, ConversationStatus, Event, EventBody, HandoffReason, Role, ToAgent,
    ToVisitor,
};
use relay_server::store::{self, Effect, NewEvent, Store, StoreError};

/// How long to listen for a bot reply that must NOT arrive.
const QUIET: Duration = Duration::from_millis(800);

async fn bot_relay() -> anyhow::Result<TestRelay> {
    TestRelay::builder().bot_first().start().await
}

fn is_bot_message(e: &Event) -> bool {
    e.author.role == Role::Bot && matches!(e.body, EventBody::Message { .. })
}

fn is_handoff(e: &Event) -> bool {
    matches!(e.body, EventBody::Handoff { .. })
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
    let EventBody::Message {
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
    let EventBody::Message { text, buttons, .. } = &reply.body else {
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
    match &handoff.body {
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
    assert_eq!(handoff.author.role, Role::System);
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
    ask(&mut v, "c2", "quux flimflam gronk").await?;
    let handoff = v.expect_event("the hand-off", is_handoff).await?;
    assert!(
        matches!(
            handoff.body,
            EventBody::Handoff {
                reason: HandoffReason::NotUnderstood,
                ..
            }
        ),
        "{handoff:?}"
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
    v.expect_event("the agent joined", |e| matches!(e.body, EventBody::Joined))
        .await?;

    ask(&mut v, "c2", "How much does shipping cost?").await?;
    v.expect_none("no bot reply after a take", QUIET, |f| {
        matches!(f, ToVisitor::Event(e) if e.author.role == Role::Bot || matches!(e.body, EventBody::Handoff { .. }))
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
        .open_conversation_as("demo", &visitor.id, &context, true)
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
        .open_conversation_as("demo", &visitor.id, &context, true)
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
    let db = TestDatabase::create().await?;
    let store = match store::connect(db.url()).await {
        Ok(store) => store,
        Err(e) => {
            db.drop_now().await;
            return Err(e.context("PgStore::connect"));
        }
    };
    let result = tokio::spawn(bot_flag_rules(store.clone())).await;
    store.close().await;
    db.drop_now().await;
    match result {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(e.into()),
    }
}

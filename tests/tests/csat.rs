//! CSAT over real sockets: once an agent closes the conversation the visitor rates it 1–5 with
//! an optional comment; the rating is stored, appended as a `rating` event both sides see,
//! listed on the conversation and counted per agent by `GET /api/ratings`. Bad ratings are
//! refused with typed errors, and a second rating does not replace the first.

use anyhow::Context as _;
use parley_tests::ws::login_cookie;
use parley_tests::{AgentClient, TestRelay, VisitorClient, AGENTS};
use protocol::{
    AgentFrame, ConversationId, ErrorCode, Event, EventBody, ToAgent, ToVisitor, VisitorBody,
    VisitorEvent, VisitorFrame,
};

fn is_rating(e: &Event) -> bool {
    matches!(e.body, EventBody::Rating { .. })
}

fn is_visitor_rating(e: &VisitorEvent) -> bool {
    matches!(e.body, VisitorBody::Rating { .. })
}

async fn rate(v: &mut VisitorClient, score: u8, comment: Option<&str>) -> anyhow::Result<()> {
    v.sock
        .send_json(&VisitorFrame::Rate {
            score,
            comment: comment.map(str::to_owned),
        })
        .await
}

async fn expect_error(v: &mut VisitorClient, what: &str) -> anyhow::Result<ErrorCode> {
    match v.expect(what, |f| matches!(f, ToVisitor::Error(_))).await? {
        ToVisitor::Error(e) => Ok(e.code),
        other => anyhow::bail!("expected an error, got {other:?}"),
    }
}

/// A visitor who wrote, an agent (Mina) who took and closed the conversation.
async fn closed_chat(
    relay: &TestRelay,
) -> anyhow::Result<(VisitorClient, AgentClient, ConversationId)> {
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(relay, user, pass).await?;
    let mut v = VisitorClient::connect(relay, None).await?;
    v.send("c1", "My parcel is late").await?;
    v.expect_ack("c1").await?;
    let conversation = v.conversation_id.clone().context("conversation")?;

    // Rating before the close is refused.
    rate(&mut v, 5, None).await?;
    assert_eq!(
        expect_error(&mut v, "refusal of an early rating").await?,
        ErrorCode::Invalid
    );

    agent.open(&conversation, None).await?;
    agent.send(&conversation, "a1", "It ships today.").await?;
    agent.expect_ack("a1").await?;
    agent
        .sock
        .send_json(&AgentFrame::Close {
            conversation_id: conversation.clone(),
        })
        .await?;
    v.expect_event("the close", |e| e.body == VisitorBody::Closed)
        .await?;
    Ok((v, agent, conversation))
}

#[tokio::test]
async fn a_rating_is_stored_seen_by_the_agent_and_counted() -> anyhow::Result<()> {
    let relay = TestRelay::builder().start().await?;
    let (mut v, mut agent, conversation) = closed_chat(&relay).await?;

    rate(&mut v, 4, Some("  Quick and friendly  ")).await?;
    let rated = v
        .expect_event("the rating event", is_visitor_rating)
        .await?;
    assert_eq!(
        rated.body,
        VisitorBody::Rating {
            score: 4,
            comment: Some("Quick and friendly".into())
        },
        "stored with the comment trimmed"
    );
    assert_eq!(rated.author.id.as_deref(), Some(v.visitor_id.as_str()));

    // The agent sees it live in the transcript and on the listed conversation.
    agent.expect_event("the rating", is_rating).await?;
    agent
        .expect("the conversation with its rating", |f| {
            matches!(f, ToAgent::Conversation(c) if c.id == conversation && c.rating == Some(4))
        })
        .await?;

    // A second rating is refused; the first stands.
    rate(&mut v, 1, Some("changed my mind")).await?;
    assert_eq!(
        expect_error(&mut v, "refusal of a second rating").await?,
        ErrorCode::Invalid
    );

    // A fresh console: history and list both carry it.
    let (user, _, pass) = AGENTS[1];
    let mut other = AgentClient::login(&relay, user, pass).await?;
    let listed = other
        .conversations
        .iter()
        .find(|c| c.id == conversation)
        .context("listed")?;
    assert_eq!(listed.rating, Some(4));
    let history = other.open(&conversation, None).await?;
    let ratings: Vec<_> = history.iter().filter(|e| is_rating(e)).collect();
    assert_eq!(ratings.len(), 1, "{history:?}");
    assert_eq!(ratings[0].seq, rated.seq);

    // The numbers: Mina, one rating, 4.0.
    let cookie = login_cookie(&relay, user, pass).await?;
    let http = reqwest::Client::new();
    let numbers: serde_json::Value = http
        .get(relay.url("/api/ratings"))
        .header("cookie", cookie)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let agents = numbers["agents"].as_array().context("agents")?;
    assert_eq!(agents.len(), 1, "{numbers}");
    assert_eq!(agents[0]["agent"]["username"], "mina", "{numbers}");
    assert_eq!(agents[0]["count"], 1, "{numbers}");
    assert_eq!(agents[0]["average"], 4.0, "{numbers}");

    let anonymous = http.get(relay.url("/api/ratings")).send().await?;
    assert_eq!(anonymous.status().as_u16(), 401);
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn bad_ratings_are_refused_with_typed_errors() -> anyhow::Result<()> {
    let relay = TestRelay::builder().start().await?;
    let (mut v, _agent, conversation) = closed_chat(&relay).await?;

    for score in [0, 6] {
        rate(&mut v, score, None).await?;
        assert_eq!(
            expect_error(&mut v, &format!("refusal of score {score}")).await?,
            ErrorCode::Invalid
        );
    }
    v.sock
        .send_text(r#"{"type":"rate","score":"five"}"#)
        .await?;
    assert_eq!(
        expect_error(&mut v, "refusal of a text score").await?,
        ErrorCode::Invalid
    );
    rate(&mut v, 5, Some(&"가".repeat(protocol::MAX_COMMENT_BYTES))).await?;
    assert_eq!(
        expect_error(&mut v, "refusal of a long comment").await?,
        ErrorCode::TooLarge
    );
    v.expect_none(
        "no rating stored",
        std::time::Duration::from_millis(300),
        |f| matches!(f, ToVisitor::Event(e) if is_visitor_rating(e)),
    )
    .await?;

    // Still rateable after all that.
    rate(&mut v, 5, None).await?;
    let rated = v.expect_event("the rating", is_visitor_rating).await?;
    assert_eq!(rated.conversation_id, conversation);
    assert_eq!(
        rated.body,
        VisitorBody::Rating {
            score: 5,
            comment: None
        }
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_visitor_without_a_conversation_has_nothing_to_rate() -> anyhow::Result<()> {
    let relay = TestRelay::builder().start().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    rate(&mut v, 3, None).await?;
    assert_eq!(expect_error(&mut v, "refusal").await?, ErrorCode::NotFound);
    relay.shutdown().await;
    Ok(())
}

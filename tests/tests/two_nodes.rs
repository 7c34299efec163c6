//! Two relays behind one address: both share one PostgreSQL database and one Redis bus, a
//! visitor talks to node A and an agent to node B, and everything crosses — the new
//! conversation, the take, the reply (with seq strictly +1), typing both ways, and presence.
//!
//! Needs real PostgreSQL (`PARLEY_TEST_PG_URL`, see `parley_tests::pg`) and real Redis
//! (`PARLEY_TEST_REDIS_URL`, default `parley_tests::bus::DEFAULT_REDIS_URL`). Either one
//! unreachable is a failure with a clear message, never a skip: a green run must mean the cross-node path was tested.
//! Every test uses its own bus prefix, so runs sharing one Redis cannot see each other. The outage
//! test cuts one node's bus through a TCP proxy, never by stopping the shared Redis server.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use parley_tests::bus::{host_port, redis_url, CuttableProxy};
use parley_tests::pg::TestDatabase;
use parley_tests::{AgentClient, TestRelay, VisitorClient, AGENTS, TIMEOUT};
use protocol::{ConversationStatus, Event, EventBody, Role, ToAgent, ToVisitor};

fn is_message(e: &Event, text: &str) -> bool {
    e.message_text() == Some(text)
}

/// A relay on the shared database and bus.
async fn node(database_url: &str, prefix: &str) -> anyhow::Result<TestRelay> {
    node_via(database_url, prefix, redis_url()).await
}

/// A relay on the shared database, reaching the bus at `redis`.
async fn node_via(database_url: &str, prefix: &str, redis: String) -> anyhow::Result<TestRelay> {
    let database_url = database_url.to_owned();
    let prefix = prefix.to_owned();
    TestRelay::builder()
        .config(move |c| {
            c.database_url = database_url;
            c.bus_url = Some(redis);
            c.bus_prefix = prefix;
        })
        .start()
        .await
        .map_err(|e| {
            anyhow!(
                "starting a relay on PostgreSQL + Redis ({}) failed: {e:#}. \
                 Start Redis or set PARLEY_TEST_REDIS_URL.",
                redis_url()
            )
        })
}

/// `agents_online` from `GET /api/sites/demo`.
async fn site_agents_online(relay: &TestRelay) -> anyhow::Result<u64> {
    let text = reqwest::get(relay.url("/api/sites/demo"))
        .await?
        .text()
        .await?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    json.get("agents_online")
        .and_then(serde_json::Value::as_u64)
        .with_context(|| format!("no agents_online in {text}"))
}

#[tokio::test]
async fn a_visitor_on_one_node_chats_with_an_agent_on_another() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let prefix = format!("parley-test-{}", relay_server::store::new_id());
    let result = scenario(db.url(), &prefix).await;
    db.drop_now().await;
    result
}

async fn scenario(database_url: &str, prefix: &str) -> anyhow::Result<()> {
    let a = node(database_url, prefix).await?;
    let b = node(database_url, prefix).await?;

    // The agent signs in on B; A learns it is online through the bus.
    let (user, name, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&b, user, pass).await?;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let online = site_agents_online(&a).await?;
        if online >= 1 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("node A never saw the agent online on node B (agents_online = {online})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut v = VisitorClient::connect(&a, None).await?;
    assert!(
        v.agents_online >= 1,
        "the visitor on A must see the agent on B online, welcome said {}",
        v.agents_online
    );

    // A new conversation on A reaches the agent on B live.
    v.send("v1", "Do you ship to Jeju?").await?;
    assert_eq!(v.expect_ack("v1").await?, 1);
    let conversation = v.conversation_id.clone().context("conversation id")?;
    agent
        .expect("the new conversation from node A", |f| {
            matches!(f, ToAgent::Conversation(c) if c.id == conversation
                && c.preview.as_deref() == Some("Do you ship to Jeju?"))
        })
        .await?;

    let history = agent.open(&conversation, Some(0)).await?;
    assert_eq!(history.len(), 1, "history: {history:?}");
    assert!(is_message(&history[0], "Do you ship to Jeju?"));

    agent.take(&conversation).await?;
    let joined = v
        .expect_event("the joined event from node B", |e| {
            e.body == EventBody::Joined
        })
        .await?;
    assert_eq!(joined.seq, 2, "seq strictly +1");
    assert_eq!(joined.author.name.as_deref(), Some(name));
    agent
        .expect("the conversation becoming assigned", |f| {
            matches!(f, ToAgent::Conversation(c) if c.id == conversation
                && c.status == ConversationStatus::Assigned)
        })
        .await?;

    agent.send(&conversation, "a-1", "Yes, in 3 days.").await?;
    assert_eq!(agent.expect_ack("a-1").await?, 3);
    let reply = v
        .expect_event("the reply from node B", |e| {
            is_message(e, "Yes, in 3 days.")
        })
        .await?;
    assert_eq!(reply.seq, 3, "seq strictly +1");
    assert_eq!(reply.author.role, Role::Agent);

    // The visitor's next message (A) reaches the agent (B) as an event.
    v.send("v2", "Great, thanks").await?;
    assert_eq!(v.expect_ack("v2").await?, 4);
    let event = agent
        .expect_event("the visitor's second message from node A", |e| {
            is_message(e, "Great, thanks")
        })
        .await?;
    assert_eq!(event.seq, 4);

    // Typing crosses both ways.
    agent.typing(&conversation, true).await?;
    match v
        .expect("the agent typing from node B", |f| {
            matches!(f, ToVisitor::Typing { .. })
        })
        .await?
    {
        ToVisitor::Typing { author, active } => {
            assert!(active);
            assert_eq!(author.role, Role::Agent);
        }
        other => bail!("expected typing, got {other:?}"),
    }
    v.typing(true).await?;
    match agent
        .expect("the visitor typing from node A", |f| {
            matches!(f, ToAgent::Typing { .. })
        })
        .await?
    {
        ToAgent::Typing {
            conversation_id,
            author,
            active,
        } => {
            assert!(active);
            assert_eq!(conversation_id, conversation);
            assert_eq!(author.role, Role::Visitor);
        }
        other => bail!("expected typing, got {other:?}"),
    }

    // The agent leaves B: the visitor on A is told nobody is online any more.
    drop(agent);
    v.expect("presence dropping to zero on node A", |f| {
        matches!(
            f,
            ToVisitor::Presence {
                agents_online: 0,
                ..
            }
        )
    })
    .await?;

    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_unreachable_bus_stops_the_relay_from_starting() -> anyhow::Result<()> {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let started = TestRelay::builder()
        .config(|c| {
            c.bus_url = Some("redis://127.0.0.1:1/".into());
            c.bus_prefix = format!("parley-test-{}", relay_server::store::new_id());
        })
        .start()
        .await;
    match started {
        Ok(relay) => {
            relay.shutdown().await;
            bail!("a relay whose bus is unreachable must refuse to start")
        }
        Err(e) => {
            let message = format!("{e:#}");
            assert!(
                message.contains("Redis bus not reachable at redis://127.0.0.1:1/"),
                "the error must name the bus: {message}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_node_that_lost_its_bus_catches_up_when_it_returns() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let prefix = format!("parley-test-{}", relay_server::store::new_id());
    let result = outage(db.url(), &prefix).await;
    db.drop_now().await;
    result
}

async fn outage(database_url: &str, prefix: &str) -> anyhow::Result<()> {
    let proxy = CuttableProxy::start(&host_port(&redis_url())?).await?;
    let a = node(database_url, prefix).await?;
    let b = node_via(database_url, prefix, proxy.url.clone()).await?;

    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&b, user, pass).await?;
    let mut v = VisitorClient::connect(&a, None).await?;
    v.send("v1", "before the outage").await?;
    v.expect_ack("v1").await?;
    let conversation = v.conversation_id.clone().context("conversation id")?;
    agent.open(&conversation, Some(0)).await?;

    // B loses Redis: A keeps storing and acknowledging; the nudge cannot reach B.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    v.send("v2", "during the outage").await?;
    assert_eq!(
        v.expect_ack("v2").await?,
        2,
        "A keeps serving while B's bus is down"
    );

    // Redis is back for B: its subscriber reconnects and every local connection resyncs, so the
    // agent gets the missed message without anything new being sent.
    proxy.restore();
    let missed = agent
        .expect_event("the message sent while B had no bus", |e| {
            is_message(e, "during the outage")
        })
        .await?;
    assert_eq!(missed.seq, 2);

    // And live delivery works again.
    v.send("v3", "after the outage").await?;
    v.expect_ack("v3").await?;
    let live = agent
        .expect_event("a message after the outage", |e| {
            is_message(e, "after the outage")
        })
        .await?;
    assert_eq!(live.seq, 3, "seq strictly +1, no duplicate");

    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

/// Co-browse crosses nodes: the stream from a visitor on node A reaches the agent on node B,
/// and the agent's highlight comes back, through the bus.
#[tokio::test]
async fn cobrowse_frames_cross_nodes() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let prefix = format!("parley-test-{}", relay_server::store::new_id());
    let result = cobrowse_scenario(db.url(), &prefix).await;
    db.drop_now().await;
    result
}

async fn cobrowse_scenario(database_url: &str, prefix: &str) -> anyhow::Result<()> {
    use protocol::{AgentFrame, CobrowseState, Highlight, HighlightTarget, VisitorFrame};
    let a = node(database_url, prefix).await?;
    let b = node(database_url, prefix).await?;
    let mut v = VisitorClient::connect(&a, None).await?;
    v.send("c1", "Can you see my cart?").await?;
    v.expect_ack("c1").await?;
    let conversation = v.conversation_id.clone().context("acked")?;
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&b, user, pass).await?;
    agent.open(&conversation, None).await?;
    agent.take(&conversation).await?;
    v.expect_event("joined across nodes", |e| e.body == EventBody::Joined)
        .await?;
    agent
        .sock
        .send_json(&AgentFrame::CobrowseRequest {
            conversation_id: conversation.clone(),
        })
        .await?;
    v.expect_event("request across nodes", |e| {
        matches!(
            e.body,
            EventBody::Cobrowse {
                state: CobrowseState::Requested
            }
        )
    })
    .await?;
    v.sock
        .send_json(&VisitorFrame::CobrowseAnswer { allow: true })
        .await?;
    agent
        .expect_event("allowed across nodes", |e| {
            matches!(
                e.body,
                EventBody::Cobrowse {
                    state: CobrowseState::Allowed
                }
            )
        })
        .await?;
    v.sock
        .send_json(&VisitorFrame::Cobrowse {
            n: 1,
            data: "{\"kind\":\"pointer\",\"page\":1,\"x\":3,\"y\":4}".into(),
            index: 0,
            count: 1,
        })
        .await?;
    agent
        .expect(
            "the stream item from the other node",
            |f| matches!(f, ToAgent::Cobrowse { n: 1, data, .. } if data.contains("pointer")),
        )
        .await?;
    agent
        .sock
        .send_json(&AgentFrame::CobrowseHighlight {
            conversation_id: conversation.clone(),
            highlight: Highlight {
                page: 1,
                target: HighlightTarget::Node(5),
                note: None,
            },
        })
        .await?;
    v.expect("the highlight from the other node", |f| {
        matches!(f, ToVisitor::CobrowseHighlight { .. })
    })
    .await?;
    Ok(())
}

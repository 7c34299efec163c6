//! Two relays behind one address: both share one PostgreSQL database and one Redis bus, a
//! visitor talks to node A and an agent to node B, and everything crosses — the new
//! conversation, the take, the reply (with seq strictly +1), typing both ways, and presence.
//!
//! Then the bus failing: one node's path to Redis closed (its subscriber reconnects and
//! resyncs), silently blackholed (a PING on the subscription notices), or only the *sending*
//! node cut off (it tells the others to resync once it can publish again); Redis itself killed
//! and restarted mid-chat (a private `redis-server`); and admin settings saved on one node taking
//! effect on the other.
//!
//! Needs real PostgreSQL (`PARLEY_TEST_PG_URL`, see `parley_tests::pg`) and real Redis
//! (`PARLEY_TEST_REDIS_URL`, default `parley_tests::bus::DEFAULT_REDIS_URL`; the Redis-stop test
//! runs its own `redis-server` binary). Either one unreachable is a failure with a clear message,
//! never a skip: a green run must mean the cross-node path was tested. Every test uses its own
//! bus prefix, so runs sharing one Redis cannot see each other. Outages of the shared Redis are
//! made with a TCP proxy in front of one node, never by stopping the shared server.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use parley_tests::bus::{host_port, redis_url, CuttableProxy, RedisServer};
use parley_tests::pg::TestDatabase;
use parley_tests::{AgentClient, TestRelay, VisitorClient, AGENTS, TIMEOUT};
use protocol::timeline::Sequenced;
use protocol::{
    ConversationStatus, Event, EventBody, Role, ToAgent, ToVisitor, VisitorBody, VisitorEvent,
};

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
        .admin("mina")
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

/// Which node of a [`CutScene`] reaches Redis through the cuttable proxy.
#[derive(Clone, Copy)]
enum Proxied {
    /// The visitor's node (its publishes can be cut).
    A,
    /// The agent's node (its subscription can be cut).
    B,
}

/// Two nodes, one of them reaching Redis through a proxy the test can cut; a visitor on A has
/// sent `first` (seq 1) and the agent on B has the conversation open.
struct CutScene {
    proxy: CuttableProxy,
    a: TestRelay,
    b: TestRelay,
    agent: AgentClient,
    v: VisitorClient,
    conversation: protocol::ConversationId,
}

async fn cut_scene(
    database_url: &str,
    prefix: &str,
    proxied: Proxied,
    first: &str,
) -> anyhow::Result<CutScene> {
    let proxy = CuttableProxy::start(&host_port(&redis_url())?).await?;
    let (a, b) = match proxied {
        Proxied::A => (
            node_via(database_url, prefix, proxy.url.clone()).await?,
            node(database_url, prefix).await?,
        ),
        Proxied::B => (
            node(database_url, prefix).await?,
            node_via(database_url, prefix, proxy.url.clone()).await?,
        ),
    };
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&b, user, pass).await?;
    let mut v = VisitorClient::connect(&a, None).await?;
    v.send("v1", first).await?;
    v.expect_ack("v1").await?;
    let conversation = v.conversation_id.clone().context("conversation id")?;
    agent.open(&conversation, Some(0)).await?;
    Ok(CutScene {
        proxy,
        a,
        b,
        agent,
        v,
        conversation,
    })
}

/// Mends the cut and waits for the message sent during it (`missed`) to reach the agent as seq 2,
/// with nothing new sent. Returns how long that took.
async fn restore_and_catch_up(
    proxy: &CuttableProxy,
    agent: &mut AgentClient,
    missed: &str,
) -> anyhow::Result<Duration> {
    proxy.restore();
    let started = std::time::Instant::now();
    let event = agent
        .expect_event("the message sent during the cut", |e| is_message(e, missed))
        .await?;
    assert_eq!(event.seq, 2, "the missed message, exactly once");
    Ok(started.elapsed())
}

/// After a cut is mended: a new message (`v3`) reaches the agent live, as seq 3 — strictly +1
/// after the one sent during the cut, and not a duplicate of it.
async fn live_again(
    v: &mut VisitorClient,
    agent: &mut AgentClient,
    text: &str,
) -> anyhow::Result<()> {
    v.send("v3", text).await?;
    v.expect_ack("v3").await?;
    let live = agent
        .expect_event("a message after the cut", |e| is_message(e, text))
        .await?;
    assert_eq!(live.seq, 3, "seq strictly +1, no duplicate");
    Ok(())
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
    scenario(db.url(), &prefix).await
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
    // The presence hash expires unless a node with agents keeps writing it, so a prefix whose
    // nodes are all gone leaves nothing in Redis.
    let mut redis = redis::Client::open(redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}:agents"))
        .query_async(&mut redis)
        .await?;
    assert!(
        (1..=120).contains(&ttl),
        "the presence hash has an expiry of at most 120 s, TTL said {ttl}"
    );
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
            e.body == VisitorBody::Joined
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
            e.message_text() == Some("Yes, in 3 days.")
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
    outage(db.url(), &prefix).await
}

async fn outage(database_url: &str, prefix: &str) -> anyhow::Result<()> {
    let CutScene {
        proxy,
        a,
        b,
        mut agent,
        mut v,
        ..
    } = cut_scene(database_url, prefix, Proxied::B, "before the outage").await?;

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
    restore_and_catch_up(&proxy, &mut agent, "during the outage").await?;

    // And live delivery works again.
    live_again(&mut v, &mut agent, "after the outage").await?;

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
    cobrowse_scenario(db.url(), &prefix).await
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
    v.expect_event("joined across nodes", |e| e.body == VisitorBody::Joined)
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
            VisitorBody::Cobrowse {
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

    // A transfer to an agent on the visitor's node ends sharing on both nodes: the visitor
    // (node A) refuses to stream, and nothing reaches the old agent (node B).
    let (user, _, pass) = AGENTS[1];
    let mut joon = AgentClient::login(&a, user, pass).await?;
    joon.open(&conversation, None).await?;
    agent
        .sock
        .send_json(&AgentFrame::Transfer {
            conversation_id: conversation.clone(),
            to_agent: joon.agent.id.clone(),
            note: None,
        })
        .await?;
    v.expect_event("the transfer across nodes", |e| {
        matches!(e.body, VisitorBody::Transferred { .. })
    })
    .await?;
    v.sock
        .send_json(&VisitorFrame::Cobrowse {
            n: 2,
            data: "{\"kind\":\"pointer\",\"page\":1,\"x\":5,\"y\":6}".into(),
            index: 0,
            count: 1,
        })
        .await?;
    v.expect(
        "the stream refused after the transfer",
        |f| matches!(f, ToVisitor::Error(e) if e.code == protocol::ErrorCode::Forbidden),
    )
    .await?;
    for (who, sock) in [
        ("old agent, node B", &mut agent),
        ("new agent, node A", &mut joon),
    ] {
        sock.expect_none(
            &format!("the stream after the transfer ({who})"),
            std::time::Duration::from_millis(800),
            |f| matches!(f, ToAgent::Cobrowse { .. }),
        )
        .await?;
    }
    Ok(())
}

/// The path from B to Redis silently stops forwarding (no close, no reset): B's subscription
/// looks alive but hears nothing. B must notice on its own (PING on the subscription), reconnect
/// once the path works again for new connections, and resync: the blackholed connections never
/// come back, so nothing but B's own check can end the deafness.
#[tokio::test]
async fn a_node_whose_bus_goes_silent_notices_and_catches_up() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let prefix = format!("parley-test-{}", relay_server::store::new_id());
    let result = blackhole(db.url(), &prefix).await;
    db.drop_now().await;
    result
}

async fn blackhole(database_url: &str, prefix: &str) -> anyhow::Result<()> {
    let CutScene {
        proxy,
        a,
        b,
        mut agent,
        mut v,
        conversation,
    } = cut_scene(database_url, prefix, Proxied::B, "before the silence").await?;
    let errors_before = bus_errors(&b).await?;

    proxy.blackhole();
    tokio::time::sleep(Duration::from_millis(300)).await;
    v.send("v2", "while B hears nothing").await?;
    assert_eq!(v.expect_ack("v2").await?, 2, "A keeps serving");
    // Nothing reaches B while its path is silent.
    agent
        .expect_none(
            "a message through a blackholed bus",
            Duration::from_secs(1),
            |f| matches!(f, ToAgent::Event(e) if is_message(e, "while B hears nothing")),
        )
        .await?;
    // New connections work again; the silent ones stay silent.
    let took = restore_and_catch_up(&proxy, &mut agent, "while B hears nothing").await?;
    println!(
        "blackhole: B caught up {:.1}s after the path returned",
        took.as_secs_f64()
    );
    assert!(
        bus_errors(&b).await? > errors_before,
        "the silent subscription must be counted in parley_bus_errors_total"
    );

    // Both directions work live again: A → B through B's new subscription, and B → A through
    // B's command connection, which also went silent and must have been replaced.
    live_again(&mut v, &mut agent, "after the silence").await?;
    agent.open(&conversation, Some(3)).await?;
    agent.take(&conversation).await?;
    let joined = v
        .expect_event("B's take, published after the silence", |e| {
            e.body == VisitorBody::Joined
        })
        .await?;
    assert_eq!(joined.seq, 4);
    agent.send(&conversation, "a-1", "I hear you again").await?;
    assert_eq!(agent.expect_ack("a-1").await?, 5);
    let reply = v
        .expect_event("B's reply after the silence", |e| {
            e.message_text() == Some("I hear you again")
        })
        .await?;
    assert_eq!(reply.seq, 5);

    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

/// Only the *sending* node loses Redis: A stores and acknowledges a message but cannot publish
/// the nudge, and B's subscription never broke, so B has no reason to look. Once A can publish
/// again it tells every node to resync, and B's agent gets the message without anything new
/// being sent.
#[tokio::test]
async fn a_node_that_could_not_publish_tells_the_others_to_resync() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let prefix = format!("parley-test-{}", relay_server::store::new_id());
    let result = mute_publisher(db.url(), &prefix).await;
    db.drop_now().await;
    result
}

async fn mute_publisher(database_url: &str, prefix: &str) -> anyhow::Result<()> {
    let CutScene {
        proxy,
        a,
        b,
        mut agent,
        mut v,
        ..
    } = cut_scene(database_url, prefix, Proxied::A, "before the cut").await?;

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    v.send("v2", "sent while A could not publish").await?;
    assert_eq!(
        v.expect_ack("v2").await?,
        2,
        "stored and acknowledged anyway"
    );
    agent
        .expect_none(
            "the message while A cannot publish",
            Duration::from_secs(1),
            |f| matches!(f, ToAgent::Event(e) if is_message(e, "sent while A could not publish")),
        )
        .await?;

    restore_and_catch_up(&proxy, &mut agent, "sent while A could not publish").await?;
    live_again(&mut v, &mut agent, "after the cut").await?;

    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

/// Settings an admin saves on node A (business hours here) take effect on node B, which had
/// read them at start: B's public site info and admin view follow within moments.
#[tokio::test]
async fn admin_settings_saved_on_one_node_apply_on_the_other() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let prefix = format!("parley-test-{}", relay_server::store::new_id());
    let result = settings_scenario(db.url(), &prefix).await;
    db.drop_now().await;
    result
}

async fn site_available(relay: &TestRelay) -> anyhow::Result<bool> {
    let json: serde_json::Value = reqwest::get(relay.url("/api/sites/demo"))
        .await?
        .json()
        .await?;
    json.get("available")
        .and_then(serde_json::Value::as_bool)
        .with_context(|| format!("no available in {json}"))
}

async fn settings_scenario(database_url: &str, prefix: &str) -> anyhow::Result<()> {
    let a = node(database_url, prefix).await?;
    let b = node(database_url, prefix).await?;
    let (user, _, pass) = AGENTS[1];
    let _online = AgentClient::login(&b, user, pass).await?;
    // Both nodes agree the site is open (no hours, an agent online).
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !(site_available(&a).await? && site_available(&b).await?) {
        if tokio::time::Instant::now() > deadline {
            bail!("the site never became available on both nodes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The admin closes the site on A: a time zone and no opening hours.
    let mina = parley_tests::ws::login_cookie(&a, "mina", "mina-password-1").await?;
    let response = reqwest::Client::new()
        .put(a.url("/api/admin/sites/demo"))
        .header("Cookie", &mina)
        .header("Origin", a.origin())
        .json(&serde_json::json!({
            "routing": "agents_first",
            "hours": {"tz": "Asia/Seoul"},
            "max_chats_per_agent": 3
        }))
        .send()
        .await?;
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}",
        response.text().await?
    );
    assert!(!site_available(&a).await?, "A applies its own save at once");

    // B follows: closed for visitors, and its admin view shows the saved hours.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while site_available(&b).await? {
        if tokio::time::Instant::now() > deadline {
            bail!("node B still serves the site as open {TIMEOUT:?} after A saved closed hours");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mina_b = parley_tests::ws::login_cookie(&b, "mina", "mina-password-1").await?;
    let sites: serde_json::Value = reqwest::Client::new()
        .get(b.url("/api/admin/sites"))
        .header("Cookie", &mina_b)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(sites["sites"][0]["hours"]["tz"], "Asia/Seoul", "{sites}");
    assert_eq!(sites["sites"][0]["max_chats_per_agent"], 3, "{sites}");
    let v = VisitorClient::connect(&b, None).await?;
    assert!(!v.available, "a visitor on B is told the site is closed");

    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

/// `parley_bus_errors_total` from the relay's `/metrics`.
async fn bus_errors(relay: &TestRelay) -> anyhow::Result<u64> {
    let text = reqwest::get(relay.url("/metrics")).await?.text().await?;
    text.lines()
        .find_map(|l| l.strip_prefix("parley_bus_errors_total "))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no parley_bus_errors_total in /metrics:\n{text}"))
}

/// Every event of `conversation` an agent receives while waiting for something, in order.
fn agent_events<'a>(
    conversation: &'a protocol::ConversationId,
    seen: &'a mut Vec<Event>,
    mut done: impl FnMut(&ToAgent) -> bool + 'a,
) -> impl FnMut(&ToAgent) -> bool + 'a {
    move |f| {
        if let ToAgent::Event(e) = f {
            if &e.conversation_id == conversation {
                seen.push(e.clone());
            }
        }
        done(f)
    }
}

/// Every event a visitor receives while waiting for something, in order.
fn visitor_events<'a>(
    seen: &'a mut Vec<VisitorEvent>,
    mut done: impl FnMut(&ToVisitor) -> bool + 'a,
) -> impl FnMut(&ToVisitor) -> bool + 'a {
    move |f| {
        if let ToVisitor::Event(e) = f {
            seen.push(e.clone());
        }
        done(f)
    }
}

/// Fails unless `events` are exactly seqs `1..=last`, each once, in order.
fn exactly_once(who: &str, events: &[impl Sequenced], last: u64) -> anyhow::Result<()> {
    let seqs: Vec<u64> = events.iter().map(Sequenced::seq).collect();
    let want: Vec<u64> = (1..=last).collect();
    if seqs != want {
        bail!("{who} saw seqs {seqs:?}, expected 1..={last} each once, in order");
    }
    Ok(())
}

/// Redis itself dies (SIGKILL, nothing saved) in the middle of a two-node chat and comes back
/// empty on the same port ~3 s later. Meanwhile both sides keep writing: every message is
/// stored and acknowledged; afterwards each side has received every message exactly once, seq
/// strictly +1, and both relays still serve.
#[tokio::test]
async fn a_redis_stop_mid_chat_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let prefix = format!("parley-test-{}", relay_server::store::new_id());
    let result = redis_stop(db.url(), &prefix).await;
    db.drop_now().await;
    result
}

async fn redis_stop(database_url: &str, prefix: &str) -> anyhow::Result<()> {
    /// Messages each side writes while Redis is down, one every [`PACE`] (both sides: ~3 s).
    const DURING: usize = 5;
    const PACE: Duration = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let mut redis = RedisServer::start().await?;
    let a = node_via(database_url, prefix, redis.url()).await?;
    let b = node_via(database_url, prefix, redis.url()).await?;

    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&b, user, pass).await?;
    let mut v = VisitorClient::connect(&a, None).await?;
    let mut v_seen = Vec::new();
    let mut agent_seen = Vec::new();
    v.send("v-hello", "hello from A").await?;
    let conversation = {
        let ack = v
            .expect(
                "the first ack",
                visitor_events(&mut v_seen, |f| matches!(f, ToVisitor::Ack { .. })),
            )
            .await?;
        match ack {
            ToVisitor::Ack {
                conversation_id,
                seq: 1,
                ..
            } => conversation_id,
            other => bail!("expected the first ack with seq 1, got {other:?}"),
        }
    };
    agent_seen.extend(agent.open(&conversation, Some(0)).await?);
    agent.take(&conversation).await?;
    let last: u64 = 2; // the message and the join
    agent
        .expect(
            "the join on B",
            agent_events(
                &conversation,
                &mut agent_seen,
                |f| matches!(f, ToAgent::Event(e) if e.seq == last),
            ),
        )
        .await?;
    v.expect(
        "the join on A",
        visitor_events(
            &mut v_seen,
            |f| matches!(f, ToVisitor::Event(e) if e.seq == last),
        ),
    )
    .await?;
    let mut last = last;

    let errors_before = (bus_errors(&a).await?, bus_errors(&b).await?);
    redis.kill().await;
    let killed = std::time::Instant::now();
    for i in 0..DURING {
        let id = format!("v-{i}");
        v.send(&id, &format!("visitor {i} without Redis")).await?;
        let acked = v
            .expect(
                &format!("the ack of {id}"),
                visitor_events(
                    &mut v_seen,
                    |f| matches!(f, ToVisitor::Ack { client_id, .. } if client_id.0 == id),
                ),
            )
            .await?;
        last += 1;
        assert!(
            matches!(acked, ToVisitor::Ack { seq, .. } if seq == last),
            "{acked:?}"
        );
        tokio::time::sleep(PACE).await;
        let id = format!("a-{i}");
        agent
            .send(&conversation, &id, &format!("agent {i} without Redis"))
            .await?;
        let acked = agent
            .expect(
                &format!("the ack of {id}"),
                agent_events(
                    &conversation,
                    &mut agent_seen,
                    |f| matches!(f, ToAgent::Ack { client_id, .. } if client_id.0 == id),
                ),
            )
            .await?;
        last += 1;
        assert!(
            matches!(acked, ToAgent::Ack { seq, .. } if seq == last),
            "{acked:?}"
        );
        tokio::time::sleep(PACE).await;
    }
    let down_for = killed.elapsed();
    redis.restart().await?;

    // Each side gets everything up to the last message, without anything new being sent.
    v.expect(
        "every message written while Redis was down, on A",
        visitor_events(
            &mut v_seen,
            |f| matches!(f, ToVisitor::Event(e) if e.seq == last),
        ),
    )
    .await?;
    agent
        .expect(
            "every message written while Redis was down, on B",
            agent_events(
                &conversation,
                &mut agent_seen,
                |f| matches!(f, ToAgent::Event(e) if e.seq == last),
            ),
        )
        .await?;
    let recovered = killed.elapsed();

    // And live both ways again, through the restarted Redis.
    v.send("v-live", "after Redis came back").await?;
    last += 1;
    agent
        .expect(
            "the visitor's live message on B",
            agent_events(
                &conversation,
                &mut agent_seen,
                |f| matches!(f, ToAgent::Event(e) if e.seq == last),
            ),
        )
        .await?;
    agent
        .send(&conversation, "a-live", "so did the agent")
        .await?;
    last += 1;
    v.expect(
        "the agent's live message on A",
        visitor_events(
            &mut v_seen,
            |f| matches!(f, ToVisitor::Event(e) if e.seq == last),
        ),
    )
    .await?;
    agent
        .expect(
            "the agent's own live message on B",
            agent_events(
                &conversation,
                &mut agent_seen,
                |f| matches!(f, ToAgent::Event(e) if e.seq == last),
            ),
        )
        .await?;
    // Nothing arrives twice late.
    v.expect_none("a duplicate event on A", Duration::from_millis(500), |f| {
        matches!(f, ToVisitor::Event(_))
    })
    .await?;
    agent
        .expect_none("a duplicate event on B", Duration::from_millis(500), |f| {
            matches!(f, ToAgent::Event(_))
        })
        .await?;
    exactly_once("the visitor on A", &v_seen, last)?;
    exactly_once("the agent on B", &agent_seen, last)?;

    // The outage was noticed and counted on both nodes, and neither stopped serving.
    let errors_after = (bus_errors(&a).await?, bus_errors(&b).await?);
    assert!(
        errors_after.0 > errors_before.0 && errors_after.1 > errors_before.1,
        "bus errors before {errors_before:?}, after {errors_after:?}"
    );
    for relay in [&a, &b] {
        let health = reqwest::get(relay.url("/healthz")).await?;
        assert!(health.status().is_success(), "{}", health.status());
    }
    println!(
        "redis stop: down {:.1}s, {} messages while down, all delivered once {:.1}s after the \
         kill, {:.1}s in all",
        down_for.as_secs_f64(),
        2 * DURING,
        recovered.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

/// Reads until the relay closes the agent's socket; fails unless it says the session ended.
async fn expect_session_ended(agent: &mut AgentClient, who: &str) -> anyhow::Result<()> {
    let (closed, _) = agent.sock.expect_close().await?;
    match closed {
        parley_tests::ws::Closed::Frame(Some(frame))
            if u16::from(frame.code) == protocol::CLOSE_SESSION_ENDED => {}
        other => bail!(
            "{who}: expected close {}, got {other:?}",
            protocol::CLOSE_SESSION_ENDED
        ),
    }
    Ok(())
}

#[tokio::test]
async fn revoked_access_closes_sockets_on_every_node() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let prefix = format!("parley-test-{}", relay_server::store::new_id());
    let a = node(db.url(), &prefix).await?;
    let b = node(db.url(), &prefix).await?;
    let (mina, _, mina_pass) = AGENTS[0];
    let (joon, _, joon_pass) = AGENTS[1];
    let http = reqwest::Client::new();

    // Mina has two sessions (two browsers), each with a console open on node B. Logging one
    // out on node A closes that one's socket on node B, and only that one.
    let laptop = parley_tests::ws::login_cookie(&a, mina, mina_pass).await?;
    let phone = parley_tests::ws::login_cookie(&a, mina, mina_pass).await?;
    let mut on_laptop = AgentClient::with_cookie(&b, &laptop).await?;
    let mut on_phone = AgentClient::with_cookie(&b, &phone).await?;
    let out = http
        .post(a.url("/api/logout"))
        .header("Cookie", laptop.as_str())
        .send()
        .await?;
    assert_eq!(out.status().as_u16(), 200);
    expect_session_ended(&mut on_laptop, "the logged-out session").await?;
    let refused =
        parley_tests::RawSocket::refused(&b.ws_url("/ws/agent"), &[("Cookie", &laptop)]).await?;
    assert_eq!(refused.status, 401, "the ended session cannot reconnect");
    // Positive control: the other session's socket still answers.
    on_phone
        .sock
        .send_json(&protocol::AgentFrame::Hello {
            v: protocol::PROTOCOL_VERSION,
        })
        .await?;
    on_phone
        .expect("welcome on the other session", |f| {
            matches!(f, ToAgent::Welcome { .. })
        })
        .await?;

    // A third node starts with a config that no longer lists Joon and changes Mina's password:
    // Joon's and Mina's sockets on node B close, and neither old credential signs in anywhere.
    let mut joon_on_b = AgentClient::login(&b, joon, joon_pass).await?;
    let database_url = db.url().to_owned();
    let prefix_c = prefix.clone();
    let c = TestRelay::builder()
        .config(move |c| {
            c.database_url = database_url;
            c.bus_url = Some(redis_url());
            c.bus_prefix = prefix_c;
            c.agents.retain(|a| a.username == "mina");
            c.agents[0].password = "a brand new passphrase".into();
        })
        .start()
        .await?;
    expect_session_ended(&mut joon_on_b, "the removed agent").await?;
    expect_session_ended(&mut on_phone, "the agent whose password changed").await?;
    for relay in [&a, &b, &c] {
        let r = http
            .post(relay.url("/api/login"))
            .json(&serde_json::json!({"username": joon, "password": joon_pass}))
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 401, "a removed agent signs in nowhere");
        let r = http
            .post(relay.url("/api/login"))
            .json(&serde_json::json!({"username": mina, "password": mina_pass}))
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 401, "the old password is gone");
    }
    parley_tests::ws::login_cookie(&b, mina, "a brand new passphrase")
        .await
        .context("the new password works on another node")?;
    c.shutdown().await;
    b.shutdown().await;
    a.shutdown().await;
    db.drop_now().await;
    Ok(())
}

#[tokio::test]
async fn an_admins_change_to_an_agent_reaches_every_node() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let prefix = format!("parley-test-{}", relay_server::store::new_id());
    let a = node(db.url(), &prefix).await?;
    let b = node(db.url(), &prefix).await?;
    let (mina, _, mina_pass) = AGENTS[0];
    let (joon, _, joon_pass) = AGENTS[1];
    let http = reqwest::Client::new();
    let cookie = parley_tests::ws::login_cookie(&a, mina, mina_pass).await?;
    let agents: serde_json::Value = http
        .get(a.url("/api/admin/agents"))
        .header("Cookie", cookie.as_str())
        .send()
        .await?
        .json()
        .await?;
    let joon_id = agents["agents"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["username"] == joon))
        .and_then(|x| x["id"].as_str())
        .context("joon listed")?
        .to_owned();
    let patch = |body: serde_json::Value| {
        http.patch(a.url(&format!("/api/admin/agents/{joon_id}")))
            .header("Cookie", cookie.as_str())
            .json(&body)
            .send()
    };

    // Disabled on node A: Joon's console on node B closes, and he signs in nowhere.
    let mut joon_on_b = AgentClient::login(&b, joon, joon_pass).await?;
    assert_eq!(
        patch(serde_json::json!({"disabled": true}))
            .await?
            .status()
            .as_u16(),
        200
    );
    expect_session_ended(&mut joon_on_b, "the disabled agent on the other node").await?;
    let r = http
        .post(b.url("/api/login"))
        .json(&serde_json::json!({"username": joon, "password": joon_pass}))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        patch(serde_json::json!({"disabled": false}))
            .await?
            .status()
            .as_u16(),
        200
    );
    let mut joon_on_b = AgentClient::login(&b, joon, joon_pass).await?;
    // A console-managed agent's sites changed on node A: their console on node B is told to
    // reconnect (a config agent's sites are the file's, so Mina makes one).
    let sora: serde_json::Value = http
        .post(a.url("/api/admin/agents"))
        .header("Cookie", cookie.as_str())
        .json(&serde_json::json!({
            "username": "sora", "display_name": "Sora", "password": "sora's first pass"
        }))
        .send()
        .await?
        .json()
        .await?;
    let sora_id = sora["id"].as_str().context("created")?.to_owned();
    let mut sora_on_b = AgentClient::login(&b, "sora", "sora's first pass").await?;
    let r = http
        .patch(a.url(&format!("/api/admin/agents/{sora_id}")))
        .header("Cookie", cookie.as_str())
        .json(&serde_json::json!({"sites": ["demo"]}))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200);
    sora_on_b
        .sock
        .expect_close_code(
            protocol::CLOSE_ACCESS_CHANGED,
            "sites changed on another node",
        )
        .await?;
    // Positive control: Joon's socket on B, untouched by Sora's change, still answers.
    joon_on_b
        .sock
        .send_json(&protocol::AgentFrame::Hello {
            v: protocol::PROTOCOL_VERSION,
        })
        .await?;
    joon_on_b
        .expect("welcome", |f| matches!(f, ToAgent::Welcome { .. }))
        .await?;
    b.shutdown().await;
    a.shutdown().await;
    db.drop_now().await;
    Ok(())
}

#[tokio::test]
async fn the_bus_runs_over_tls_with_a_password_and_refuses_what_it_cannot_trust(
) -> anyhow::Result<()> {
    let secure = parley_tests::bus::SecureRedis::start("bus-pass-7f3a").await?;
    let db = TestDatabase::create().await?;
    let prefix = format!("parley-test-{}", relay_server::store::new_id());
    let start = |url: String, ca: Option<std::path::PathBuf>| {
        let database_url = db.url().to_owned();
        let prefix = prefix.clone();
        TestRelay::builder()
            .config(move |c| {
                c.database_url = database_url;
                c.bus_url = Some(url);
                c.bus_ca_file = ca;
                c.bus_prefix = prefix;
            })
            .start()
    };
    // Refused, each with a reason and never the password: a wrong password, no CA for a
    // self-signed certificate (the system's roots do not trust it), plain text to a TLS port.
    for (url, ca, why) in [
        (
            secure.url_with_password("wrong"),
            Some(secure.ca_file()),
            "a wrong password",
        ),
        (secure.url(), None, "an untrusted certificate"),
        (
            secure.url().replace("rediss://", "redis://"),
            None,
            "plain text to the TLS port",
        ),
    ] {
        let Err(e) = start(url, ca).await else {
            bail!("a relay started with {why}");
        };
        let text = format!("{e:#}");
        assert!(text.contains("Redis bus"), "{why}: {text}");
        assert!(
            !text.contains("bus-pass-7f3a"),
            "{why}: the password leaked: {text}"
        );
    }
    // Trusted and authenticated: a visitor on node A reaches an agent on node B.
    let a = start(secure.url(), Some(secure.ca_file())).await?;
    let b = start(secure.url(), Some(secure.ca_file())).await?;
    let (mina, _, mina_pass) = AGENTS[0];
    let mut agent = AgentClient::login(&b, mina, mina_pass).await?;
    let mut v = VisitorClient::connect(&a, None).await?;
    v.send("tls-1", "over TLS").await?;
    v.expect_ack("tls-1").await?;
    let id = v.conversation_id.clone().context("conversation")?;
    agent
        .expect(
            "the conversation, through the TLS bus",
            |f| matches!(f, ToAgent::Conversation(c) if c.id == id),
        )
        .await?;
    b.shutdown().await;
    a.shutdown().await;
    db.drop_now().await;
    Ok(())
}

//! The people's queue on real relays and sockets: automatic assignment (least busy, then round
//! robin), capacity, the visitor's live position and wait estimate, transfer with an agent-only
//! note, requeue after an agent's grace period, and — on two nodes sharing PostgreSQL and Redis —
//! many concurrent arrivals each assigned exactly once and never past an agent's capacity.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use parley_tests::pg::TestDatabase;
use parley_tests::{AgentClient, TestRelay, VisitorClient, AGENTS, TIMEOUT};
use protocol::{
    AgentFrame, ConversationId, ConversationStatus, ErrorCode, Event, EventBody, Role, ToAgent,
    ToVisitor, VisitorBody, VisitorEvent,
};
use relay_server::config::AgentSeed;

/// A grace period short enough for a test, long enough that a reconnecting client is not hurt.
const SHORT_GRACE: Duration = Duration::from_millis(800);

async fn agent(relay: &TestRelay, i: usize) -> anyhow::Result<AgentClient> {
    let (user, _, pass) = AGENTS[i];
    AgentClient::login(relay, user, pass).await
}

/// A new visitor whose first message puts a conversation in the queue; returns it acked.
async fn waiting_visitor(relay: &TestRelay, text: &str) -> anyhow::Result<VisitorClient> {
    let mut v = VisitorClient::connect(relay, None).await?;
    v.send("m1", text).await?;
    v.expect_ack("m1").await?;
    Ok(v)
}

/// Waits for the `joined` event that assigns the visitor's conversation; returns the agent's name.
async fn joined_by(v: &mut VisitorClient) -> anyhow::Result<String> {
    let e = v
        .expect_event("joined", |e| e.body == VisitorBody::Joined)
        .await?;
    e.author.name.context("joined without a name")
}

/// Waits for a `queue` frame with this position; returns its wait estimate.
async fn position(v: &mut VisitorClient, want: u32) -> anyhow::Result<Option<u64>> {
    match v
        .expect(
            &format!("queue position {want}"),
            |f| matches!(f, ToVisitor::Queue { position, .. } if *position == want),
        )
        .await?
    {
        ToVisitor::Queue { wait_ms, .. } => Ok(wait_ms),
        other => bail!("expected a queue frame, got {other:?}"),
    }
}

fn close(conversation_id: &ConversationId) -> AgentFrame {
    AgentFrame::Close {
        conversation_id: conversation_id.clone(),
    }
}

#[tokio::test]
async fn assigns_the_least_busy_agent_then_round_robin() -> anyhow::Result<()> {
    let relay = TestRelay::builder()
        .auto_assign(3, Duration::from_secs(120))
        .start()
        .await?;
    let mut mina = agent(&relay, 0).await?;
    let _joon = agent(&relay, 1).await?;
    let mut names = Vec::new();
    let mut visitors = Vec::new();
    for i in 0..4 {
        let mut v = waiting_visitor(&relay, &format!("question {i}")).await?;
        names.push(joined_by(&mut v).await?);
        visitors.push(v);
    }
    // Two agents, both idle: one each, then each again, alternating.
    assert_ne!(
        names[0], names[1],
        "the second goes to the idle agent: {names:?}"
    );
    assert_eq!(
        names[2], names[0],
        "equal loads: the least recently assigned: {names:?}"
    );
    assert_eq!(names[3], names[1], "{names:?}");

    // Mina frees a place: she is now the least busy, whatever the rotation says.
    let mina_first = names
        .iter()
        .position(|n| n == "Mina")
        .context("Mina got one")?;
    let hers = visitors[mina_first]
        .conversation_id
        .clone()
        .context("conversation")?;
    mina.sock.send_json(&close(&hers)).await?;
    let mut fifth = waiting_visitor(&relay, "question 4").await?;
    assert_eq!(joined_by(&mut fifth).await?, "Mina");

    // The consoles see the loads.
    let loads = match mina
        .expect("queue loads 2/3 and 2/3", |f| {
            matches!(f, ToAgent::Queue { agents, .. }
                if agents.len() == 2 && agents.iter().all(|a| a.chats == 2 && a.max == 3))
        })
        .await?
    {
        ToAgent::Queue { waiting, agents } => (waiting, agents),
        other => bail!("{other:?}"),
    };
    assert_eq!(loads.0, 0, "nobody waits");
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn capacity_is_respected_and_the_queue_waits() -> anyhow::Result<()> {
    let relay = TestRelay::builder()
        .auto_assign(1, Duration::from_secs(120))
        .start()
        .await?;
    let mut mina = agent(&relay, 0).await?;
    let mut first = waiting_visitor(&relay, "first").await?;
    assert_eq!(joined_by(&mut first).await?, "Mina");
    let mut second = waiting_visitor(&relay, "second").await?;
    position(&mut second, 1).await?;
    second
        .expect_none(
            "an assignment past capacity",
            Duration::from_millis(1500),
            |f| matches!(f, ToVisitor::Event(e) if e.body == VisitorBody::Joined),
        )
        .await?;
    // Closing frees the place: the waiting one is assigned and told it no longer waits.
    let id = first
        .conversation_id
        .clone()
        .context("first conversation")?;
    mina.sock.send_json(&close(&id)).await?;
    assert_eq!(joined_by(&mut second).await?, "Mina");
    position(&mut second, 0).await?;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn waiting_visitors_see_their_position_and_wait_live() -> anyhow::Result<()> {
    // Agents pick by hand here (the test relay's default), so the queue only moves on takes.
    let relay = TestRelay::builder().start().await?;
    let mut mina = agent(&relay, 0).await?;
    // No history yet: a position without an estimate.
    let mut early = waiting_visitor(&relay, "early").await?;
    assert_eq!(
        position(&mut early, 1).await?,
        None,
        "no waits yet, no estimate"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    mina.take(early.conversation_id.as_ref().context("early")?)
        .await?;
    position(&mut early, 0).await?;

    let mut one = waiting_visitor(&relay, "one").await?;
    let wait = position(&mut one, 1)
        .await?
        .context("an estimate after one wait")?;
    assert!(
        wait >= 50,
        "the recorded wait was at least 50 ms, estimate {wait}"
    );
    let mut two = waiting_visitor(&relay, "two").await?;
    assert!(position(&mut two, 2).await?.is_some());
    // A second tab of the second visitor hears the same position when it connects.
    let mut tab = VisitorClient::connect(&relay, Some(&two.token)).await?;
    position(&mut tab, 2).await?;

    mina.take(one.conversation_id.as_ref().context("one")?)
        .await?;
    position(&mut one, 0).await?;
    position(&mut two, 1).await?;
    position(&mut tab, 1).await?;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn transfer_with_a_note_the_visitor_never_receives() -> anyhow::Result<()> {
    let relay = TestRelay::builder().start().await?;
    let mut mina = agent(&relay, 0).await?;
    let mut joon = agent(&relay, 1).await?;
    let mut v = waiting_visitor(&relay, "I want a refund").await?;
    let id = v.conversation_id.clone().context("conversation")?;
    mina.take(&id).await?;
    joon.open(&id, None).await?;
    const NOTE: &str = "VIP customer, order 1234";

    // Not the assignee: refused.
    joon.sock
        .send_json(&AgentFrame::Transfer {
            conversation_id: id.clone(),
            to_agent: mina.agent.id.clone(),
            note: None,
        })
        .await?;
    joon.expect(
        "forbidden",
        |f| matches!(f, ToAgent::Error(e) if e.code == ErrorCode::Forbidden),
    )
    .await?;
    // An unknown agent: refused.
    mina.sock
        .send_json(&AgentFrame::Transfer {
            conversation_id: id.clone(),
            to_agent: "nobody".into(),
            note: None,
        })
        .await?;
    mina.expect(
        "invalid",
        |f| matches!(f, ToAgent::Error(e) if e.code == ErrorCode::Invalid),
    )
    .await?;

    mina.sock
        .send_json(&AgentFrame::Transfer {
            conversation_id: id.clone(),
            to_agent: joon.agent.id.clone(),
            note: Some(NOTE.into()),
        })
        .await?;
    // Joon, an agent, reads the note.
    let e = joon
        .expect_event("transferred with the note", |e| {
            matches!(&e.body, EventBody::Transferred { .. })
        })
        .await?;
    match &e.body {
        EventBody::Transferred { to, note } => {
            assert_eq!(to.name.as_deref(), Some("Joon"));
            assert_eq!(note.as_deref(), Some(NOTE));
        }
        other => bail!("{other:?}"),
    }
    joon.expect("summary assigned to Joon", |f| {
        matches!(f, ToAgent::Conversation(c) if c.id == id
            && c.status == ConversationStatus::Assigned
            && c.assignee.as_ref().is_some_and(|a| a.username == "joon"))
    })
    .await?;
    // The visitor's raw frames never carry it, live or replayed.
    let live = transferred_text(&mut v.sock).await?;
    assert!(!live.contains(NOTE) && !live.contains("\"note\""), "{live}");
    let mut replay = VisitorClient::connect(&relay, Some(&v.token)).await?;
    let replayed = transferred_text(&mut replay.sock).await?;
    assert!(!replayed.contains(NOTE), "{replayed}");
    // Joon has it now: his reply goes through, Mina's is refused.
    joon.send(&id, "j1", "Hi, Joon here").await?;
    joon.expect_ack("j1").await?;
    mina.send(&id, "m1", "still me?").await?;
    let refused = mina
        .expect(
            "refusal of m1",
            |f| matches!(f, ToAgent::Error(e) if e.client_id.as_ref().is_some_and(|c| c.0 == "m1")),
        )
        .await?;
    assert!(matches!(refused, ToAgent::Error(e) if e.code == ErrorCode::Forbidden));
    relay.shutdown().await;
    Ok(())
}

/// Reads raw visitor frames until the `transferred` event; returns its text.
async fn transferred_text(sock: &mut parley_tests::RawSocket) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let text = sock.next_text_within(left).await?;
        if text.contains("\"transferred\"") {
            let frame: ToVisitor = serde_json::from_str(&text)?;
            match frame {
                ToVisitor::Event(VisitorEvent {
                    body: VisitorBody::Transferred { to },
                    ..
                }) if to.name.as_deref() == Some("Joon") && !text.contains("note") => {
                    return Ok(text)
                }
                other => bail!("unexpected transferred frame {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn a_gone_agents_conversations_are_requeued_after_the_grace_period() -> anyhow::Result<()> {
    let relay = TestRelay::builder()
        .auto_assign(3, SHORT_GRACE)
        .start()
        .await?;
    let mina = agent(&relay, 0).await?;
    let mut v = waiting_visitor(&relay, "hello?").await?;
    assert_eq!(joined_by(&mut v).await?, "Mina");
    drop(mina);
    let requeued = v
        .expect_event("requeued", |e| {
            matches!(e.body, VisitorBody::Requeued { .. })
        })
        .await?;
    assert_eq!(requeued.author.role, Role::System);
    assert!(
        matches!(&requeued.body, VisitorBody::Requeued { from } if from.name.as_deref() == Some("Mina"))
    );
    position(&mut v, 1).await?;
    // The next agent online gets it: back in the queue, never dropped.
    let _joon = agent(&relay, 1).await?;
    assert_eq!(joined_by(&mut v).await?, "Joon");
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_agent_back_within_the_grace_period_keeps_their_conversations() -> anyhow::Result<()> {
    let relay = TestRelay::builder()
        .auto_assign(3, Duration::from_secs(3))
        .start()
        .await?;
    let mina = agent(&relay, 0).await?;
    let mut v = waiting_visitor(&relay, "hello?").await?;
    assert_eq!(joined_by(&mut v).await?, "Mina");
    drop(mina);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _mina = agent(&relay, 0).await?;
    v.expect_none(
        "a requeue",
        Duration::from_secs(4),
        |f| matches!(f, ToVisitor::Event(e) if matches!(e.body, VisitorBody::Requeued { .. })),
    )
    .await?;
    relay.shutdown().await;
    Ok(())
}

// ---- Two nodes: PostgreSQL + Redis ----

fn redis_url() -> String {
    std::env::var("PARLEY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// Extra agents for the two-node test, besides [`AGENTS`].
const MORE: [(&str, &str, &str); 2] = [
    ("sora", "Sora", "sora-password-3"),
    ("hana", "Hana", "hana-password-4"),
];

async fn node(database_url: &str, prefix: &str, max: u32) -> anyhow::Result<TestRelay> {
    let database_url = database_url.to_owned();
    let prefix = prefix.to_owned();
    TestRelay::builder()
        .auto_assign(max, Duration::from_secs(120))
        .config(move |c| {
            c.database_url = database_url;
            c.bus_url = Some(redis_url());
            c.bus_prefix = prefix;
            for (username, display_name, password) in MORE {
                c.agents.push(AgentSeed {
                    username: username.into(),
                    display_name: display_name.into(),
                    password: password.into(),
                    max_chats: None,
                    admin: false,
                    sites: None,
                });
            }
        })
        .start()
        .await
        .map_err(|e| anyhow!("starting a relay on PostgreSQL + Redis failed: {e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_assign_every_conversation_exactly_once() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let prefix = format!("parley-test-{}", relay_server::store::new_id());
    two_nodes(db.url(), &prefix).await
}

/// How many visitors arrive at once, half on each node.
const ARRIVALS: usize = 30;
/// Most conversations per agent.
const MAX: u32 = 2;

async fn two_nodes(database_url: &str, prefix: &str) -> anyhow::Result<()> {
    let a = node(database_url, prefix, MAX).await?;
    let b = node(database_url, prefix, MAX).await?;
    // Two agents on each node; each closes what it is given after a moment, so the queue drains
    // through every node's assignments.
    let all = [AGENTS[0], AGENTS[1], MORE[0], MORE[1]];
    let mut workers = Vec::new();
    for (i, (user, _, pass)) in all.into_iter().enumerate() {
        let relay = if i % 2 == 0 { &a } else { &b };
        let client = AgentClient::login(relay, user, pass).await?;
        workers.push(tokio::spawn(close_what_you_get(client)));
    }
    // Every node must see all four agents before the arrivals, or one node would assign only
    // among its own.
    for relay in [&a, &b] {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while site_agents_online(relay).await? < 4 {
            if tokio::time::Instant::now() > deadline {
                bail!("a node never saw the four agents online");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut arrivals = Vec::new();
    for i in 0..ARRIVALS {
        let relay = if i % 2 == 0 { &a } else { &b };
        let mut v = VisitorClient::connect(relay, None).await?;
        arrivals.push(tokio::spawn(async move {
            v.send("m1", &format!("visitor {i}")).await?;
            v.expect_ack("m1").await?;
            let who = joined_by(&mut v).await?;
            anyhow::Ok((v.conversation_id.context("conversation")?, who))
        }));
    }
    let mut conversations = Vec::new();
    for t in arrivals {
        conversations.push(t.await??);
    }
    for w in &workers {
        w.abort();
    }
    // The store is the judge: exactly one `joined` per conversation, and at no moment more
    // than MAX open conversations per agent (closes sort before joins at the same millisecond,
    // as the assignment that followed a close committed after it).
    let store = relay_server::store::connect(database_url).await?;
    let mut timeline: Vec<(i64, i32, String)> = Vec::new();
    for (id, who) in &conversations {
        let events = store.events_after(id, 0, 100).await?;
        let joins: Vec<&Event> = events
            .iter()
            .filter(|e| e.body == EventBody::Joined)
            .collect();
        assert_eq!(joins.len(), 1, "{} assigned {} times", id.0, joins.len());
        let agent = joins[0].author.name.clone().unwrap_or_default();
        assert_eq!(&agent, who);
        timeline.push((joins[0].at, 1, agent.clone()));
        if let Some(closed) = events.iter().find(|e| e.body == EventBody::Closed) {
            timeline.push((closed.at, -1, agent));
        }
    }
    timeline.sort();
    let mut load: HashMap<String, i32> = HashMap::new();
    for (at, delta, agent) in &timeline {
        let n = load.entry(agent.clone()).or_default();
        *n += delta;
        assert!(*n <= MAX as i32, "{agent} had {n} conversations at {at}");
    }
    let served: std::collections::HashSet<&String> = conversations.iter().map(|(_, w)| w).collect();
    assert!(served.len() >= 2, "work was shared: {served:?}");
    store.close().await;
    a.shutdown().await;
    b.shutdown().await;
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

/// An agent that closes every conversation assigned to it, 100 ms after it arrives.
async fn close_what_you_get(mut agent: AgentClient) -> anyhow::Result<()> {
    let me = agent.agent.id.clone();
    loop {
        let Some(message) = agent.sock.try_next(Duration::from_secs(1)).await? else {
            continue;
        };
        let tokio_tungstenite::tungstenite::Message::Text(text) = message else {
            continue;
        };
        if let ToAgent::Conversation(c) = serde_json::from_str::<ToAgent>(&text)? {
            if c.status == ConversationStatus::Assigned
                && c.assignee.as_ref().is_some_and(|a| a.id == me)
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
                agent.sock.send_json(&close(&c.id)).await?;
            }
        }
    }
}

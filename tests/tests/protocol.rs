//! The wire protocol over real sockets against a real relay and SQLite: hello/welcome, acks and
//! events, idempotent sends, gap-free replay, agents taking and answering, several tabs of one
//! visitor, typing both ways.

use std::time::Duration;

use anyhow::{bail, Context as _};
use parley_tests::{start_server, AgentClient, VisitorClient, AGENTS};
use protocol::{
    ConversationStatus, ErrorCode, Event, Role, ToAgent, ToVisitor, VisitorBody, VisitorEvent,
};

/// How long to listen for something that must NOT arrive.
const QUIET: Duration = Duration::from_millis(800);

fn is_message(e: &Event, text: &str) -> bool {
    e.message_text() == Some(text)
}

fn is_visitor_message(e: &VisitorEvent, text: &str) -> bool {
    e.message_text() == Some(text)
}

#[tokio::test]
async fn hello_send_ack_then_event() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    assert!(!v.token.is_empty(), "welcome must carry a token");
    assert!(!v.visitor_id.is_empty(), "welcome must carry a visitor_id");
    assert_eq!(
        v.conversation_id, None,
        "no conversation exists before the first send"
    );
    assert_eq!(v.welcome_last_seq, 0, "a new visitor has no events");

    v.send("c1", "Do you ship to Busan?").await?;
    // The ack must come first (persist, then acknowledge, then relay).
    let first = v
        .expect("ack or event for c1", |f| {
            matches!(f, ToVisitor::Ack { .. } | ToVisitor::Event(_))
        })
        .await?;
    let conversation = match first {
        ToVisitor::Ack {
            client_id,
            conversation_id,
            seq,
        } => {
            assert_eq!(client_id.0, "c1");
            assert_eq!(seq, 1, "the first event of a conversation has seq 1");
            conversation_id
        }
        other => bail!("expected the ack before the event, got {other:?}"),
    };
    let event = v.expect_event("the message event", |_| true).await?;
    assert_eq!(event.conversation_id, conversation);
    assert_eq!(event.seq, 1);
    assert_eq!(event.author.role, Role::Visitor);
    assert_eq!(
        event.body,
        VisitorBody::message("Do you ship to Busan?", Some("c1".into()))
    );
    assert!(
        event.at > 1_600_000_000_000,
        "`at` is Unix ms: {}",
        event.at
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn repeated_client_id_is_stored_once() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    v.send("dup-1", "once").await?;
    assert_eq!(v.expect_ack("dup-1").await?, 1);
    v.expect_event("the first event", |e| is_visitor_message(e, "once"))
        .await?;

    v.send("dup-1", "once").await?;
    assert_eq!(
        v.expect_ack("dup-1").await?,
        1,
        "a repeated client_id must be acked with the original seq"
    );
    v.expect_none("second event for a repeated send", QUIET, |f| {
        matches!(f, ToVisitor::Event(_))
    })
    .await?;

    v.send("dup-2", "twice").await?;
    assert_eq!(
        v.expect_ack("dup-2").await?,
        2,
        "the repeat must not have consumed a seq"
    );

    // Reconnecting and resending (what the widget does with unacked sends) is still idempotent.
    let token = v.token.clone();
    let conversation = v.conversation_id.clone().context("conversation")?;
    drop(v);
    let mut v2 =
        VisitorClient::connect_with(&relay, Some(&token), Some((&conversation, 2))).await?;
    v2.send("dup-2", "twice").await?;
    assert_eq!(v2.expect_ack("dup-2").await?, 2);
    v2.expect_none("an event after resending dup-2", QUIET, |f| {
        matches!(f, ToVisitor::Event(_))
    })
    .await?;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn reconnect_replays_exactly_the_gap() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    for i in 1..=5u64 {
        v.send(&format!("m{i}"), &format!("message {i}")).await?;
        assert_eq!(v.expect_ack(&format!("m{i}")).await?, i);
    }
    let conversation = v
        .conversation_id
        .clone()
        .context("conversation after acks")?;
    let (token, visitor_id) = (v.token.clone(), v.visitor_id.clone());
    drop(v);

    let mut again =
        VisitorClient::connect_with(&relay, Some(&token), Some((&conversation, 2))).await?;
    assert_eq!(again.visitor_id, visitor_id, "same token, same visitor");
    assert_eq!(again.conversation_id.as_ref(), Some(&conversation));
    assert_eq!(again.welcome_last_seq, 5);
    assert!(
        again.recovered,
        "seq 2 of the current conversation is replayable"
    );
    for seq in 3..=5u64 {
        let e = again
            .expect_event(&format!("replayed event {seq}"), |_| true)
            .await?;
        assert_eq!(e.seq, seq, "replay must be in order without gaps");
        assert_eq!(e.message_text(), Some(format!("message {seq}").as_str()));
    }
    again
        .expect_none("events beyond the gap", QUIET, |f| {
            matches!(f, ToVisitor::Event(_))
        })
        .await?;

    let mut up_to_date =
        VisitorClient::connect_with(&relay, Some(&token), Some((&conversation, 5))).await?;
    up_to_date
        .expect_none("replay for a client that holds everything", QUIET, |f| {
            matches!(f, ToVisitor::Event(_))
        })
        .await?;

    // A client holding events of another conversation cannot be patched up: recovered=false,
    // and the whole current conversation follows.
    let stale = protocol::ConversationId("not-the-current-one".into());
    let mut stale_tab =
        VisitorClient::connect_with(&relay, Some(&token), Some((&stale, 3))).await?;
    assert!(
        !stale_tab.recovered,
        "a foreign conversation_id in hello must give recovered=false"
    );
    for seq in 1..=5u64 {
        let e = stale_tab
            .expect_event(&format!("full replay event {seq}"), |_| true)
            .await?;
        assert_eq!(e.seq, seq, "after recovered=false every event is replayed");
    }

    let mut fresh_tab = VisitorClient::connect_with(&relay, Some(&token), None).await?;
    for seq in 1..=5u64 {
        let e = fresh_tab
            .expect_event(&format!("replayed event {seq}"), |_| true)
            .await?;
        assert_eq!(e.seq, seq);
    }
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn agent_sees_takes_and_replies() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let (user, name, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    assert_eq!(agent.agent.username, user);
    assert_eq!(agent.agent.display_name, name);
    assert!(
        agent.agents_online.iter().any(|a| a.username == user),
        "welcome.agents_online must include me: {:?}",
        agent.agents_online
    );

    let mut v = VisitorClient::connect(&relay, None).await?;
    assert!(
        v.agents_online >= 1,
        "an agent is connected, welcome said {}",
        v.agents_online
    );
    v.send("v1", "Do you ship to Busan?").await?;
    assert_eq!(v.expect_ack("v1").await?, 1);
    let conversation = v.conversation_id.clone().context("conversation id")?;

    let summary = agent
        .expect(
            "a conversation frame for the new conversation",
            |f| matches!(f, ToAgent::Conversation(c) if c.id == conversation),
        )
        .await?;
    if let ToAgent::Conversation(c) = summary {
        assert_eq!(c.status, ConversationStatus::Open);
        assert_eq!(c.site, "demo");
        assert_eq!(c.visitor_id, v.visitor_id);
        assert!(c.last_seq >= 1);
    }

    // An agent who logs in later gets it in the welcome list.
    let (user2, _, pass2) = AGENTS[1];
    let mut other = AgentClient::login(&relay, user2, pass2).await?;
    assert!(
        other
            .conversations
            .iter()
            .any(|c| c.id == conversation && c.preview.as_deref() == Some("Do you ship to Busan?")),
        "welcome.conversations must list the open conversation with its preview: {:?}",
        other.conversations
    );

    let history = agent.open(&conversation, Some(0)).await?;
    assert_eq!(history.len(), 1, "history: {history:?}");
    assert!(is_message(&history[0], "Do you ship to Busan?"));
    assert_eq!(history[0].seq, 1);

    agent.take(&conversation).await?;
    let joined = v
        .expect_event("the joined event", |e| e.body == VisitorBody::Joined)
        .await?;
    assert_eq!(joined.seq, 2, "seq strictly +1");
    assert_eq!(joined.author.role, Role::Agent);
    assert_eq!(joined.author.name.as_deref(), Some(name));

    agent
        .expect("the conversation becoming assigned", |f| {
            matches!(f, ToAgent::Conversation(c) if c.id == conversation
                && c.status == ConversationStatus::Assigned
                && c.assignee.as_ref().is_some_and(|a| a.username == user))
        })
        .await?;

    agent.send(&conversation, "a-1", "Yes, in 2 days.").await?;
    assert_eq!(agent.expect_ack("a-1").await?, 3);
    let reply = v
        .expect_event("the agent's reply", |e| {
            is_visitor_message(e, "Yes, in 2 days.")
        })
        .await?;
    assert_eq!(reply.seq, 3, "seq strictly +1");
    assert_eq!(reply.author.role, Role::Agent);
    assert_eq!(reply.author.name.as_deref(), Some(name));

    // Someone else's conversation: refused, not silently dropped.
    other.take(&conversation).await?;
    let refused = other
        .expect("forbidden for taking a taken conversation", |f| {
            matches!(f, ToAgent::Error(_))
        })
        .await?;
    assert!(
        matches!(&refused, ToAgent::Error(e) if e.code == ErrorCode::Forbidden),
        "got {refused:?}"
    );
    other.send(&conversation, "j-1", "me too").await?;
    let refused = other
        .expect("forbidden for j-1", |f| {
            matches!(f, ToAgent::Error(e) if e.client_id.as_ref().is_some_and(|c| c.0 == "j-1"))
                || matches!(f, ToAgent::Ack { .. })
        })
        .await?;
    assert!(
        matches!(&refused, ToAgent::Error(e) if e.code == ErrorCode::Forbidden),
        "a send into another agent's conversation must be refused with forbidden, got {refused:?}"
    );
    v.expect_none(
        "joon's refused message",
        QUIET,
        |f| matches!(f, ToVisitor::Event(e) if is_visitor_message(e, "me too")),
    )
    .await?;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn two_sockets_with_one_token_both_receive() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let mut tab1 = VisitorClient::connect(&relay, None).await?;
    tab1.send("t1", "from tab one").await?;
    tab1.expect_ack("t1").await?;
    let conversation = tab1.conversation_id.clone().context("conversation")?;

    let mut tab2 =
        VisitorClient::connect_with(&relay, Some(&tab1.token), Some((&conversation, 1))).await?;
    assert_eq!(tab2.conversation_id.as_ref(), Some(&conversation));

    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    agent.open(&conversation, None).await?;
    agent.send(&conversation, "a-1", "hello both tabs").await?;
    agent.expect_ack("a-1").await?;
    for (name, tab) in [("tab 1", &mut tab1), ("tab 2", &mut tab2)] {
        tab.expect_event(&format!("the agent message in {name}"), |e| {
            is_visitor_message(e, "hello both tabs")
        })
        .await?;
    }

    // What one tab sends, the other sees live.
    tab2.send("t2", "from tab two").await?;
    tab2.expect_ack("t2").await?;
    tab1.expect_event("tab two's message in tab one", |e| {
        is_visitor_message(e, "from tab two")
    })
    .await?;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn typing_reaches_the_other_side() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    v.send("c1", "hi").await?;
    v.expect_ack("c1").await?;
    let conversation = v.conversation_id.clone().context("conversation")?;
    let (user, name, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    agent.open(&conversation, None).await?;
    agent.take(&conversation).await?;

    agent.typing(&conversation, true).await?;
    let typing = v
        .expect("agent typing", |f| matches!(f, ToVisitor::Typing { .. }))
        .await?;
    match typing {
        ToVisitor::Typing { author, active } => {
            assert!(active);
            assert_eq!(author.role, Role::Agent);
            assert_eq!(author.name.as_deref(), Some(name));
        }
        other => bail!("expected typing, got {other:?}"),
    }

    v.typing(true).await?;
    let typing = agent
        .expect("visitor typing", |f| matches!(f, ToAgent::Typing { .. }))
        .await?;
    match typing {
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

    v.typing(false).await?;
    agent
        .expect("visitor stopped typing", |f| {
            matches!(f, ToAgent::Typing { active: false, .. })
        })
        .await?;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn shutdown_closes_sockets_with_going_away() -> anyhow::Result<()> {
    use parley_tests::ws::Closed;
    let relay = start_server().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    let stopping = tokio::spawn(relay.shutdown());
    let (closed, seen) = v.sock.expect_close().await?;
    match closed {
        Closed::Frame(Some(f)) => assert_eq!(
            u16::from(f.code),
            protocol::CLOSE_GOING_AWAY,
            "shutdown must close with 1001: {f:?}; frames before: {seen:?}"
        ),
        other => bail!("expected close 1001 on shutdown, got {other:?}; frames before: {seen:?}"),
    }
    tokio::time::timeout(parley_tests::TIMEOUT, stopping)
        .await
        .context("shutdown did not finish")??;
    Ok(())
}

/// Close codes found in raw server-to-client WebSocket bytes (server frames are unmasked).
fn close_codes(mut bytes: &[u8]) -> Vec<u16> {
    let mut codes = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let (len, header) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            n if n < 126 => (n as usize, 2),
            _ => break,
        };
        let Some(payload) = bytes.get(header..header + len) else {
            break;
        };
        if opcode == 0x8 && payload.len() >= 2 {
            codes.push(u16::from_be_bytes([payload[0], payload[1]]));
        }
        bytes = &bytes[header + len..];
    }
    codes
}

/// Pings every 300 ms, idle after 1.2 s: the tests of clients that go silent end in seconds.
fn short_idle(l: &mut relay_server::config::Limits) {
    l.ping_interval = Duration::from_millis(300);
    l.idle_timeout = Duration::from_millis(1200);
}

/// The upgrade request of a visitor socket on the demo site, for the tests that drive a socket
/// below [`VisitorClient`] (one that never reads, never answers pings).
fn visitor_upgrade(
    relay: &parley_tests::TestRelay,
) -> anyhow::Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = relay
        .ws_url("/ws/visitor?site=demo")
        .into_client_request()?;
    request
        .headers_mut()
        .insert("Origin", relay.origin().parse()?);
    Ok(request)
}

#[tokio::test]
async fn a_silent_socket_is_closed_with_1008() -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt as _;
    let relay = parley_tests::TestRelay::builder()
        .limits(short_idle)
        .start()
        .await?;

    // A client that completes the upgrade and then never reads nor answers pings. (A
    // tungstenite client would answer pings as soon as it reads, so this one uses raw TCP after
    // the handshake.)
    let mut tcp = tokio::net::TcpStream::connect(relay.addr()).await?;
    let (ws, _) = tokio_tungstenite::client_async(visitor_upgrade(&relay)?, &mut tcp).await?;
    drop(ws);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut bytes = Vec::new();
    tokio::time::timeout(parley_tests::TIMEOUT, tcp.read_to_end(&mut bytes))
        .await
        .context("the relay did not end the silent connection")??;
    let codes = close_codes(&bytes);
    assert!(
        codes.contains(&protocol::CLOSE_POLICY),
        "a silent socket must be closed with 1008; close codes received: {codes:?} ({} bytes)",
        bytes.len()
    );

    // A socket that answers pings (tungstenite does while reading) stays up past the timeout.
    let mut alive = VisitorClient::connect(&relay, None).await?;
    alive
        .expect_none(
            "any frame while idle but answering pings",
            Duration::from_millis(2500),
            |_| true,
        )
        .await?;
    alive.send("still-here", "yes").await?;
    alive.expect_ack("still-here").await?;
    relay.shutdown().await;
    Ok(())
}

/// A client that keeps sending but never reads: once the socket buffers between them are full,
/// the relay's writes of its answers stall. Every write is bounded by the idle timeout, so the
/// relay lets the connection go instead of holding its task (and its memory) forever. The
/// client's own frames keep arriving, so the idle check alone would never end it.
#[tokio::test]
async fn a_client_that_never_reads_is_let_go() -> anyhow::Result<()> {
    use futures::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let relay = parley_tests::TestRelay::builder()
        .limits(|l| {
            short_idle(l);
            l.visitor_per_second = 100_000;
            l.visitor_burst = 100_000;
        })
        .start()
        .await?;
    // A small receive buffer, so the relay's answers fill it (and the relay's send buffer) fast.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let tcp = socket.connect(relay.addr()).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(visitor_upgrade(&relay)?, tcp).await?;

    // Each frame is answered with a typed `malformed` error; this side only ever writes. Once
    // the relay's answers fill the buffers towards us its writes stall and it stops reading, and
    // then our frames must fill the buffers towards it (megabytes on loopback) before the write
    // bound lets go (1.2 s). Frames of half a kilobyte fill them in a few thousand writes, so
    // even a slow machine sees its writes stall first. With 8-byte frames, one slow machine
    // wrote 320,000 without a stall before the relay let go, and failed the check below.
    let junk = format!("not json {}", "x".repeat(500));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut written = 0u32;
    let mut stalled = false;
    let let_go = loop {
        if tokio::time::Instant::now() > deadline {
            break false;
        }
        let frame = ws.send(Message::Text(junk.as_str().into()));
        match tokio::time::timeout(Duration::from_millis(200), frame).await {
            Ok(Ok(())) => written += 1,
            // Reset or broken pipe: the relay closed its end.
            Ok(Err(_)) => break true,
            // The relay stopped reading (it is stuck writing to us): keep at it.
            Err(_) => stalled = true,
        }
    };
    relay.shutdown().await;
    assert!(
        let_go,
        "the relay still held a connection that reads nothing after 20 s \
         ({written} frames written; writes stalled: {stalled})"
    );
    assert!(
        stalled && written > 100,
        "the buffers filled before the relay let go ({written} frames written; stalled: {stalled})"
    );
    Ok(())
}

#[tokio::test]
async fn a_send_after_the_agent_closed_starts_a_new_conversation() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    v.send("first", "hello").await?;
    v.expect_ack("first").await?;
    let old = v
        .conversation_id
        .clone()
        .context("conversation after first send")?;

    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    agent.open(&old, None).await?;
    agent.take(&old).await?;
    agent
        .sock
        .send_json(&protocol::AgentFrame::Close {
            conversation_id: old.clone(),
        })
        .await?;
    v.expect_event("closed event", |e| e.body == VisitorBody::Closed)
        .await?;

    // The visitor's session still believes the old conversation is open: the relay must notice
    // it is closed and store the message in a fresh conversation, not refuse it.
    v.send("second", "one more question").await?;
    let ack = v
        .expect(
            "ack for second",
            |f| matches!(f, ToVisitor::Ack { client_id, .. } if client_id.0 == "second"),
        )
        .await?;
    match ack {
        ToVisitor::Ack {
            conversation_id,
            seq,
            ..
        } => {
            assert_ne!(
                conversation_id, old,
                "a closed conversation must not take new messages"
            );
            assert_eq!(seq, 1, "the new conversation starts at seq 1");
        }
        other => bail!("expected an ack, got {other:?}"),
    }
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn close_and_typing_need_the_assignee() -> anyhow::Result<()> {
    // Joon is an admin, Mina is not.
    let relay = parley_tests::TestRelay::builder()
        .admin("joon")
        .start()
        .await?;
    let (mina_user, _, mina_pass) = AGENTS[0];
    let (joon_user, _, joon_pass) = AGENTS[1];
    let mut mina = AgentClient::login(&relay, mina_user, mina_pass).await?;
    let mut joon = AgentClient::login(&relay, joon_user, joon_pass).await?;

    let mut v = VisitorClient::connect(&relay, None).await?;
    v.send("c1", "hi").await?;
    v.expect_ack("c1").await?;
    let minas = v.conversation_id.clone().context("conversation")?;
    mina.open(&minas, None).await?;
    mina.take(&minas).await?;
    v.expect_event("mina joined", |e| e.body == VisitorBody::Joined)
        .await?;

    // Typing into a colleague's chat: refused, and the visitor sees nothing.
    joon.typing(&minas, true).await?;
    joon.expect(
        "typing refused",
        |f| matches!(f, ToAgent::Error(e) if e.code == ErrorCode::Forbidden),
    )
    .await?;
    v.expect_none("someone else's typing", QUIET, |f| {
        matches!(f, ToVisitor::Typing { .. })
    })
    .await?;
    // The assignee's typing still arrives (the positive control).
    mina.typing(&minas, true).await?;
    v.expect("mina typing", |f| matches!(f, ToVisitor::Typing { .. }))
        .await?;

    // A non-admin cannot close a conversation that is not theirs.
    let mut w = VisitorClient::connect(&relay, None).await?;
    w.send("d1", "hello?").await?;
    w.expect_ack("d1").await?;
    let joons = w.conversation_id.clone().context("conversation")?;
    joon.open(&joons, None).await?;
    joon.take(&joons).await?;
    mina.sock
        .send_json(&protocol::AgentFrame::Close {
            conversation_id: joons.clone(),
        })
        .await?;
    mina.expect(
        "close refused",
        |f| matches!(f, ToAgent::Error(e) if e.code == ErrorCode::Forbidden),
    )
    .await?;
    w.expect_none(
        "a close by a colleague",
        QUIET,
        |f| matches!(f, ToVisitor::Event(e) if e.body == VisitorBody::Closed),
    )
    .await?;
    // An admin may close anyone's.
    joon.sock
        .send_json(&protocol::AgentFrame::Close {
            conversation_id: minas.clone(),
        })
        .await?;
    v.expect_event("closed by the admin", |e| e.body == VisitorBody::Closed)
        .await?;
    relay.shutdown().await;
    Ok(())
}

/// Every JSON `null` anywhere in `value`, by path.
fn nulls(value: &serde_json::Value, path: &str, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Null => found.push(path.to_owned()),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                nulls(item, &format!("{path}[{i}]"), found);
            }
        }
        serde_json::Value::Object(fields) => {
            for (name, item) in fields {
                nulls(item, &format!("{path}.{name}"), found);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn optional_fields_are_omitted_never_null() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let mut texts: Vec<String> = Vec::new();
    // A visitor's whole first chat, read raw.
    let mut v = VisitorClient::raw(&relay).await?;
    v.send_text(r#"{"type":"hello","v":1}"#).await?;
    texts.push(v.next_text().await?);
    v.send_text(r#"{"type":"send","client_id":"n1","text":"anything null?"}"#)
        .await?;
    loop {
        let text = v.next_text().await?;
        let acked = text.contains(r#""type":"ack""#);
        texts.push(text);
        if acked {
            break;
        }
    }
    let (user, _, pass) = AGENTS[0];
    let cookie = parley_tests::ws::login_cookie(&relay, user, pass).await?;
    let mut a =
        parley_tests::RawSocket::connect(&relay.ws_url("/ws/agent"), &[("Cookie", &cookie)])
            .await?;
    a.send_text(r#"{"type":"hello","v":1}"#).await?;
    let welcome = a.next_text().await?;
    let conversation = serde_json::from_str::<serde_json::Value>(&welcome)?["conversations"][0]
        ["id"]
        .as_str()
        .context("the conversation in welcome")?
        .to_owned();
    texts.push(welcome);
    for frame in [
        serde_json::json!({"type": "open", "conversation_id": conversation}),
        serde_json::json!({"type": "take", "conversation_id": conversation}),
        serde_json::json!({"type": "send", "conversation_id": conversation, "client_id": "r1", "text": "none"}),
        serde_json::json!({"type": "typing", "conversation_id": conversation, "active": true}),
        serde_json::json!({"type": "close", "conversation_id": conversation}),
    ] {
        a.send_json(&frame).await?;
    }
    // Read both sides until the close has reached each.
    for sock in [&mut a, &mut v] {
        loop {
            let text = sock.next_text().await?;
            let closed = text.contains(r#""kind":"closed""#);
            texts.push(text);
            if closed {
                break;
            }
        }
    }
    // And the JSON the console and widget read over HTTP.
    for path in [
        "/api/sites/demo",
        "/api/me",
        "/api/ratings",
        "/api/gaps",
        "/api/conversations",
    ] {
        let body = reqwest::Client::new()
            .get(relay.url(path))
            .header("Cookie", cookie.as_str())
            .send()
            .await?
            .text()
            .await?;
        texts.push(body);
    }
    let mut found = Vec::new();
    for text in &texts {
        let value: serde_json::Value = serde_json::from_str(text).context("JSON")?;
        let mut here = Vec::new();
        nulls(&value, "", &mut here);
        if !here.is_empty() {
            found.push(format!("{here:?} in {text}"));
        }
    }
    assert!(texts.len() > 10, "read {} frames and bodies", texts.len());
    assert!(
        found.is_empty(),
        "nulls instead of omitted fields:\n{}",
        found.join("\n")
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn http_errors_are_json() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let http = reqwest::Client::new();
    let big = "x".repeat(2 * 1024 * 1024);
    for (request, status, code) in [
        (http.get(relay.url("/api/nothing-here")), 404, "not_found"),
        (http.get(relay.url("/api/login")), 405, "method_not_allowed"),
        (
            http.post(relay.url("/api/login"))
                .header("content-type", "application/json")
                .body(big),
            413,
            "too_large",
        ),
        (
            http.get(relay.url("/api/conversations")),
            401,
            "unauthorized",
        ),
        (
            http.get(relay.url("/ws/visitor?site=demo"))
                .header("Origin", relay.origin()),
            400,
            "bad_request",
        ),
    ] {
        let r = request.send().await?;
        assert_eq!(r.status().as_u16(), status);
        let body: serde_json::Value = r.json().await.context("a JSON body")?;
        assert_eq!(body["error"], code, "{body}");
        assert!(body["message"].is_string(), "{body}");
    }
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn welcome_carries_open_and_recent_closed_and_pages_the_rest() -> anyhow::Result<()> {
    let relay = parley_tests::TestRelay::builder()
        .unthrottled_sockets()
        .start()
        .await?;
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    let closed = parley_tests::ws::closed_conversations(&mut agent, &mut v, 25, "one more").await?;
    let mut open_visitor = VisitorClient::connect(&relay, None).await?;
    open_visitor.send("o1", "still open").await?;
    open_visitor.expect_ack("o1").await?;
    let open = open_visitor.conversation_id.clone().context("open one")?;

    let fresh = AgentClient::login(&relay, user, pass).await?;
    let listed: Vec<_> = fresh.conversations.iter().map(|c| c.id.clone()).collect();
    assert!(listed.contains(&open), "every open conversation is listed");
    let closed_listed: Vec<_> = fresh
        .conversations
        .iter()
        .filter(|c| c.status == ConversationStatus::Closed)
        .map(|c| c.id.clone())
        .collect();
    let newest: Vec<_> = closed.iter().rev().take(20).cloned().collect();
    assert_eq!(
        closed_listed, newest,
        "the 20 most recent closed, newest first"
    );

    // The rest, page by page over HTTP, each once, in order.
    let cookie = parley_tests::ws::login_cookie(&relay, user, pass).await?;
    let mut paged = Vec::new();
    let mut url = relay.url("/api/conversations?limit=10");
    loop {
        let page: serde_json::Value = reqwest::Client::new()
            .get(&url)
            .header("Cookie", cookie.as_str())
            .send()
            .await?
            .json()
            .await?;
        let items = page["conversations"].as_array().context("a page")?;
        for c in items {
            paged.push(protocol::ConversationId(
                c["id"].as_str().context("id")?.to_owned(),
            ));
        }
        if page["more"] != true {
            break;
        }
        let last = items.last().context("a full page")?;
        url = relay.url(&format!(
            "/api/conversations?limit=10&before={}&before_id={}",
            last["updated_at"],
            last["id"].as_str().context("id")?
        ));
    }
    let all: Vec<_> = closed.iter().rev().cloned().collect();
    assert_eq!(paged, all, "every closed conversation once, newest first");
    relay.shutdown().await;
    Ok(())
}

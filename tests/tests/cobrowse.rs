//! Co-browse over real sockets against a real relay: the consent life-cycle as stored events,
//! the stream reaching the assigned agent only, highlights and resync reaching the visitor,
//! refusals (not sharing, not assigned, bad pieces, over budget), and sharing surviving a
//! visitor's reconnect but not a stop, a close, a transfer or another agent's take (the one
//! consent rule, `protocol::consent`).

use std::time::Duration;

use anyhow::bail;
use parley_tests::{start_server, AgentClient, TestRelay, VisitorClient, AGENTS};
use protocol::{
    AgentFrame, CobrowseState, ConversationId, ErrorCode, EventBody, Highlight, HighlightTarget,
    Role, ToAgent, ToVisitor, VisitorBody, VisitorFrame,
};

/// How long to listen for something that must NOT arrive.
const QUIET: Duration = Duration::from_millis(800);

/// A visitor with a conversation taken by the first agent (mina), who has it open.
async fn assigned(
    relay: &TestRelay,
) -> anyhow::Result<(VisitorClient, AgentClient, ConversationId)> {
    let mut v = VisitorClient::connect(relay, None).await?;
    v.send("c1", "Where do I enter my coupon?").await?;
    v.expect_ack("c1").await?;
    let conversation = v.conversation_id.clone().expect("acked");
    let (user, _, pass) = AGENTS[0];
    let mut a = AgentClient::login(relay, user, pass).await?;
    a.open(&conversation, None).await?;
    a.take(&conversation).await?;
    v.expect_event("joined", |e| e.body == VisitorBody::Joined)
        .await?;
    Ok((v, a, conversation))
}

fn is_state(body: &EventBody, want: CobrowseState) -> bool {
    matches!(body, EventBody::Cobrowse { state } if *state == want)
}

/// The same, on the visitor's projection.
fn visitor_state(body: &VisitorBody, want: CobrowseState) -> bool {
    matches!(body, VisitorBody::Cobrowse { state } if *state == want)
}

async fn request_and_allow(
    v: &mut VisitorClient,
    a: &mut AgentClient,
    conversation: &ConversationId,
) -> anyhow::Result<()> {
    a.sock
        .send_json(&AgentFrame::CobrowseRequest {
            conversation_id: conversation.clone(),
        })
        .await?;
    let asked = v
        .expect_event("requested", |e| {
            visitor_state(&e.body, CobrowseState::Requested)
        })
        .await?;
    assert_eq!(asked.author.role, Role::Agent, "the agent asks");
    v.sock
        .send_json(&VisitorFrame::CobrowseAnswer { allow: true })
        .await?;
    let allowed = a
        .expect_event("allowed", |e| is_state(&e.body, CobrowseState::Allowed))
        .await?;
    assert_eq!(allowed.author.role, Role::Visitor, "the visitor allows");
    v.expect_event("allowed (own copy)", |e| {
        visitor_state(&e.body, CobrowseState::Allowed)
    })
    .await?;
    Ok(())
}

fn stream(n: u32, data: &str) -> VisitorFrame {
    VisitorFrame::Cobrowse {
        n,
        data: data.into(),
        index: 0,
        count: 1,
    }
}

fn refused_with(f: &ToVisitor, code: ErrorCode) -> bool {
    matches!(f, ToVisitor::Error(e) if e.code == code)
}

#[tokio::test]
async fn allowed_stream_reaches_the_assigned_agent_only_and_highlights_come_back(
) -> anyhow::Result<()> {
    let relay = start_server().await?;
    let (mut v, mut mina, conversation) = assigned(&relay).await?;
    // A second agent watching the same conversation must not see the visitor's page.
    let (user, _, pass) = AGENTS[1];
    let mut joon = AgentClient::login(&relay, user, pass).await?;
    joon.open(&conversation, None).await?;

    request_and_allow(&mut v, &mut mina, &conversation).await?;

    let snapshot = r#"{"kind":"snapshot","page":7,"url":"http://x/","title":"t","viewport":{"w":800,"h":600},"scroll_x":0,"scroll_y":0,"root":{"id":1,"tag":"html"},"masked":0}"#;
    v.sock.send_json(&stream(1, snapshot)).await?;
    let got = mina
        .expect("the snapshot", |f| matches!(f, ToAgent::Cobrowse { .. }))
        .await?;
    match got {
        ToAgent::Cobrowse {
            conversation_id,
            n,
            data,
            index,
            count,
        } => {
            assert_eq!(conversation_id, conversation);
            assert_eq!((n, index, count), (1, 0, 1));
            assert_eq!(data, snapshot, "the relay forwards the item unchanged");
        }
        other => bail!("expected cobrowse, got {other:?}"),
    }
    joon.expect_none("the stream on another agent's socket", QUIET, |f| {
        matches!(f, ToAgent::Cobrowse { .. })
    })
    .await?;

    // Pieces keep their numbering.
    for index in 0..3 {
        v.sock
            .send_json(&VisitorFrame::Cobrowse {
                n: 2,
                data: format!("piece{index}"),
                index,
                count: 3,
            })
            .await?;
    }
    for index in 0..3 {
        match mina
            .expect("a piece", |f| matches!(f, ToAgent::Cobrowse { .. }))
            .await?
        {
            ToAgent::Cobrowse {
                n,
                data,
                index: i,
                count,
                ..
            } => assert_eq!((n, data, i, count), (2, format!("piece{index}"), index, 3)),
            other => bail!("expected cobrowse, got {other:?}"),
        }
    }

    // Agent → visitor: a highlight and a resync request.
    let highlight = Highlight {
        page: 7,
        target: HighlightTarget::Node(1),
        note: Some("Here".into()),
    };
    mina.sock
        .send_json(&AgentFrame::CobrowseHighlight {
            conversation_id: conversation.clone(),
            highlight: highlight.clone(),
        })
        .await?;
    match v
        .expect("the highlight", |f| {
            matches!(f, ToVisitor::CobrowseHighlight { .. })
        })
        .await?
    {
        ToVisitor::CobrowseHighlight {
            author,
            highlight: h,
        } => {
            assert_eq!(h, highlight);
            assert_eq!(author.name.as_deref(), Some(AGENTS[0].1));
        }
        other => bail!("expected a highlight, got {other:?}"),
    }
    mina.sock
        .send_json(&AgentFrame::CobrowseResync {
            conversation_id: conversation.clone(),
        })
        .await?;
    v.expect("resync", |f| matches!(f, ToVisitor::CobrowseResync))
        .await?;

    // The other agent may neither point nor stop.
    joon.sock
        .send_json(&AgentFrame::CobrowseHighlight {
            conversation_id: conversation.clone(),
            highlight,
        })
        .await?;
    joon.expect(
        "forbidden",
        |f| matches!(f, ToAgent::Error(e) if e.code == ErrorCode::Forbidden),
    )
    .await?;
    v.expect_none("a highlight from a non-assignee", QUIET, |f| {
        matches!(f, ToVisitor::CobrowseHighlight { .. })
    })
    .await?;

    // The agent stops: both sides see it, and the stream is refused at once.
    mina.sock
        .send_json(&AgentFrame::CobrowseStop {
            conversation_id: conversation.clone(),
        })
        .await?;
    v.expect_event("stopped", |e| {
        visitor_state(&e.body, CobrowseState::Stopped)
    })
    .await?;
    v.sock.send_json(&stream(3, "{}")).await?;
    v.expect("forbidden after stop", |f| {
        refused_with(f, ErrorCode::Forbidden)
    })
    .await?;
    mina.expect_none("stream after stop", QUIET, |f| {
        matches!(f, ToAgent::Cobrowse { .. })
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn nothing_streams_without_consent() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let (mut v, mut mina, conversation) = assigned(&relay).await?;

    // Before any request: stream refused, answer refused.
    v.sock.send_json(&stream(1, "{}")).await?;
    v.expect("forbidden before consent", |f| {
        refused_with(f, ErrorCode::Forbidden)
    })
    .await?;
    v.sock
        .send_json(&VisitorFrame::CobrowseAnswer { allow: true })
        .await?;
    v.expect("invalid answer", |f| refused_with(f, ErrorCode::Invalid))
        .await?;

    // An agent who does not have the conversation may not ask.
    let (user, _, pass) = AGENTS[1];
    let mut joon = AgentClient::login(&relay, user, pass).await?;
    joon.sock
        .send_json(&AgentFrame::CobrowseRequest {
            conversation_id: conversation.clone(),
        })
        .await?;
    joon.expect(
        "forbidden request",
        |f| matches!(f, ToAgent::Error(e) if e.code == ErrorCode::Forbidden),
    )
    .await?;

    // Asked, then denied: the agent is told, the stream stays refused.
    mina.sock
        .send_json(&AgentFrame::CobrowseRequest {
            conversation_id: conversation.clone(),
        })
        .await?;
    v.expect_event("requested", |e| {
        visitor_state(&e.body, CobrowseState::Requested)
    })
    .await?;
    // While pending: a second request is refused, and nothing streams yet.
    mina.sock
        .send_json(&AgentFrame::CobrowseRequest {
            conversation_id: conversation.clone(),
        })
        .await?;
    mina.expect(
        "invalid second request",
        |f| matches!(f, ToAgent::Error(e) if e.code == ErrorCode::Invalid),
    )
    .await?;
    v.sock.send_json(&stream(1, "{}")).await?;
    v.expect("forbidden while pending", |f| {
        refused_with(f, ErrorCode::Forbidden)
    })
    .await?;
    v.sock
        .send_json(&VisitorFrame::CobrowseAnswer { allow: false })
        .await?;
    let denied = mina
        .expect_event("denied", |e| is_state(&e.body, CobrowseState::Denied))
        .await?;
    assert_eq!(denied.author.role, Role::Visitor);
    v.sock.send_json(&stream(2, "{}")).await?;
    v.expect("forbidden after deny", |f| {
        refused_with(f, ErrorCode::Forbidden)
    })
    .await?;
    mina.sock
        .send_json(&AgentFrame::CobrowseHighlight {
            conversation_id: conversation.clone(),
            highlight: Highlight {
                page: 1,
                target: HighlightTarget::Clear,
                note: None,
            },
        })
        .await?;
    mina.expect(
        "no highlight without sharing",
        |f| matches!(f, ToAgent::Error(e) if e.code == ErrorCode::Forbidden),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn bad_pieces_and_floods_are_refused_with_typed_errors() -> anyhow::Result<()> {
    let relay = TestRelay::builder()
        .limits(|l| {
            l.cobrowse_bytes_per_second = 1000;
            l.cobrowse_bytes_burst = 4000;
        })
        .start()
        .await?;
    let (mut v, mut mina, conversation) = assigned(&relay).await?;
    request_and_allow(&mut v, &mut mina, &conversation).await?;

    for (index, count) in [(1, 1), (0, 0), (0, 129)] {
        v.sock
            .send_json(&VisitorFrame::Cobrowse {
                n: 1,
                data: "x".into(),
                index,
                count,
            })
            .await?;
        v.expect(&format!("invalid piece {index}/{count}"), |f| {
            refused_with(f, ErrorCode::Invalid)
        })
        .await?;
    }
    v.sock.send_json(&stream(1, "")).await?;
    v.expect("invalid empty data", |f| {
        refused_with(f, ErrorCode::Invalid)
    })
    .await?;

    // 3 KB fits the 4 KB burst; the next 3 KB does not, and says when to retry.
    let big = "x".repeat(3000);
    v.sock.send_json(&stream(2, &big)).await?;
    mina.expect("the first big item", |f| {
        matches!(f, ToAgent::Cobrowse { n: 2, .. })
    })
    .await?;
    v.sock.send_json(&stream(3, &big)).await?;
    match v
        .expect("rate limited", |f| refused_with(f, ErrorCode::RateLimited))
        .await?
    {
        ToVisitor::Error(e) => assert!(
            e.retry_after_ms.is_some_and(|ms| ms > 0),
            "a budget refusal says when to retry: {e:?}"
        ),
        other => bail!("expected an error, got {other:?}"),
    }
    mina.expect_none("the refused item", QUIET, |f| {
        matches!(f, ToAgent::Cobrowse { n: 3, .. })
    })
    .await?;

    // Stream frames do not eat the chat rate limit: a message still goes through.
    v.send("c2", "still here").await?;
    v.expect_ack("c2").await?;
    Ok(())
}

#[tokio::test]
async fn sharing_survives_a_reconnect_but_not_a_close() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let (v, mut mina, conversation) = assigned(&relay).await?;
    let token = v.token.clone();
    let mut v = v;
    request_and_allow(&mut v, &mut mina, &conversation).await?;
    drop(v);

    // A new page load: the same visitor, sharing still on (consent lasts for the conversation).
    let mut v = VisitorClient::connect(&relay, Some(&token)).await?;
    v.sock
        .send_json(&stream(1, "{\"kind\":\"snapshot\"}"))
        .await?;
    mina.expect("the stream after reconnect", |f| {
        matches!(f, ToAgent::Cobrowse { n: 1, .. })
    })
    .await?;

    // The visitor stops from their side.
    v.sock.send_json(&VisitorFrame::CobrowseStop).await?;
    let stopped = mina
        .expect_event("stopped by the visitor", |e| {
            is_state(&e.body, CobrowseState::Stopped)
        })
        .await?;
    assert_eq!(stopped.author.role, Role::Visitor);
    v.sock.send_json(&stream(2, "{}")).await?;
    v.expect("forbidden after own stop", |f| {
        refused_with(f, ErrorCode::Forbidden)
    })
    .await?;

    // Ask again, allow, then close: closing ends sharing.
    request_and_allow(&mut v, &mut mina, &conversation).await?;
    mina.sock
        .send_json(&AgentFrame::Close {
            conversation_id: conversation.clone(),
        })
        .await?;
    v.expect_event("closed", |e| e.body == VisitorBody::Closed)
        .await?;
    v.sock.send_json(&stream(3, "{}")).await?;
    v.expect("forbidden after close", |f| {
        refused_with(f, ErrorCode::Forbidden)
    })
    .await?;
    Ok(())
}

/// Sends the snapshot-like item `n` and waits until `mina` has it: sharing is on.
async fn streams_to(v: &mut VisitorClient, agent: &mut AgentClient, n: u32) -> anyhow::Result<()> {
    v.sock
        .send_json(&stream(n, "{\"kind\":\"snapshot\"}"))
        .await?;
    agent
        .expect(
            "the stream",
            |f| matches!(f, ToAgent::Cobrowse { n: got, .. } if *got == n),
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_transfer_ends_sharing_for_the_old_agent_and_does_not_pass_it_on() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let (mut v, mut mina, conversation) = assigned(&relay).await?;
    let (user, _, pass) = AGENTS[1];
    let mut joon = AgentClient::login(&relay, user, pass).await?;
    joon.open(&conversation, None).await?;
    request_and_allow(&mut v, &mut mina, &conversation).await?;
    // Positive control: the stream reaches Mina while she has the conversation.
    streams_to(&mut v, &mut mina, 1).await?;

    mina.sock
        .send_json(&AgentFrame::Transfer {
            conversation_id: conversation.clone(),
            to_agent: joon.agent.id.clone(),
            note: None,
        })
        .await?;
    mina.expect_event("the transfer, stored", |e| {
        matches!(e.body, EventBody::Transferred { .. })
    })
    .await?;
    // Sent before the visitor's socket has even heard of the transfer: the agent side's
    // delivery check (the assignee, read from the store) still keeps it from Mina.
    v.sock.send_json(&stream(2, "{}")).await?;
    v.expect_event("the transfer", |e| {
        matches!(e.body, VisitorBody::Transferred { .. })
    })
    .await?;
    // Once it has, the visitor's side refuses to forward at all: no `stopped` event needed.
    v.sock.send_json(&stream(3, "{}")).await?;
    v.expect("forbidden after the transfer", |f| {
        refused_with(f, ErrorCode::Forbidden)
    })
    .await?;
    mina.expect_none("the stream after the transfer (old agent)", QUIET, |f| {
        matches!(f, ToAgent::Cobrowse { .. })
    })
    .await?;
    joon.expect_none("the stream after the transfer (new agent)", QUIET, |f| {
        matches!(f, ToAgent::Cobrowse { .. })
    })
    .await?;
    // Mina can no longer point at the page either.
    mina.sock
        .send_json(&AgentFrame::CobrowseResync {
            conversation_id: conversation.clone(),
        })
        .await?;
    mina.expect(
        "resync refused",
        |f| matches!(f, ToAgent::Error(e) if e.code == ErrorCode::Forbidden),
    )
    .await?;

    // Joon must ask, and the visitor answer, before he sees anything.
    request_and_allow(&mut v, &mut joon, &conversation).await?;
    streams_to(&mut v, &mut joon, 4).await?;
    mina.expect_none("the stream shared with Joon", QUIET, |f| {
        matches!(f, ToAgent::Cobrowse { .. })
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_reconnecting_visitor_reads_a_transfer_it_missed() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let (v, mut mina, conversation) = assigned(&relay).await?;
    let token = v.token.clone();
    let mut v = v;
    request_and_allow(&mut v, &mut mina, &conversation).await?;
    streams_to(&mut v, &mut mina, 1).await?;
    drop(v);
    let (user, _, pass) = AGENTS[1];
    let joon = AgentClient::login(&relay, user, pass).await?;
    mina.sock
        .send_json(&AgentFrame::Transfer {
            conversation_id: conversation.clone(),
            to_agent: joon.agent.id.clone(),
            note: Some("wants a refund".into()),
        })
        .await?;
    mina.expect_event("the transfer, stored", |e| {
        matches!(e.body, EventBody::Transferred { .. })
    })
    .await?;
    // The next page load reads consent from the stored events: the transfer ended it.
    let mut v = VisitorClient::connect(&relay, Some(&token)).await?;
    v.sock.send_json(&stream(2, "{}")).await?;
    v.expect("forbidden on the next page", |f| {
        refused_with(f, ErrorCode::Forbidden)
    })
    .await?;
    mina.expect_none("the stream after the transfer", QUIET, |f| {
        matches!(f, ToAgent::Cobrowse { .. })
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_requeue_ends_sharing_even_when_the_same_agent_gets_it_back() -> anyhow::Result<()> {
    let relay = TestRelay::builder()
        .auto_assign(3, Duration::from_millis(300))
        .start()
        .await?;
    let (user, _, pass) = AGENTS[0];
    let mut mina = AgentClient::login(&relay, user, pass).await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    v.send("c1", "can you look at my cart?").await?;
    v.expect_ack("c1").await?;
    let conversation = v.conversation_id.clone().expect("acked");
    v.expect_event("assigned to Mina", |e| e.body == VisitorBody::Joined)
        .await?;
    mina.open(&conversation, None).await?;
    request_and_allow(&mut v, &mut mina, &conversation).await?;
    streams_to(&mut v, &mut mina, 1).await?;

    // Mina's console goes away past the grace period: the conversation is requeued.
    drop(mina);
    v.expect_event("requeued", |e| {
        matches!(e.body, VisitorBody::Requeued { .. })
    })
    .await?;
    v.sock.send_json(&stream(2, "{}")).await?;
    v.expect("forbidden after the requeue", |f| {
        refused_with(f, ErrorCode::Forbidden)
    })
    .await?;
    // She comes back and is assigned it again: consent does not come back with her.
    let mut mina = AgentClient::login(&relay, user, pass).await?;
    v.expect_event("assigned to Mina again", |e| e.body == VisitorBody::Joined)
        .await?;
    mina.open(&conversation, None).await?;
    v.sock.send_json(&stream(3, "{}")).await?;
    v.expect("still forbidden", |f| refused_with(f, ErrorCode::Forbidden))
        .await?;
    mina.expect_none("the stream after the requeue", QUIET, |f| {
        matches!(f, ToAgent::Cobrowse { .. })
    })
    .await?;
    Ok(())
}

//! Internal notes (issue #21), against the real relay on loopback (SQLite): any agent serving
//! the site writes one without taking the conversation, other agents read it,
//! and the visitor never does — not live, not in a replay — read from the visitor's raw frames,
//! with the agent's copy of the same note as the positive control.

use anyhow::Context as _;
use parley_tests::{start_server, AgentClient, VisitorClient, AGENTS};
use protocol::{AgentFrame, ClientId, ConversationStatus, ErrorCode, EventBody, ToAgent};

const CANARY: &str = "NOTECANARY refund approved off the books";

async fn note(
    agent: &mut AgentClient,
    conversation_id: &protocol::ConversationId,
    client_id: &str,
    text: &str,
) -> anyhow::Result<ToAgent> {
    agent
        .sock
        .send_json(&AgentFrame::Note {
            conversation_id: conversation_id.clone(),
            client_id: ClientId(client_id.into()),
            text: text.into(),
        })
        .await?;
    agent
        .expect(&format!("ack or error for {client_id}"), |f| match f {
            ToAgent::Ack { client_id: c, .. } => c.0 == client_id,
            ToAgent::Error(e) => e.client_id.as_ref().is_some_and(|c| c.0 == client_id),
            _ => false,
        })
        .await
}

#[tokio::test]
async fn notes_reach_agents_and_never_the_visitor() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let mut visitor = VisitorClient::connect(&relay, None).await?;
    visitor.send("v1", "My parcel is late").await?;
    visitor.expect_ack("v1").await?;
    let id = visitor.conversation_id.clone().context("a conversation")?;
    let (mina, _, mina_pass) = AGENTS[0];
    let (joon, _, joon_pass) = AGENTS[1];
    let mut writer = AgentClient::login(&relay, mina, mina_pass).await?;
    let mut reader = AgentClient::login(&relay, joon, joon_pass).await?;
    reader.open(&id, None).await?;

    // Mina notes without taking the conversation.
    let seq = match note(&mut writer, &id, "n1", CANARY).await? {
        ToAgent::Ack { seq, .. } => seq,
        other => anyhow::bail!("not stored: {other:?}"),
    };
    // The same client id again is stored once.
    match note(&mut writer, &id, "n1", CANARY).await? {
        ToAgent::Ack { seq: again, .. } => assert_eq!(again, seq),
        other => anyhow::bail!("{other:?}"),
    }
    // Joon, who has the conversation open, reads it (positive control for the visitor's side).
    let seen = reader
        .expect(
            "the note as an event",
            |f| matches!(f, ToAgent::Event(e) if e.seq == seq),
        )
        .await?;
    match seen {
        ToAgent::Event(e) => assert!(
            matches!(&e.body, EventBody::Note { text, .. } if text == CANARY),
            "{e:?}"
        ),
        other => anyhow::bail!("{other:?}"),
    }
    let summary = reader
        .expect(
            "the conversation still waiting for someone",
            |f| matches!(f, ToAgent::Conversation(c) if c.id == id && c.last_seq >= seq),
        )
        .await?;
    if let ToAgent::Conversation(c) = summary {
        assert_eq!(c.status, ConversationStatus::Open, "a note takes nothing");
        assert_eq!(c.assignee, None);
        assert_ne!(c.preview.as_deref(), Some(CANARY), "a note is no preview");
    }

    // The visitor, live: an event of that seq arrives, without a word of the note.
    let live = loop {
        let text = visitor.sock.next_text().await?;
        if text.contains(&format!("\"seq\":{seq}")) {
            break text;
        }
    };
    assert!(live.contains(r#""kind":"internal""#), "{live}");
    assert!(
        !live.contains("NOTECANARY"),
        "the note reached the visitor: {live}"
    );
    // And in a replay from the start.
    let mut replay = VisitorClient::raw(&relay).await?;
    replay
        .send_json(&protocol::VisitorFrame::Hello {
            v: protocol::PROTOCOL_VERSION,
            token: Some(visitor.token.clone()),
            conversation_id: None,
            last_seq: None,
            context: Default::default(),
            identity: None,
        })
        .await?;
    let mut replayed = String::new();
    loop {
        let text = replay.next_text().await?;
        replayed.push_str(&text);
        if text.contains(&format!("\"seq\":{seq}")) {
            break;
        }
    }
    assert!(!replayed.contains("NOTECANARY"), "{replayed}");

    // An empty note is refused with a typed error; so is a note on a closed conversation.
    match note(&mut writer, &id, "n3", "   ").await? {
        ToAgent::Error(e) => assert_eq!(e.code, ErrorCode::Invalid),
        other => anyhow::bail!("an empty note was taken: {other:?}"),
    }
    writer.take(&id).await?;
    writer
        .sock
        .send_json(&AgentFrame::Close {
            conversation_id: id.clone(),
        })
        .await?;
    writer
        .expect("the close", |f| {
            matches!(f, ToAgent::Conversation(c) if c.id == id && c.status == ConversationStatus::Closed)
        })
        .await?;
    match note(&mut writer, &id, "n2", "Followed up by phone").await? {
        ToAgent::Error(e) => assert_eq!(e.code, ErrorCode::Closed),
        other => anyhow::bail!("a closed conversation took a note: {other:?}"),
    }
    relay.shutdown().await;
    Ok(())
}

//! Labels on conversations (issue #21), against the real relay on loopback (SQLite): any agent
//! of the site sets them, every agent gets the summary with them, they are cleaned (trimmed,
//! repeats dropped) and bounded with a typed error, and an agent of another site cannot touch
//! them.

use anyhow::Context as _;
use parley_tests::{AgentClient, TestRelay, VisitorClient, AGENTS};
use protocol::{AgentFrame, ErrorCode, ToAgent};

#[tokio::test]
async fn agents_label_conversations_and_everyone_sees_the_labels() -> anyhow::Result<()> {
    let relay = TestRelay::builder()
        .config(|c| {
            let mut bank = c.sites[0].clone();
            bank.key = "bank".into();
            bank.name = "Bank".into();
            c.sites.push(bank);
            for a in &mut c.agents {
                if a.username == "joon" {
                    a.sites = Some(vec!["bank".into()]);
                }
            }
        })
        .start()
        .await?;
    let mut visitor = VisitorClient::connect(&relay, None).await?;
    visitor.send("v1", "Refund please").await?;
    visitor.expect_ack("v1").await?;
    let id = visitor.conversation_id.clone().context("a conversation")?;
    let (m, _, mp) = AGENTS[0];
    let (j, _, jp) = AGENTS[1];
    let mut mina = AgentClient::login(&relay, m, mp).await?;
    let mut joon = AgentClient::login(&relay, j, jp).await?;
    let label = |labels: &[&str]| AgentFrame::Label {
        conversation_id: id.clone(),
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
    };
    mina.sock
        .send_json(&label(&[" Refund ", "vip", "refund", ""]))
        .await?;
    let summary = mina
        .expect(
            "the summary with its labels",
            |f| matches!(f, ToAgent::Conversation(c) if c.id == id && !c.labels.is_empty()),
        )
        .await?;
    match summary {
        ToAgent::Conversation(c) => assert_eq!(c.labels, vec!["Refund", "vip"]),
        other => anyhow::bail!("{other:?}"),
    }
    // A fresh welcome carries them too (stored, not only broadcast).
    let again = AgentClient::login(&relay, m, mp).await?;
    let listed = again
        .conversations
        .iter()
        .find(|c| c.id == id)
        .context("listed")?;
    assert_eq!(listed.labels, vec!["Refund", "vip"]);
    // Joon serves only the bank: the demo conversation is not his to label.
    joon.sock.send_json(&label(&["mine"])).await?;
    match joon
        .expect("an error", |f| matches!(f, ToAgent::Error(_)))
        .await?
    {
        ToAgent::Error(e) => assert_eq!(e.code, ErrorCode::NotFound),
        other => anyhow::bail!("{other:?}"),
    }
    // Bounds: too many, too long.
    let many: Vec<String> = (0..11).map(|i| format!("l{i}")).collect();
    let long = "x".repeat(33);
    for bad in [
        many.iter().map(String::as_str).collect::<Vec<_>>(),
        vec![long.as_str()],
    ] {
        mina.sock.send_json(&label(&bad)).await?;
        match mina
            .expect("an error", |f| matches!(f, ToAgent::Error(_)))
            .await?
        {
            ToAgent::Error(e) => assert_eq!(e.code, ErrorCode::Invalid),
            other => anyhow::bail!("{other:?}"),
        }
    }
    // An empty list clears them.
    mina.sock.send_json(&label(&[])).await?;
    mina.expect(
        "the summary without labels",
        |f| matches!(f, ToAgent::Conversation(c) if c.id == id && c.labels.is_empty()),
    )
    .await?;
    relay.shutdown().await;
    Ok(())
}

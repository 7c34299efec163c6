//! Agents managed from the console (issue #19): an admin adds, changes, disables and resets
//! agents over `/api/admin/agents`, each change audited; agents limited to some sites (teams)
//! see, take and are given only those sites' conversations; the last admin stays. All against
//! the real relay on loopback (SQLite); `two_nodes.rs` checks the same changes across nodes.

use anyhow::Context as _;
use parley_tests::ws::HttpAgent;
use parley_tests::{AgentClient, TestRelay, VisitorClient, AGENTS};
use protocol::{AgentFrame, ConversationId, ErrorCode, ToAgent};
use serde_json::{json, Value};

/// A relay with a second site, `bank`, beside `demo`; Mina is an admin.
async fn two_sites() -> anyhow::Result<TestRelay> {
    TestRelay::builder()
        .admin("mina")
        .config(|c| {
            let mut bank = c.sites[0].clone();
            bank.key = "bank".into();
            bank.name = "Bank".into();
            c.sites.push(bank);
        })
        .start()
        .await
}

/// An admin's HTTP calls.
struct Admin(HttpAgent);

impl std::ops::Deref for Admin {
    type Target = HttpAgent;
    fn deref(&self) -> &HttpAgent {
        &self.0
    }
}

impl Admin {
    async fn login(relay: &TestRelay, user: &str, pass: &str) -> anyhow::Result<Self> {
        Ok(Self(HttpAgent::login(relay, user, pass).await?))
    }

    async fn create(&self, body: Value) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::POST, "/api/admin/agents", Some(body))
            .await
    }

    async fn patch(&self, id: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.call(
            reqwest::Method::PATCH,
            &format!("/api/admin/agents/{id}"),
            Some(body),
        )
        .await
    }

    async fn agent(&self, username: &str) -> anyhow::Result<Value> {
        let (status, body) = self
            .call(reqwest::Method::GET, "/api/admin/agents", None)
            .await?;
        anyhow::ensure!(status == 200, "list: {status} {body}");
        body["agents"]
            .as_array()
            .and_then(|list| list.iter().find(|a| a["username"] == username).cloned())
            .with_context(|| format!("{username} listed"))
    }
}

async fn login_status(relay: &TestRelay, user: &str, pass: &str) -> anyhow::Result<u16> {
    Ok(reqwest::Client::new()
        .post(relay.url("/api/login"))
        .json(&json!({"username": user, "password": pass}))
        .send()
        .await?
        .status()
        .as_u16())
}

/// A visitor of `site` writes once; returns the conversation.
async fn visitor_writes(
    relay: &TestRelay,
    site: &str,
    text: &str,
) -> anyhow::Result<(VisitorClient, ConversationId)> {
    let mut v = VisitorClient::connect_on(relay, site).await?;
    v.send("q1", text).await?;
    v.expect_ack("q1").await?;
    let id = v.conversation_id.clone().context("a conversation")?;
    Ok((v, id))
}

fn error_code(frame: &ToAgent) -> Option<ErrorCode> {
    match frame {
        ToAgent::Error(e) => Some(e.code),
        _ => None,
    }
}

#[tokio::test]
async fn an_admin_manages_agents_and_every_change_is_checked_and_audited() -> anyhow::Result<()> {
    let relay = two_sites().await?;
    let (mina, _, mina_pass) = AGENTS[0];
    let (joon, _, joon_pass) = AGENTS[1];
    let admin = Admin::login(&relay, mina, mina_pass).await?;

    // Bad input: a clear, typed refusal each time, and nothing created.
    for (body, code) in [
        (
            json!({"username": "joon", "display_name": "J", "password": "long enough pass"}),
            "username_taken",
        ),
        (
            json!({"username": "Sora K", "display_name": "S", "password": "long enough pass"}),
            "invalid",
        ),
        (
            json!({"username": "sora", "display_name": "Sora", "password": "short"}),
            "invalid",
        ),
        (
            json!({"username": "sora", "display_name": "  ", "password": "long enough pass"}),
            "invalid",
        ),
        (
            json!({"username": "sora", "display_name": "Sora", "password": "long enough pass", "sites": ["nowhere"]}),
            "invalid",
        ),
        (
            json!({"username": "sora", "display_name": "Sora", "password": "long enough pass", "sites": []}),
            "invalid",
        ),
        (
            json!({"username": "sora", "display_name": "Sora", "password": "long enough pass", "max_chats": 0}),
            "invalid",
        ),
        (
            json!({"username": "sora", "display_name": "Sora", "password": "long enough pass", "role": "root"}),
            "invalid",
        ),
    ] {
        let (status, answer) = admin.create(body.clone()).await?;
        assert_eq!(answer["error"], code, "{body}: {status} {answer}");
        assert!(status == 400 || status == 409, "{body}: {status}");
    }
    // Not an admin: 403, whatever the call.
    let colleague = Admin::login(&relay, joon, joon_pass).await?;
    let (status, _) = colleague
        .create(json!({"username": "sora", "display_name": "Sora", "password": "long enough pass"}))
        .await?;
    assert_eq!(status, 403);

    // Created: Sora serves the bank only, signs in, and is in the audit log.
    let (status, sora) = admin
        .create(json!({
            "username": "sora", "display_name": "Sora", "password": "sora's first pass",
            "sites": ["bank"], "max_chats": 2
        }))
        .await?;
    assert_eq!(status, 201, "{sora}");
    assert_eq!(sora["managed_by"], "console");
    assert_eq!(sora["sites"], json!(["bank"]));
    let sora_id = sora["id"].as_str().context("id")?.to_owned();
    assert_eq!(
        login_status(&relay, "sora", "sora's first pass").await?,
        200
    );

    // An agent from the config file: the console may only disable and enable them.
    let joon_row = admin.agent(joon).await?;
    assert_eq!(joon_row["managed_by"], "config");
    let joon_id = joon_row["id"].as_str().context("id")?.to_owned();
    let (status, answer) = admin.patch(&joon_id, json!({"sites": ["bank"]})).await?;
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("managed_by_config"))
    );
    let (status, answer) = admin
        .call(
            reqwest::Method::POST,
            &format!("/api/admin/agents/{joon_id}/password"),
            Some(json!({"password": "a new password here"})),
        )
        .await?;
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("managed_by_config"))
    );
    // Disabling Joon ends his sessions and closes his socket; enabling lets him in again.
    let mut joon_socket = AgentClient::login(&relay, joon, joon_pass).await?;
    let (status, answer) = admin.patch(&joon_id, json!({"disabled": true})).await?;
    assert_eq!(status, 200, "{answer}");
    joon_socket
        .sock
        .expect_close_code(
            protocol::CLOSE_SESSION_ENDED,
            "the disabled agent's console",
        )
        .await?;
    assert_eq!(login_status(&relay, joon, joon_pass).await?, 401);
    let (status, _) = admin.patch(&joon_id, json!({"disabled": false})).await?;
    assert_eq!(status, 200);
    assert_eq!(login_status(&relay, joon, joon_pass).await?, 200);

    // Nobody disables themselves; the last enabled admin stays. Mina (from the config file)
    // makes Sora an admin; Sora disables Mina, and then cannot step down herself.
    let mina_id = admin.agent(mina).await?["id"]
        .as_str()
        .context("id")?
        .to_owned();
    let (status, _) = admin.patch(&mina_id, json!({"disabled": true})).await?;
    assert_eq!(status, 400, "nobody disables themselves");
    let (status, _) = admin.patch(&sora_id, json!({"admin": true})).await?;
    assert_eq!(status, 200);
    let sora_admin = Admin::login(&relay, "sora", "sora's first pass").await?;
    let (status, _) = sora_admin
        .patch(&mina_id, json!({"disabled": true}))
        .await?;
    assert_eq!(status, 200);
    let (status, answer) = sora_admin.patch(&sora_id, json!({"admin": false})).await?;
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("last_admin"))
    );
    assert_eq!(
        sora_admin.agent("sora").await?["admin"],
        true,
        "nothing changed"
    );
    let (status, _) = sora_admin
        .patch(&mina_id, json!({"disabled": false}))
        .await?;
    assert_eq!(status, 200);
    // Mina's sessions ended when she was disabled: she signs in again.
    let admin = Admin::login(&relay, mina, mina_pass).await?;

    // A new password ends Sora's sessions: the old one fails, the new one works.
    let mut sora_socket = AgentClient::login(&relay, "sora", "sora's first pass").await?;
    let (status, answer) = admin
        .call(
            reqwest::Method::POST,
            &format!("/api/admin/agents/{sora_id}/password"),
            Some(json!({"password": "sora's second pass"})),
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    sora_socket
        .sock
        .expect_close_code(protocol::CLOSE_SESSION_ENDED, "after a password reset")
        .await?;
    assert_eq!(
        login_status(&relay, "sora", "sora's first pass").await?,
        401
    );
    assert_eq!(
        login_status(&relay, "sora", "sora's second pass").await?,
        200
    );

    // Every change has its line, newest first, naming who did it and never a password.
    let (_, audit) = admin
        .call(reqwest::Method::GET, "/api/admin/audit?limit=50", None)
        .await?;
    let lines: Vec<(String, String)> = audit["entries"]
        .as_array()
        .context("entries")?
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or_default().to_owned(),
                e["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("mina", "agent_password"),
        ("sora", "agent_enable"),
        ("sora", "agent_disable"),
        ("mina", "agent_update"),
        ("mina", "agent_enable"),
        ("mina", "agent_disable"),
        ("mina", "agent_create"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(lines, expected, "one line per accepted change");
    let text = audit.to_string();
    assert!(
        !text.contains("sora's") && !text.contains("argon2"),
        "{text}"
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_agent_limited_to_some_sites_sees_and_acts_only_on_those() -> anyhow::Result<()> {
    let relay = two_sites().await?;
    let (mina, _, mina_pass) = AGENTS[0];
    let admin = Admin::login(&relay, mina, mina_pass).await?;
    let (status, sora) = admin
        .create(json!({
            "username": "sora", "display_name": "Sora", "password": "sora's first pass",
            "sites": ["bank"]
        }))
        .await?;
    assert_eq!(status, 201);
    let sora_id = sora["id"].as_str().context("id")?.to_owned();
    let (_demo_visitor, demo) = visitor_writes(&relay, "demo", "a demo question").await?;
    let (_bank_visitor, bank) = visitor_writes(&relay, "bank", "a bank question").await?;

    // `welcome`: the bank's conversation only (Mina, serving every site, sees both).
    let mut sora_socket = AgentClient::login(&relay, "sora", "sora's first pass").await?;
    let listed: Vec<&ConversationId> = sora_socket.conversations.iter().map(|c| &c.id).collect();
    assert_eq!(listed, [&bank], "only the bank's conversation");
    let mut mina_socket = AgentClient::login(&relay, mina, mina_pass).await?;
    assert_eq!(mina_socket.conversations.len(), 2, "positive control");

    // The demo conversation does not exist for Sora: open, take, send, close all say so.
    for frame in [
        AgentFrame::Open {
            conversation_id: demo.clone(),
            after_seq: None,
        },
        AgentFrame::Take {
            conversation_id: demo.clone(),
        },
        AgentFrame::Close {
            conversation_id: demo.clone(),
        },
    ] {
        sora_socket.sock.send_json(&frame).await?;
        let answer = sora_socket
            .expect("an error", |f| matches!(f, ToAgent::Error(_)))
            .await?;
        assert_eq!(error_code(&answer), Some(ErrorCode::NotFound), "{frame:?}");
    }
    sora_socket
        .take(&bank)
        .await
        .context("the bank's is hers")?;

    // List updates: the demo visitor writes again; Mina hears it, Sora does not (a bank
    // update that follows reaches her, so nothing was merely late).
    let (_v, demo2) = visitor_writes(&relay, "demo", "another demo question").await?;
    mina_socket
        .expect(
            "the new demo conversation",
            |f| matches!(f, ToAgent::Conversation(c) if c.id == demo2),
        )
        .await?;
    let (_v, bank2) = visitor_writes(&relay, "bank", "another bank question").await?;
    let seen = sora_socket
        .expect(
            "the new bank conversation",
            |f| matches!(f, ToAgent::Conversation(c) if c.id == bank2 || c.site == "demo"),
        )
        .await?;
    assert!(
        matches!(&seen, ToAgent::Conversation(c) if c.id == bank2),
        "a demo update reached Sora: {seen:?}"
    );

    // Mina cannot transfer a demo conversation to Sora.
    mina_socket.take(&demo).await?;
    mina_socket
        .sock
        .send_json(&AgentFrame::Transfer {
            conversation_id: demo.clone(),
            to_agent: sora_id.clone(),
            note: None,
        })
        .await?;
    let answer = mina_socket
        .expect("the transfer refused", |f| matches!(f, ToAgent::Error(_)))
        .await?;
    assert_eq!(error_code(&answer), Some(ErrorCode::Invalid));

    // Closed history over HTTP: the bank's only.
    let sora_http = Admin::login(&relay, "sora", "sora's first pass").await?;
    let (status, page) = sora_http
        .call(reqwest::Method::GET, "/api/conversations", None)
        .await?;
    assert_eq!(status, 200);
    assert!(page["conversations"]
        .as_array()
        .context("list")?
        .iter()
        .all(|c| c["site"] == "bank"));

    // Every site again: her console is told to reconnect, and then sees the demo ones.
    let (status, _) = admin.patch(&sora_id, json!({"sites": null})).await?;
    assert_eq!(status, 200);
    sora_socket
        .sock
        .expect_close_code(protocol::CLOSE_ACCESS_CHANGED, "sites changed")
        .await?;
    let again = AgentClient::login(&relay, "sora", "sora's first pass").await?;
    assert!(again.conversations.iter().any(|c| c.id == demo));
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_queue_gives_an_agent_only_their_sites_conversations() -> anyhow::Result<()> {
    let relay = TestRelay::builder()
        .admin("mina")
        .auto_assign(5, std::time::Duration::from_secs(120))
        .config(|c| {
            let mut bank = c.sites[0].clone();
            bank.key = "bank".into();
            bank.name = "Bank".into();
            c.sites.push(bank);
            // Mina reads the list but is never given a conversation: only Sora answers.
            c.agents[0].max_chats = Some(0);
        })
        .start()
        .await?;
    let (mina, _, mina_pass) = AGENTS[0];
    let admin = Admin::login(&relay, mina, mina_pass).await?;
    let (status, _) = admin
        .create(json!({
            "username": "sora", "display_name": "Sora", "password": "sora's first pass",
            "sites": ["bank"]
        }))
        .await?;
    assert_eq!(status, 201);
    let mut sora = AgentClient::login(&relay, "sora", "sora's first pass").await?;
    let sora_id = sora.agent.id.clone();
    // The demo conversation waits first in line; the bank's comes second. Sora has room for
    // both, so had the rule let her, she would get the demo one first.
    let (_d, demo) = visitor_writes(&relay, "demo", "demo waits").await?;
    let (_b, bank) = visitor_writes(&relay, "bank", "bank waits").await?;
    let assigned = sora
        .expect("an assignment to Sora", |f| {
            matches!(f, ToAgent::Conversation(c)
                if c.assignee.as_ref().is_some_and(|a| a.id == sora_id))
        })
        .await?;
    match assigned {
        ToAgent::Conversation(c) => assert_eq!(c.id, bank, "the bank's, not the demo's"),
        other => anyhow::bail!("unexpected {other:?}"),
    }
    // The demo one is still waiting (read as Mina, who sees every site).
    let mina_socket = AgentClient::login(&relay, mina, mina_pass).await?;
    let waiting = mina_socket
        .conversations
        .iter()
        .find(|c| c.id == demo)
        .context("demo listed")?;
    assert!(waiting.assignee.is_none(), "{waiting:?}");
    relay.shutdown().await;
    Ok(())
}

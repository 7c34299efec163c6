//! Bot-first routing, the people side (issue #3): business hours and availability, messages
//! left while nobody is available (`leave_message`), their replies emailed through a real SMTP
//! server (aiosmtpd), the admin API for per-site routing, and proactive greetings — all over
//! real sockets and HTTP against a real relay on SQLite.
//!
//! The pure hours math (zones, DST, next opening) is unit-tested in `relay-server/src/hours.rs`;
//! here the same rules are seen from the outside.

use std::time::Duration;

use anyhow::Context as _;
use parley_tests::smtp::SmtpServer;
use parley_tests::ws::login_cookie;
use parley_tests::{AgentClient, TestRelay, VisitorClient};
use protocol::{
    ClientId, ErrorCode, EventBody, Role, ToAgent, ToVisitor, VisitorBody, VisitorFrame,
};
use relay_server::config::Greeting;
use relay_server::hours::{Hours, HoursSpec};

/// Hours that are never open (a zone, no days).
fn never_open() -> Hours {
    Hours::try_from(HoursSpec {
        tz: "Asia/Seoul".into(),
        ..Default::default()
    })
    .expect("valid hours")
}

/// Hours that are always open, in a zone far from UTC.
fn always_open() -> Hours {
    let all = Some("00:00-24:00".to_owned());
    Hours::try_from(HoursSpec {
        tz: "Pacific/Auckland".into(),
        mon: all.clone(),
        tue: all.clone(),
        wed: all.clone(),
        thu: all.clone(),
        fri: all.clone(),
        sat: all.clone(),
        sun: all,
    })
    .expect("valid hours")
}

async fn relay_with_hours(hours: Hours) -> anyhow::Result<TestRelay> {
    TestRelay::builder()
        .config(move |c| c.sites[0].hours = Some(hours))
        .start()
        .await
}

async fn leave(
    v: &mut VisitorClient,
    client_id: &str,
    email: &str,
    text: &str,
) -> anyhow::Result<()> {
    v.sock
        .send_json(&VisitorFrame::LeaveMessage {
            client_id: ClientId(client_id.into()),
            email: email.into(),
            text: text.into(),
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_needs_hours_and_an_agent() -> anyhow::Result<()> {
    // Open hours, nobody online: not available.
    let relay = relay_with_hours(always_open()).await?;
    let alone = VisitorClient::connect(&relay, None).await?;
    assert!(!alone.available, "no agent online");
    assert_eq!(alone.opens_at, None, "inside hours: no next opening");
    // An agent comes: presence says available; a new visitor's welcome too.
    let mut v = alone;
    let _mina = AgentClient::login(&relay, "mina", "mina-password-1").await?;
    v.expect("presence available", |f| {
        matches!(
            f,
            ToVisitor::Presence {
                available: true,
                agents_online: 1,
                ..
            }
        )
    })
    .await?;
    assert!(VisitorClient::connect(&relay, None).await?.available);
    let info: serde_json::Value = reqwest::get(relay.url("/api/sites/demo"))
        .await?
        .json()
        .await?;
    assert_eq!(info["available"], true, "{info}");
    relay.shutdown().await;

    // Closed hours: unavailable even with an agent online, and no opening within a week.
    let relay = relay_with_hours(never_open()).await?;
    let _mina = AgentClient::login(&relay, "mina", "mina-password-1").await?;
    let v = VisitorClient::connect(&relay, None).await?;
    assert_eq!((v.available, v.agents_online), (false, 1));
    let info: serde_json::Value = reqwest::get(relay.url("/api/sites/demo"))
        .await?
        .json()
        .await?;
    assert_eq!(info["available"], false, "{info}");
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_hours_say_when_they_open() -> anyhow::Result<()> {
    // Open only on the weekday after today in Seoul: the next opening is tomorrow 09:00 there.
    let now = jiff::Timestamp::now().in_tz("Asia/Seoul")?;
    let tomorrow = now.date().tomorrow()?;
    let mut spec = HoursSpec {
        tz: "Asia/Seoul".into(),
        ..Default::default()
    };
    let range = Some("09:00-10:00".to_owned());
    match tomorrow.weekday() {
        jiff::civil::Weekday::Monday => spec.mon = range,
        jiff::civil::Weekday::Tuesday => spec.tue = range,
        jiff::civil::Weekday::Wednesday => spec.wed = range,
        jiff::civil::Weekday::Thursday => spec.thu = range,
        jiff::civil::Weekday::Friday => spec.fri = range,
        jiff::civil::Weekday::Saturday => spec.sat = range,
        jiff::civil::Weekday::Sunday => spec.sun = range,
    }
    let expected = tomorrow
        .at(9, 0, 0, 0)
        .in_tz("Asia/Seoul")?
        .timestamp()
        .as_millisecond();
    let relay = relay_with_hours(Hours::try_from(spec).map_err(anyhow::Error::msg)?).await?;
    let _mina = AgentClient::login(&relay, "mina", "mina-password-1").await?;
    let v = VisitorClient::connect(&relay, None).await?;
    assert!(!v.available);
    assert_eq!(v.opens_at, Some(expected), "tomorrow 09:00 Asia/Seoul");
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn left_message_reaches_the_console_marked_offline() -> anyhow::Result<()> {
    let relay = relay_with_hours(never_open()).await?;
    let mut mina = AgentClient::login(&relay, "mina", "mina-password-1").await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    assert!(!v.available);

    // Refused: a bad email, an empty text; each names its client id and stores nothing.
    leave(&mut v, "bad-mail", "not an email", "hello").await?;
    let refused = v
        .expect("error for bad-mail", |f| matches!(f, ToVisitor::Error(_)))
        .await?;
    let ToVisitor::Error(e) = refused else {
        unreachable!()
    };
    assert_eq!(
        (e.code, e.client_id.map(|c| c.0)),
        (ErrorCode::Invalid, Some("bad-mail".into()))
    );
    leave(&mut v, "empty", "ada@example.com", "  ").await?;
    let ToVisitor::Error(e) = v
        .expect("error for empty", |f| matches!(f, ToVisitor::Error(_)))
        .await?
    else {
        unreachable!()
    };
    assert_eq!(e.code, ErrorCode::Invalid);
    leave(&mut v, "huge", "ada@example.com", &"x".repeat(17 * 1024)).await?;
    let ToVisitor::Error(e) = v
        .expect("error for huge", |f| matches!(f, ToVisitor::Error(_)))
        .await?
    else {
        unreachable!()
    };
    assert_eq!(e.code, ErrorCode::TooLarge);
    assert_eq!(v.conversation_id, None, "nothing was stored");

    // Accepted: acked (so stored), and the console's list shows it marked offline.
    leave(
        &mut v,
        "left-1",
        " ada@example.com ",
        "Do you ship to Jeju?",
    )
    .await?;
    let seq = v.expect_ack("left-1").await?;
    assert_eq!(seq, 1);
    let conversation = v
        .conversation_id
        .clone()
        .context("ack names the conversation")?;
    let summary = mina
        .expect("the conversation, marked offline", |f| {
            matches!(f, ToAgent::Conversation(c) if c.id == conversation && c.offline_email.is_some())
        })
        .await?;
    let ToAgent::Conversation(summary) = summary else {
        unreachable!()
    };
    assert_eq!(summary.offline_email.as_deref(), Some("ada@example.com"));
    assert_eq!(summary.preview.as_deref(), Some("Do you ship to Jeju?"));
    // A resend (same client id) is answered with the same seq and stores nothing new.
    leave(&mut v, "left-1", "ada@example.com", "Do you ship to Jeju?").await?;
    assert_eq!(v.expect_ack("left-1").await?, 1);
    let events = mina.open(&conversation, None).await?;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].message_text(), Some("Do you ship to Jeju?"));
    // A new agent socket sees it in the welcome list too (stored, not just relayed).
    let joon = AgentClient::login(&relay, "joon", "joon-password-2").await?;
    let listed = joon
        .conversations
        .iter()
        .find(|c| c.id == conversation)
        .context("listed")?;
    assert_eq!(listed.offline_email.as_deref(), Some("ada@example.com"));
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_emailed_with_the_transcript() -> anyhow::Result<()> {
    let smtp = SmtpServer::start().await?;
    let relay = TestRelay::builder()
        .config(|c| c.sites[0].hours = Some(never_open()))
        .smtp(smtp.url())
        .start()
        .await?;
    let mut mina = AgentClient::login(&relay, "mina", "mina-password-1").await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    leave(&mut v, "left-1", "ada@example.com", "Where is order 4411?").await?;
    v.expect_ack("left-1").await?;
    let conversation = v.conversation_id.clone().context("conversation")?;
    mina.open(&conversation, None).await?;
    mina.send(&conversation, "r-1", "It left our warehouse today.")
        .await?;
    mina.expect_ack("r-1").await?;

    let mail = smtp
        .wait_for(|m| m.body().contains("It left our warehouse today."))
        .await?;
    assert_eq!(mail.rcpt_to(), Some("ada@example.com"));
    let body = mail.body();
    assert!(
        body.contains("Subject: Re: your message to Demo Shop")
            || mail.raw.contains("Subject: Re: your message to Demo Shop"),
        "{}",
        mail.raw
    );
    let asked = body
        .find("Where is order 4411?")
        .context("transcript has the visitor's message")?;
    let answered = body
        .rfind("It left our warehouse today.")
        .context("and the reply")?;
    assert!(asked < answered, "transcript in order: {body}");

    // The agent is told it was sent, in the conversation itself (stored, survives reloads).
    let event = mina
        .expect_event("email sent", |e| matches!(e.body, EventBody::Email { .. }))
        .await?;
    assert_eq!(event.author.role, Role::System);
    assert_eq!(
        event.body,
        EventBody::Email {
            to: "ada@example.com".into(),
            sent: true,
            error: None
        }
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_email_is_shown_to_the_agent() -> anyhow::Result<()> {
    // A port nobody listens on: the mail server is unreachable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let relay = TestRelay::builder()
        .config(|c| c.sites[0].hours = Some(never_open()))
        .smtp(format!("smtp://127.0.0.1:{port}"))
        .start()
        .await?;
    let mut mina = AgentClient::login(&relay, "mina", "mina-password-1").await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    leave(&mut v, "left-1", "ada@example.com", "Hello?").await?;
    v.expect_ack("left-1").await?;
    let conversation = v.conversation_id.clone().context("conversation")?;
    mina.open(&conversation, None).await?;
    mina.send(&conversation, "r-1", "Hi Ada").await?;
    assert_eq!(mina.expect_ack("r-1").await?, 3, "joined, then the reply");
    let event = mina
        .expect_event("email failed", |e| {
            matches!(e.body, EventBody::Email { .. })
        })
        .await?;
    match event.body {
        EventBody::Email { sent, error, to } => {
            assert_eq!(to, "ada@example.com");
            assert!(!sent);
            assert!(error.is_some_and(|e| !e.is_empty()), "the reason is given");
        }
        other => anyhow::bail!("unexpected {other:?}"),
    }
    relay.shutdown().await;

    // Without SMTP at all: also said, not silent.
    let relay = relay_with_hours(never_open()).await?;
    let mut mina = AgentClient::login(&relay, "mina", "mina-password-1").await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    leave(&mut v, "left-1", "ada@example.com", "Hello?").await?;
    v.expect_ack("left-1").await?;
    let conversation = v.conversation_id.clone().context("conversation")?;
    mina.open(&conversation, None).await?;
    mina.send(&conversation, "r-1", "Hi Ada").await?;
    let event = mina
        .expect_event("email not configured", |e| {
            matches!(e.body, EventBody::Email { .. })
        })
        .await?;
    assert!(
        matches!(&event.body, EventBody::Email { sent: false, error: Some(e), .. } if e.contains("--smtp-url")),
        "{event:?}"
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_first_sites_answer_off_hours_until_the_handoff() -> anyhow::Result<()> {
    let relay = TestRelay::builder()
        .bot_first()
        .config(|c| c.sites[0].hours = Some(never_open()))
        .start()
        .await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    assert!(
        !v.available && v.bot_first,
        "unavailable, but the bot answers first"
    );
    v.send("q-1", "How long does shipping take?").await?;
    v.expect_ack("q-1").await?;
    let answer = v
        .expect_event("the bot's answer", |e| e.author.role == Role::Bot)
        .await?;
    assert!(matches!(answer.body, VisitorBody::Message { .. }));
    // The hand-off, then the message left for people in the same conversation.
    v.send("q-2", "Talk to a person").await?;
    v.expect_event("hand-off", |e| e.body == VisitorBody::Handoff)
        .await?;
    let conversation = v.conversation_id.clone().context("conversation")?;
    leave(&mut v, "left-1", "ada@example.com", "Please call me back").await?;
    v.expect_ack("left-1").await?;
    assert_eq!(
        v.conversation_id.as_ref(),
        Some(&conversation),
        "same conversation"
    );
    let mina = AgentClient::login(&relay, "mina", "mina-password-1").await?;
    let c = mina
        .conversations
        .iter()
        .find(|c| c.id == conversation)
        .context("listed")?;
    assert_eq!(c.offline_email.as_deref(), Some("ada@example.com"));
    assert_eq!(
        c.status,
        protocol::ConversationStatus::Open,
        "waiting for people"
    );
    relay.shutdown().await;
    Ok(())
}

async fn admin_get(relay: &TestRelay, cookie: &str) -> anyhow::Result<reqwest::Response> {
    Ok(reqwest::Client::new()
        .get(relay.url("/api/admin/sites"))
        .header("Cookie", cookie)
        .send()
        .await?)
}

async fn admin_put(
    relay: &TestRelay,
    cookie: &str,
    origin: Option<&str>,
    body: serde_json::Value,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut request = reqwest::Client::new()
        .put(relay.url("/api/admin/sites/demo"))
        .header("Cookie", cookie)
        .json(&body);
    if let Some(o) = origin {
        request = request.header("Origin", o);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_is_for_admins_and_persists_across_restart() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let db = format!("sqlite://{}", data.path().join("parley.db").display());
    let start = |db: String| async move {
        TestRelay::builder()
            .admin("mina")
            .config(move |c| c.database_url = db)
            .start()
            .await
    };
    let relay = start(db.clone()).await?;

    // Without a session: 401. A non-admin agent: 403 on both verbs.
    let anonymous = reqwest::get(relay.url("/api/admin/sites")).await?;
    assert_eq!(anonymous.status().as_u16(), 401);
    let joon = login_cookie(&relay, "joon", "joon-password-2").await?;
    let refused = admin_get(&relay, &joon).await?;
    assert_eq!(refused.status().as_u16(), 403);
    let body: serde_json::Value = refused.json().await?;
    assert_eq!(body["error"], "forbidden");
    let (status, body) = admin_put(
        &relay,
        &joon,
        None,
        serde_json::json!({"routing": "agents_first"}),
    )
    .await?;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    let me: serde_json::Value = reqwest::Client::new()
        .get(relay.url("/api/me"))
        .header("Cookie", &joon)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(me.get("admin"), None, "{me}");

    // The admin: sees the config's settings, and bad input is refused with a reason.
    let mina = login_cookie(&relay, "mina", "mina-password-1").await?;
    let sites: serde_json::Value = admin_get(&relay, &mina).await?.json().await?;
    assert_eq!(sites["sites"][0]["key"], "demo");
    assert_eq!(sites["sites"][0]["routing"], "agents_first");
    assert_eq!(sites["sites"][0]["hours"], serde_json::Value::Null);
    for bad in [
        serde_json::json!({"routing": "agents_first", "hours": {"tz": "Mars/Olympus"}}),
        serde_json::json!({"routing": "agents_first", "hours": {"tz": "UTC", "mon": "18:00-09:00"}}),
        serde_json::json!({"routing": "agents_first", "max_chats_per_agent": 0}),
        serde_json::json!({"routing": "bot_first"}),
        serde_json::json!({"routing": "sideways"}),
    ] {
        let (status, body) = admin_put(&relay, &mina, None, bad.clone()).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid")),
            "{bad} → {body}"
        );
    }
    // Cross-site writes are refused even with the admin's cookie.
    let (status, _) = admin_put(
        &relay,
        &mina,
        Some("https://evil.example"),
        serde_json::json!({"routing": "agents_first"}),
    )
    .await?;
    assert_eq!(status, 403);

    // A save takes effect at once: closed hours make the site unavailable.
    let _online = AgentClient::login(&relay, "joon", "joon-password-2").await?;
    assert!(VisitorClient::connect(&relay, None).await?.available);
    let (status, saved) = admin_put(
        &relay,
        &mina,
        Some(&relay.origin()),
        serde_json::json!({
            "routing": "agents_first",
            "hours": {"tz": "Asia/Seoul"},
            "max_chats_per_agent": 4
        }),
    )
    .await?;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["max_chats_per_agent"], 4);
    assert_eq!(saved["hours"]["tz"], "Asia/Seoul");
    assert_eq!(saved["updated_by"], "mina");
    assert!(!VisitorClient::connect(&relay, None).await?.available);
    relay.shutdown().await;

    // After a restart on the same database the saved settings still override the config.
    let relay = start(db).await?;
    let mina = login_cookie(&relay, "mina", "mina-password-1").await?;
    let sites: serde_json::Value = admin_get(&relay, &mina).await?.json().await?;
    let demo = &sites["sites"][0];
    assert_eq!(demo["hours"]["tz"], "Asia/Seoul", "{sites}");
    assert_eq!(demo["max_chats_per_agent"], 4);
    let _online = AgentClient::login(&relay, "joon", "joon-password-2").await?;
    assert!(!VisitorClient::connect(&relay, None).await?.available);
    let me: serde_json::Value = reqwest::Client::new()
        .get(relay.url("/api/me"))
        .header("Cookie", &mina)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(me["admin"], true);
    relay.shutdown().await;
    Ok(())
}

fn greeting(id: &str, text: &str) -> Greeting {
    Greeting {
        id: id.into(),
        url: "/*".into(),
        after_seconds: 0,
        returning: None,
        text: text.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_is_stored_once_as_the_bots_message() -> anyhow::Result<()> {
    let relay = TestRelay::builder()
        .config(|c| {
            c.sites[0].greetings = vec![greeting("cart", "Need help with your cart?")];
        })
        .start()
        .await?;
    let info: serde_json::Value = reqwest::get(relay.url("/api/sites/demo"))
        .await?
        .json()
        .await?;
    assert_eq!(info["greetings"][0]["id"], "cart", "{info}");
    assert_eq!(info["greetings"][0]["text"], "Need help with your cart?");

    let mut v = VisitorClient::connect(&relay, None).await?;
    v.sock
        .send_json(&VisitorFrame::Greeting {
            rule: "nope".into(),
        })
        .await?;
    let ToVisitor::Error(e) = v
        .expect("unknown rule refused", |f| matches!(f, ToVisitor::Error(_)))
        .await?
    else {
        unreachable!()
    };
    assert_eq!(e.code, ErrorCode::Invalid);

    v.sock
        .send_json(&VisitorFrame::Greeting {
            rule: "cart".into(),
        })
        .await?;
    let event = v
        .expect_event("the greeting", |e| e.author.role == Role::Bot)
        .await?;
    assert_eq!(event.seq, 1);
    assert_eq!(event.message_text(), Some("Need help with your cart?"));
    assert_eq!(event.author.name.as_deref(), Some("Demo Shop assistant"));
    assert!(
        matches!(&event.body, VisitorBody::Message { client_id: Some(c), .. } if c.0 == "greet-cart"),
        "the greeting names its rule as its client id (PROTOCOL.md §12): {:?}",
        event.body
    );
    // Again (another tab, a reload): nothing new.
    let token = v.token.clone();
    let mut again = VisitorClient::connect(&relay, Some(&token)).await?;
    again
        .sock
        .send_json(&VisitorFrame::Greeting {
            rule: "cart".into(),
        })
        .await?;
    again
        .expect_none(
            "a second greeting",
            Duration::from_millis(500),
            |f| matches!(f, ToVisitor::Event(e) if e.seq > 1),
        )
        .await?;
    // The visitor's reply follows it in the same conversation.
    again.send("m-1", "Yes please").await?;
    assert_eq!(again.expect_ack("m-1").await?, 2);
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greeting_queues_nobody_until_the_visitor_writes() -> anyhow::Result<()> {
    let relay = TestRelay::builder()
        .auto_assign(3, Duration::from_secs(120))
        .config(|c| {
            c.sites[0].greetings = vec![greeting("cart", "Need help with your cart?")];
        })
        .start()
        .await?;
    let (user, _, pass) = parley_tests::AGENTS[0];
    let mut mina = parley_tests::AgentClient::login(&relay, user, pass).await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    v.sock
        .send_json(&VisitorFrame::Greeting {
            rule: "cart".into(),
        })
        .await?;
    let greeted = v
        .expect_event("the greeting", |e| e.author.role == Role::Bot)
        .await?;
    let conversation = greeted.conversation_id.clone();
    // Greeted, silent: nobody is given the conversation, and the queue counts nobody.
    mina.expect_none("an assignment before the visitor wrote", Duration::from_millis(800), |f| {
        matches!(f, protocol::ToAgent::Conversation(c) if c.id == conversation && c.assignee.is_some())
            || matches!(f, protocol::ToAgent::Queue { waiting, .. } if *waiting > 0)
    })
    .await?;
    // The visitor writes: now it waits, and Mina (online, with room) is given it after it.
    v.send("m-1", "Yes please").await?;
    assert_eq!(v.expect_ack("m-1").await?, 2, "nothing came between");
    let joined = v
        .expect_event("an agent joined", |e| e.body == VisitorBody::Joined)
        .await?;
    assert_eq!(
        joined.seq, 3,
        "the assignment follows the visitor's first message"
    );
    relay.shutdown().await;
    Ok(())
}

// ── In real browsers: the widget's offline form and greeting bubbles, the console's marker. ──

mod browser {
    use anyhow::Context as _;
    use parley_tests::browser::{wait_js, Browser, Console, Widget};
    use parley_tests::smtp::SmtpServer;
    use parley_tests::{require_dist, TestRelay, AGENTS};
    use serde_json::json;

    #[tokio::test]
    async fn widget_leaves_a_message_that_reaches_the_console_and_the_mailbox() -> anyhow::Result<()>
    {
        require_dist()?;
        let smtp = SmtpServer::start().await?;
        let relay = TestRelay::builder()
            .config(|c| c.sites[0].hours = Some(super::never_open()))
            .smtp(smtp.url())
            .start()
            .await?;
        let browser = Browser::start().await?;
        let visitor = browser.new_session().await?;
        let agent = browser.new_session().await?;
        let result = async {
            visitor.goto(&relay.url("/")).await?;
            let widget = Widget::new(&visitor);
            widget.open().await?;
            widget.wait_online().await?;
            widget
                .leave_message("ada@example.com", "Is the blue kettle back in stock?")
                .await
                .context("the away form")?;
            widget
                .wait_message("visitor", "Is the blue kettle back in stock?")
                .await
                .context("the left message must be acked (data-seq)")?;

            let (user, _, pass) = AGENTS[0];
            let console = Console::new(&agent);
            console.login(&relay.base_url(), user, pass).await?;
            let id = console.wait_conversation("blue kettle").await?;
            wait_js(
                &agent,
                "the conversation marked offline with the visitor's email",
                "const li = document.querySelector(`li.conversation[data-id=\"${arguments[0]}\"]`);
                 const b = li && li.querySelector('.badge.offline');
                 return !!b && b.textContent.includes('ada@example.com');",
                vec![json!(id)],
            )
            .await?;
            console.open_conversation(&id).await?;
            console.take(&id).await?;
            console.reply("Yes, since Monday.").await?;
            let mail = smtp
                .wait_for(|m| m.body().contains("Yes, since Monday."))
                .await?;
            assert_eq!(mail.rcpt_to(), Some("ada@example.com"));
            assert!(
                mail.body().contains("Is the blue kettle back in stock?"),
                "transcript: {}",
                mail.body()
            );
            wait_js(
                &agent,
                "the console's line saying the reply was emailed",
                "return Array.from(document.querySelectorAll('ol.transcript > li'))
                   .some(e => e.textContent.includes('Reply emailed to ada@example.com'));",
                vec![],
            )
            .await?;
            anyhow::Ok(())
        }
        .await;
        let _ = visitor.close().await;
        let _ = agent.close().await;
        relay.shutdown().await;
        result
    }

    #[tokio::test]
    async fn greeting_bubble_shows_once_per_visitor_and_opens_the_chat() -> anyhow::Result<()> {
        require_dist()?;
        let relay = TestRelay::builder()
            .config(|c| {
                c.sites[0].greetings = vec![
                    relay_server::config::Greeting {
                        id: "returning".into(),
                        url: "*".into(),
                        after_seconds: 0,
                        returning: Some(true),
                        text: "Welcome back!".into(),
                    },
                    relay_server::config::Greeting {
                        id: "hello".into(),
                        url: "/*".into(),
                        after_seconds: 1,
                        returning: None,
                        text: "Hi! Questions about an order?".into(),
                    },
                ];
            })
            .start()
            .await?;
        let browser = Browser::start().await?;
        let visitor = browser.new_session().await?;
        let result = async {
            visitor.goto(&relay.url("/")).await?;
            let widget = Widget::new(&visitor);
            // A first-time visitor: the `returning` rule does not apply, the other does.
            widget.wait_bubble("Hi! Questions about an order?").await?;
            assert_eq!(widget.bubbles().await?, 1);
            widget.find(".parley-bubble").await?.click().await?;
            widget.wait_panel_open().await?;
            widget
                .wait_message("bot", "Hi! Questions about an order?")
                .await
                .context("the greeting stored as the bot's message")?;

            // Next page view: that rule was shown already; this visitor now holds a token, so
            // the `returning` rule shows instead — and only once as well.
            visitor.refresh().await?;
            widget.wait_bubble("Welcome back!").await?;
            visitor.refresh().await?;
            widget.launcher().await?;
            // Wait past the rules' delays (1 s) before counting bubbles.
            tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
            assert_eq!(
                widget.bubbles().await?,
                0,
                "each rule shows once per visitor"
            );
            // The greeting is in the conversation exactly once.
            widget.open().await?;
            widget
                .wait_message("bot", "Hi! Questions about an order?")
                .await?;
            let greetings = widget
                .messages()
                .await?
                .into_iter()
                .filter(|m| m.role == "bot")
                .count();
            assert_eq!(greetings, 1);
            anyhow::Ok(())
        }
        .await;
        let _ = visitor.close().await;
        relay.shutdown().await;
        result
    }
}

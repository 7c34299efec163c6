//! Hostile and careless clients: garbage frames, oversize messages, floods, foreign origins, bad
//! logins. The relay must answer each with the documented error (or refusal) and stay up.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context as _};
use parley_tests::ws::{login_cookie, Closed, RawSocket};
use parley_tests::{start_server, VisitorClient, AGENTS};
use protocol::{ErrorCode, ToVisitor, MAX_TEXT_BYTES};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Reads the next error frame, skipping others, and returns it.
async fn expect_error(v: &mut VisitorClient, what: &str) -> anyhow::Result<protocol::ErrorFrame> {
    match v.expect(what, |f| matches!(f, ToVisitor::Error(_))).await? {
        ToVisitor::Error(e) => Ok(e),
        other => bail!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_json_is_refused_and_the_socket_stays_usable() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    for garbage in [
        "this is not json",
        "{\"no_type\":1}",
        "{\"type\":42}",
        "[1,2]",
    ] {
        v.sock.send_text(garbage).await?;
        let e = expect_error(&mut v, &format!("malformed for {garbage:?}")).await?;
        assert_eq!(e.code, ErrorCode::Malformed, "for {garbage:?}: {e:?}");
    }
    // A frame that does not parse still names its client id (PROTOCOL.md §6), when it has a
    // well-formed one, so the client knows which send failed.
    v.sock
        .send_text(r#"{"type":"send","client_id":"k-bad","text":5}"#)
        .await?;
    let e = expect_error(&mut v, "invalid send").await?;
    assert_eq!(e.code, ErrorCode::Invalid, "{e:?}");
    assert_eq!(
        e.client_id.as_ref().map(|c| c.0.as_str()),
        Some("k-bad"),
        "{e:?}"
    );
    v.send("after-garbage", "still here").await?;
    assert_eq!(v.expect_ack("after-garbage").await?, 1);
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn unknown_type_is_refused() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    v.sock
        .send_text(r#"{"type":"dance","style":"tango"}"#)
        .await?;
    let e = expect_error(&mut v, "unknown_type").await?;
    assert_eq!(e.code, ErrorCode::UnknownType, "{e:?}");
    // Agent-only frames are unknown on the visitor socket.
    v.sock
        .send_text(r#"{"type":"take","conversation_id":"x"}"#)
        .await?;
    let e = expect_error(&mut v, "unknown_type for an agent frame").await?;
    assert_eq!(e.code, ErrorCode::UnknownType, "{e:?}");
    v.send("ok-1", "fine").await?;
    assert_eq!(v.expect_ack("ok-1").await?, 1);
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn first_frame_must_be_hello() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let mut sock = VisitorClient::raw(&relay).await?;
    sock.send_text(r#"{"type":"send","client_id":"early","text":"before hello"}"#)
        .await?;
    let frame: ToVisitor = sock.next_json().await?;
    match &frame {
        ToVisitor::Error(e) => {
            assert_eq!(e.code, ErrorCode::HelloRequired, "{e:?}");
            assert_eq!(
                e.client_id.as_ref().map(|c| c.0.as_str()),
                Some("early"),
                "hello_required names the refused send: {e:?}"
            );
        }
        other => bail!("expected hello_required, got {other:?}"),
    }
    // The frame was not processed: saying hello now shows no conversation was created.
    sock.send_text(r#"{"type":"hello","v":1}"#).await?;
    match sock.next_json::<ToVisitor>().await? {
        ToVisitor::Welcome {
            conversation_id,
            last_seq,
            ..
        } => {
            assert_eq!(
                conversation_id, None,
                "the refused send must not have created a conversation"
            );
            assert_eq!(last_seq, 0);
        }
        other => bail!("expected welcome after a late hello, got {other:?}"),
    }
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn unsupported_version_is_refused() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let mut sock = VisitorClient::raw(&relay).await?;
    sock.send_text(r#"{"type":"hello","v":999}"#).await?;
    let frame: ToVisitor = sock.next_json().await?;
    assert!(
        matches!(&frame, ToVisitor::Error(e) if e.code == ErrorCode::UnsupportedVersion),
        "expected unsupported_version, got {frame:?}"
    );
    // ... and closes the socket (PROTOCOL.md §9), on both sockets.
    let (closed, seen) = sock.expect_close().await?;
    assert!(
        matches!(&closed, Closed::Frame(Some(f)) if u16::from(f.code) == protocol::CLOSE_POLICY),
        "visitor socket: {closed:?} after {seen:?}"
    );
    let (user, _, pass) = AGENTS[0];
    let cookie = login_cookie(&relay, user, pass).await?;
    let mut agent = RawSocket::connect(&relay.ws_url("/ws/agent"), &[("Cookie", &cookie)]).await?;
    agent.send_text(r#"{"type":"hello","v":2}"#).await?;
    let frame: protocol::ToAgent = agent.next_json().await?;
    assert!(
        matches!(&frame, protocol::ToAgent::Error(e) if e.code == ErrorCode::UnsupportedVersion),
        "agent: expected unsupported_version, got {frame:?}"
    );
    let (closed, seen) = agent.expect_close().await?;
    assert!(
        matches!(&closed, Closed::Frame(Some(f)) if u16::from(f.code) == protocol::CLOSE_POLICY),
        "agent socket: {closed:?} after {seen:?}"
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn text_over_16_kib_is_too_large_and_16_kib_is_fine() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    v.send("big-1", &"x".repeat(MAX_TEXT_BYTES + 1)).await?;
    let e = expect_error(&mut v, "too_large").await?;
    assert_eq!(e.code, ErrorCode::TooLarge, "{e:?}");
    assert_eq!(
        e.client_id.as_ref().map(|c| c.0.as_str()),
        Some("big-1"),
        "too_large must name the client_id"
    );
    // Multi-byte: 5462 × "가" (3 bytes) = 16386 bytes > 16 KiB although only 5462 characters.
    v.send("big-2", &"가".repeat(5462)).await?;
    let e = expect_error(&mut v, "too_large for multi-byte text").await?;
    assert_eq!(e.code, ErrorCode::TooLarge, "limit is in bytes: {e:?}");

    v.send("exact", &"y".repeat(MAX_TEXT_BYTES)).await?;
    assert_eq!(
        v.expect_ack("exact").await?,
        1,
        "exactly 16 KiB is allowed, and the refused ones stored nothing"
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn empty_text_and_bad_client_id_are_invalid() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    v.send("empty-1", "").await?;
    let e = expect_error(&mut v, "invalid for empty text").await?;
    assert_eq!(e.code, ErrorCode::Invalid, "{e:?}");
    v.send("has space!", "hello").await?;
    let e = expect_error(&mut v, "invalid for a bad client_id").await?;
    assert_eq!(e.code, ErrorCode::Invalid, "{e:?}");
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn websocket_message_over_64_kib_closes_with_1009() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    let huge = format!(
        r#"{{"type":"send","client_id":"huge","text":"{}"}}"#,
        "z".repeat(70 * 1024)
    );
    v.sock.send_text(huge).await?;
    let (closed, seen) = v.sock.expect_close().await?;
    match closed {
        Closed::Frame(Some(frame)) => assert_eq!(
            frame.code,
            CloseCode::Size,
            "expected close 1009, got {frame:?}; frames before: {seen:?}"
        ),
        other => {
            bail!("expected a close frame with code 1009, got {other:?}; frames before: {seen:?}")
        }
    }
    // The relay itself is fine.
    let mut again = VisitorClient::connect(&relay, None).await?;
    again.send("after", "ok").await?;
    again.expect_ack("after").await?;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn origins_and_sites_are_checked_on_the_visitor_socket() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let url = relay.ws_url("/ws/visitor?site=demo");

    let r = RawSocket::refused(&url, &[("Origin", "http://evil.example")]).await?;
    assert_eq!(r.status, 403, "foreign origin: {r:?}");
    assert_eq!(
        r.error_code().as_deref(),
        Some("origin_not_allowed"),
        "{r:?}"
    );

    let r = RawSocket::refused(&url, &[]).await?;
    assert_eq!(r.status, 403, "no Origin header: {r:?}");
    assert_eq!(
        r.error_code().as_deref(),
        Some("origin_not_allowed"),
        "{r:?}"
    );

    let r = RawSocket::refused(
        &relay.ws_url("/ws/visitor?site=nope"),
        &[("Origin", relay.origin().as_str())],
    )
    .await?;
    assert_eq!(r.status, 404, "unknown site: {r:?}");
    assert_eq!(r.error_code().as_deref(), Some("unknown_site"), "{r:?}");

    let response = reqwest::get(relay.url("/api/sites/nope")).await?;
    assert_eq!(response.status().as_u16(), 404);
    let response = reqwest::get(relay.url("/api/sites/demo")).await?;
    assert_eq!(response.status().as_u16(), 200);
    let site: serde_json::Value = response.json().await?;
    assert_eq!(site["key"], "demo", "{site}");
    assert!(
        site["name"].is_string() && site["agents_online"].is_number(),
        "{site}"
    );

    // The positive control: the right origin opens.
    VisitorClient::connect(&relay, None).await?;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_flood_is_rate_limited_but_nothing_is_dropped() -> anyhow::Result<()> {
    const N: usize = 60;
    let relay = start_server().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    let ids: Vec<String> = (0..N).map(|i| format!("f{i}")).collect();
    for id in &ids {
        v.send(id, &format!("flood {id}")).await?;
    }

    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    let mut other_errors = Vec::new();
    while acked.len() + refused.len() < N {
        let frame = v.next_frame().await.with_context(|| {
            format!(
                "only {} acks and {} refusals for {N} sends: some were dropped silently",
                acked.len(),
                refused.len()
            )
        })?;
        match frame {
            ToVisitor::Ack { client_id, seq, .. } => {
                acked.insert(client_id.0, seq);
            }
            ToVisitor::Error(e) if e.code == ErrorCode::RateLimited => {
                let id = e
                    .client_id
                    .clone()
                    .with_context(|| format!("rate_limited without client_id: {e:?}"))?;
                let wait = e
                    .retry_after_ms
                    .with_context(|| format!("rate_limited without retry_after_ms: {e:?}"))?;
                refused.insert(id.0, wait);
            }
            ToVisitor::Error(e) => other_errors.push(e),
            _ => {}
        }
    }
    assert!(
        other_errors.is_empty(),
        "unexpected errors: {other_errors:?}"
    );
    assert!(
        !refused.is_empty(),
        "{N} sends at once must exceed the burst of 20, yet all were acked"
    );
    assert!(
        acked.len() >= 10,
        "at least the burst should be accepted, got {} acks",
        acked.len()
    );
    assert!(
        refused.values().all(|&ms| ms > 0 && ms <= 60_000),
        "retry_after_ms out of range: {refused:?}"
    );

    // Retry each refused send after the advised wait, as a client must.
    let mut pending: Vec<(String, u64)> = refused.into_iter().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some((id, wait)) = pending.pop() {
        if tokio::time::Instant::now() > deadline {
            bail!(
                "retries did not drain within 60 s; {} left",
                pending.len() + 1
            );
        }
        tokio::time::sleep(Duration::from_millis(wait)).await;
        v.send(&id, &format!("flood {id}")).await?;
        let answer = v
            .expect(&format!("ack or error for retried {id}"), |f| match f {
                ToVisitor::Ack { client_id, .. } => client_id.0 == id,
                ToVisitor::Error(e) => e.client_id.as_ref().is_some_and(|c| c.0 == id),
                _ => false,
            })
            .await?;
        match answer {
            ToVisitor::Ack { seq, .. } => {
                acked.insert(id, seq);
            }
            ToVisitor::Error(e) if e.code == ErrorCode::RateLimited => {
                pending.push((id, e.retry_after_ms.unwrap_or(200)));
            }
            other => bail!("retrying {id}: {other:?}"),
        }
    }
    assert_eq!(acked.len(), N, "every send ends up stored");
    let seqs: BTreeSet<u64> = acked.values().copied().collect();
    let expected: BTreeSet<u64> = (1..=N as u64).collect();
    assert_eq!(
        seqs, expected,
        "each stored exactly once with seqs 1..={N} (no gaps, no duplicates)"
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn logins_are_checked_and_rate_limited() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let http = reqwest::Client::new();
    let (user, _, pass) = AGENTS[1];

    let bad = http
        .post(relay.url("/api/login"))
        .json(&serde_json::json!({"username": user, "password": "wrong"}))
        .send()
        .await?;
    assert_eq!(bad.status().as_u16(), 401);
    let body: serde_json::Value = bad.json().await?;
    assert_eq!(body["error"], "bad_credentials", "{body}");

    let unknown = http
        .post(relay.url("/api/login"))
        .json(&serde_json::json!({"username": "nobody", "password": "x"}))
        .send()
        .await?;
    assert_eq!(
        unknown.status().as_u16(),
        401,
        "an unknown user looks like a bad password"
    );

    // The right password works before the limit is hit.
    login_cookie(&relay, user, pass).await?;

    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..30 {
        let r = http
            .post(relay.url("/api/login"))
            .json(&serde_json::json!({"username": user, "password": "still wrong"}))
            .send()
            .await?;
        let status = r.status().as_u16();
        statuses.push(status);
        if status == 429 {
            limited = Some(r.json::<serde_json::Value>().await?);
            break;
        }
    }
    let body = limited.with_context(|| {
        format!("30 bad logins in a row were never rate limited; statuses: {statuses:?}")
    })?;
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert!(
        body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
        "429 must say when to retry: {body}"
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_agent_socket_needs_a_session_and_the_relays_origin() -> anyhow::Result<()> {
    let relay = start_server().await?;
    let url = relay.ws_url("/ws/agent");

    let r = RawSocket::refused(&url, &[]).await?;
    assert_eq!(r.status, 401, "no cookie: {r:?}");
    assert_eq!(r.error_code().as_deref(), Some("unauthorized"), "{r:?}");

    let r = RawSocket::refused(&url, &[("Cookie", "parley_session=forged")]).await?;
    assert_eq!(r.status, 401, "forged cookie: {r:?}");

    let (user, _, pass) = AGENTS[0];
    let cookie = login_cookie(&relay, user, pass).await?;
    let r = RawSocket::refused(
        &url,
        &[
            ("Cookie", cookie.as_str()),
            ("Origin", "http://evil.example"),
        ],
    )
    .await?;
    assert_eq!(r.status, 403, "foreign origin with a valid cookie: {r:?}");

    // Positive controls: own origin, and no origin (a bot).
    RawSocket::connect(
        &url,
        &[
            ("Cookie", cookie.as_str()),
            ("Origin", relay.origin().as_str()),
        ],
    )
    .await
    .context("own origin with a valid cookie must open")?;
    RawSocket::connect(&url, &[("Cookie", cookie.as_str())])
        .await
        .context("no origin with a valid cookie must open")?;

    let me = reqwest::Client::new()
        .get(relay.url("/api/me"))
        .header("Cookie", cookie.as_str())
        .send()
        .await?;
    assert_eq!(me.status().as_u16(), 200);
    let me: serde_json::Value = me.json().await?;
    assert_eq!(me["username"], user, "{me}");
    let anon = reqwest::get(relay.url("/api/me")).await?;
    assert_eq!(anon.status().as_u16(), 401);
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_public_url_makes_the_cookie_host_only_and_the_origin_exact() -> anyhow::Result<()> {
    let relay = parley_tests::TestRelay::builder()
        .config(|c| c.public_url = Some("https://chat.example.com".into()))
        .start()
        .await?;
    let (user, _, pass) = AGENTS[0];
    let http = reqwest::Client::new();
    let login = |origin: &'static str| {
        http.post(relay.url("/api/login"))
            .header("Origin", origin)
            .json(&serde_json::json!({"username": user, "password": pass}))
            .send()
    };
    // The relay is reached as 127.0.0.1 (a proxy rewrote Host): the public URL decides.
    for origin in [
        "http://chat.example.com",
        "https://chat.example.com:8443",
        "https://evil.example",
    ] {
        let r = login(origin).await?;
        assert_eq!(r.status().as_u16(), 403, "{origin}");
    }
    let r = login("https://chat.example.com").await?;
    assert_eq!(r.status().as_u16(), 200);
    let set_cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .context("a session cookie")?
        .to_owned();
    assert!(
        set_cookie.starts_with("__Host-parley_session=")
            && set_cookie.contains("; Secure")
            && set_cookie.contains("Path=/")
            && !set_cookie.contains("Domain"),
        "{set_cookie}"
    );
    let pair = set_cookie
        .split(';')
        .next()
        .context("name=value")?
        .to_owned();
    RawSocket::connect(
        &relay.ws_url("/ws/agent"),
        &[
            ("Cookie", pair.as_str()),
            ("Origin", "https://chat.example.com"),
        ],
    )
    .await
    .context("the __Host- cookie opens the agent socket from the public origin")?;
    // The same secret under the old name is not a session here.
    let renamed = pair.replacen("__Host-parley_session", "parley_session", 1);
    let r = RawSocket::refused(&relay.ws_url("/ws/agent"), &[("Cookie", renamed.as_str())]).await?;
    assert_eq!(r.status, 401, "{r:?}");
    relay.shutdown().await;
    Ok(())
}

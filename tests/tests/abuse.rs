//! Strangers against a real relay: what they can make it spend and whom they can keep out.
//! Attackers connect from other loopback addresses (127.0.0.2 …), so the relay sees them as
//! other hosts than the agent or visitor on 127.0.0.1, as it would on the internet.
//!
//! - a stranger guessing an agent's password locks only themselves out;
//! - made-up usernames do not buy a stranger more password checks;
//! - slowloris (1,000 connections sending their headers a byte a second) neither stops a new
//!   visitor from chatting nor keeps its connections: past the per-address cap they are closed
//!   at once, and the rest when the header-read timeout fires;
//! - no user-controlled line break reaches a log line unescaped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use parley_tests::{AgentClient, TestRelay, VisitorClient, AGENTS};
use protocol::VisitorBody;
use tokio::io::AsyncWriteExt;

/// A log sink shared by every test of this file: the relay's lines, as a terminal would get them.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// Installs the capturing subscriber once for this test binary.
fn logs() -> Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let sink = captured.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .with_writer(move || sink.clone())
            .try_init();
        captured
    })
    .clone()
}

/// An HTTP client whose connections come from `ip` (any 127.x address works on loopback).
fn client_from(ip: Ipv4Addr) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .build()?)
}

async fn try_login(
    http: &reqwest::Client,
    relay: &TestRelay,
    user: &str,
    pass: &str,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let r = http
        .post(relay.url("/api/login"))
        .json(&serde_json::json!({"username": user, "password": pass}))
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or_default()))
}

#[tokio::test]
async fn a_stranger_cannot_lock_an_agent_out() -> anyhow::Result<()> {
    logs();
    let relay = parley_tests::start_server().await?;
    let (user, _, pass) = AGENTS[1];
    let stranger = client_from(Ipv4Addr::new(127, 0, 0, 2))?;
    let mut statuses = Vec::new();
    for n in 0..40 {
        let (status, body) = try_login(&stranger, &relay, user, &format!("guess{n}")).await?;
        statuses.push(status);
        if status == 429 {
            assert_eq!(body["error"], "rate_limited", "{body}");
            break;
        }
        assert_eq!(status, 401, "a wrong guess: {body}");
    }
    assert_eq!(
        statuses.last(),
        Some(&429),
        "40 guesses were never throttled: {statuses:?}"
    );
    // The stranger is really kept out: the right password does not get past the limit either.
    let (status, _) = try_login(&stranger, &relay, user, pass).await?;
    assert_eq!(
        status, 429,
        "the guesser's own limit holds for the right password"
    );
    // The agent, from her own address, signs in at once.
    let (status, body) = try_login(&reqwest::Client::new(), &relay, user, pass).await?;
    assert_eq!(
        status, 200,
        "the agent was locked out by a stranger: {body}"
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn made_up_usernames_do_not_buy_more_password_checks() -> anyhow::Result<()> {
    logs();
    let relay = TestRelay::builder()
        .limits(|l| l.login_attempts_per_ip_per_minute = 12)
        .start()
        .await?;
    let sprayer = client_from(Ipv4Addr::new(127, 0, 0, 3))?;
    let mut refused = 0;
    let mut throttled = 0;
    for n in 0..30 {
        let (status, body) = try_login(&sprayer, &relay, &format!("nobody{n}"), "x").await?;
        match status {
            401 => refused += 1,
            429 => {
                throttled += 1;
                assert!(
                    body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
                    "429 says when to retry: {body}"
                );
            }
            other => anyhow::bail!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(refused, 12, "exactly the per-address budget was checked");
    assert_eq!(throttled, 18);
    // Bad bodies are refused before any limit or hash: typed, JSON, 400.
    let (status, body) = try_login(&sprayer, &relay, &"u".repeat(65), "x").await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid")),
        "{body}"
    );
    let r = sprayer
        .post(relay.url("/api/login"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.context("a JSON error body")?;
    assert_eq!(body["error"], "invalid", "{body}");
    relay.shutdown().await;
    Ok(())
}

/// Opens a TCP connection to `to` from `from`.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    socket.connect(to).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_neither_stops_a_visitor_nor_keeps_its_connections() -> anyhow::Result<()> {
    logs();
    // 1,000 attacking sockets, the relay's side of the admitted ones, and the test's own.
    rlimit::increase_nofile_limit(u64::MAX).context("open-file limit")?;
    const ATTACKERS: usize = 1_000;
    const PER_IP: usize = 100;
    let relay = TestRelay::builder()
        .limits(|l| {
            l.max_connections_per_ip = PER_IP;
            l.header_read_timeout = Duration::from_secs(3);
        })
        .start()
        .await?;
    let attacker_ip = Ipv4Addr::new(127, 0, 0, 4);
    let mut sockets = Vec::with_capacity(ATTACKERS);
    for _ in 0..ATTACKERS {
        sockets.push(connect_from(attacker_ip, relay.addr()).await?);
    }
    // Each sends its request head one byte a second, for as long as the relay lets it.
    let head = b"GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let attack = tokio::spawn(async move {
        let mut open: Vec<Option<tokio::net::TcpStream>> = sockets.into_iter().map(Some).collect();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for byte in head.iter().cycle() {
            tick.tick().await;
            for slot in open.iter_mut() {
                if let Some(s) = slot {
                    if s.write_all(&[*byte]).await.is_err() {
                        *slot = None;
                    }
                }
            }
            if open.iter().all(Option::is_none) {
                return;
            }
        }
    });

    // Meanwhile a new visitor chats with an agent, from its own address.
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    let mut visitor = VisitorClient::connect(&relay, None).await?;
    visitor.send("m1", "hello under attack").await?;
    visitor.expect_ack("m1").await?;
    let conversation = visitor.conversation_id.clone().context("conversation")?;
    agent.open(&conversation, None).await?;
    agent.take(&conversation).await?;
    agent.send(&conversation, "a1", "we hear you").await?;
    visitor
        .expect_event(
            "the agent's reply",
            |e| matches!(&e.body, VisitorBody::Message { text, .. } if text == "we hear you"),
        )
        .await?;

    // Every attacking socket ends: the ones over the cap at once, the rest at the timeout.
    tokio::time::timeout(Duration::from_secs(30), attack)
        .await
        .context("attacking sockets still open 30 s on")??;
    let metrics = reqwest::get(relay.url("/metrics")).await?.text().await?;
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("parley_connections_refused_total "))
        .context("refusal counter exported")?
        .trim()
        .parse()?;
    assert!(
        refused >= (ATTACKERS - PER_IP) as u64,
        "only {refused} connections refused at the per-address cap of {PER_IP}"
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn no_user_controlled_line_break_reaches_a_log_line() -> anyhow::Result<()> {
    let captured = logs();
    let relay = parley_tests::start_server().await?;
    let http = client_from(Ipv4Addr::new(127, 0, 0, 5))?;
    // Line and paragraph separators and a bidi override pass the username rules (they are not
    // control characters) and are logged; newlines are refused before anything is logged.
    let forged = "mina\u{2028}2026-12-07T00:00:00Z  INFO login ok username=admin\u{202e}";
    let (status, _) = try_login(&http, &relay, forged, "x").await?;
    assert_eq!(status, 401);
    let (status, _) = try_login(&http, &relay, "x\nINFO login ok username=admin", "x").await?;
    assert_eq!(status, 400);
    relay.shutdown().await;

    let text = captured.text();
    // Positive control: the refusal was logged, with the separator escaped.
    assert!(
        text.contains("login refused") && text.contains("mina\\u{2028}2026"),
        "the refused login is in the log, escaped:\n{text}"
    );
    for line in text.lines() {
        assert!(
            line.len() > 20 && line.as_bytes()[..4].iter().all(u8::is_ascii_digit),
            "a line that is not the logger's own (forged?): {line:?}"
        );
        assert!(
            !line.contains('\u{2028}') && !line.contains('\u{202e}'),
            "{line:?}"
        );
    }
    Ok(())
}

/// A visitor socket for the `demo` site opened from `from`, past its `hello` (with `token`):
/// the relay's first answer.
async fn hello_from(
    relay: &TestRelay,
    from: Ipv4Addr,
    token: Option<&str>,
) -> anyhow::Result<protocol::ToVisitor> {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    use tokio_tungstenite::tungstenite::Message;
    let tcp = connect_from(from, relay.addr()).await?;
    let mut request = relay
        .ws_url("/ws/visitor?site=demo")
        .into_client_request()?;
    request
        .headers_mut()
        .insert("origin", relay.origin().parse()?);
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await?;
    let hello = serde_json::json!({"type": "hello", "v": 1, "token": token});
    ws.send(Message::Text(hello.to_string().into())).await?;
    loop {
        match tokio::time::timeout(parley_tests::TIMEOUT, ws.next())
            .await
            .context("no answer to hello")?
        {
            Some(Ok(Message::Text(text))) => {
                let frame: protocol::ToVisitor = serde_json::from_str(&text)?;
                if !matches!(frame, protocol::ToVisitor::Presence { .. }) {
                    return Ok(frame);
                }
            }
            Some(Ok(_)) => {}
            other => anyhow::bail!("socket ended before an answer: {other:?}"),
        }
    }
}

#[tokio::test]
async fn new_visitors_are_limited_per_address_returning_ones_are_not() -> anyhow::Result<()> {
    logs();
    let relay = TestRelay::builder()
        .limits(|l| l.new_visitors_per_ip_per_minute = 3)
        .start()
        .await?;
    let flood = Ipv4Addr::new(127, 0, 0, 6);
    let mut tokens = Vec::new();
    for _ in 0..3 {
        match hello_from(&relay, flood, None).await? {
            protocol::ToVisitor::Welcome { token, .. } => tokens.push(token),
            other => anyhow::bail!("expected welcome, got {other:?}"),
        }
    }
    match hello_from(&relay, flood, None).await? {
        protocol::ToVisitor::Error(e) => {
            assert_eq!(e.code, protocol::ErrorCode::RateLimited, "{e:?}");
            assert!(e.retry_after_ms.is_some_and(|ms| ms > 0), "{e:?}");
        }
        other => anyhow::bail!("a fourth new visitor a minute was let in: {other:?}"),
    }
    // A returning visitor from the same address is not a new row: let in.
    assert!(matches!(
        hello_from(&relay, flood, Some(&tokens[0])).await?,
        protocol::ToVisitor::Welcome { .. }
    ));
    // Positive control: another address is not limited by this one.
    assert!(matches!(
        hello_from(&relay, Ipv4Addr::new(127, 0, 0, 7), None).await?,
        protocol::ToVisitor::Welcome { .. }
    ));
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn page_changes_are_written_at_most_every_two_seconds_and_the_last_one_wins(
) -> anyhow::Result<()> {
    logs();
    let relay = parley_tests::start_server().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    v.send("m1", "hello").await?;
    v.expect_ack("m1").await?;
    let conversation = v.conversation_id.clone().context("conversation")?;
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    // Ten page changes at once (a script rewriting the URL): each would be a store write and a
    // summary to every agent.
    for n in 0..10 {
        v.sock
            .send_json(&protocol::VisitorFrame::Context {
                context: protocol::PageContext {
                    url: relay.url(&format!("/page-{n}")),
                    ..Default::default()
                },
            })
            .await?;
    }
    let last = relay.url("/page-9");
    let mut summaries = Vec::new();
    loop {
        match agent
            .next_frame()
            .await
            .context("the last page reaches the agent")?
        {
            protocol::ToAgent::Conversation(c) if c.id == conversation => {
                let url = c.context.url.clone();
                summaries.push(url.clone());
                if url == last {
                    break;
                }
            }
            _ => {}
        }
    }
    assert!(
        summaries.len() <= 2,
        "ten page changes cost {} writes: {summaries:?}",
        summaries.len()
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn behind_a_trusted_proxy_limits_apply_to_each_client_not_the_proxy() -> anyhow::Result<()> {
    logs();
    // The "proxy" is 127.0.0.8; everyone else connects directly.
    let relay = TestRelay::builder()
        .config(|c| c.trusted_proxies = vec!["127.0.0.8".into()])
        .start()
        .await?;
    let (user, _, pass) = AGENTS[1];
    let proxy = client_from(Ipv4Addr::new(127, 0, 0, 8))?;
    let via_proxy = |client: &'static str, password: &'static str| {
        proxy
            .post(relay.url("/api/login"))
            .header("x-forwarded-for", client)
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
    };
    // A guesser behind the proxy is throttled by their own address...
    let mut last = 0;
    for _ in 0..15 {
        last = via_proxy("203.0.113.9", "guess").await?.status().as_u16();
        if last == 429 {
            break;
        }
    }
    assert_eq!(last, 429, "the guesser behind the proxy is throttled");
    // ...while the agent behind the same proxy signs in.
    let r = via_proxy("198.51.100.7", pass).await?;
    assert_eq!(r.status().as_u16(), 200, "another client behind the proxy");
    // A client that is not the proxy cannot pick its own address with the header.
    let direct = client_from(Ipv4Addr::new(127, 0, 0, 9))?;
    let mut last = 0;
    for n in 0..15 {
        last = direct
            .post(relay.url("/api/login"))
            .header("x-forwarded-for", format!("192.0.2.{n}"))
            .json(&serde_json::json!({"username": user, "password": "guess"}))
            .send()
            .await?
            .status()
            .as_u16();
        if last == 429 {
            break;
        }
    }
    assert_eq!(last, 429, "a spoofed X-Forwarded-For changes nothing");
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn requests_past_the_in_flight_budget_are_shed_with_a_typed_error() -> anyhow::Result<()> {
    // Positive control: with the default budget the same request is served.
    let relay = TestRelay::builder().start().await?;
    let ok = reqwest::get(relay.url("/api/sites/demo")).await?;
    assert_eq!(ok.status().as_u16(), 200);
    relay.shutdown().await;
    // No place at all: every request is answered at once, `503 busy` as JSON, none queued.
    let relay = TestRelay::builder()
        .limits(|l| l.max_requests_in_flight = 0)
        .start()
        .await?;
    for path in [
        "/api/sites/demo",
        "/api/me",
        "/ws/visitor?site=demo",
        "/widget.js",
    ] {
        let r = reqwest::get(relay.url(path)).await?;
        assert_eq!(r.status().as_u16(), 503, "{path}");
        let body: serde_json::Value = r.json().await?;
        assert_eq!(body["error"], "busy", "{path}: {body}");
    }
    // Operators' probes are outside the budget: a relay shedding load is alive.
    for path in ["/healthz", "/metrics"] {
        let r = reqwest::get(relay.url(path)).await?;
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    relay.shutdown().await;
    Ok(())
}

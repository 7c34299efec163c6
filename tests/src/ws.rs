//! WebSocket clients that speak the Parley protocol over real sockets: [`VisitorClient`] (what the
//! widget does), [`AgentClient`] (what the console does) and [`RawSocket`] (bytes on the wire, for
//! feeding the relay garbage); and [`Vanished`], a socket whose client went silent without
//! closing it (a half-open connection, as the relay sees a phone that lost its network).
//!
//! Every read has a deadline: a test that waits for a frame that never comes fails with the frames
//! it did receive, rather than hanging.

use std::fmt::Debug;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use futures::{FutureExt as _, SinkExt as _, StreamExt as _};
use protocol::{
    AgentFrame, AgentInfo, ClientId, ConversationId, ConversationSummary, Event, PageContext, Seq,
    ToAgent, ToVisitor, VisitorEvent, VisitorFrame, PROTOCOL_VERSION,
};
use serde::de::DeserializeOwned;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{TestRelay, TIMEOUT};

/// The underlying stream type.
type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket with deadlines on every read and nothing protocol-specific.
pub struct RawSocket {
    /// The connection.
    ws: Ws,
}

/// How a refused WebSocket upgrade was answered.
#[derive(Debug)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// Body text (the JSON error).
    pub body: String,
}

impl Refusal {
    /// The `error` field of the JSON body, if the body is JSON with one.
    pub fn error_code(&self) -> Option<String> {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()?
            .get("error")?
            .as_str()
            .map(str::to_owned)
    }
}

/// What came back when a socket was expected to close.
#[derive(Debug)]
pub enum Closed {
    /// A close frame (with its code and reason, if any).
    Frame(Option<CloseFrame>),
    /// The TCP connection ended (or errored) without a close frame.
    Dropped(String),
}

impl RawSocket {
    /// Opens `url` with extra request headers (e.g. `Origin`, `Cookie`).
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Self, tungstenite::Error> {
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            let value = HeaderValue::from_str(value)
                .map_err(|e| tungstenite::Error::HttpFormat(e.into()))?;
            let name: tungstenite::http::HeaderName =
                name.parse()
                    .map_err(|e: tungstenite::http::header::InvalidHeaderName| {
                        tungstenite::Error::HttpFormat(e.into())
                    })?;
            request.headers_mut().insert(name, value);
        }
        let (ws, _response) =
            tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
                .await
                .map_err(|_| tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into()))??;
        Ok(Self { ws })
    }

    /// Tries to open `url` and expects the upgrade to be refused with an HTTP status.
    pub async fn refused(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Refusal> {
        match Self::connect(url, headers).await {
            Ok(_) => bail!("expected the upgrade of {url} to be refused, but the socket opened"),
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Ok(Refusal { status, body })
            }
            Err(e) => bail!("expected an HTTP refusal from {url}, got another error: {e}"),
        }
    }

    /// Goes silent without closing: see [`Vanished`].
    pub fn vanish(self) -> Vanished {
        Vanished {
            ws: self.ws,
            since: tokio::time::Instant::now(),
            bytes: Vec::new(),
            ended: None,
        }
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) -> anyhow::Result<()> {
        self.ws
            .send(Message::Text(text.into().into()))
            .await
            .context("sending a text frame")
    }

    /// Sends a serializable frame as JSON.
    pub async fn send_json<T: serde::Serialize>(&mut self, frame: &T) -> anyhow::Result<()> {
        self.send_text(serde_json::to_string(frame)?).await
    }

    /// The next data or close message (pings and pongs are skipped), within `within`.
    pub async fn next_message_within(&mut self, within: Duration) -> anyhow::Result<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow!("no frame within {within:?}"))?;
            match next {
                None => bail!("the socket ended"),
                Some(Err(e)) => bail!("the socket failed: {e}"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => return Ok(m),
            }
        }
    }

    /// The next data or close message within `within`: `Ok(None)` when nothing came in time
    /// (the socket is still usable), an error when the socket ended or failed. For clients that
    /// poll their socket between other work (the fault tests' resilient clients).
    pub async fn try_next(&mut self, within: Duration) -> anyhow::Result<Option<Message>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline, self.ws.next()).await else {
                return Ok(None);
            };
            match next {
                None => bail!("the socket ended"),
                Some(Err(e)) => bail!("the socket failed: {e}"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => return Ok(Some(m)),
            }
        }
    }

    /// The next text frame within [`TIMEOUT`]; a close or binary frame is an error.
    pub async fn next_text(&mut self) -> anyhow::Result<String> {
        self.next_text_within(TIMEOUT).await
    }

    /// The next text frame within `within`.
    pub async fn next_text_within(&mut self, within: Duration) -> anyhow::Result<String> {
        match self.next_message_within(within).await? {
            Message::Text(t) => Ok(t.to_string()),
            Message::Close(c) => bail!("the relay closed the socket: {c:?}"),
            other => bail!("expected a text frame, got {other:?}"),
        }
    }

    /// The next text frame parsed as `T`; the error quotes the text if it does not parse.
    pub async fn next_json<T: DeserializeOwned>(&mut self) -> anyhow::Result<T> {
        let text = self.next_text().await?;
        serde_json::from_str(&text).map_err(|e| anyhow!("frame does not parse ({e}): {text}"))
    }

    /// Waits for the relay to close the socket with `code`; fails on any other ending.
    pub async fn expect_close_code(&mut self, code: u16, what: &str) -> anyhow::Result<()> {
        match self.expect_close().await? {
            (Closed::Frame(Some(frame)), _) if u16::from(frame.code) == code => Ok(()),
            other => bail!("{what}: expected close {code}, got {other:?}"),
        }
    }

    /// Reads until the relay closes the socket; reports how. Text frames before the close are
    /// returned too so a failing assertion can show them.
    pub async fn expect_close(&mut self) -> anyhow::Result<(Closed, Vec<String>)> {
        let mut seen = Vec::new();
        let mut write_errors = 0;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| {
                    anyhow!("the relay did not close the socket within {TIMEOUT:?}; saw {seen:?}")
                })?;
            match next {
                None => return Ok((Closed::Dropped("stream ended".into()), seen)),
                // Answering a buffered ping can fail once the peer has gone (broken pipe) while
                // its close frame is still unread: keep reading what was received.
                Some(Err(tungstenite::Error::Io(e))) if write_errors < 8 => {
                    write_errors += 1;
                    seen.push(format!("(io error: {e})"));
                }
                Some(Err(e)) => return Ok((Closed::Dropped(e.to_string()), seen)),
                Some(Ok(Message::Close(frame))) => return Ok((Closed::Frame(frame), seen)),
                Some(Ok(Message::Text(t))) => seen.push(t.to_string()),
                Some(Ok(_)) => {}
            }
        }
    }
}

/// A socket its client stopped reading and writing without closing it: the TCP connection stays
/// open, what the relay sends piles up unread in the kernel's buffers, and no pong answers its
/// pings, which is what the relay sees of a phone that lost its network. Made by
/// [`RawSocket::vanish`] / [`VisitorClient::vanish`]; the client meanwhile reconnects on a new
/// socket. Dropping it closes the connection.
pub struct Vanished {
    /// The connection, never polled through tungstenite again: polling would answer the
    /// relay's queued pings and make the peer look alive.
    ws: Ws,
    /// When the client went silent.
    since: tokio::time::Instant,
    /// What has been read off the TCP stream so far (never answered).
    bytes: Vec<u8>,
    /// When the end of the stream was first seen, if it was.
    ended: Option<tokio::time::Instant>,
}

/// How the relay ended a [`Vanished`] socket.
#[derive(Debug)]
pub struct RelayClosed {
    /// The close frame's code and reason, if the last thing it sent was a close frame.
    pub close: Option<(u16, String)>,
    /// From going silent until the end of the connection was seen: exact if it was waited for
    /// ([`Vanished::closed_by_relay`] on a socket still open), else an upper bound.
    pub after: Duration,
    /// Bytes the relay had sent in the meantime (events, pings, the close frame).
    pub bytes: usize,
}

impl Vanished {
    /// When the client went silent.
    pub fn since(&self) -> tokio::time::Instant {
        self.since
    }

    /// Whether the relay still holds the connection: takes what it sent so far off the TCP
    /// stream, without waiting and without answering, and sees whether that ends.
    pub fn still_open(&mut self) -> anyhow::Result<bool> {
        let mut chunk = [0u8; 4096];
        while self.ended.is_none() {
            match self.ws.get_mut().read(&mut chunk).now_or_never() {
                None => return Ok(true),
                Some(read) => self.took(read, &chunk)?,
            }
        }
        Ok(false)
    }

    /// Waits, still silent, until the relay ends the connection, at most until `deadline`.
    ///
    /// The bytes are read from the TCP stream under the WebSocket, never through tungstenite,
    /// so not even a pong goes out. A relay that gives up on the peer sends a close frame and
    /// then ends the connection; that close frame is the tail of what was read (a server's
    /// frames are not masked: `0x88`, a one-byte length, the code, the reason).
    pub async fn closed_by_relay(
        mut self,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<RelayClosed> {
        let mut chunk = [0u8; 4096];
        while self.ended.is_none() {
            let read = tokio::time::timeout_at(deadline, self.ws.get_mut().read(&mut chunk))
                .await
                .map_err(|_| {
                    anyhow!(
                        "the relay still held the silent socket {:?} after it went silent \
                         ({} bytes received meanwhile)",
                        deadline - self.since,
                        self.bytes.len()
                    )
                })?;
            self.took(read, &chunk)?;
        }
        let ended = self.ended.unwrap_or_else(tokio::time::Instant::now);
        Ok(RelayClosed {
            close: trailing_close_frame(&self.bytes),
            after: ended - self.since,
            bytes: self.bytes.len(),
        })
    }

    /// Keeps what one read returned, or notes the end of the stream.
    fn took(&mut self, read: std::io::Result<usize>, chunk: &[u8]) -> anyhow::Result<()> {
        match read {
            Ok(0) => self.ended = Some(tokio::time::Instant::now()),
            Ok(n) => self.bytes.extend_from_slice(&chunk[..n]),
            // Ended without a FIN (a reset): still an end, and what was read still counts.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                self.ended = Some(tokio::time::Instant::now())
            }
            Err(e) => return Err(e).context("reading the silent socket"),
        }
        Ok(())
    }
}

/// The close frame at the very end of what a server sent, if that is what ends it.
fn trailing_close_frame(bytes: &[u8]) -> Option<(u16, String)> {
    // A close payload is at most 125 bytes, so its header is two bytes and it starts within
    // the last 127. Several candidates may look like a header; the one whose length reaches
    // exactly to the end is the frame.
    let from = bytes.len().saturating_sub(127);
    (from..bytes.len().saturating_sub(1)).find_map(|at| {
        let len = usize::from(bytes[at + 1]);
        let payload = bytes.get(at + 2..)?;
        (bytes[at] == 0x88 && len <= 125 && payload.len() == len).then(|| {
            match payload {
                [hi, lo, reason @ ..] => (
                    u16::from_be_bytes([*hi, *lo]),
                    String::from_utf8_lossy(reason).into_owned(),
                ),
                // A close frame without a code: 1005 by RFC 6455 §7.1.5.
                _ => (1005, String::new()),
            }
        })
    })
}

/// Reads frames of type `T` until one matches, failing after [`TIMEOUT`] with everything seen.
async fn expect_frame<T: DeserializeOwned + Debug>(
    sock: &mut RawSocket,
    what: &str,
    mut matches: impl FnMut(&T) -> bool,
    mut on_frame: impl FnMut(&T),
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut seen: Vec<String> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let text = match sock.next_text_within(left).await {
            Ok(t) => t,
            Err(e) => bail!("waiting for {what}: {e}; frames seen meanwhile: {seen:#?}"),
        };
        let frame: T = serde_json::from_str(&text)
            .map_err(|e| anyhow!("waiting for {what}: a frame does not parse ({e}): {text}"))?;
        on_frame(&frame);
        if matches(&frame) {
            return Ok(frame);
        }
        seen.push(text);
    }
}

/// Reads frames for `within` and fails if one matches (e.g. "no second event").
async fn expect_none<T: DeserializeOwned + Debug>(
    sock: &mut RawSocket,
    what: &str,
    within: Duration,
    mut matches: impl FnMut(&T) -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        // Only quiet counts as "none": a socket that ended or failed would hide the very
        // frame this check is looking for.
        match sock
            .try_next(left)
            .await
            .with_context(|| format!("while checking that no {what} arrives"))?
        {
            None => return Ok(()),
            Some(Message::Text(text)) => {
                let frame: T = serde_json::from_str(&text)
                    .map_err(|e| anyhow!("a frame does not parse ({e}): {text}"))?;
                if matches(&frame) {
                    bail!("expected no {what} within {within:?}, but got {text}");
                }
            }
            Some(Message::Close(c)) => bail!("the relay closed the socket: {c:?}"),
            Some(_) => {}
        }
    }
}

/// A visitor connected through `/ws/visitor?site=demo` with the relay's own origin, past `hello`.
pub struct VisitorClient {
    /// The socket.
    pub sock: RawSocket,
    /// The token from `welcome` (present it to reconnect as the same visitor).
    pub token: String,
    /// The visitor id from `welcome`.
    pub visitor_id: String,
    /// The conversation, once known (from `welcome` or the first `ack`).
    pub conversation_id: Option<ConversationId>,
    /// `welcome.last_seq`.
    pub welcome_last_seq: Seq,
    /// `welcome.recovered`.
    pub recovered: bool,
    /// `welcome.agents_online`.
    pub agents_online: u32,
    /// `welcome.available`: people can answer now (business hours and an agent online).
    pub available: bool,
    /// `welcome.opens_at`: the next opening when outside business hours.
    pub opens_at: Option<i64>,
    /// `welcome.bot_first`.
    pub bot_first: bool,
    /// `welcome.user_id`: the site's user this visitor is verified as.
    pub user_id: Option<String>,
}

impl VisitorClient {
    /// Opens the visitor socket for the `demo` site without saying hello.
    pub async fn raw(relay: &TestRelay) -> anyhow::Result<RawSocket> {
        Self::raw_on(relay, "demo").await
    }

    /// Opens the visitor socket for `site` without saying hello.
    pub async fn raw_on(relay: &TestRelay, site: &str) -> anyhow::Result<RawSocket> {
        RawSocket::connect(
            &relay.ws_url(&format!("/ws/visitor?site={site}")),
            &[("Origin", relay.origin().as_str())],
        )
        .await
        .context("opening /ws/visitor")
    }

    /// Connects as a new visitor of `site` (a site the test added to the config).
    pub async fn connect_on(relay: &TestRelay, site: &str) -> anyhow::Result<Self> {
        let sock = Self::raw_on(relay, site).await?;
        Self::greet(relay, sock, None, None, None).await
    }

    /// Connects to `site` presenting a visitor `token` (if any) and a signed `identity` token.
    pub async fn connect_identified(
        relay: &TestRelay,
        site: &str,
        token: Option<&str>,
        identity: &str,
    ) -> anyhow::Result<Self> {
        let sock = Self::raw_on(relay, site).await?;
        Self::greet(relay, sock, token, None, Some(identity)).await
    }

    /// Connects to `site` as the visitor owning `token`.
    pub async fn reconnect_on(relay: &TestRelay, site: &str, token: &str) -> anyhow::Result<Self> {
        let sock = Self::raw_on(relay, site).await?;
        Self::greet(relay, sock, Some(token), None, None).await
    }

    /// Connects as a new visitor (no token) or as the visitor owning `token`.
    pub async fn connect(relay: &TestRelay, token: Option<&str>) -> anyhow::Result<Self> {
        Self::connect_with(relay, token, None).await
    }

    /// Connects presenting `token` and the conversation and highest seq this client holds
    /// (`held`); the replayed events are left unread.
    pub async fn connect_with(
        relay: &TestRelay,
        token: Option<&str>,
        held: Option<(&ConversationId, Seq)>,
    ) -> anyhow::Result<Self> {
        let sock = Self::raw(relay).await?;
        Self::greet(relay, sock, token, held, None).await
    }

    /// Says `hello` on an open visitor socket and reads `welcome`.
    async fn greet(
        relay: &TestRelay,
        mut sock: RawSocket,
        token: Option<&str>,
        held: Option<(&ConversationId, Seq)>,
        identity: Option<&str>,
    ) -> anyhow::Result<Self> {
        sock.send_json(&VisitorFrame::Hello {
            identity: identity.map(str::to_owned),
            v: PROTOCOL_VERSION,
            token: token.map(str::to_owned),
            conversation_id: held.map(|(c, _)| c.clone()),
            last_seq: held.map(|(_, s)| s),
            context: PageContext {
                url: relay.url("/"),
                title: "Integration test".into(),
                language: "en-US".into(),
                ..Default::default()
            },
        })
        .await?;
        let frame: ToVisitor = sock.next_json().await.context("waiting for welcome")?;
        match frame {
            ToVisitor::Welcome {
                v,
                token,
                visitor_id,
                conversation_id,
                last_seq,
                recovered,
                agents_online,
                available,
                opens_at,
                bot_first,
                user_id,
            } => {
                if v != PROTOCOL_VERSION {
                    bail!("welcome speaks v{v}, expected v{PROTOCOL_VERSION}");
                }
                Ok(Self {
                    sock,
                    token,
                    visitor_id,
                    conversation_id,
                    welcome_last_seq: last_seq,
                    recovered,
                    agents_online,
                    available,
                    opens_at,
                    bot_first,
                    user_id,
                })
            }
            other => bail!("expected welcome after hello, got {other:?}"),
        }
    }

    /// Goes silent without closing the socket (see [`Vanished`]); keep `token` and the seq held
    /// to reconnect.
    pub fn vanish(self) -> Vanished {
        self.sock.vanish()
    }

    /// Sends a chat message.
    pub async fn send(&mut self, client_id: &str, text: &str) -> anyhow::Result<()> {
        self.sock
            .send_json(&VisitorFrame::Send {
                client_id: ClientId(client_id.into()),
                text: text.into(),
            })
            .await
    }

    /// Sends `typing`.
    pub async fn typing(&mut self, active: bool) -> anyhow::Result<()> {
        self.sock.send_json(&VisitorFrame::Typing { active }).await
    }

    /// The next frame within [`TIMEOUT`].
    pub async fn next_frame(&mut self) -> anyhow::Result<ToVisitor> {
        self.sock.next_json().await
    }

    /// Skips frames until one matches `pred`; fails after [`TIMEOUT`] listing what was seen.
    pub async fn expect(
        &mut self,
        what: &str,
        pred: impl FnMut(&ToVisitor) -> bool,
    ) -> anyhow::Result<ToVisitor> {
        let conversation = &mut self.conversation_id;
        expect_frame(&mut self.sock, what, pred, |f: &ToVisitor| {
            if let ToVisitor::Ack {
                conversation_id, ..
            } = f
            {
                *conversation = Some(conversation_id.clone());
            }
        })
        .await
    }

    /// Waits for the `ack` of `client_id` and returns its seq; an `error` naming it fails.
    pub async fn expect_ack(&mut self, client_id: &str) -> anyhow::Result<Seq> {
        let frame = self
            .expect(&format!("ack or error for {client_id}"), |f| match f {
                ToVisitor::Ack { client_id: c, .. } => c.0 == client_id,
                ToVisitor::Error(e) => e.client_id.as_ref().is_some_and(|c| c.0 == client_id),
                _ => false,
            })
            .await?;
        match frame {
            ToVisitor::Ack { seq, .. } => Ok(seq),
            other => bail!("expected an ack for {client_id}, got {other:?}"),
        }
    }

    /// Waits for an event matching `pred` (as a visitor sees it).
    pub async fn expect_event(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&VisitorEvent) -> bool,
    ) -> anyhow::Result<VisitorEvent> {
        match self
            .expect(what, |f| matches!(f, ToVisitor::Event(e) if pred(e)))
            .await?
        {
            ToVisitor::Event(e) => Ok(e),
            other => bail!("expected an event, got {other:?}"),
        }
    }

    /// Fails if a frame matching `pred` arrives within `within`.
    pub async fn expect_none(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl FnMut(&ToVisitor) -> bool,
    ) -> anyhow::Result<()> {
        expect_none(&mut self.sock, what, within, pred).await
    }
}

/// An agent logged in over HTTP and connected to `/ws/agent`, past `hello`.
pub struct AgentClient {
    /// The socket.
    pub sock: RawSocket,
    /// Who the relay says we are.
    pub agent: AgentInfo,
    /// The conversation list from `welcome`.
    pub conversations: Vec<ConversationSummary>,
    /// Agents online according to `welcome`.
    pub agents_online: Vec<AgentInfo>,
}

/// An agent's HTTP calls with their session cookie (the console's API, as the console makes
/// them).
pub struct HttpAgent {
    http: reqwest::Client,
    cookie: String,
    base: String,
}

impl HttpAgent {
    /// Logs in as `user`.
    pub async fn login(relay: &TestRelay, user: &str, pass: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::new(),
            cookie: login_cookie(relay, user, pass).await?,
            base: relay.base_url(),
        })
    }

    /// `method path` with an optional JSON body; the status and the JSON answer (`null` when
    /// the answer is not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Cookie", &self.cookie);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.context(path.to_owned())?;
        let status = response.status().as_u16();
        let body = response
            .json::<serde_json::Value>()
            .await
            .unwrap_or(serde_json::Value::Null);
        Ok((status, body))
    }
}

/// Logs in over HTTP and returns the `parley_session=…` cookie pair to send back.
pub async fn login_cookie(relay: &TestRelay, user: &str, pass: &str) -> anyhow::Result<String> {
    let response = reqwest::Client::new()
        .post(relay.url("/api/login"))
        .json(&serde_json::json!({ "username": user, "password": pass }))
        .send()
        .await
        .context("POST /api/login")?;
    let status = response.status();
    let cookie = response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("parley_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("login as {user} failed: HTTP {status}: {body}");
    }
    cookie.ok_or_else(|| anyhow!("login as {user} returned {status} but no parley_session cookie"))
}

/// `n` conversations of visitor `v`, one after another: each opened by a message
/// (`"{prefix} {i}"`), taken and closed by `agent`; returns them oldest first. The relay's
/// frame limits must allow it ([`crate::TestRelayBuilder::unthrottled_sockets`]).
pub async fn closed_conversations(
    agent: &mut AgentClient,
    v: &mut VisitorClient,
    n: usize,
    prefix: &str,
) -> anyhow::Result<Vec<ConversationId>> {
    let mut closed = Vec::with_capacity(n);
    for i in 0..n {
        let client_id = format!("{prefix}-{i}").replace(' ', "-");
        v.send(&client_id, &format!("{prefix} {i}")).await?;
        v.expect_ack(&client_id).await?;
        let c = v.conversation_id.clone().context("a conversation")?;
        agent.take(&c).await?;
        agent
            .sock
            .send_json(&AgentFrame::Close {
                conversation_id: c.clone(),
            })
            .await?;
        v.expect_event("closed", |e| e.body == protocol::VisitorBody::Closed)
            .await?;
        closed.push(c);
    }
    Ok(closed)
}

impl AgentClient {
    /// Logs in as `user` and opens the agent socket with the session cookie (and no Origin,
    /// like a bot).
    pub async fn login(relay: &TestRelay, user: &str, pass: &str) -> anyhow::Result<Self> {
        let cookie = login_cookie(relay, user, pass).await?;
        Self::with_cookie(relay, &cookie).await
    }

    /// Opens the agent socket with a session cookie from [`login_cookie`] and says `hello`.
    pub async fn with_cookie(relay: &TestRelay, cookie: &str) -> anyhow::Result<Self> {
        let mut sock = RawSocket::connect(&relay.ws_url("/ws/agent"), &[("Cookie", cookie)])
            .await
            .context("opening /ws/agent with the session cookie")?;
        sock.send_json(&AgentFrame::Hello {
            v: PROTOCOL_VERSION,
        })
        .await?;
        match sock.next_json::<ToAgent>().await.context("agent welcome")? {
            ToAgent::Welcome {
                agent,
                conversations,
                agents_online,
                ..
            } => Ok(Self {
                sock,
                agent,
                conversations,
                agents_online,
            }),
            other => bail!("expected welcome after agent hello, got {other:?}"),
        }
    }

    /// Subscribes to a conversation and returns the `history` the relay answers with.
    pub async fn open(
        &mut self,
        conversation_id: &ConversationId,
        after_seq: Option<Seq>,
    ) -> anyhow::Result<Vec<Event>> {
        self.sock
            .send_json(&AgentFrame::Open {
                conversation_id: conversation_id.clone(),
                after_seq,
            })
            .await?;
        match self
            .expect("history", |f| {
                matches!(f, ToAgent::History { conversation_id: c, .. } if c == conversation_id)
                    || matches!(f, ToAgent::Error(_))
            })
            .await?
        {
            ToAgent::History { events, .. } => Ok(events),
            other => bail!("expected history for {conversation_id}, got {other:?}"),
        }
    }

    /// Takes a conversation.
    pub async fn take(&mut self, conversation_id: &ConversationId) -> anyhow::Result<()> {
        self.sock
            .send_json(&AgentFrame::Take {
                conversation_id: conversation_id.clone(),
            })
            .await
    }

    /// Sends a reply.
    pub async fn send(
        &mut self,
        conversation_id: &ConversationId,
        client_id: &str,
        text: &str,
    ) -> anyhow::Result<()> {
        self.sock
            .send_json(&AgentFrame::Send {
                conversation_id: conversation_id.clone(),
                client_id: ClientId(client_id.into()),
                text: text.into(),
            })
            .await
    }

    /// Sends `typing`.
    pub async fn typing(
        &mut self,
        conversation_id: &ConversationId,
        active: bool,
    ) -> anyhow::Result<()> {
        self.sock
            .send_json(&AgentFrame::Typing {
                conversation_id: conversation_id.clone(),
                active,
            })
            .await
    }

    /// The next frame within [`TIMEOUT`].
    pub async fn next_frame(&mut self) -> anyhow::Result<ToAgent> {
        self.sock.next_json().await
    }

    /// Skips frames until one matches `pred`; fails after [`TIMEOUT`] listing what was seen.
    pub async fn expect(
        &mut self,
        what: &str,
        pred: impl FnMut(&ToAgent) -> bool,
    ) -> anyhow::Result<ToAgent> {
        expect_frame(&mut self.sock, what, pred, |_: &ToAgent| {}).await
    }

    /// Waits for the `ack` of `client_id` and returns its seq; an `error` naming it fails.
    pub async fn expect_ack(&mut self, client_id: &str) -> anyhow::Result<Seq> {
        let frame = self
            .expect(&format!("ack or error for {client_id}"), |f| match f {
                ToAgent::Ack { client_id: c, .. } => c.0 == client_id,
                ToAgent::Error(e) => e.client_id.as_ref().is_some_and(|c| c.0 == client_id),
                _ => false,
            })
            .await?;
        match frame {
            ToAgent::Ack { seq, .. } => Ok(seq),
            other => bail!("expected an ack for {client_id}, got {other:?}"),
        }
    }

    /// Waits for an event matching `pred`.
    pub async fn expect_event(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> anyhow::Result<Event> {
        match self
            .expect(what, |f| matches!(f, ToAgent::Event(e) if pred(e)))
            .await?
        {
            ToAgent::Event(e) => Ok(e),
            other => bail!("expected an event, got {other:?}"),
        }
    }

    /// Fails if a frame matching `pred` arrives within `within`.
    pub async fn expect_none(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl FnMut(&ToAgent) -> bool,
    ) -> anyhow::Result<()> {
        expect_none(&mut self.sock, what, within, pred).await
    }
}

#[cfg(test)]
mod tests {
    use super::trailing_close_frame;

    #[test]
    fn finds_the_close_frame_that_ends_a_server_stream() {
        // A text frame, a ping, then close 1008 "idle timeout".
        let mut bytes = vec![0x81, 2, b'h', b'i', 0x89, 0];
        bytes.extend_from_slice(&[0x88, 14, 0x03, 0xf0]);
        bytes.extend_from_slice(b"idle timeout");
        assert_eq!(
            trailing_close_frame(&bytes),
            Some((1008, "idle timeout".to_owned()))
        );
        // A close without a code.
        assert_eq!(
            trailing_close_frame(&[0x81, 1, b'x', 0x88, 0]),
            Some((1005, String::new()))
        );
        // Cut off, or not ending with a close.
        assert_eq!(trailing_close_frame(&bytes[..bytes.len() - 1]), None);
        assert_eq!(trailing_close_frame(&[0x81, 2, b'h', b'i']), None);
        assert_eq!(trailing_close_frame(&[]), None);
    }
}

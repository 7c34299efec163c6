//! Resilient protocol clients for the fault tests: a visitor and an agent that keep chatting
//! while relay nodes crash under them. They do what PROTOCOL.md §6 asks of a client — reconnect
//! (to the next node) after any socket loss, present `token` + `conversation_id` + `last_seq`
//! (visitor) or re-`open` with `after_seq` (agent), and resend every unacknowledged send with its
//! original `client_id` — and record everything they see in a [`ClientLog`] that the test checks
//! at the end: acks, the seqs received per conversation, close codes, and any violation of the
//! delivery guarantees (a gap, a duplicate, an unexpected refusal).
//!
//! Each client runs as its own task ([`spawn_visitor`], [`spawn_agent`]) until its
//! [`Control::stop`] is set; new messages are made only while [`Control::sending`] is set.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context as _};
use protocol::timeline::Sequenced;
use protocol::{
    AgentFrame, ClientId, ConversationId, ErrorCode, ErrorFrame, PageContext, Seq, ToAgent,
    ToVisitor, VisitorFrame, PROTOCOL_VERSION,
};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::RawSocket;

/// Unacknowledged sends a client allows itself before waiting (keeps it under the rate limits).
const WINDOW: usize = 4;

/// Switches shared by the test and its clients.
#[derive(Default)]
pub struct Control {
    /// While true, clients keep making new messages.
    pub sending: AtomicBool,
    /// Set to end every client task.
    pub stop: AtomicBool,
}

impl Control {
    /// A control with sending on.
    pub fn new() -> Arc<Self> {
        let control = Self::default();
        control.sending.store(true, Ordering::Release);
        Arc::new(control)
    }
}

/// One message a client sent.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Its client id (unique per client).
    pub client_id: String,
    /// Its conversation (for the visitor: filled in once known).
    pub conversation: Option<ConversationId>,
    /// The text.
    pub text: String,
}

/// Everything one client saw, for the final checks.
#[derive(Debug, Default)]
pub struct ClientLog {
    /// Name, for messages.
    pub name: String,
    /// Every message made, in order.
    pub sent: Vec<Sent>,
    /// The seqs of every `ack` received, per client id (a repeat may be acked again).
    pub acks: HashMap<String, Vec<Seq>>,
    /// Every event seq received, in arrival order, per conversation.
    pub seqs: BTreeMap<ConversationId, Vec<Seq>>,
    /// The highest seq held without a gap, per conversation.
    pub held: BTreeMap<ConversationId, Seq>,
    /// The visitor's conversation, once known.
    pub conversation: Option<ConversationId>,
    /// The agent's conversations, from the start: what it must end up holding, whether or not
    /// any event of them ever reached it.
    pub assigned: Vec<ConversationId>,
    /// Broken guarantees seen (should stay empty).
    pub violations: Vec<String>,
    /// Sockets opened after the first.
    pub reconnects: u32,
    /// Close codes received from the relay.
    pub close_codes: Vec<u16>,
    /// Index of the node the client is connected to now, if any.
    pub node: Option<usize>,
    /// Sends refused with `rate_limited` or `internal` and retried.
    pub retries: u32,
    /// Unacknowledged sends repeated after a reconnect (the idempotency path).
    pub resent: u32,
}

impl ClientLog {
    /// The conversations this client must hold completely at the end: the visitor's own, the
    /// agent's assigned ones, and any other it received events of.
    pub fn expected(&self) -> std::collections::BTreeSet<ConversationId> {
        self.conversation
            .iter()
            .chain(&self.assigned)
            .chain(self.seqs.keys())
            .cloned()
            .collect()
    }

    /// Client ids sent but not acknowledged yet.
    pub fn unacked(&self) -> Vec<Sent> {
        self.sent
            .iter()
            .filter(|s| !self.acks.contains_key(&s.client_id))
            .cloned()
            .collect()
    }

    /// Records an event; returns false on a gap (the caller reconnects to fill it).
    fn on_event(&mut self, e: &impl Sequenced) -> bool {
        let (conversation, seq) = (e.conversation(), e.seq());
        self.seqs.entry(conversation.clone()).or_default().push(seq);
        let held = self.held.entry(conversation.clone()).or_insert(0);
        if seq == *held + 1 {
            *held = seq;
            true
        } else if seq <= *held {
            let msg = format!(
                "{}: duplicate event seq {} in {} (held {})",
                self.name, seq, conversation, held
            );
            self.violations.push(msg);
            true
        } else {
            let msg = format!(
                "{}: gap: event seq {} in {} after {}",
                self.name, seq, conversation, held
            );
            self.violations.push(msg);
            false
        }
    }

    fn on_ack(&mut self, client_id: &ClientId, conversation: &ConversationId, seq: Seq) {
        if let Some(s) = self.sent.iter_mut().find(|s| s.client_id == client_id.0) {
            s.conversation.get_or_insert_with(|| conversation.clone());
        } else {
            let msg = format!("{}: ack for unknown client id {}", self.name, client_id.0);
            self.violations.push(msg);
        }
        self.acks.entry(client_id.0.clone()).or_default().push(seq);
    }
}

/// A running resilient client.
pub struct ClientHandle {
    /// What it saw (live: readable while it runs).
    pub log: Arc<Mutex<ClientLog>>,
    /// Its task; ends once [`Control::stop`] is set.
    pub task: tokio::task::JoinHandle<()>,
}

impl ClientHandle {
    /// Locks the log (a poisoned lock still yields the data).
    pub fn log(&self) -> MutexGuard<'_, ClientLog> {
        lock(&self.log)
    }
}

fn lock(log: &Mutex<ClientLog>) -> MutexGuard<'_, ClientLog> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// Pacing and retries of one connection's send loop.
struct Pacer {
    /// When the next new message may be made.
    next_new: Instant,
    /// Gap between new messages.
    pace: Duration,
    /// Refused sends to retry, and when.
    retry: VecDeque<(Instant, String)>,
    /// Messages made so far (numbers the client ids).
    made: usize,
}

impl Pacer {
    fn new(pace: Duration) -> Self {
        Self {
            next_new: Instant::now(),
            pace,
            retry: VecDeque::new(),
            made: 0,
        }
    }

    /// Handles an `error` frame: a retryable refusal of a send is queued; anything else is a
    /// violation.
    fn on_error(&mut self, log: &mut ClientLog, e: &ErrorFrame) {
        match (&e.code, &e.client_id) {
            (ErrorCode::RateLimited | ErrorCode::Internal, Some(c)) => {
                let wait = Duration::from_millis(e.retry_after_ms.unwrap_or(200).max(50));
                self.retry.push_back((Instant::now() + wait, c.0.clone()));
                log.retries += 1;
            }
            _ => {
                let msg = format!("{}: refused: {e:?}", log.name);
                log.violations.push(msg);
            }
        }
    }

    /// The retry that is due now, if any.
    fn due_retry(&mut self) -> Option<String> {
        match self.retry.front() {
            Some((at, _)) if *at <= Instant::now() => self.retry.pop_front().map(|(_, c)| c),
            _ => None,
        }
    }
}

/// How one connection ended.
enum Ended {
    /// The socket closed or failed: reconnect.
    Lost,
    /// The test said stop.
    Stopped,
}

/// A visitor of the `demo` site that sends a message every `pace` while sending is on.
pub fn spawn_visitor(
    name: &str,
    nodes: Vec<SocketAddr>,
    first_node: usize,
    control: Arc<Control>,
    pace: Duration,
) -> ClientHandle {
    let log = Arc::new(Mutex::new(ClientLog {
        name: name.to_owned(),
        ..ClientLog::default()
    }));
    let task_log = log.clone();
    let task = tokio::spawn(async move {
        let mut token: Option<String> = None;
        let mut pacer = Pacer::new(pace);
        let mut node = first_node;
        let mut opened = 0u32;
        while !control.stop.load(Ordering::Acquire) {
            let index = node % nodes.len();
            node += 1;
            let addr = nodes[index];
            let Ok(mut sock) = RawSocket::connect(
                &format!("ws://{addr}/ws/visitor?site=demo"),
                &[("Origin", "http://fault-test.example")],
            )
            .await
            else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            opened += 1;
            if opened > 1 {
                lock(&task_log).reconnects += 1;
            }
            lock(&task_log).node = Some(index);
            let _ = visitor_session(&mut sock, &task_log, &control, &mut pacer, &mut token).await;
            lock(&task_log).node = None;
        }
    });
    ClientHandle { log, task }
}

/// One visitor connection: hello, resend unacked, then chat until the socket is lost.
async fn visitor_session(
    sock: &mut RawSocket,
    log: &Mutex<ClientLog>,
    control: &Control,
    pacer: &mut Pacer,
    token: &mut Option<String>,
) -> anyhow::Result<Ended> {
    let hello = {
        let l = lock(log);
        let held = l
            .conversation
            .as_ref()
            .map(|c| (c.clone(), l.held.get(c).copied().unwrap_or(0)));
        VisitorFrame::Hello {
            identity: None,
            v: PROTOCOL_VERSION,
            token: token.clone(),
            conversation_id: held.as_ref().map(|(c, _)| c.clone()),
            last_seq: held.map(|(_, s)| s),
            context: PageContext {
                url: "http://fault-test.example/".into(),
                title: "Fault test".into(),
                ..Default::default()
            },
        }
    };
    sock.send_json(&hello).await?;
    // Everything before welcome (nothing is expected) is handled like any frame after it.
    loop {
        let Some(Message::Text(text)) = sock.try_next(crate::TIMEOUT).await? else {
            bail!("no welcome");
        };
        let frame: ToVisitor = serde_json::from_str(&text).context("welcome")?;
        if let ToVisitor::Welcome {
            token: t,
            conversation_id,
            recovered,
            ..
        } = frame
        {
            *token = Some(t);
            let mut l = lock(log);
            match (&l.conversation, conversation_id) {
                (Some(mine), Some(theirs)) if *mine != theirs => {
                    let msg = format!("{}: welcome names another conversation {theirs}", l.name);
                    l.violations.push(msg);
                }
                (Some(mine), None) => {
                    let msg = format!("{}: welcome lost conversation {mine}", l.name);
                    l.violations.push(msg);
                }
                (Some(_), Some(_)) if !recovered => {
                    let msg = format!("{}: welcome did not recover the gap", l.name);
                    l.violations.push(msg);
                }
                (None, Some(theirs)) => l.conversation = Some(theirs),
                _ => {}
            }
            break;
        }
    }
    let unacked = lock(log).unacked();
    lock(log).resent += unacked.len() as u32;
    for s in unacked {
        sock.send_json(&VisitorFrame::Send {
            client_id: ClientId(s.client_id),
            text: s.text,
        })
        .await?;
    }
    loop {
        if control.stop.load(Ordering::Acquire) {
            return Ok(Ended::Stopped);
        }
        let resend = pacer.due_retry().and_then(|c| {
            let l = lock(log);
            l.sent.iter().find(|s| s.client_id == c).cloned()
        });
        if let Some(s) = resend {
            sock.send_json(&VisitorFrame::Send {
                client_id: ClientId(s.client_id),
                text: s.text,
            })
            .await?;
        }
        let new = {
            let mut l = lock(log);
            if control.sending.load(Ordering::Acquire)
                && pacer.next_new <= Instant::now()
                && l.unacked().len() < WINDOW
            {
                pacer.made += 1;
                let sent = Sent {
                    client_id: format!("{}-{}", l.name, pacer.made),
                    conversation: l.conversation.clone(),
                    text: format!("{} says #{}", l.name, pacer.made),
                };
                l.sent.push(sent.clone());
                pacer.next_new = Instant::now() + pacer.pace;
                Some(sent)
            } else {
                None
            }
        };
        if let Some(s) = new {
            sock.send_json(&VisitorFrame::Send {
                client_id: ClientId(s.client_id),
                text: s.text,
            })
            .await?;
        }
        match sock.try_next(Duration::from_millis(30)).await? {
            None => {}
            Some(Message::Text(text)) => {
                let Ok(frame) = serde_json::from_str::<ToVisitor>(&text) else {
                    let mut l = lock(log);
                    let msg = format!("{}: unparsable frame {text}", l.name);
                    l.violations.push(msg);
                    continue;
                };
                let mut l = lock(log);
                match frame {
                    ToVisitor::Event(e) => {
                        if l.conversation.is_none() {
                            l.conversation = Some(e.conversation_id.clone());
                        }
                        if !l.on_event(&e) {
                            return Ok(Ended::Lost);
                        }
                    }
                    ToVisitor::Ack {
                        client_id,
                        conversation_id,
                        seq,
                    } => {
                        if l.conversation.is_none() {
                            l.conversation = Some(conversation_id.clone());
                        }
                        l.on_ack(&client_id, &conversation_id, seq);
                    }
                    ToVisitor::Error(e) => pacer.on_error(&mut l, &e),
                    _ => {}
                }
            }
            Some(Message::Close(frame)) => {
                if let Some(f) = frame {
                    lock(log).close_codes.push(u16::from(f.code));
                }
                return Ok(Ended::Lost);
            }
            Some(_) => {}
        }
    }
}

/// An agent that answers `conversations` (round robin, one message every `pace`) while sending
/// is on, and follows all of them.
pub fn spawn_agent(
    name: &str,
    credentials: (&str, &str),
    conversations: Vec<ConversationId>,
    nodes: Vec<SocketAddr>,
    first_node: usize,
    control: Arc<Control>,
    pace: Duration,
) -> ClientHandle {
    let log = Arc::new(Mutex::new(ClientLog {
        name: name.to_owned(),
        assigned: conversations.clone(),
        ..ClientLog::default()
    }));
    let task_log = log.clone();
    let (user, pass) = (credentials.0.to_owned(), credentials.1.to_owned());
    let task = tokio::spawn(async move {
        let mut cookie: Option<String> = None;
        let mut pacer = Pacer::new(pace);
        let mut node = first_node;
        let mut opened = 0u32;
        while !control.stop.load(Ordering::Acquire) {
            let index = node % nodes.len();
            node += 1;
            let addr = nodes[index];
            if cookie.is_none() {
                cookie = login(addr, &user, &pass).await.ok();
            }
            let Some(c) = cookie.clone() else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let sock =
                RawSocket::connect(&format!("ws://{addr}/ws/agent"), &[("Cookie", c.as_str())])
                    .await;
            let mut sock = match sock {
                Ok(s) => s,
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401 => {
                    cookie = None;
                    continue;
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            opened += 1;
            if opened > 1 {
                lock(&task_log).reconnects += 1;
            }
            lock(&task_log).node = Some(index);
            let _ = agent_session(&mut sock, &task_log, &control, &mut pacer, &conversations).await;
            lock(&task_log).node = None;
        }
    });
    ClientHandle { log, task }
}

/// `POST /api/login` on `addr`; the `parley_session=…` pair.
pub async fn login(addr: SocketAddr, user: &str, pass: &str) -> anyhow::Result<String> {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/api/login"))
        .json(&serde_json::json!({ "username": user, "password": pass }))
        .timeout(crate::TIMEOUT)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("login as {user}: HTTP {}", response.status());
    }
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("parley_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .context("no parley_session cookie")
}

/// One agent connection: hello, re-open every conversation after what is held, resend unacked,
/// then chat until the socket is lost.
async fn agent_session(
    sock: &mut RawSocket,
    log: &Mutex<ClientLog>,
    control: &Control,
    pacer: &mut Pacer,
    conversations: &[ConversationId],
) -> anyhow::Result<Ended> {
    sock.send_json(&AgentFrame::Hello {
        v: PROTOCOL_VERSION,
    })
    .await?;
    loop {
        let Some(Message::Text(text)) = sock.try_next(crate::TIMEOUT).await? else {
            bail!("no welcome");
        };
        if matches!(
            serde_json::from_str::<ToAgent>(&text),
            Ok(ToAgent::Welcome { .. })
        ) {
            break;
        }
    }
    for c in conversations {
        let after = lock(log).held.get(c).copied().unwrap_or(0);
        sock.send_json(&AgentFrame::Open {
            conversation_id: c.clone(),
            after_seq: Some(after),
        })
        .await?;
    }
    let unacked = lock(log).unacked();
    lock(log).resent += unacked.len() as u32;
    for s in unacked {
        if let Some(c) = s.conversation {
            sock.send_json(&AgentFrame::Send {
                conversation_id: c,
                client_id: ClientId(s.client_id),
                text: s.text,
            })
            .await?;
        }
    }
    loop {
        if control.stop.load(Ordering::Acquire) {
            return Ok(Ended::Stopped);
        }
        let resend = pacer.due_retry().and_then(|c| {
            let l = lock(log);
            l.sent.iter().find(|s| s.client_id == c).cloned()
        });
        let new = {
            let mut l = lock(log);
            if !conversations.is_empty()
                && control.sending.load(Ordering::Acquire)
                && pacer.next_new <= Instant::now()
                && l.unacked().len() < WINDOW
            {
                let conversation = conversations[pacer.made % conversations.len()].clone();
                pacer.made += 1;
                let sent = Sent {
                    client_id: format!("{}-{}", l.name, pacer.made),
                    conversation: Some(conversation),
                    text: format!("{} answers #{}", l.name, pacer.made),
                };
                l.sent.push(sent.clone());
                pacer.next_new = Instant::now() + pacer.pace;
                Some(sent)
            } else {
                None
            }
        };
        for s in resend.into_iter().chain(new) {
            if let Some(c) = s.conversation {
                sock.send_json(&AgentFrame::Send {
                    conversation_id: c,
                    client_id: ClientId(s.client_id),
                    text: s.text,
                })
                .await?;
            }
        }
        match sock.try_next(Duration::from_millis(30)).await? {
            None => {}
            Some(Message::Text(text)) => {
                let Ok(frame) = serde_json::from_str::<ToAgent>(&text) else {
                    let mut l = lock(log);
                    let msg = format!("{}: unparsable frame {text}", l.name);
                    l.violations.push(msg);
                    continue;
                };
                let mut l = lock(log);
                match frame {
                    ToAgent::Event(e) => {
                        // A gap: reconnect and re-open to fill it (after recording it).
                        let in_order = l.on_event(&e);
                        if !in_order {
                            return Ok(Ended::Lost);
                        }
                    }
                    ToAgent::History { events, .. } => {
                        for e in &events {
                            if !l.on_event(e) {
                                return Ok(Ended::Lost);
                            }
                        }
                    }
                    ToAgent::Ack {
                        client_id,
                        conversation_id,
                        seq,
                    } => l.on_ack(&client_id, &conversation_id, seq),
                    ToAgent::Error(e) => pacer.on_error(&mut l, &e),
                    _ => {}
                }
            }
            Some(Message::Close(frame)) => {
                if let Some(f) = frame {
                    lock(log).close_codes.push(u16::from(f.code));
                }
                return Ok(Ended::Lost);
            }
            Some(_) => {}
        }
    }
}

//! Fault tests: no message is lost or duplicated when relays crash, shut down or lose clients.
//!
//! - `kill_minus_nine_during_a_two_node_chat`: two relay *processes* on one PostgreSQL and one
//!   Redis; visitors and agents chat both ways through resilient clients while a killer SIGKILLs
//!   a random node and restarts it on the same port, [`KILLS`] times. Every send must be acked
//!   (repeats with the same seq), stored exactly once, and every client must see its
//!   conversations' seqs strictly +1 with no gap or duplicate.
//! - `dropped_sockets_replay_the_gap_exactly`: [`DROPPERS`] visitors at once lose their socket
//!   for 1–30 s while the agent keeps writing to every conversation; half close the TCP
//!   connection (no close frame), half go half-open (silent, socket left open) and reconnect on
//!   a new socket while the relay may still hold the old one. On reconnect with `last_seq` each
//!   gets exactly the missed events, in order, then live ones, never a duplicate; the relay
//!   closes every half-open socket with 1008 at its idle timeout, not before, and that close
//!   does not disturb the visitor's new connection.
//! - `sigterm_closes_with_1001_and_clients_resume_on_the_other_node`: a graceful shutdown
//!   closes with 1001 and the clients resume on the other node without loss.
//!
//! Randomness comes from a seed printed at the start (set `PARLEY_FAULT_SEED` to replay one).
//! Needs PostgreSQL and Redis like `two_nodes.rs`: unreachable is a failure, never a skip.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use parley_tests::pg::TestDatabase;
use parley_tests::process::{RelayConfigFile, RelayProcess};
use parley_tests::resilient::{login, spawn_agent, spawn_visitor, ClientHandle, Control};
use parley_tests::ws::{RelayClosed, Vanished};
use parley_tests::{AgentClient, RawSocket, TestRelay, VisitorClient, AGENTS, TIMEOUT};
use protocol::{
    AgentFrame, ConversationId, Event, EventBody, Role, Seq, ToAgent, ToVisitor, VisitorBody,
    VisitorEvent, PROTOCOL_VERSION,
};

/// SIGKILLs in the crash test: one every ~1.5 s (0.6–1.5 s of chat, 0–0.4 s down, then the
/// restart), so about 75 s for the whole crash test on a shared 2-core machine.
const KILLS: usize = 50;
/// Visitors in the crash test (one conversation each).
const VISITORS: usize = 10;

/// The Redis the tests use unless `PARLEY_TEST_REDIS_URL` names another.
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";

fn redis_url() -> String {
    std::env::var("PARLEY_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned())
}

/// A small xorshift generator: reproducible from the printed seed, no extra dependency.
struct Rng(u64);

impl Rng {
    fn from_env(test: &str) -> Self {
        let seed = std::env::var("PARLEY_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0x9e37_79b9)
            });
        println!("{test}: seed {seed} (PARLEY_FAULT_SEED={seed} replays it)");
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `[lo, hi)` (`lo` when the range is empty).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next() % (hi - lo)
        }
    }
}

/// Two relay processes on a fresh database and a per-test bus prefix.
async fn two_nodes(
    config: &RelayConfigFile,
    database_url: &str,
) -> anyhow::Result<Vec<RelayProcess>> {
    let prefix = format!("parley-fault-{}", relay_server::store::new_id());
    let redis = redis_url();
    // One after the other: the first runs the migrations.
    let a = RelayProcess::start(
        Path::new(env!("CARGO_BIN_EXE_test-relay")),
        config,
        database_url,
        Some((&redis, &prefix)),
    )
    .await
    .with_context(|| format!("node A on PostgreSQL + Redis ({redis})"))?;
    let b = RelayProcess::start(
        Path::new(env!("CARGO_BIN_EXE_test-relay")),
        config,
        database_url,
        Some((&redis, &prefix)),
    )
    .await
    .with_context(|| format!("node B on PostgreSQL + Redis ({redis})"))?;
    Ok(vec![a, b])
}

/// The stored events of each conversation, read through a fresh agent `open` with `after_seq 0`.
async fn store_events(
    addr: SocketAddr,
    conversations: &[ConversationId],
) -> anyhow::Result<BTreeMap<ConversationId, Vec<Event>>> {
    let (user, _, pass) = AGENTS[0];
    let cookie = login(addr, user, pass).await?;
    let mut sock = RawSocket::connect(
        &format!("ws://{addr}/ws/agent"),
        &[("Cookie", cookie.as_str())],
    )
    .await?;
    sock.send_json(&AgentFrame::Hello {
        v: PROTOCOL_VERSION,
    })
    .await?;
    let mut out = BTreeMap::new();
    for c in conversations {
        sock.send_json(&AgentFrame::Open {
            conversation_id: c.clone(),
            after_seq: Some(0),
        })
        .await?;
        loop {
            match sock.next_json::<ToAgent>().await? {
                ToAgent::History {
                    conversation_id,
                    events,
                } if conversation_id == *c => {
                    out.insert(c.clone(), events);
                    break;
                }
                ToAgent::Error(e) => bail!("open {c}: {e:?}"),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// Waits until no client has an unacknowledged send, then until every client holds every event
/// of its conversations; returns the store's events.
async fn quiesce(
    clients: &[&ClientHandle],
    addr: SocketAddr,
    conversations: &[ConversationId],
) -> anyhow::Result<BTreeMap<ConversationId, Vec<Event>>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let pending: Vec<String> = clients
            .iter()
            .flat_map(|c| {
                let log = c.log();
                log.unacked()
                    .into_iter()
                    .map(|s| s.client_id)
                    .collect::<Vec<_>>()
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("sends never acknowledged: {pending:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let store = store_events(addr, conversations).await?;
        let behind: Vec<String> = clients
            .iter()
            .flat_map(|c| {
                let log = c.log();
                // Every conversation the client must hold, not only those it heard of: a
                // client that never received anything is the most behind of all.
                log.expected()
                    .into_iter()
                    .filter_map(|conv| {
                        let held = log.held.get(&conv).copied().unwrap_or(0);
                        let last = store.get(&conv).and_then(|e| e.last()).map_or(0, |e| e.seq);
                        (held != last)
                            .then(|| format!("{} holds {held}/{last} of {conv}", log.name))
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        if behind.is_empty() {
            return Ok(store);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("clients never caught up with the store: {behind:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Totals for the CI log.
#[derive(Default)]
struct Totals {
    messages: usize,
    reconnects: u32,
    retries: u32,
    /// Sends repeated after a reconnect.
    resent: u32,
    /// Sends acknowledged more than once (a repeat answered with the original seq).
    acked_twice: usize,
}

/// The zero-loss checks over every client and the store.
fn verify(
    clients: &[&ClientHandle],
    store: &BTreeMap<ConversationId, Vec<Event>>,
) -> anyhow::Result<Totals> {
    let mut totals = Totals::default();
    let mut failures: Vec<String> = Vec::new();
    // (conversation, role, client id) -> the ack seq, from the senders' side.
    let mut expected: HashMap<(ConversationId, Role, String), Seq> = HashMap::new();
    for client in clients {
        let log = client.log();
        let role = if log.name.starts_with('a') {
            Role::Agent
        } else {
            Role::Visitor
        };
        failures.extend(log.violations.iter().cloned());
        totals.messages += log.sent.len();
        totals.reconnects += log.reconnects;
        totals.retries += log.retries;
        totals.resent += log.resent;
        totals.acked_twice += log.acks.values().filter(|a| a.len() > 1).count();
        for s in &log.sent {
            let acks = log.acks.get(&s.client_id).cloned().unwrap_or_default();
            let Some(&seq) = acks.first() else {
                failures.push(format!("{}: {} never acked", log.name, s.client_id));
                continue;
            };
            if acks.iter().any(|&a| a != seq) {
                failures.push(format!(
                    "{}: {} acked with different seqs {acks:?}",
                    log.name, s.client_id
                ));
            }
            let Some(conv) = s.conversation.clone() else {
                failures.push(format!("{}: {} has no conversation", log.name, s.client_id));
                continue;
            };
            expected.insert((conv, role, s.client_id.clone()), seq);
        }
        for conv in log.expected() {
            let seqs = log.seqs.get(&conv).cloned().unwrap_or_default();
            let last = store.get(&conv).and_then(|e| e.last()).map_or(0, |e| e.seq);
            let want: Vec<Seq> = (1..=last).collect();
            if seqs != want {
                failures.push(format!(
                    "{}: received seqs of {conv} are not exactly 1..={last}: {seqs:?}",
                    log.name
                ));
            }
        }
    }
    let mut found: HashMap<(ConversationId, Role, String), Vec<Seq>> = HashMap::new();
    for (conv, events) in store {
        for (i, e) in events.iter().enumerate() {
            if e.seq != i as Seq + 1 {
                failures.push(format!("store: {conv} has seq {} at position {i}", e.seq));
            }
            if let EventBody::Message { client_id, .. } = &e.body {
                match client_id {
                    Some(c) => found
                        .entry((conv.clone(), e.author.role, c.0.clone()))
                        .or_default()
                        .push(e.seq),
                    None => failures.push(format!("store: message without client id: {e:?}")),
                }
            }
        }
    }
    for (key, seq) in &expected {
        match found.get(key).map(Vec::as_slice) {
            Some([stored]) if stored == seq => {}
            other => failures.push(format!(
                "{key:?}: acked as {seq}, stored as {other:?} (must be exactly once, same seq)"
            )),
        }
    }
    for (key, seqs) in &found {
        if !expected.contains_key(key) {
            failures.push(format!(
                "store holds a message nobody sent: {key:?} at {seqs:?}"
            ));
        }
    }
    if !failures.is_empty() {
        let shown: Vec<&String> = failures.iter().take(30).collect();
        bail!("{} failures, first ones: {shown:#?}", failures.len());
    }
    Ok(totals)
}

/// Stops every client and waits for its task.
async fn stop(control: &Control, clients: Vec<ClientHandle>) {
    control.stop.store(true, Ordering::Release);
    for c in clients {
        let _ = tokio::time::timeout(TIMEOUT, c.task).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_during_a_two_node_chat() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    crash_chat(db.url()).await
}

async fn crash_chat(database_url: &str) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut rng = Rng::from_env("kill_minus_nine_during_a_two_node_chat");
    let config = RelayConfigFile::write()?;
    let mut nodes = two_nodes(&config, database_url).await?;
    let addrs: Vec<SocketAddr> = nodes.iter().map(RelayProcess::addr).collect();
    let control = Control::new();

    let (visitors, agents, conversations) =
        start_cast(&addrs, &control, VISITORS, Duration::from_millis(250)).await?;

    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.range(600, 1500))).await;
        let victim = rng.range(0, 2) as usize;
        nodes[victim].kill().await;
        tokio::time::sleep(Duration::from_millis(rng.range(0, 400))).await;
        nodes[victim].restart().await?;
    }
    // A little calm chat after the last crash, then stop making messages.
    tokio::time::sleep(Duration::from_secs(1)).await;
    control.sending.store(false, Ordering::Release);

    let clients: Vec<&ClientHandle> = visitors.iter().chain(agents.iter()).collect();
    let checked = async {
        let store = quiesce(&clients, addrs[0], &conversations).await?;
        verify(&clients, &store)
    }
    .await;
    drop(clients);
    stop(&control, visitors.into_iter().chain(agents).collect()).await;
    let totals = checked?;
    println!(
        "kill -9 chat: {} messages ({} visitors, 2 agents), {KILLS} SIGKILLs, {} reconnects, \
         {} sends repeated after a reconnect ({} acked again with the same seq), \
         {} refused-and-retried sends, {:.1}s",
        totals.messages,
        VISITORS,
        totals.reconnects,
        totals.resent,
        totals.acked_twice,
        totals.retries,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_with_1001_and_clients_resume_on_the_other_node() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    graceful_switch(db.url()).await
}

async fn graceful_switch(database_url: &str) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let config = RelayConfigFile::write()?;
    let mut nodes = two_nodes(&config, database_url).await?;
    let addrs: Vec<SocketAddr> = nodes.iter().map(RelayProcess::addr).collect();
    let control = Control::new();
    let (visitors, agents, conversations) =
        start_cast(&addrs, &control, 4, Duration::from_millis(300)).await?;
    let clients: Vec<&ClientHandle> = visitors.iter().chain(agents.iter()).collect();

    // Chat until every client is connected and has made a few messages.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let on_a: Vec<String> = clients
        .iter()
        .filter_map(|c| {
            let log = c.log();
            (log.node == Some(0)).then(|| log.name.clone())
        })
        .collect();
    if on_a.is_empty() {
        bail!("no client was on node A when it was asked to stop");
    }
    let exited = nodes[0].terminate(TIMEOUT).await;
    if !exited {
        bail!("node A did not exit within {TIMEOUT:?} of SIGTERM");
    }
    // Keep chatting on B, then stop making messages.
    tokio::time::sleep(Duration::from_secs(2)).await;
    control.sending.store(false, Ordering::Release);

    let checked = async {
        let store = quiesce(&clients, addrs[1], &conversations).await?;
        let totals = verify(&clients, &store)?;
        for c in &clients {
            let log = c.log();
            if on_a.contains(&log.name) {
                if !log.close_codes.contains(&1001) {
                    bail!(
                        "{} was on node A but got close codes {:?}, not 1001",
                        log.name,
                        log.close_codes
                    );
                }
                if log.node != Some(1) {
                    bail!("{} did not resume on node B (on {:?})", log.name, log.node);
                }
            }
        }
        Ok(totals)
    }
    .await;
    drop(clients);
    stop(&control, visitors.into_iter().chain(agents).collect()).await;
    let totals = checked?;
    println!(
        "SIGTERM switch: {} messages, {} clients closed with 1001 and resumed on node B ({}), \
         {} reconnects, {:.1}s",
        totals.messages,
        on_a.len(),
        on_a.join(", "),
        totals.reconnects,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The next `event` on the visitor socket, skipping presence, typing and queue positions; any
/// other frame fails.
async fn next_event(v: &mut VisitorClient) -> anyhow::Result<VisitorEvent> {
    loop {
        match v.next_frame().await? {
            ToVisitor::Event(e) => return Ok(e),
            ToVisitor::Presence { .. } | ToVisitor::Typing { .. } | ToVisitor::Queue { .. } => {}
            other => bail!("expected an event, got {other:?}"),
        }
    }
}

/// Visitors in the dropped-sockets test: one conversation each, all taken by one agent, all
/// dropping their socket within the same 1.5 s.
const DROPPERS: usize = 12;
/// The range the drops' gaps are drawn from; one gap per kind is forced to each end.
const GAP_MS: (u64, u64) = (1_000, 30_000);
/// The relay's ping interval and idle timeout in the dropped-sockets test: the defaults
/// (20 s / 60 s) scaled down so the 1–30 s gaps fall on both sides of the idle timeout. A
/// half-open socket is then sometimes still held by the relay when its visitor is back on a new
/// socket, and sometimes closed during the gap.
const PING: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(10);
/// How often the agent writes to every conversation: any gap of 1 s or more misses a message.
const AGENT_EVERY: Duration = Duration::from_millis(400);
/// Seq of the agent's first message in each conversation (1 is the visitor's hello, 2 the join).
const FIRST_AGENT_SEQ: Seq = 3;

/// The agent's message stored at `seq` in visitor `i`'s conversation: the text names both, so a
/// visitor can tell a replayed event is the right one without asking the agent.
fn agent_text(i: usize, seq: Seq) -> String {
    format!("to visitor {i}, seq {seq}")
}

/// How a visitor loses its socket.
#[derive(Clone, Copy, Debug, PartialEq)]
enum DropKind {
    /// The TCP connection is closed, without a WebSocket close frame.
    Closed,
    /// The client goes silent but leaves the TCP connection open ([`Vanished`]).
    HalfOpen,
}

/// One visitor's drop.
#[derive(Clone, Copy, Debug)]
struct DropPlan {
    kind: DropKind,
    /// Chat before the drop (spreads the drops over the agent's rounds).
    after: Duration,
    /// How long the visitor stays away.
    gap: Duration,
}

/// What one visitor saw.
struct DropReport {
    plan: DropPlan,
    /// Events replayed on reconnect.
    replayed: u64,
    /// Half-open drops: whether the relay still held the old socket when the visitor came
    /// back, and how it ended it.
    old: Option<(bool, RelayClosed)>,
}

/// Plans: every other drop half-open; one drop of each kind gets a gap of at most 2 s, another
/// one of at least 28 s, the rest anything in [`GAP_MS`].
fn drop_plans(rng: &mut Rng) -> Vec<DropPlan> {
    (0..DROPPERS)
        .map(|i| {
            let gap_ms = match i {
                0 | 1 => rng.range(GAP_MS.0, 2_001),
                2 | 3 => rng.range(28_000, GAP_MS.1 + 1),
                _ => rng.range(GAP_MS.0, GAP_MS.1 + 1),
            };
            DropPlan {
                kind: if i % 2 == 0 {
                    DropKind::Closed
                } else {
                    DropKind::HalfOpen
                },
                after: Duration::from_millis(rng.range(0, 1_500)),
                gap: Duration::from_millis(gap_ms),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_sockets_replay_the_gap_exactly() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut rng = Rng::from_env("dropped_sockets_replay_the_gap_exactly");
    let plans = drop_plans(&mut rng);
    let relay = TestRelay::builder()
        .limits(|l| {
            l.ping_interval = PING;
            l.idle_timeout = IDLE;
            // 12 conversations every 400 ms is 30 frames/s, the default's whole budget.
            l.agent_per_second = 100;
            l.agent_burst = 200;
        })
        .start()
        .await?;
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    let mut visitors = Vec::new();
    let mut conversations = Vec::new();
    for i in 0..DROPPERS {
        let mut v = VisitorClient::connect(&relay, None).await?;
        let id = format!("v{i}-hello");
        v.send(&id, "hello").await?;
        assert_eq!(v.expect_ack(&id).await?, 1);
        let conversation = v.conversation_id.clone().context("conversation id")?;
        assert_eq!(next_event(&mut v).await?.seq, 1);
        agent.open(&conversation, Some(0)).await?;
        agent.take(&conversation).await?;
        let joined = next_event(&mut v).await?;
        assert_eq!((joined.seq, &joined.body), (2, &VisitorBody::Joined));
        visitors.push(v);
        conversations.push(conversation);
    }

    // The agent writes until every visitor is back and done with its checks, then publishes the
    // last seq of each conversation so the visitors know what they must end up holding.
    let done = std::sync::atomic::AtomicUsize::new(0);
    let (finals_tx, finals) = tokio::sync::watch::channel(None::<Vec<Seq>>);
    let writing = keep_writing(agent, &conversations, &done, finals_tx);
    let riders = visitors
        .into_iter()
        .zip(&conversations)
        .zip(&plans)
        .enumerate()
        .map(|(i, ((v, conversation), plan))| {
            ride_out(&relay, i, v, conversation, *plan, &done, finals.clone())
        });
    let (sent, reports) = tokio::try_join!(writing, futures::future::try_join_all(riders))?;
    relay.shutdown().await;

    let gaps: Vec<Duration> = reports.iter().map(|r| r.plan.gap).collect();
    let replayed: u64 = reports.iter().map(|r| r.replayed).sum();
    let half_open: Vec<&(bool, RelayClosed)> =
        reports.iter().filter_map(|r| r.old.as_ref()).collect();
    // Back on a new socket while the relay still held the old one, or after it had let go.
    let overlapped: Vec<Duration> = half_open
        .iter()
        .filter(|(held_on, _)| *held_on)
        .map(|(_, closed)| closed.after)
        .collect();
    let closed_in_gap = half_open.len() - overlapped.len();
    assert!(
        !overlapped.is_empty() && closed_in_gap > 0,
        "the forced short and long half-open gaps must fall on both sides of the relay's idle \
         timeout ({} reconnected while it held the old socket, {closed_in_gap} after)",
        overlapped.len()
    );
    println!(
        "dropped sockets: {DROPPERS} drops ({} closed, {} half-open), gaps {:.1}–{:.1} s, \
         {replayed} messages replayed ({sent} agent messages); every half-open socket closed \
         1008 by the relay, {closed_in_gap} during the gap, {} after its visitor was back (after \
         {:.1}–{:.1} s of silence), {:.1}s",
        DROPPERS - half_open.len(),
        half_open.len(),
        gaps.iter().min().map_or(0.0, Duration::as_secs_f64),
        gaps.iter().max().map_or(0.0, Duration::as_secs_f64),
        overlapped.len(),
        overlapped.iter().min().map_or(0.0, Duration::as_secs_f64),
        overlapped.iter().max().map_or(0.0, Duration::as_secs_f64),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The agent: every [`AGENT_EVERY`], one message to every conversation, each acked with the seq
/// its text names, until all [`DROPPERS`] visitors are `done`; then the last seqs go to
/// `finals`. Returns the number of messages sent.
async fn keep_writing(
    mut agent: AgentClient,
    conversations: &[ConversationId],
    done: &std::sync::atomic::AtomicUsize,
    finals: tokio::sync::watch::Sender<Option<Vec<Seq>>>,
) -> anyhow::Result<usize> {
    let mut next = vec![FIRST_AGENT_SEQ; conversations.len()];
    let mut sent = 0;
    let mut round = tokio::time::interval(AGENT_EVERY);
    round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while done.load(Ordering::Acquire) < conversations.len() {
        round.tick().await;
        for (i, conversation) in conversations.iter().enumerate() {
            let seq = next[i];
            let id = format!("a{i}-{seq}");
            agent.send(conversation, &id, &agent_text(i, seq)).await?;
            let acked = agent.expect_ack(&id).await?;
            ensure!(acked == seq, "agent message {id} acked as seq {acked}");
            next[i] += 1;
            sent += 1;
        }
    }
    let _ = finals.send(Some(next.iter().map(|s| s - 1).collect()));
    Ok(sent)
}

/// Visitor `i`'s side: chat, lose the socket as `plan` says, come back after the gap with the
/// seq it holds, check the replay and what follows, then hold every event up to the agent's last,
/// each exactly once.
async fn ride_out(
    relay: &TestRelay,
    i: usize,
    mut v: VisitorClient,
    conversation: &ConversationId,
    plan: DropPlan,
    done: &std::sync::atomic::AtomicUsize,
    mut finals: tokio::sync::watch::Receiver<Option<Vec<Seq>>>,
) -> anyhow::Result<DropReport> {
    let name = format!("visitor {i} ({:?}, gap {:?})", plan.kind, plan.gap);
    // Every event must be the next seq and the agent's message for it.
    let mut held: Seq = 2;
    let take = |e: VisitorEvent, held: &mut Seq| -> anyhow::Result<()> {
        ensure!(
            e.seq == *held + 1,
            "{name}: got seq {} holding {held} (a gap or a duplicate)",
            e.seq
        );
        let want = agent_text(i, e.seq);
        ensure!(
            e.message_text() == Some(want.as_str()),
            "{name}: seq {} is {e:?}, not {want:?}",
            e.seq
        );
        *held = e.seq;
        Ok(())
    };

    let until = tokio::time::Instant::now() + plan.after;
    while let Ok(e) = tokio::time::timeout_at(until, next_event(&mut v)).await {
        take(e?, &mut held)?;
    }
    let token = v.token.clone();
    let mut old: Option<Vanished> = match plan.kind {
        DropKind::Closed => {
            drop(v);
            None
        }
        DropKind::HalfOpen => Some(v.vanish()),
    };
    tokio::time::sleep(plan.gap).await;
    let held_on = match &mut old {
        Some(old) => old.still_open()?,
        None => false,
    };
    ensure!(
        held_on || plan.kind == DropKind::Closed || plan.gap >= IDLE - 2 * PING,
        "{name}: the relay let go of the half-open socket before its idle timeout ({IDLE:?})"
    );

    // A new socket, the old one (if half-open) still open on this side.
    let mut v =
        VisitorClient::connect_with(relay, Some(&token), Some((conversation, held))).await?;
    ensure!(v.recovered, "{name}: the gap must be recoverable");
    let head = v.welcome_last_seq;
    ensure!(
        head > held,
        "{name}: the agent wrote nothing during the gap (held {held}, head {head})"
    );
    let replayed = head - held;
    while held < head {
        take(next_event(&mut v).await?, &mut held)?;
    }
    // Then a live one: stored after the welcome.
    take(next_event(&mut v).await?, &mut held)?;

    // The relay's side of a half-open drop: it keeps the silent socket (a visitor may have
    // several tabs) until the idle timeout, then closes it with 1008. Meanwhile, and after, the
    // new socket keeps getting every event once.
    let old = match old {
        None => None,
        Some(old) => {
            let deadline = old.since() + IDLE + PING + Duration::from_secs(5);
            let closing = old.closed_by_relay(deadline);
            tokio::pin!(closing);
            let closed = loop {
                tokio::select! {
                    closed = &mut closing => break closed.with_context(|| name.clone())?,
                    e = next_event(&mut v) => take(e?, &mut held)?,
                }
            };
            ensure!(
                closed.close.as_ref().map(|(c, r)| (*c, r.as_str()))
                    == Some((protocol::CLOSE_POLICY, "idle timeout")),
                "{name}: the relay ended the half-open socket without a 1008 idle-timeout close \
                 ({closed:?})"
            );
            // Measured only when it was still open at the reconnect (else it is an upper bound).
            ensure!(
                !held_on || closed.after >= IDLE - 2 * PING,
                "{name}: the relay gave up on the half-open socket after {:?}, before its idle \
                 timeout ({IDLE:?})",
                closed.after
            );
            Some((held_on, closed))
        }
    };
    done.fetch_add(1, Ordering::AcqRel);

    // Until the agent stops, then up to its last message, then nothing more.
    let last = loop {
        let last = finals.borrow().as_ref().map(|f| f[i]);
        if let Some(last) = last {
            break last;
        }
        tokio::select! {
            changed = finals.changed() => changed.context("the agent stopped without its last seqs")?,
            e = next_event(&mut v) => take(e?, &mut held)?,
        }
    };
    while held < last {
        take(next_event(&mut v).await?, &mut held)?;
    }
    v.expect_none("a duplicate event", Duration::from_millis(500), |f| {
        matches!(f, ToVisitor::Event(_))
    })
    .await
    .with_context(|| name.clone())?;
    Ok(DropReport {
        plan,
        replayed,
        old,
    })
}

/// Starts the chat both two-node fault tests use: `n` visitors sending every `visitor_every`,
/// and, once each has a conversation, 2 agents answering every 150 ms, each owning every other
/// conversation. Returns the visitors, the agents and the conversations in visitor order. Clients spread over `addrs` and reconnect to the next node on any loss.
async fn start_cast(
    addrs: &[SocketAddr],
    control: &Arc<Control>,
    n: usize,
    visitor_every: Duration,
) -> anyhow::Result<(Vec<ClientHandle>, Vec<ClientHandle>, Vec<ConversationId>)> {
    let addrs = addrs.to_vec();
    let visitors: Vec<ClientHandle> = (0..n)
        .map(|i| {
            spawn_visitor(
                &format!("v{i}"),
                addrs.clone(),
                i,
                control.clone(),
                visitor_every,
            )
        })
        .collect();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let conversations: Vec<ConversationId> = loop {
        let known: Vec<Option<ConversationId>> = visitors
            .iter()
            .map(|v| v.log().conversation.clone())
            .collect();
        if known.iter().all(Option::is_some) {
            break known.into_iter().flatten().collect();
        }
        if tokio::time::Instant::now() > deadline {
            bail!("not every visitor got a conversation: {known:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let agents: Vec<ClientHandle> = (0..2)
        .map(|a| {
            let (user, _, pass) = AGENTS[a];
            let mine: Vec<ConversationId> = conversations
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == a)
                .map(|(_, c)| c.clone())
                .collect();
            spawn_agent(
                &format!("a{a}"),
                (user, pass),
                mine,
                addrs.clone(),
                a,
                control.clone(),
                Duration::from_millis(150),
            )
        })
        .collect();
    Ok((visitors, agents, conversations))
}

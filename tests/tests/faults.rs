//! Fault tests: no message is lost or duplicated when relays crash, shut down or lose clients.
//!
//! - `kill_minus_nine_during_a_two_node_chat`: two relay *processes* on one PostgreSQL and one
//!   Redis; visitors and agents chat both ways through resilient clients while a killer SIGKILLs
//!   a random node and restarts it on the same port, [`KILLS`] times. Every send must be acked
//!   (repeats with the same seq), stored exactly once, and every client must see its
//!   conversations' seqs strictly +1 with no gap or duplicate.
//! - `dropped_sockets_replay_the_gap_exactly`: a visitor's TCP connection vanishes (no close
//!   frame) for 1–5 s while the agent writes; on reconnect with `last_seq` it gets exactly the
//!   missed events, in order, then live ones.
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

use anyhow::{bail, Context as _};
use parley_tests::pg::TestDatabase;
use parley_tests::process::{RelayConfigFile, RelayProcess};
use parley_tests::resilient::{login, spawn_agent, spawn_visitor, ClientHandle, Control};
use parley_tests::{start_server, AgentClient, RawSocket, VisitorClient, AGENTS, TIMEOUT};
use protocol::{
    AgentFrame, ConversationId, Event, EventBody, Role, Seq, ToAgent, ToVisitor, PROTOCOL_VERSION,
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
async fn next_event(v: &mut VisitorClient) -> anyhow::Result<Event> {
    loop {
        match v.next_frame().await? {
            ToVisitor::Event(e) => return Ok(e),
            ToVisitor::Presence { .. } | ToVisitor::Typing { .. } | ToVisitor::Queue { .. } => {}
            other => bail!("expected an event, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn dropped_sockets_replay_the_gap_exactly() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut rng = Rng::from_env("dropped_sockets_replay_the_gap_exactly");
    let relay = start_server().await?;
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    v.send("v-1", "hello").await?;
    assert_eq!(v.expect_ack("v-1").await?, 1);
    let conversation = v.conversation_id.clone().context("conversation id")?;
    assert_eq!(next_event(&mut v).await?.seq, 1);
    agent.open(&conversation, Some(0)).await?;
    agent.take(&conversation).await?;
    let joined = next_event(&mut v).await?;
    assert_eq!((joined.seq, &joined.body), (2, &EventBody::Joined));
    let mut held: Seq = 2;
    let mut sent = 0;

    const ROUNDS: usize = 3;
    let mut gaps = Vec::new();
    for round in 0..ROUNDS {
        // The TCP connection just goes away: no close frame.
        let token = v.token.clone();
        drop(v);
        let gap = Duration::from_millis(rng.range(1000, 5000));
        gaps.push(gap);
        let n = rng.range(2, 6) as usize;
        let step = gap / (n as u32 + 1);
        let mut texts = Vec::new();
        for j in 0..n {
            tokio::time::sleep(step).await;
            let text = format!("round {round} missed {j}");
            let id = format!("a-{round}-{j}");
            agent.send(&conversation, &id, &text).await?;
            assert_eq!(agent.expect_ack(&id).await?, held + j as Seq + 1);
            texts.push(text);
            sent += 1;
        }
        tokio::time::sleep(step).await;

        v = VisitorClient::connect_with(&relay, Some(&token), Some((&conversation, held))).await?;
        assert!(v.recovered, "round {round}: the gap must be recoverable");
        assert_eq!(v.welcome_last_seq, held + n as Seq, "round {round}");
        for (j, text) in texts.iter().enumerate() {
            let e = next_event(&mut v).await?;
            assert_eq!(e.seq, held + j as Seq + 1, "round {round}: replay in order");
            assert_eq!(e.message_text(), Some(text.as_str()));
        }
        held += n as Seq;

        let id = format!("a-{round}-live");
        agent.send(&conversation, &id, "live").await?;
        assert_eq!(agent.expect_ack(&id).await?, held + 1);
        let live = next_event(&mut v).await?;
        assert_eq!(live.seq, held + 1, "round {round}: live after the replay");
        assert_eq!(live.message_text(), Some("live"));
        held += 1;
        sent += 1;
        v.expect_none("a duplicate event", Duration::from_millis(300), |f| {
            matches!(f, ToVisitor::Event(_))
        })
        .await?;
    }
    relay.shutdown().await;
    println!(
        "dropped sockets: {ROUNDS} drops (gaps {:?}), {sent} agent messages, all replayed once \
         in order, {:.1}s",
        gaps,
        started.elapsed().as_secs_f64()
    );
    Ok(())
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

//! `parley-load`: a load generator written against PROTOCOL.md alone.
//!
//! Two scenarios:
//! - `idle`: opens N visitor sockets (each says `hello` and waits), then reads the relay's RSS
//!   from `/proc/PID/status` and prints the memory each connection costs.
//! - `chat`: V visitors each open a conversation, M agents log in and open them all, then the
//!   visitors send at a fixed total rate for a fixed time; every message carries its send time, and
//!   the agents measure visitor→agent latency (sent → event received, i.e. stored and relayed).
//!   Every agent socket also checks delivery: each event of each conversation exactly once, seq
//!   +1 after seq; a run with a gap or a repeat fails. `--stall-agent S` makes the first agent
//!   stop reading for S seconds mid-run, the way a frozen laptop does, so the relay's
//!   lag-and-resync path is measured under load: how many resyncs, how soon the agent is current.
//!
//! Connections are spread over several 127.0.0.x source addresses (≈28k ephemeral ports each).
//! Everything is bounded in count and time and targets loopback only.

mod stats;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures::{SinkExt, StreamExt};
use protocol::timeline::{Applied, Timeline};
use protocol::{
    AgentFrame, ClientId, ConversationId, PageContext, ToAgent, ToVisitor, VisitorFrame,
};
use tokio::net::TcpSocket;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Parser)]
#[command(
    name = "parley-load",
    about = "Load generator for the Parley relay (loopback only)"
)]
struct Cli {
    /// Relay base URL (must be on 127.0.0.0/8).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Site key.
    #[arg(long, default_value = "demo")]
    site: String,
    /// Relay base URL the agents use (another node of the same deployment, to measure the
    /// cross-node hop); defaults to `--url`.
    #[arg(long)]
    agent_url: Option<String>,
    /// Origin header sent by visitors (must be allowed by the site).
    #[arg(long)]
    origin: Option<String>,
    /// Relay process id, to read its RSS (Linux /proc).
    #[arg(long)]
    relay_pid: Option<u32>,
    /// How many 127.0.0.x source addresses to spread connections over (1 = 127.0.0.1 only).
    #[arg(long, default_value_t = 4)]
    sources: u8,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Hold N idle visitor connections and report relay memory per connection.
    Idle {
        /// Connections to open.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Seconds to hold them before measuring.
        #[arg(long, default_value_t = 5)]
        hold: u64,
    },
    /// Visitors send to agents at a fixed rate; report throughput and latency.
    Chat {
        /// Visitors (each one conversation).
        #[arg(long, default_value_t = 100)]
        visitors: usize,
        /// Agents (each opens every conversation).
        #[arg(long, default_value_t = 1)]
        agents: usize,
        /// Agent login name (the same account may hold several sockets).
        #[arg(long, default_value = "admin")]
        username: String,
        /// Agent password.
        #[arg(long, env = "PARLEY_LOAD_PASSWORD")]
        password: String,
        /// Total visitor messages per second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Seconds the first agent socket stops reading, starting halfway through the run
        /// (0: never). Its samples are reported apart from the others'.
        #[arg(long, default_value_t = 0)]
        stall_agent: u64,
        /// Failed logins (made-up usernames) sent while the visitors send, as a stranger
        /// flooding `/api/login` would; 0: none. Reports the relay's RSS around it.
        #[arg(long, default_value_t = 0)]
        login_storm: usize,
        /// Concurrent clients of the login storm, each from its own 127.0.1.x address.
        #[arg(long, default_value_t = 50)]
        storm_clients: u8,
    },
}

fn host_port(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .context("url must start with http://")?;
    let addr: SocketAddr = rest
        .trim_end_matches('/')
        .parse()
        .context("url must be http://IP:PORT")?;
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => Ok(addr),
        _ => bail!("refusing a non-loopback target {addr}: load tests stay on 127.0.0.0/8"),
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time used so far (Linux /proc, in clock ticks): by the relay, by this tool, and by the
/// whole machine busy, idle and stolen by the hypervisor; and the relay's context switches.
/// Where latency has a tail, this says whether the cores were full; per message, it compares
/// machines whose speed differs (a p99 alone cannot).
struct CpuTimes {
    relay: Option<u64>,
    /// Voluntary and involuntary, summed over the relay's threads: each is a wake-up or a
    /// preemption, which virtual machines make expensive.
    relay_switches: Option<u64>,
    tool: u64,
    machine_busy: u64,
    machine_idle: u64,
    machine_steal: u64,
}

impl CpuTimes {
    fn read(relay_pid: Option<u32>) -> Option<CpuTimes> {
        // utime + stime are fields 14 and 15; the command name before them may hold spaces.
        let process = |path: &str| -> Option<u64> {
            let stat = std::fs::read_to_string(path).ok()?;
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        };
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal guest guest_nice; guest time is
        // already counted in user and nice.
        let idle = cpu.get(3)? + cpu.get(4).copied().unwrap_or(0);
        let counted: u64 = cpu.iter().take(8).sum();
        Some(CpuTimes {
            relay: relay_pid.and_then(|pid| process(&format!("/proc/{pid}/stat"))),
            relay_switches: relay_pid.and_then(context_switches),
            tool: process("/proc/self/stat")?,
            machine_busy: counted - idle,
            machine_idle: idle,
            machine_steal: cpu.get(7).copied().unwrap_or(0),
        })
    }

    /// "cpu while sending: relay X cores, load tool Y cores, machine Z % busy" over `elapsed`,
    /// then what the relay spent per message of the `sent`.
    fn since(&self, before: &CpuTimes, elapsed: Duration, sent: u64) -> String {
        // USER_HZ is 100 on every Linux this targets.
        let cores = |ticks: u64| ticks as f64 / 100.0 / elapsed.as_secs_f64().max(0.001);
        let busy = self.machine_busy - before.machine_busy;
        let idle = self.machine_idle - before.machine_idle;
        let steal = self.machine_steal - before.machine_steal;
        let relay = match (self.relay, before.relay) {
            (Some(a), Some(b)) => format!("relay {:.2} cores, ", cores(a - b)),
            _ => String::new(),
        };
        let mut line = format!(
            "cpu while sending: {relay}load tool {:.2} cores, machine {:.0} % busy, {:.1} % stolen ({} cores)",
            cores(self.tool - before.tool),
            100.0 * busy as f64 / (busy + idle).max(1) as f64,
            100.0 * steal as f64 / (busy + idle).max(1) as f64,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
        if let (Some(a), Some(b), Some(sa), Some(sb)) = (
            self.relay,
            before.relay,
            self.relay_switches,
            before.relay_switches,
        ) {
            let sent = sent.max(1) as f64;
            line.push_str(&format!(
                "\nrelay per message sent: {:.0} us of CPU, {:.1} context switches",
                (a - b) as f64 * 10_000.0 / sent,
                sa.saturating_sub(sb) as f64 / sent,
            ));
        }
        line
    }
}

/// The relay's context switches so far, summed over its threads (`/proc/PID/task/*/status`).
/// A thread that ends between two readings drops out of the second, so the difference is exact
/// only while the relay keeps its threads (its tokio workers do; a pooled SQLite connection's
/// thread ends only if the pool closes it).
fn context_switches(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(status) = std::fs::read_to_string(task.ok()?.path().join("status")) else {
            continue;
        };
        total += status
            .lines()
            .filter(|l| {
                l.starts_with("voluntary_ctxt_switches:")
                    || l.starts_with("nonvoluntary_ctxt_switches:")
            })
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Some(total)
}

/// Opens a WebSocket from source address 127.0.0.(1 + n % sources).
async fn connect(
    target: SocketAddr,
    path: &str,
    n: usize,
    sources: u8,
    headers: &[(&'static str, String)],
) -> anyhow::Result<Ws> {
    let source = Ipv4Addr::new(127, 0, 0, 1 + (n % sources.max(1) as usize) as u8);
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    let mut request = format!("ws://{target}{path}").into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse()?);
    }
    let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await?;
    Ok(ws)
}

async fn send<T: serde::Serialize>(ws: &mut Ws, frame: &T) -> anyhow::Result<()> {
    ws.send(Message::Text(protocol::encode(frame).into()))
        .await?;
    Ok(())
}

async fn visitor_hello(ws: &mut Ws) -> anyhow::Result<()> {
    send(
        ws,
        &VisitorFrame::Hello {
            identity: None,
            v: protocol::PROTOCOL_VERSION,
            token: None,
            conversation_id: None,
            last_seq: None,
            context: PageContext {
                url: "http://127.0.0.1/load".into(),
                ..Default::default()
            },
        },
    )
    .await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                if let Ok(ToVisitor::Welcome { .. }) = protocol::decode::<ToVisitor>(&t) {
                    return Ok(());
                }
            }
            Some(Ok(_)) => {}
            other => bail!("socket ended before welcome: {other:?}"),
        }
    }
}

async fn idle(cli: &Cli, connections: usize, hold: u64) -> anyhow::Result<()> {
    let target = host_port(&cli.url)?;
    let origin = cli
        .origin
        .clone()
        .unwrap_or_else(|| cli.url.trim_end_matches('/').to_owned());
    let path = format!("/ws/visitor?site={}", cli.site);
    let before = cli.relay_pid.and_then(rss_kib);
    let started = Instant::now();
    let mut held = Vec::with_capacity(connections);
    let mut failures = 0usize;
    // Connect in waves of 500 so the relay's accept queue is not the thing being measured.
    for wave in (0..connections).collect::<Vec<_>>().chunks(500) {
        let tasks: Vec<_> = wave
            .iter()
            .map(|&n| {
                let path = path.clone();
                let headers = vec![("origin", origin.clone())];
                let sources = cli.sources;
                tokio::spawn(async move {
                    let mut ws = connect(target, &path, n, sources, &headers).await?;
                    visitor_hello(&mut ws).await?;
                    anyhow::Ok(ws)
                })
            })
            .collect();
        for t in tasks {
            match t.await? {
                Ok(ws) => held.push(ws),
                Err(e) => {
                    failures += 1;
                    if failures <= 3 {
                        eprintln!("connect failed: {e:#}");
                    }
                }
            }
        }
    }
    let connect_time = started.elapsed();
    // Keep the sockets read so pings are answered while holding.
    let count = held.len();
    let readers: Vec<_> = held
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} }))
        .collect();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let after = cli.relay_pid.and_then(rss_kib);
    println!("scenario: idle visitor connections");
    println!(
        "connections held: {count} (failed: {failures}) in {:.1} s",
        connect_time.as_secs_f64()
    );
    match (before, after) {
        (Some(b), Some(a)) => {
            println!("relay RSS before: {b} KiB, after: {a} KiB");
            println!(
                "relay RSS per connection: {:.2} KiB",
                (a.saturating_sub(b)) as f64 / count.max(1) as f64
            );
        }
        _ => println!("relay RSS: pass --relay-pid to measure"),
    }
    for r in readers {
        r.abort();
    }
    Ok(())
}

async fn login(url: &str, username: &str, password: &str) -> anyhow::Result<String> {
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/api/login", url.trim_end_matches('/')))
        .json(&serde_json::json!({ "username": username, "password": password }))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("login failed: {}", response.status());
    }
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?
        .to_owned();
    Ok(cookie)
}

/// Opens a conversation on an agent socket, waiting for its history and honouring
/// `rate_limited` the way PROTOCOL.md asks clients to. Events of conversations opened before
/// (an assignment's `joined`, say) go to `delivery` like any other.
async fn open_conversation(
    ws: &mut Ws,
    conversation: &ConversationId,
    delivery: &mut Delivery,
) -> anyhow::Result<()> {
    loop {
        let frame = AgentFrame::Open {
            conversation_id: conversation.clone(),
            after_seq: None,
        };
        send(ws, &frame).await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => match protocol::decode::<ToAgent>(&t) {
                    Ok(ToAgent::History {
                        conversation_id,
                        events,
                    }) if &conversation_id == conversation => {
                        delivery.opened(conversation_id, events);
                        return Ok(());
                    }
                    Ok(ToAgent::Event(e)) => delivery.event(e),
                    Ok(ToAgent::Error(e)) if e.code == protocol::ErrorCode::RateLimited => {
                        let wait = e.retry_after_ms.unwrap_or(100);
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        break;
                    }
                    Ok(ToAgent::Error(e)) => bail!("open refused: {e:?}"),
                    _ => {}
                },
                Some(Ok(_)) => {}
                other => bail!("agent socket ended: {other:?}"),
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn chat(
    cli: &Cli,
    visitors: usize,
    agents: usize,
    username: &str,
    password: &str,
    rate: u64,
    duration: u64,
    stall_agent: u64,
    storm: Storm,
) -> anyhow::Result<()> {
    let target = host_port(&cli.url)?;
    let agent_url = cli.agent_url.clone().unwrap_or_else(|| cli.url.clone());
    let agent_target = host_port(&agent_url)?;
    let origin = cli
        .origin
        .clone()
        .unwrap_or_else(|| cli.url.trim_end_matches('/').to_owned());
    let epoch = Instant::now();
    let latencies = Arc::new(Mutex::new(Latencies::default()));
    let received = Arc::new(AtomicU64::new(0));

    // Visitors connect and each opens a conversation with a first message.
    let mut visitor_socks = Vec::with_capacity(visitors);
    let mut conversations: Vec<ConversationId> = Vec::with_capacity(visitors);
    // The bot's hand-off may come before the ack of the opening message.
    let mut handed_over_early = Vec::with_capacity(visitors);
    for n in 0..visitors {
        let mut ws = connect(
            target,
            &format!("/ws/visitor?site={}", cli.site),
            n,
            cli.sources,
            &[("origin", origin.clone())],
        )
        .await?;
        visitor_hello(&mut ws).await?;
        let mut early = false;
        send(
            &mut ws,
            &VisitorFrame::Send {
                client_id: ClientId(format!("open-{n}")),
                text: OPENING.into(),
            },
        )
        .await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(ToVisitor::Ack {
                        conversation_id, ..
                    }) = protocol::decode::<ToVisitor>(&t)
                    {
                        conversations.push(conversation_id);
                        break;
                    }
                    early |= is_handoff(&t);
                }
                Some(Ok(_)) => {}
                other => bail!("visitor socket ended: {other:?}"),
            }
        }
        visitor_socks.push(ws);
        handed_over_early.push(early);
    }

    // On a bot-first site the opening asks for a person: the bot hands over at once, so the
    // measured phase is people's chat only, not a thousand bot turns and hand-offs in its first
    // second. Waited for together, bounded (an agents-first site sends no hand-off).
    let handoffs = futures::future::join_all(visitor_socks.iter_mut().zip(&handed_over_early).map(
        |(ws, early)| async move {
            if *early {
                return true;
            }
            tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(Ok(msg)) = ws.next().await {
                    if matches!(msg, Message::Text(t) if is_handoff(&t)) {
                        return true;
                    }
                }
                false
            })
            .await
            .unwrap_or(false)
        },
    ))
    .await;
    let handed_over = handoffs.iter().filter(|h| **h).count();

    // Agents log in and open every conversation, all at once: each socket has its own rate
    // limit, and visitors left unread past the relay's idle timeout would be closed.
    let cookie = login(&agent_url, username, password).await?;
    let opened = futures::future::join_all((0..agents).map(|n| {
        let cookie = cookie.clone();
        let conversations = &conversations;
        async move {
            let mut ws = connect(
                agent_target,
                "/ws/agent",
                n,
                cli.sources,
                &[("cookie", cookie)],
            )
            .await?;
            send(
                &mut ws,
                &AgentFrame::Hello {
                    v: protocol::PROTOCOL_VERSION,
                },
            )
            .await?;
            let mut delivery = Delivery::default();
            for c in conversations {
                open_conversation(&mut ws, c, &mut delivery).await?;
            }
            anyhow::Ok((ws, delivery))
        }
    }))
    .await;
    // Sending starts after a short settle; the stalled agent stops halfway through.
    let settle = Duration::from_millis(500);
    let stall = (stall_agent > 0).then(|| {
        (
            Instant::now() + settle + Duration::from_secs(duration) / 2,
            Duration::from_secs(stall_agent),
        )
    });
    let mut agent_tasks = Vec::new();
    let mut deliveries = Vec::new();
    for (n, agent) in opened.into_iter().enumerate() {
        let (mut ws, delivery) = agent?;
        let delivery = Arc::new(std::sync::Mutex::new(delivery));
        deliveries.push(delivery.clone());
        let latencies = latencies.clone();
        let received = received.clone();
        let mut stall = stall.filter(|_| n == 0);
        let stalled = stall.is_some();
        agent_tasks.push(tokio::spawn(async move {
            let mut resumed: Option<Instant> = None;
            while let Some(Ok(msg)) = ws.next().await {
                if let Some((from, length)) = stall {
                    if Instant::now() >= from {
                        tokio::time::sleep(length).await;
                        stall = None;
                        resumed = Some(Instant::now());
                    }
                }
                let Message::Text(t) = msg else { continue };
                let Ok(ToAgent::Event(e)) = protocol::decode::<ToAgent>(&t) else {
                    continue;
                };
                let now_us = epoch.elapsed().as_micros() as u64;
                let now_wall = unix_micros();
                let stamp = e.message_text().and_then(Stamp::parse);
                let stored_us = u64::try_from(e.at).unwrap_or(0) * 1000;
                delivery.lock().unwrap_or_else(|p| p.into_inner()).event(e);
                let Some(stamp) = stamp else {
                    continue;
                };
                let latency = now_us.saturating_sub(stamp.sent_us);
                received.fetch_add(1, Ordering::Relaxed);
                let mut l = latencies.lock().await;
                if stalled {
                    l.stalled.push(latency);
                    // Current again: it reads a message sent after it resumed reading.
                    if let Some(at) = resumed {
                        if stamp.sent_us >= (at - epoch).as_micros() as u64 {
                            l.caught_up = Some(at.elapsed());
                            resumed = None;
                        }
                    }
                    continue;
                }
                l.total.push(latency);
                l.to_stored.push(stored_us.saturating_sub(stamp.wall_us));
                l.stored_to_agent.push(now_wall.saturating_sub(stored_us));
                let second = (stamp.sent_us / 1_000_000) as usize;
                if l.by_second.len() <= second {
                    l.by_second.resize_with(second + 1, stats::Samples::default);
                }
                l.by_second[second].push(latency);
            }
        }));
    }
    let resyncs_before = relay_counter(&agent_url, "parley_resyncs_total").await;
    tokio::time::sleep(settle).await;

    // Each visitor sends at rate / visitors per second, with its own reader draining acks.
    let per_visitor = (rate as f64 / visitors as f64).max(0.001);
    let interval = Duration::from_secs_f64(1.0 / per_visitor);
    let deadline = Instant::now() + Duration::from_secs(duration);
    let sent = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for (n, ws) in visitor_socks.into_iter().enumerate() {
        let (mut tx, mut rx) = ws.split();
        let sent = sent.clone();
        let drain = tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
        senders.push(tokio::spawn(async move {
            // Spread the visitors' first sends over one interval.
            tokio::time::sleep(interval.mul_f64(n as f64 / visitors as f64)).await;
            let mut tick = tokio::time::interval(interval);
            let mut i = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                let text = Stamp {
                    sent_us: epoch.elapsed().as_micros() as u64,
                    wall_us: unix_micros(),
                }
                .to_string();
                let frame = VisitorFrame::Send {
                    client_id: ClientId(format!("v{n}m{i}")),
                    text,
                };
                if tx
                    .send(Message::Text(protocol::encode(&frame).into()))
                    .await
                    .is_err()
                {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            drain.abort();
        }));
    }
    let started = Instant::now();
    let cpu_before = CpuTimes::read(cli.relay_pid);
    let storm_task =
        (storm.attempts > 0).then(|| tokio::spawn(storm.run(cli.url.clone(), cli.relay_pid)));
    for s in senders {
        let _ = s.await;
    }
    let elapsed = started.elapsed();
    let cpu_after = CpuTimes::read(cli.relay_pid);
    // What is still on its way: until every agent has every message, at most 10 s.
    let sent = sent.load(Ordering::Relaxed);
    let expected = sent * agents as u64;
    let waiting = Instant::now();
    while received.load(Ordering::Relaxed) < expected && waiting.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A repeat would come last (a resync's re-read): give it a moment to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for t in agent_tasks {
        t.abort();
    }
    let received = received.load(Ordering::Relaxed);
    let resyncs = relay_counter(&agent_url, "parley_resyncs_total").await;
    let samples = latencies.lock().await;
    println!("scenario: chat, {visitors} visitors -> {agents} agent sockets, target {rate} msg/s for {duration} s");
    if agent_target != target {
        println!("visitors on {target}, agents on {agent_target} (cross-node)");
    }
    println!("connections held: {}", visitors + agents);
    println!("conversations handed over by a bot before the run: {handed_over} of {visitors}");
    println!(
        "messages sent: {sent} ({:.0} msg/s); received by agents: {received} (expected {})",
        sent as f64 / elapsed.as_secs_f64(),
        sent * agents as u64
    );
    println!("visitor->agent latency: {}", samples.total.summary());
    let (mut gaps, mut repeats) = (0, 0);
    for delivery in &deliveries {
        let d = delivery.lock().unwrap_or_else(|p| p.into_inner());
        gaps += d.gaps;
        repeats += d.repeats;
    }
    println!("delivery on every agent socket: {gaps} read after a missing one, {repeats} repeated (both must be 0)");
    // Split at the event's `at` (stamped by the relay inside the storing transaction, in whole
    // milliseconds): where a slow message spent its time.
    println!(
        "  sent->stored (relay clock, 1 ms steps): {}",
        samples.to_stored.summary()
    );
    println!(
        "  stored->agent read (1 ms steps): {}",
        samples.stored_to_agent.summary()
    );
    let worst: Vec<String> = samples
        .by_second
        .iter()
        .enumerate()
        .filter_map(|(second, s)| {
            let p99 = s.percentile(99.0)?;
            let max = s.percentile(100.0)?;
            Some(format!(
                "{second}s {:.1}/{:.1}",
                p99 as f64 / 1000.0,
                max as f64 / 1000.0
            ))
        })
        .collect();
    println!("  p99/max ms by second sent: {}", worst.join(", "));
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        println!("{}", after.since(&before, elapsed, sent));
    }
    if stall_agent > 0 {
        println!(
            "agent 0 stopped reading for {stall_agent} s mid-run: its latency {}",
            samples.stalled.summary()
        );
        match samples.caught_up {
            Some(after) => println!(
                "  current again (read a message sent after it resumed) {:.0} ms after resuming",
                after.as_secs_f64() * 1000.0
            ),
            None => println!("  never current again before the run ended"),
        }
    }
    match (resyncs_before, resyncs) {
        (Some(before), Some(after)) => println!("relay resyncs during the run: {}", after - before),
        _ => println!("relay resyncs: /metrics not readable"),
    }
    if let Some(pid) = cli.relay_pid {
        if let Some(rss) = rss_kib(pid) {
            println!("relay RSS: {rss} KiB");
        }
    }
    if let Some(task) = storm_task {
        task.await??.report(cli.relay_pid).await;
    }
    if received < expected {
        bail!(
            "{} messages were not received by every agent",
            expected - received
        );
    }
    if gaps > 0 || repeats > 0 {
        bail!("delivery broke: {gaps} events read after a missing one, {repeats} repeated");
    }
    Ok(())
}

/// Failed logins with made-up usernames from many addresses at once.
struct Storm {
    /// Logins in all.
    attempts: usize,
    /// Concurrent clients, each from its own source address.
    clients: u8,
}

/// What a storm got, and the relay's memory around it.
struct StormOutcome {
    attempts: usize,
    clients: u8,
    /// Responses by HTTP status (0: the request failed).
    statuses: std::collections::BTreeMap<u16, usize>,
    took: Duration,
    rss_before: Option<u64>,
    rss_peak: Option<u64>,
    rss_after: Option<u64>,
}

impl Storm {
    async fn run(self, url: String, pid: Option<u32>) -> anyhow::Result<StormOutcome> {
        host_port(&url)?;
        let rss_before = pid.and_then(rss_kib);
        let peak = Arc::new(AtomicU64::new(rss_before.unwrap_or(0)));
        let sampler = pid.map(|pid| {
            let peak = peak.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(100));
                loop {
                    every.tick().await;
                    if let Some(rss) = rss_kib(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                }
            })
        });
        let started = Instant::now();
        let clients = self.clients.max(1);
        let per_client = self.attempts.div_ceil(clients as usize);
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let url = format!("{}/api/login", url.trim_end_matches('/'));
                let total = self.attempts;
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 1, c + 1)))
                        .build()?;
                    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
                    for i in 0..per_client {
                        if c as usize * per_client + i >= total {
                            break;
                        }
                        let status = http
                            .post(&url)
                            .json(&serde_json::json!({
                                "username": format!("stranger-{c}-{i}-{:x}", unix_micros()),
                                "password": "not-the-password",
                            }))
                            .send()
                            .await
                            .map(|r| r.status().as_u16())
                            .unwrap_or(0);
                        *statuses.entry(status).or_default() += 1;
                    }
                    anyhow::Ok(statuses)
                })
            })
            .collect();
        let mut statuses = std::collections::BTreeMap::new();
        for t in tasks {
            for (status, n) in t.await?? {
                *statuses.entry(status).or_default() += n;
            }
        }
        let took = started.elapsed();
        if let Some(s) = sampler {
            s.abort();
        }
        Ok(StormOutcome {
            attempts: self.attempts,
            clients,
            statuses,
            took,
            rss_before,
            rss_peak: pid.map(|_| peak.load(Ordering::Relaxed)),
            rss_after: None,
        })
    }
}

impl StormOutcome {
    /// Prints the outcome, reading the relay's RSS once more after 10 s without logins.
    async fn report(mut self, pid: Option<u32>) {
        if let Some(pid) = pid {
            tokio::time::sleep(Duration::from_secs(10)).await;
            self.rss_after = rss_kib(pid);
        }
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, n)| format!("{status}: {n}"))
            .collect();
        println!(
            "login storm beside the chat: {} failed logins from {} addresses in {:.1} s ({})",
            self.attempts,
            self.clients,
            self.took.as_secs_f64(),
            statuses.join(", ")
        );
        if let (Some(before), Some(peak), Some(after)) =
            (self.rss_before, self.rss_peak, self.rss_after)
        {
            println!(
                "  relay RSS before {before} KiB, peak {peak} KiB (+{:.1} MiB), 10 s after {after} KiB ({:+.1} MiB)",
                peak.saturating_sub(before) as f64 / 1024.0,
                (after as f64 - before as f64) / 1024.0
            );
        }
    }
}

/// A counter from the relay's `/metrics`, `None` when it cannot be read.
async fn relay_counter(url: &str, name: &str) -> Option<u64> {
    let text = reqwest::get(format!("{}/metrics", url.trim_end_matches('/')))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// One agent socket's delivery check, with the same [`Timeline`] every client keeps: PROTOCOL.md
/// promises each event once and in order on a socket, resyncs included.
#[derive(Default)]
struct Delivery {
    /// Each opened conversation as this socket has read it.
    timelines: std::collections::HashMap<ConversationId, Timeline>,
    /// Events that came after a hole (a missed event), not added.
    gaps: u64,
    /// Events read again.
    repeats: u64,
}

impl Delivery {
    /// A conversation was opened: its history ends where the live events start.
    fn opened(&mut self, conversation: ConversationId, history: Vec<protocol::Event>) {
        let timeline = self.timelines.entry(conversation).or_default();
        for e in history {
            timeline.apply(e);
        }
    }

    /// A live event (of an opened conversation; others are not this socket's to check).
    fn event(&mut self, e: protocol::Event) {
        let Some(timeline) = self.timelines.get_mut(&e.conversation_id) else {
            return;
        };
        match timeline.apply(e) {
            Applied::Appended => {}
            Applied::Duplicate => self.repeats += 1,
            Applied::Gap { .. } => self.gaps += 1,
        }
    }
}

/// Whether a visitor frame is the bot's hand-off event.
fn is_handoff(text: &str) -> bool {
    matches!(
        protocol::decode::<ToVisitor>(text),
        Ok(ToVisitor::Event(e)) if e.body == protocol::VisitorBody::Handoff
    )
}

/// Each visitor's first message: opens the conversation and, where a bot answers first, asks it
/// for a person (see `wants_human` in the relay's bot).
const OPENING: &str = "hello, I would like to talk to a person please";

/// What each chat message carries: when it was sent, on the tool's monotonic clock (for the
/// latency) and on the wall clock (to compare with the relay's `at`).
struct Stamp {
    sent_us: u64,
    wall_us: u64,
}

impl Stamp {
    fn parse(text: &str) -> Option<Stamp> {
        let (sent, wall) = text.strip_prefix("t=")?.split_once(" w=")?;
        Some(Stamp {
            sent_us: sent.parse().ok()?,
            wall_us: wall.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "t={} w={}", self.sent_us, self.wall_us)
    }
}

/// Microseconds since the Unix epoch (the relay stamps events in Unix milliseconds).
fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The chat scenario's samples.
#[derive(Default)]
struct Latencies {
    /// Visitor sent → agent read the event.
    total: stats::Samples,
    /// Visitor sent → the relay stamped the event while storing it.
    to_stored: stats::Samples,
    /// Stamped → agent read it (commit, relay, socket, the tool's reader).
    stored_to_agent: stats::Samples,
    /// `total` by the second (of the tool's clock) the message was sent in: whether a tail is
    /// spread over the run or one stall.
    by_second: Vec<stats::Samples>,
    /// The stalled agent's samples (`--stall-agent`), kept out of the others.
    stalled: stats::Samples,
    /// How long after it resumed reading the stalled agent read a message sent after that.
    caught_up: Option<Duration>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("could not raise the open-file limit: {e}");
    }
    match &cli.scenario {
        Scenario::Idle { connections, hold } => idle(&cli, *connections, *hold).await,
        Scenario::Chat {
            visitors,
            agents,
            username,
            password,
            rate,
            duration,
            stall_agent,
            login_storm,
            storm_clients,
        } => {
            chat(
                &cli,
                *visitors,
                *agents,
                username,
                password,
                *rate,
                *duration,
                *stall_agent,
                Storm {
                    attempts: *login_storm,
                    clients: *storm_clients,
                },
            )
            .await
        }
    }
}

//! The people's queue: who gets which waiting conversation, where each visitor stands, and what
//! happens to the conversations of an agent who is gone.
//!
//! One task per node ([`run`]) does all of it, woken by [`crate::hub::Hub::queue_changed`] (a
//! conversation entered or left the queue, an agent came online or freed a place — here or, via
//! the bus, on another node) and by a tick that catches anything a lost nudge missed:
//! 1. **Requeue**: an agent with open assigned conversations who has been offline on every node
//!    (hub presence, local + remote) for longer than the grace period gets them put back, each
//!    with a stored `requeued` event. The clock starts when this node first sees the agent
//!    gone — after a restart that is the start — so a restart delays a requeue, never hastens it.
//! 2. **Assign**: [`crate::store::Store::assign_next`] until it finds nothing: the store decides
//!    in one transaction (SQLite's single writer; PostgreSQL's advisory lock plus the row lock)
//!    from the loads it counts itself, so no conversation is assigned twice and no agent beyond
//!    capacity, however many nodes pump at once. Candidates are the agents online on any node.
//! 3. **Tell**: re-reads the queue and pushes each waiting visitor's changed position (and the
//!    average of recent waits) to their tabs on this node, `position: 0` to those that left it,
//!    and the queue length and loads to this node's consoles.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::{AgentInfo, AgentLoad, Author, ConversationId, EventBody, Role};

use crate::hub::QueueUpdate;
use crate::store::{Capacity, Effect, NewEvent, QueueState, StoreError};
use crate::App;

/// Longest time between two passes when nothing wakes the task: bounds how long a lost nudge
/// can delay an assignment or a position update.
const TICK: Duration = Duration::from_secs(1);

/// The queue's settings and what this node last told its clients.
pub struct Queue {
    /// Who may be given how many conversations. Behind a lock because an admin may change a
    /// site's limit from the console while the relay runs.
    capacity: std::sync::RwLock<Capacity>,
    /// How long an agent may be gone before their conversations are requeued.
    grace: Duration,
    /// What was last read and told, to push changes only.
    told: Mutex<Told>,
}

/// What this node last told its clients.
#[derive(Default)]
struct Told {
    /// Position of every waiting conversation, as last pushed.
    positions: HashMap<ConversationId, u32>,
    /// The wait estimate last pushed.
    wait_ms: Option<u64>,
    /// The consoles' frame last pushed (also sent after every agent `welcome`).
    agents: Option<Arc<QueueUpdate>>,
    /// Agents with assigned conversations seen offline, since when.
    offline_since: HashMap<String, Instant>,
    /// The last state read: the tick only pumps when something waits.
    state: QueueState,
}

impl Queue {
    /// A queue with these limits and grace period.
    pub fn new(capacity: Capacity, grace: Duration) -> Self {
        Self {
            capacity: std::sync::RwLock::new(capacity),
            grace,
            told: Mutex::new(Told::default()),
        }
    }

    /// The limits now (a copy: an assignment decides on one consistent set).
    pub fn capacity(&self) -> Capacity {
        self.capacity
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads every agent's own limit and sites (an admin changed an agent).
    pub fn set_agents(&self, agents: &[crate::store::AgentRecord]) {
        self.capacity
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .set_agents(agents);
    }

    /// Sets a site's `max_chats_per_agent` (an admin saved it).
    pub fn set_site_max(&self, site: &str, max: u32) {
        self.capacity
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .sites
            .insert(site.to_owned(), max);
    }

    fn told(&self) -> std::sync::MutexGuard<'_, Told> {
        self.told.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The visitor frame for a conversation while it waits, as last read (for `welcome`).
    pub fn position(&self, conversation: &ConversationId) -> Option<protocol::ToVisitor> {
        let told = self.told();
        told.positions
            .get(conversation)
            .map(|&position| protocol::ToVisitor::Queue {
                position,
                wait_ms: told.wait_ms,
            })
    }

    /// The consoles' frame as last read (for `welcome`).
    pub fn agents_frame(&self) -> Option<protocol::ToAgent> {
        match self.told().agents.as_deref() {
            Some(QueueUpdate::Agents { waiting, agents }) => Some(protocol::ToAgent::Queue {
                waiting: *waiting,
                agents: agents.clone(),
            }),
            _ => None,
        }
    }
}

/// Whether a stored event may have changed the queue (someone entered, left or freed a place).
pub fn changes_queue(appended: &crate::store::Appended) -> bool {
    match appended.event.body {
        EventBody::Joined
        | EventBody::Closed
        | EventBody::Handoff { .. }
        | EventBody::Transferred { .. }
        | EventBody::Requeued { .. } => true,
        // The first event of a conversation that starts in the queue (agents-first site), or
        // the visitor's first message in one a greeting opened: it started waiting just now.
        _ => {
            let c = &appended.conversation;
            c.status == protocol::ConversationStatus::Open
                && (appended.event.seq == 1 || c.queued_at == Some(appended.event.at))
        }
    }
}

/// The queue task of one node; ends on shutdown.
pub async fn run(app: Arc<App>) {
    let tick_every = (app.queue.grace / 4).clamp(Duration::from_millis(50), TICK);
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let woken = tokio::select! {
            _ = app.shutdown.cancelled() => break,
            _ = app.hub.queue_changed.notified() => true,
            _ = tick.tick() => false,
        };
        requeue_overdue(&app).await;
        let something_waits = !app.queue.told().state.waiting.is_empty();
        if woken || something_waits {
            pump(&app).await;
        }
        tell(&app).await;
    }
}

/// Assigns waiting conversations until nothing more fits. Returns how many.
pub async fn pump(app: &Arc<App>) -> usize {
    let online = app.hub.agents_online();
    if online.is_empty() {
        return 0;
    }
    let mut assigned = 0;
    loop {
        let capacity = app.queue.capacity();
        match app.store.assign_next(&online, &capacity).await {
            Ok(Some(appended)) => {
                assigned += 1;
                tracing::debug!(conversation = %appended.event.conversation_id.0,
                    agent = ?appended.conversation.assignee_id, "assigned from the queue");
                app.publish(&appended).await;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::error!(error = %e, "automatic assignment failed; retrying on the next tick");
                break;
            }
        }
    }
    assigned
}

/// Requeues the conversations of agents gone longer than the grace period.
async fn requeue_overdue(app: &Arc<App>) {
    let online: HashSet<String> = app.hub.agents_online().into_iter().map(|a| a.id).collect();
    let now = Instant::now();
    let overdue: Vec<String> = {
        let mut told = app.queue.told();
        let busy: Vec<String> = told.state.loads.keys().cloned().collect();
        told.offline_since
            .retain(|agent, _| !online.contains(agent) && busy.contains(agent));
        for agent in busy.into_iter().filter(|a| !online.contains(a)) {
            told.offline_since.entry(agent).or_insert(now);
        }
        told.offline_since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= app.queue.grace)
            .map(|(agent, _)| agent.clone())
            .collect()
    };
    for agent in overdue {
        let conversations = match app.store.assigned_to(&agent).await {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(error = %e, "could not list a gone agent's conversations");
                continue;
            }
        };
        let from = match app.agent_public(&agent).await {
            Some(info) => agent_author(&info),
            None => Author {
                role: Role::Agent,
                id: Some(agent.clone()),
                name: None,
            },
        };
        for conversation in conversations {
            let new = NewEvent {
                author: Author::system(),
                body: EventBody::Requeued { from: from.clone() },
                client_id: None,
                effect: Effect::Requeue(agent.clone()),
            };
            match app.append(&conversation, new).await {
                Ok(appended) => {
                    tracing::info!(conversation = %conversation.0, agent = %agent,
                        "agent gone past the grace period: conversation requeued");
                    app.publish(&appended).await;
                }
                // Another node requeued it first, or it was closed or transferred meanwhile.
                Err(StoreError::Forbidden) | Err(StoreError::Closed) => {}
                Err(e) => tracing::error!(error = %e, "could not requeue a conversation"),
            }
        }
        app.queue.told().offline_since.remove(&agent);
    }
}

/// An agent as the author of an event.
pub fn agent_author(agent: &AgentInfo) -> Author {
    Author {
        role: Role::Agent,
        id: Some(agent.id.clone()),
        name: Some(agent.display_name.clone()),
    }
}

/// Re-reads the queue and pushes what changed to this node's visitors and consoles.
async fn tell(app: &Arc<App>) {
    let state = match app.store.queue_state().await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "could not read the queue");
            return;
        }
    };
    app.metrics.queue_waiting.set(state.waiting.len() as i64);
    let wait_ms = state.avg_wait_ms.map(|w| w.max(0) as u64);
    let positions: HashMap<ConversationId, u32> = state
        .waiting
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), i as u32 + 1))
        .collect();
    let capacity = app.queue.capacity();
    let agents = Arc::new(QueueUpdate::Agents {
        waiting: state.waiting.len() as u32,
        agents: app
            .hub
            .agents_online()
            .iter()
            .map(|a| AgentLoad {
                id: a.id.clone(),
                chats: state.loads.get(&a.id).copied().unwrap_or(0),
                max: capacity.shown(&a.id),
            })
            .collect(),
    });
    let (visitors, agents_changed) = {
        let mut told = app.queue.told();
        let wait_changed = told.wait_ms != wait_ms;
        let mut visitors: Vec<(ConversationId, u32)> = positions
            .iter()
            .filter(|(c, p)| wait_changed || told.positions.get(*c) != Some(*p))
            .map(|(c, p)| (c.clone(), *p))
            .collect();
        visitors.extend(
            told.positions
                .keys()
                .filter(|c| !positions.contains_key(*c))
                .map(|c| (c.clone(), 0)),
        );
        let agents_changed = told.agents.as_deref() != Some(&*agents);
        told.positions = positions;
        told.wait_ms = wait_ms;
        told.agents = Some(agents.clone());
        told.state = state;
        (visitors, agents_changed)
    };
    for (conversation_id, position) in visitors {
        let update = Arc::new(QueueUpdate::Position {
            conversation_id: conversation_id.clone(),
            position,
            wait_ms: if position > 0 { wait_ms } else { None },
        });
        app.hub.deliver_queue(&conversation_id, update);
    }
    if agents_changed {
        app.hub.deliver_agents_queue(agents);
    }
}

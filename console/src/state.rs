//! The console's model: the live conversation list, the timelines of opened conversations, the
//! outboxes of unacknowledged replies, and what the relay's frames do to them.
//!
//! Pure Rust (no browser APIs): the UI keeps one [`Model`] in a signal, feeds it frames and user
//! actions, and sends the [`Effect`]s it returns. That keeps every protocol rule — re-open after
//! a gap, resend after reconnect, settle on ack — testable natively with `cargo test`.

use std::collections::{HashMap, HashSet};

use protocol::cobrowse::{CobrowseState, Highlight};
use protocol::timeline::{Applied, Outbox, Pending, Timeline};
use protocol::{
    validate_text, AgentFrame, AgentInfo, AgentLoad, ClientId, Consent, ConversationId,
    ConversationStatus, ConversationSummary, ErrorCode, Event, EventBody, HandoffReason, Mood,
    PageContext, Role, Seq, ToAgent, PROTOCOL_VERSION,
};

use crate::format::{error_text, visitor_label};

/// How long a "visitor is typing" stays shown without a fresh typing frame. Covers a lost
/// `active: false` (the visitor closed the tab mid-word).
pub const VISITOR_TYPING_TTL_MS: i64 = 8_000;

/// The list tabs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tab {
    /// Waiting for an agent (status `open`).
    Unassigned,
    /// Assigned to me and not closed.
    Mine,
    /// Everything the relay listed.
    All,
}

impl Tab {
    /// Every tab, in display order.
    pub const ALL: [Tab; 3] = [Tab::Unassigned, Tab::Mine, Tab::All];

    /// The `data-tab` value.
    pub fn key(self) -> &'static str {
        match self {
            Tab::Unassigned => "unassigned",
            Tab::Mine => "mine",
            Tab::All => "all",
        }
    }

    /// The button label.
    pub fn label(self) -> &'static str {
        match self {
            Tab::Unassigned => "Unassigned",
            Tab::Mine => "Mine",
            Tab::All => "All",
        }
    }

    /// Whether conversation `c` belongs in this tab for the agent with id `me`.
    pub fn includes(self, c: &ConversationSummary, me: &str) -> bool {
        match self {
            Tab::Unassigned => is_waiting(c.status),
            Tab::Mine => {
                c.status != ConversationStatus::Closed
                    && c.assignee.as_ref().is_some_and(|a| a.id == me)
            }
            Tab::All => true,
        }
    }
}

/// Something the UI must do for the model: the model never touches the socket itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send this frame now (dropped if the socket is down: the model re-sends what matters on
    /// the next `welcome`).
    Send(AgentFrame),
    /// Send this frame after this many milliseconds (a `rate_limited` or `internal` retry).
    SendAfter(u64, AgentFrame),
}

/// One row of the conversation list, ready to render.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListRow {
    /// Conversation id (`data-id`).
    pub id: ConversationId,
    /// `data-status`.
    pub status: &'static str,
    /// The site's display name.
    pub site_name: String,
    /// "Visitor 3f2a".
    pub visitor: String,
    /// Newest message text.
    pub preview: String,
    /// Last change (Unix ms), for the relative time.
    pub updated_at: i64,
    /// Events arrived since the agent last looked.
    pub unread: bool,
    /// Who has it, when someone does.
    pub assignee: Option<String>,
    /// Whether this is the conversation shown in the middle column.
    pub selected: bool,
    /// The visitor's rating (1–5) once the closed conversation was rated.
    pub rating: Option<u8>,
    /// Place in the people's queue (1 = next) while it waits.
    pub queue_position: Option<usize>,
    /// The relay gave it to me by itself and I have not opened it yet.
    pub auto_assigned: bool,
    /// The visitor left a message while nobody was available: replies are emailed here.
    pub offline_email: Option<String>,
    /// Agents' labels on it.
    pub labels: Vec<String>,
}

/// Delivery state of a transcript line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LineState {
    /// A stored event.
    Stored,
    /// Sent, no ack yet: shown greyed.
    Pending,
    /// Acked; its event has not arrived yet. Shown as normal.
    Delivered,
    /// Refused for good; the reason is shown inline.
    Failed(String),
}

/// One line of the open conversation's transcript, ready to render.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Line {
    /// Stable key for the list: `s{seq}` or `c{client_id}`.
    pub key: String,
    /// `data-seq` (stored events only).
    pub seq: Option<Seq>,
    /// `data-role`: the author's role.
    pub role: &'static str,
    /// Sender name ("Visitor 3f2a", "Mina", "You").
    pub who: String,
    /// Message text, or the wording of a system line ("Mina joined").
    pub text: String,
    /// True for system lines (joined / left / closed) rather than chat messages.
    pub is_notice: bool,
    /// True for the bot's hand-over line, highlighted: its summary is what the agent reads first.
    pub is_handoff: bool,
    /// Labels of the quick replies a bot message offered, shown read-only so the agent sees
    /// what the visitor could click.
    pub buttons: Vec<String>,
    /// The bot message's "read more" page, only when [`safe_link`] accepts it.
    pub link: Option<String>,
    /// The tone the relay scored a visitor's message with (`negative`, `neutral`, `positive`),
    /// shown as a small badge so an upset visitor stands out; `None` for everything else.
    pub mood: Option<&'static str>,
    /// When it was stored (Unix ms); `None` while pending.
    pub at: Option<i64>,
    /// Delivery state.
    pub state: LineState,
    /// `data-cobrowse` for a co-browse consent line (`requested`, `allowed`, `denied`,
    /// `stopped`), so tests and styles find it without matching the wording.
    pub cobrowse: Option<&'static str>,
    /// An internal note (agents only), drawn apart from the chat.
    pub is_note: bool,
}

/// Client ids of internal notes start with this: every path that (re)sends a pending line
/// (`send_frame`) sends these as `note`, never as a message to the visitor.
pub const NOTE_PREFIX: &str = "note-";

fn is_note_id(client_id: &ClientId) -> bool {
    client_id.0.starts_with(NOTE_PREFIX)
}

/// Co-browsing in the shown conversation, for the header's buttons and the mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CobrowseView {
    /// The latest stored consent state, if co-browsing was ever asked for.
    pub state: Option<CobrowseState>,
    /// The agent clicked "Co-browse" and the `requested` event has not come back yet.
    pub asking: bool,
    /// The "Co-browse" button is offered: the conversation is mine, not closed, and nothing is
    /// asked or shared right now.
    pub can_request: bool,
    /// The visitor shares with me: show the mirror and the Stop button.
    pub sharing: bool,
}

impl CobrowseView {
    /// `data-state` of the status line: `pending` (asked, not stored yet), then the stored
    /// state; `None` when co-browsing never started here.
    pub fn key(&self) -> Option<&'static str> {
        if self.asking {
            return Some("pending");
        }
        self.state.map(cobrowse_key)
    }

    /// The status line's wording.
    pub fn label(&self) -> &'static str {
        match (self.asking, self.state) {
            (true, _) | (false, Some(CobrowseState::Requested)) => {
                "Waiting for the visitor to allow co-browsing…"
            }
            (false, Some(CobrowseState::Allowed)) if self.sharing => {
                "Co-browsing: click to point at an element, drag to mark an area"
            }
            (false, Some(CobrowseState::Allowed)) => {
                "The visitor shares their page with another agent"
            }
            (false, Some(CobrowseState::Denied)) => "The visitor declined co-browsing",
            (false, Some(CobrowseState::Stopped | CobrowseState::Unknown)) => "Co-browsing ended",
            (false, None) => "",
        }
    }
}

/// The `data-cobrowse` / `data-state` value of a consent state (an unknown one reads as
/// stopped, as the protocol asks).
pub fn cobrowse_key(s: CobrowseState) -> &'static str {
    match s {
        CobrowseState::Requested => "requested",
        CobrowseState::Allowed => "allowed",
        CobrowseState::Denied => "denied",
        CobrowseState::Stopped | CobrowseState::Unknown => "stopped",
    }
}

/// The header and right column data of the open conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Conversation id.
    pub id: ConversationId,
    /// Its status.
    pub status: ConversationStatus,
    /// "Visitor 3f2a".
    pub visitor: String,
    /// The visitor's id (their profile: `GET /api/visitors/{id}`).
    pub visitor_id: String,
    /// Site display name.
    pub site_name: String,
    /// Site key.
    pub site: String,
    /// Assignee's display name.
    pub assignee: Option<String>,
    /// Whether the assignee is me.
    pub mine: bool,
    /// The visitor's page.
    pub context: PageContext,
    /// Conversation start (Unix ms), used for time on site when the widget sent no `entered_at`.
    pub created_at: i64,
    /// Left offline: the visitor reads replies by email at this address.
    pub offline_email: Option<String>,
    /// Agents' labels on it.
    pub labels: Vec<String>,
}

/// What the console holds of one opened conversation.
#[derive(Clone, Debug, Default)]
pub struct Thread {
    /// Events, contiguous.
    pub timeline: Timeline,
    /// Replies sent and not acknowledged.
    pub outbox: Outbox,
    /// Replies acked whose `event` has not arrived yet, with their seq.
    pub delivered: Vec<(Pending, Seq)>,
    /// Replies refused for good, with the reason shown to the agent.
    pub failed: Vec<(Pending, String)>,
    /// An `open` to fill a gap is in flight: don't send another per event.
    refilling: bool,
    /// A `cobrowse_request` is in flight (its `requested` event not seen): the button waits.
    cobrowse_asking: bool,
}

impl Thread {
    /// The latest co-browse consent state stored in this conversation.
    pub fn cobrowse_state(&self) -> Option<CobrowseState> {
        self.timeline
            .events()
            .iter()
            .rev()
            .find_map(|e| match e.body {
                EventBody::Cobrowse { state } => Some(state),
                _ => None,
            })
    }
}

/// Everything the console knows. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// The agent logged in on this socket (from `welcome`).
    pub me: Option<AgentInfo>,
    /// Every listed conversation.
    conversations: HashMap<ConversationId, ConversationSummary>,
    /// Last seq the agent has looked at, per conversation, for unread dots.
    pub seen: HashMap<ConversationId, Seq>,
    /// Agents online now.
    pub agents_online: Vec<AgentInfo>,
    /// The conversation shown in the middle column.
    pub selected: Option<ConversationId>,
    /// Opened conversations (events arrive for each on this socket until it drops).
    threads: HashMap<ConversationId, Thread>,
    /// When the visitor of the selected conversation last said they were typing.
    visitor_typing_since: Option<i64>,
    /// A refusal not tied to a message (a `take` or `close` refused), shown in the header.
    pub notice: Option<String>,
    /// New conversations and visitor messages while the tab was hidden (document title count).
    pub attention: u32,
    /// Whether the browser tab is hidden.
    pub hidden: bool,
    /// Conversations waiting for an agent, as the relay last counted (all sites).
    pub queue_waiting: u32,
    /// Loads of the agents online ("2/3"), from the relay's `queue` frames.
    pub loads: Vec<AgentLoad>,
    /// Conversations I asked for (take, send) and that are not assigned to me yet: any other
    /// conversation that becomes mine was assigned automatically.
    taking: HashSet<ConversationId>,
    /// Conversations assigned to me automatically and not opened since.
    auto_assigned: HashSet<ConversationId>,
    /// Whether older closed conversations may exist beyond those listed: `welcome` carries only
    /// the latest closed ones; `GET /api/conversations` pages the rest ("Older conversations").
    pub more_closed: bool,
}

impl Model {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `hello` to send when the socket opens.
    pub fn hello() -> AgentFrame {
        AgentFrame::Hello {
            v: PROTOCOL_VERSION,
        }
    }

    /// Applies one frame from the relay at time `now` (Unix ms).
    pub fn receive(&mut self, frame: ToAgent, now: i64) -> Vec<Effect> {
        let mut out = Vec::new();
        match frame {
            ToAgent::Welcome {
                agent,
                conversations,
                agents_online,
                ..
            } => {
                self.me = Some(agent);
                self.agents_online = agents_online;
                self.more_closed = conversations
                    .iter()
                    .any(|c| c.status == ConversationStatus::Closed);
                self.conversations = conversations
                    .into_iter()
                    .map(|c| (c.id.clone(), c))
                    .collect();
                self.visitor_typing_since = None;
                if let Some(id) = self.selected.clone() {
                    let thread = self.threads.entry(id.clone()).or_default();
                    thread.refilling = false;
                    out.push(Effect::Send(open_frame(id, thread.timeline.last_seq())));
                }
                // Unacknowledged replies go again: the relay's idempotency makes it safe.
                for (id, thread) in &self.threads {
                    for p in thread.outbox.pending() {
                        out.push(Effect::Send(send_frame(id, p)));
                    }
                }
                self.mark_selected_seen();
            }
            ToAgent::Conversation(c) => {
                let selected = self.selected.as_ref() == Some(&c.id);
                let me = self.me_id().to_owned();
                let prev = self.conversations.get(&c.id);
                if self.hidden && notable(prev, &c, &me, selected) {
                    self.attention += 1;
                }
                let was_mine = prev
                    .and_then(|p| p.assignee.as_ref())
                    .is_some_and(|a| a.id == me);
                let mine = c.status == ConversationStatus::Assigned
                    && c.assignee.as_ref().is_some_and(|a| a.id == me);
                if mine && !was_mine && !self.taking.remove(&c.id) && !selected {
                    self.auto_assigned.insert(c.id.clone());
                    if self.hidden {
                        self.attention += 1;
                    }
                }
                if !mine {
                    self.auto_assigned.remove(&c.id);
                }
                self.conversations.insert(c.id.clone(), *c);
                self.mark_selected_seen();
            }
            ToAgent::History {
                conversation_id,
                events,
            } => {
                let thread = self.threads.entry(conversation_id.clone()).or_default();
                thread.refilling = false;
                for e in events {
                    self.apply_event(e, false, &mut out);
                }
                // The conversation was (re)opened while the visitor shares: the stream items of
                // the time it was not open are lost, so the mirror starts from a fresh snapshot.
                if self.selected.as_ref() == Some(&conversation_id)
                    && self.cobrowse().is_some_and(|c| c.sharing)
                {
                    out.push(Effect::Send(AgentFrame::CobrowseResync { conversation_id }));
                }
            }
            ToAgent::Event(e) => self.apply_event(e, true, &mut out),
            ToAgent::Ack {
                client_id,
                conversation_id,
                seq,
            } => {
                if let Some(thread) = self.threads.get_mut(&conversation_id) {
                    if let Some(p) = thread.outbox.settle(&client_id) {
                        if seq > thread.timeline.last_seq() {
                            thread.delivered.push((p, seq));
                        }
                    }
                }
            }
            ToAgent::Typing {
                conversation_id,
                author,
                active,
            } if author.role == Role::Visitor
                && self.selected.as_ref() == Some(&conversation_id) =>
            {
                self.visitor_typing_since = active.then_some(now);
            }
            ToAgent::Presence { agents_online } => self.agents_online = agents_online,
            // Stream items go to the mirror (`components::cobrowse`), not through the model:
            // they are many, never stored, and change nothing the rest of the console shows.
            ToAgent::Cobrowse { .. } => {}
            ToAgent::Queue { waiting, agents } => {
                self.queue_waiting = waiting;
                self.loads = agents;
            }
            ToAgent::Error(e) => {
                let held = e.client_id.as_ref().and_then(|cid| {
                    self.threads
                        .iter_mut()
                        .find(|(_, t)| t.outbox.pending().iter().any(|p| &p.client_id == cid))
                        .map(|(id, t)| (id.clone(), t, cid.clone()))
                });
                match (held, e.code) {
                    (Some((id, thread, cid)), ErrorCode::RateLimited | ErrorCode::Internal) => {
                        if let Some(p) = thread.outbox.pending().iter().find(|p| p.client_id == cid)
                        {
                            let wait = e.retry_after_ms.unwrap_or(1_000).max(100);
                            out.push(Effect::SendAfter(wait, send_frame(&id, p)));
                        }
                    }
                    (Some((_, thread, cid)), code) => {
                        if let Some(p) = thread.outbox.settle(&cid) {
                            thread.failed.push((p, error_text(code).to_owned()));
                        }
                    }
                    (None, ErrorCode::RateLimited) => {}
                    (None, code) => {
                        // A refused `cobrowse_request` has no client id either: its button
                        // must not stay pending.
                        for t in self.threads.values_mut() {
                            t.cobrowse_asking = false;
                        }
                        self.notice = Some(error_text(code).to_owned());
                    }
                }
            }
            // Typing elsewhere, and frames of features this console does not show yet.
            _ => {}
        }
        out
    }

    fn apply_event(&mut self, e: Event, live: bool, out: &mut Vec<Effect>) {
        let id = e.conversation_id.clone();
        let selected = self.selected.as_ref() == Some(&id);
        let from_visitor = e.author.role == Role::Visitor;
        let is_message = matches!(e.body, EventBody::Message { .. });
        let is_cobrowse = matches!(e.body, EventBody::Cobrowse { .. });
        let client_id = match &e.body {
            EventBody::Message { client_id, .. } | EventBody::Note { client_id, .. } => {
                client_id.clone()
            }
            _ => None,
        };
        let thread = self.threads.entry(id.clone()).or_default();
        match thread.timeline.apply(e) {
            Applied::Appended => {
                if is_cobrowse {
                    thread.cobrowse_asking = false;
                }
                if let Some(cid) = client_id.filter(|_| !from_visitor) {
                    // The event of our own send arrived before (or instead of) its ack.
                    thread.outbox.settle(&cid);
                }
                let last = thread.timeline.last_seq();
                thread.delivered.retain(|(_, seq)| *seq > last);
                if selected && from_visitor && is_message {
                    self.visitor_typing_since = None;
                    if live && self.hidden {
                        self.attention += 1;
                    }
                }
                if selected {
                    self.mark_selected_seen();
                }
            }
            Applied::Duplicate => {}
            Applied::Gap { .. } => {
                if !thread.refilling {
                    thread.refilling = true;
                    out.push(Effect::Send(open_frame(id, thread.timeline.last_seq())));
                }
            }
        }
    }

    /// Shows conversation `id` in the middle column and opens it on the socket.
    pub fn select(&mut self, id: ConversationId) -> Vec<Effect> {
        if self.selected.as_ref() == Some(&id) {
            return Vec::new();
        }
        self.selected = Some(id.clone());
        self.visitor_typing_since = None;
        self.notice = None;
        self.auto_assigned.remove(&id);
        let thread = self.threads.entry(id.clone()).or_default();
        thread.refilling = false;
        let frame = open_frame(id, thread.timeline.last_seq());
        self.mark_selected_seen();
        vec![Effect::Send(frame)]
    }

    /// Queues an internal note on the selected conversation (taken or not; not a closed one).
    /// `client_id` gets [`NOTE_PREFIX`] if it lacks it. `Err` is the reason to show.
    pub fn note(&mut self, text: &str, client_id: ClientId) -> Result<Vec<Effect>, String> {
        let client_id = if is_note_id(&client_id) {
            client_id
        } else {
            ClientId(format!("{NOTE_PREFIX}{}", client_id.0))
        };
        self.queue_line(text, client_id, "Note").map(|(_, fx)| fx)
    }

    /// Queues a reply to the selected conversation. `Err` is the reason to show at the composer.
    pub fn compose(&mut self, text: &str, client_id: ClientId) -> Result<Vec<Effect>, String> {
        let (id, fx) = self.queue_line(text, client_id, "Message")?;
        self.taking.insert(id);
        Ok(fx)
    }

    /// What a reply and a note share: the selected conversation, open; a text within bounds
    /// (`what` names it in the reason); the line in its outbox and its frame ([`send_frame`]
    /// picks `send` or `note` from the client id).
    fn queue_line(
        &mut self,
        text: &str,
        client_id: ClientId,
        what: &str,
    ) -> Result<(ConversationId, Vec<Effect>), String> {
        let id = self
            .selected
            .clone()
            .ok_or_else(|| "No conversation selected".to_owned())?;
        if let Err(e) = validate_text(text) {
            return Err(match e.code {
                ErrorCode::TooLarge => format!("{what} is too long"),
                _ => format!("{what} is empty"),
            });
        }
        if self.conversations.get(&id).map(|c| c.status) == Some(ConversationStatus::Closed) {
            return Err(error_text(ErrorCode::Closed).to_owned());
        }
        let thread = self.threads.entry(id.clone()).or_default();
        thread.outbox.push(client_id, text.to_owned());
        let fx = thread
            .outbox
            .pending()
            .last()
            .map(|p| Effect::Send(send_frame(&id, p)))
            .into_iter()
            .collect();
        Ok((id, fx))
    }

    /// Take the selected conversation.
    pub fn take(&mut self) -> Vec<Effect> {
        self.notice = None;
        if let Some(id) = &self.selected {
            self.taking.insert(id.clone());
        }
        self.selected
            .clone()
            .map(|conversation_id| Effect::Send(AgentFrame::Take { conversation_id }))
            .into_iter()
            .collect()
    }

    /// Hand the selected conversation to agent `to_agent`, with an optional note for them.
    /// `Err` is the reason to show (no conversation, nobody picked, note too long).
    pub fn transfer(&mut self, to_agent: &str, note: &str) -> Result<Vec<Effect>, String> {
        self.notice = None;
        let id = self
            .selected
            .clone()
            .ok_or_else(|| "No conversation selected".to_owned())?;
        if to_agent.is_empty() || to_agent == self.me_id() {
            return Err("Pick an agent to transfer to".to_owned());
        }
        let note = note.trim();
        if !note.is_empty() && validate_text(note).is_err() {
            return Err("Note is too long".to_owned());
        }
        Ok(vec![Effect::Send(AgentFrame::Transfer {
            conversation_id: id,
            to_agent: to_agent.to_owned(),
            note: (!note.is_empty()).then(|| note.to_owned()),
        })])
    }

    /// Agents the selected conversation can be transferred to: online, not me, with their load
    /// ("Joon (1/3)"), as `(id, label)`.
    pub fn transfer_targets(&self) -> Vec<(String, String)> {
        let me = self.me_id();
        self.agents_online
            .iter()
            .filter(|a| a.id != me)
            .map(|a| {
                let label = match self.load_label(&a.id) {
                    Some(load) => format!("{} ({load})", a.display_name),
                    None => a.display_name.clone(),
                };
                (a.id.clone(), label)
            })
            .collect()
    }

    /// "2/3": conversations an agent has and the most the relay gives them automatically.
    pub fn load_label(&self, agent_id: &str) -> Option<String> {
        self.loads
            .iter()
            .find(|l| l.id == agent_id)
            .map(|l| format!("{}/{}", l.chats, l.max))
    }

    /// Waiting conversations in line order (oldest `queued_at` first) with their 1-based place.
    pub fn queue_positions(&self) -> HashMap<ConversationId, usize> {
        let mut waiting: Vec<&ConversationSummary> = self
            .conversations
            .values()
            .filter(|c| is_waiting(c.status))
            .collect();
        waiting.sort_by(|a, b| {
            a.queued_at
                .unwrap_or(a.updated_at)
                .cmp(&b.queued_at.unwrap_or(b.updated_at))
                .then(a.id.cmp(&b.id))
        });
        waiting
            .into_iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i + 1))
            .collect()
    }

    /// Close the selected conversation.
    pub fn close(&mut self) -> Vec<Effect> {
        self.notice = None;
        self.selected
            .clone()
            .map(|conversation_id| Effect::Send(AgentFrame::Close { conversation_id }))
            .into_iter()
            .collect()
    }

    /// Ask the visitor of the selected conversation to share their page.
    pub fn cobrowse_request(&mut self) -> Vec<Effect> {
        self.notice = None;
        if !self.cobrowse().is_some_and(|c| c.can_request) {
            return Vec::new();
        }
        let Some(id) = self.selected.clone() else {
            return Vec::new();
        };
        self.threads.entry(id.clone()).or_default().cobrowse_asking = true;
        vec![Effect::Send(AgentFrame::CobrowseRequest {
            conversation_id: id,
        })]
    }

    /// Stop co-browsing in the selected conversation.
    pub fn cobrowse_stop(&mut self) -> Vec<Effect> {
        self.notice = None;
        self.selected
            .clone()
            .map(|conversation_id| Effect::Send(AgentFrame::CobrowseStop { conversation_id }))
            .into_iter()
            .collect()
    }

    /// Point at part of the shared page (only while the visitor shares with me).
    pub fn cobrowse_highlight(&self, highlight: Highlight) -> Vec<Effect> {
        match (&self.selected, self.cobrowse()) {
            (Some(id), Some(c)) if c.sharing => vec![Effect::Send(AgentFrame::CobrowseHighlight {
                conversation_id: id.clone(),
                highlight,
            })],
            _ => Vec::new(),
        }
    }

    /// Co-browsing in the selected conversation (`None` when nothing is selected).
    pub fn cobrowse(&self) -> Option<CobrowseView> {
        let id = self.selected.as_ref()?;
        let thread = self.threads.get(id);
        // The one consent rule the relay and the widget use: a close, a transfer, a requeue or
        // another agent's take ends a share even though no `stopped` event follows.
        let consent = thread.map_or(Consent::Off, |t| Consent::of(t.timeline.events()));
        let state = match (thread.and_then(Thread::cobrowse_state), &consent) {
            (Some(CobrowseState::Requested | CobrowseState::Allowed), Consent::Off) => {
                Some(CobrowseState::Stopped)
            }
            (state, _) => state,
        };
        let asking = thread.is_some_and(|t| t.cobrowse_asking);
        let c = self.conversations.get(id);
        let me = self.me_id();
        let mine = c
            .and_then(|c| c.assignee.as_ref())
            .is_some_and(|a| !me.is_empty() && a.id == me);
        let open = c.is_some_and(|c| c.status != ConversationStatus::Closed);
        Some(CobrowseView {
            state,
            asking,
            can_request: mine && open && !asking && consent.agent().is_none(),
            sharing: mine && open && consent.sharing_with() == Some(me),
        })
    }

    /// A typing frame for the selected conversation.
    pub fn typing(&self, active: bool) -> Option<Effect> {
        self.selected.clone().map(|conversation_id| {
            Effect::Send(AgentFrame::Typing {
                conversation_id,
                active,
            })
        })
    }

    /// The tab became hidden or visible. Becoming visible clears the attention count.
    pub fn set_hidden(&mut self, hidden: bool) {
        self.hidden = hidden;
        if !hidden {
            self.attention = 0;
            self.mark_selected_seen();
        }
    }

    /// The socket dropped: live-only state (typing) is no longer true.
    pub fn disconnected(&mut self) {
        self.visitor_typing_since = None;
    }

    /// Whether "Visitor is typing…" should show at `now`.
    pub fn visitor_typing(&self, now: i64) -> bool {
        self.visitor_typing_since
            .is_some_and(|t| now.saturating_sub(t) < VISITOR_TYPING_TTL_MS)
    }

    fn me_id(&self) -> &str {
        self.me.as_ref().map_or("", |a| a.id.as_str())
    }

    fn mark_selected_seen(&mut self) {
        if self.hidden {
            return;
        }
        if let Some(id) = &self.selected {
            let listed = self.conversations.get(id).map_or(0, |c| c.last_seq);
            let held = self.threads.get(id).map_or(0, |t| t.timeline.last_seq());
            let seen = self.seen.entry(id.clone()).or_default();
            *seen = (*seen).max(listed).max(held);
        }
    }

    /// Conversation counts per tab, in [`Tab::ALL`] order.
    pub fn counts(&self) -> [usize; 3] {
        let me = self.me_id();
        Tab::ALL.map(|t| {
            self.conversations
                .values()
                .filter(|c| t.includes(c, me))
                .count()
        })
    }

    /// The site key of a listed conversation (the co-browse mirror is served with its policy).
    pub fn site_of(&self, id: &ConversationId) -> Option<String> {
        self.conversations.get(id).map(|c| c.site.clone())
    }

    /// Where the next page of older closed conversations starts: the oldest closed one listed,
    /// as `(updated_at, id)`.
    pub fn oldest_closed(&self) -> Option<(i64, ConversationId)> {
        self.conversations
            .values()
            .filter(|c| c.status == ConversationStatus::Closed)
            .min_by(|a, b| a.updated_at.cmp(&b.updated_at).then(a.id.cmp(&b.id)))
            .map(|c| (c.updated_at, c.id.clone()))
    }

    /// Adds a page of older closed conversations (never over a fresher summary already listed).
    pub fn add_older(&mut self, page: Vec<ConversationSummary>, more: bool) {
        for c in page {
            self.conversations.entry(c.id.clone()).or_insert(c);
        }
        self.more_closed = more;
    }

    /// The rows of a tab, newest change first.
    pub fn rows(&self, tab: Tab) -> Vec<ListRow> {
        let me = self.me_id();
        let mut list: Vec<&ConversationSummary> = self
            .conversations
            .values()
            .filter(|c| tab.includes(c, me))
            .collect();
        list.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
        let positions = self.queue_positions();
        list.into_iter()
            .map(|c| ListRow {
                id: c.id.clone(),
                status: status_key(c.status),
                site_name: c.site_name.clone(),
                visitor: visitor_label(&c.visitor_id),
                preview: c.preview.clone().unwrap_or_default(),
                updated_at: c.updated_at,
                unread: c.last_seq > self.seen.get(&c.id).copied().unwrap_or(0),
                assignee: c.assignee.as_ref().map(|a| a.display_name.clone()),
                selected: self.selected.as_ref() == Some(&c.id),
                rating: c.rating,
                queue_position: positions.get(&c.id).copied(),
                auto_assigned: self.auto_assigned.contains(&c.id),
                offline_email: c.offline_email.clone(),
                labels: c.labels.clone(),
            })
            .collect()
    }

    /// Header and context data of the selected conversation, when it is listed.
    pub fn header(&self) -> Option<Header> {
        let c = self.conversations.get(self.selected.as_ref()?)?;
        Some(Header {
            id: c.id.clone(),
            status: c.status,
            visitor: visitor_label(&c.visitor_id),
            visitor_id: c.visitor_id.clone(),
            site_name: c.site_name.clone(),
            site: c.site.clone(),
            assignee: c.assignee.as_ref().map(|a| a.display_name.clone()),
            mine: c.assignee.as_ref().is_some_and(|a| a.id == self.me_id()),
            context: c.context.clone(),
            created_at: c.created_at,
            offline_email: c.offline_email.clone(),
            labels: c.labels.clone(),
        })
    }

    /// The transcript of the selected conversation: stored events, then replies acked but not yet
    /// seen as events, then pending ones, then refused ones.
    pub fn transcript(&self) -> Vec<Line> {
        let Some(id) = &self.selected else {
            return Vec::new();
        };
        let Some(thread) = self.threads.get(id) else {
            return Vec::new();
        };
        let visitor = self
            .conversations
            .get(id)
            .map_or_else(|| "Visitor".to_owned(), |c| visitor_label(&c.visitor_id));
        let me = self.me_id();
        let mut lines: Vec<Line> = thread
            .timeline
            .events()
            .iter()
            .map(|e| event_line(e, &visitor, me))
            .collect();
        let own = |p: &Pending, state: LineState| Line {
            key: format!("c{}", p.client_id),
            seq: None,
            role: "agent",
            who: "You".to_owned(),
            text: p.text.clone(),
            is_notice: false,
            is_handoff: false,
            buttons: Vec::new(),
            link: None,
            mood: None,
            at: None,
            state,
            cobrowse: None,
            is_note: is_note_id(&p.client_id),
        };
        let last = thread.timeline.last_seq();
        lines.extend(
            thread
                .delivered
                .iter()
                .filter(|(_, seq)| *seq > last)
                .map(|(p, _)| own(p, LineState::Delivered)),
        );
        lines.extend(
            thread
                .outbox
                .pending()
                .iter()
                .map(|p| own(p, LineState::Pending)),
        );
        lines.extend(
            thread
                .failed
                .iter()
                .map(|(p, why)| own(p, LineState::Failed(why.clone()))),
        );
        lines
    }

    /// Forget refused replies of the selected conversation (the agent dismissed them).
    pub fn dismiss_failed(&mut self) {
        if let Some(t) = self
            .selected
            .as_ref()
            .and_then(|id| self.threads.get_mut(id))
        {
            t.failed.clear();
        }
    }
}

/// `open` asking for the events after `last_seq` (all of them when 0).
fn open_frame(conversation_id: ConversationId, last_seq: Seq) -> AgentFrame {
    AgentFrame::Open {
        conversation_id,
        after_seq: (last_seq > 0).then_some(last_seq),
    }
}

fn send_frame(id: &ConversationId, p: &Pending) -> AgentFrame {
    if is_note_id(&p.client_id) {
        return AgentFrame::Note {
            conversation_id: id.clone(),
            client_id: p.client_id.clone(),
            text: p.text.clone(),
        };
    }
    AgentFrame::Send {
        conversation_id: id.clone(),
        client_id: p.client_id.clone(),
        text: p.text.clone(),
    }
}

/// A link from a bot message when it is safe for an `href`: relative, or http(s). Other schemes
/// (`javascript:`, `data:`…) and URLs with whitespace or control characters (browsers strip
/// those, so `java\tscript:` would still run) are refused.
pub fn safe_link(url: &str) -> Option<String> {
    let url = url.trim();
    if url.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let end = url.find(['/', '?', '#']).unwrap_or(url.len());
    match url[..end].find(':') {
        None => Some(url.to_owned()),
        Some(i) => {
            let scheme = url[..i].to_ascii_lowercase();
            (scheme == "http" || scheme == "https").then(|| url.to_owned())
        }
    }
}

/// Why the bot handed over, in the agent's words.
pub fn handoff_reason(r: HandoffReason) -> &'static str {
    match r {
        HandoffReason::Asked => "visitor asked for a person",
        HandoffReason::NotUnderstood => "not understood",
        HandoffReason::Negative => "visitor upset",
        HandoffReason::BotFailed => "bot failed",
        HandoffReason::Unknown => "other",
    }
}

/// Waiting for an agent (an unknown status counts as waiting, as PROTOCOL.md asks).
pub fn is_waiting(s: ConversationStatus) -> bool {
    matches!(s, ConversationStatus::Open | ConversationStatus::Unknown)
}

/// The `data-status` value.
pub fn status_key(s: ConversationStatus) -> &'static str {
    match s {
        // A status from a newer relay is shown as waiting, as PROTOCOL.md asks.
        ConversationStatus::Open | ConversationStatus::Unknown => "open",
        ConversationStatus::Assigned => "assigned",
        ConversationStatus::Bot => "bot",
        ConversationStatus::Closed => "closed",
    }
}

/// The `data-mood` value of a visitor message; nothing for a tone from a newer relay.
pub fn mood_key(m: Mood) -> Option<&'static str> {
    match m {
        Mood::Negative => Some("negative"),
        Mood::Neutral => Some("neutral"),
        Mood::Positive => Some("positive"),
        Mood::Unknown => None,
    }
}

fn role_key(r: Role) -> &'static str {
    match r {
        Role::Visitor => "visitor",
        Role::Agent => "agent",
        Role::Bot => "bot",
        Role::System => "system",
    }
}

fn event_line(e: &Event, visitor: &str, me: &str) -> Line {
    let who = match e.author.role {
        Role::Visitor => visitor.to_owned(),
        Role::Agent if e.author.id.as_deref() == Some(me) && !me.is_empty() => "You".to_owned(),
        Role::Agent => e.author.name.clone().unwrap_or_else(|| "Agent".to_owned()),
        Role::Bot => e.author.name.clone().unwrap_or_else(|| "Bot".to_owned()),
        Role::System => String::new(),
    };
    let name = e.author.name.clone().unwrap_or_else(|| {
        if who.is_empty() {
            "Someone".to_owned()
        } else {
            who.clone()
        }
    });
    let (mut buttons, mut link, mut is_handoff, mut mood) = (Vec::new(), None, false, None);
    let mut cobrowse = None;
    let is_note = matches!(e.body, EventBody::Note { .. });
    let (text, is_notice) = match &e.body {
        EventBody::Message {
            text,
            buttons: offered,
            link: url,
            sentiment,
            ..
        } => {
            if e.author.role == Role::Bot {
                buttons = offered.iter().map(|b| b.label.clone()).collect();
                link = url.as_deref().and_then(safe_link);
            }
            if e.author.role == Role::Visitor {
                mood = sentiment.and_then(mood_key);
            }
            (text.clone(), false)
        }
        EventBody::Joined => (format!("{name} joined the conversation"), true),
        EventBody::Left => (format!("{name} left the conversation"), true),
        EventBody::Closed if e.author.role == Role::System => {
            ("Conversation closed".to_owned(), true)
        }
        EventBody::Closed => (format!("Conversation closed by {name}"), true),
        EventBody::Handoff { reason, summary } => {
            is_handoff = true;
            let reason = handoff_reason(*reason);
            (
                format!("Handed over by the bot ({reason}): {summary}"),
                true,
            )
        }
        EventBody::Cobrowse { state } => {
            cobrowse = Some(cobrowse_key(*state));
            let agent = if who == "You" { "You" } else { name.as_str() };
            let text = match (state, e.author.role) {
                (CobrowseState::Requested, _) => format!("{agent} asked to co-browse"),
                (CobrowseState::Allowed, _) => "Visitor allowed co-browsing".to_owned(),
                (CobrowseState::Denied, _) => "Visitor declined co-browsing".to_owned(),
                (CobrowseState::Stopped, Role::Visitor) => "Visitor stopped co-browsing".to_owned(),
                (CobrowseState::Stopped, Role::Agent) => format!("{agent} stopped co-browsing"),
                (CobrowseState::Stopped | CobrowseState::Unknown, _) => {
                    "Co-browsing ended".to_owned()
                }
            };
            (text, true)
        }
        // A kind from a newer relay: a neutral line keeps the seq visible without guessing.
        EventBody::Rating { score, comment } => (
            match comment {
                Some(c) => format!("Visitor rated {score} / 5: “{c}”"),
                None => format!("Visitor rated {score} / 5"),
            },
            true,
        ),
        EventBody::Transferred { to, note } => {
            let to = to
                .name
                .clone()
                .unwrap_or_else(|| "another agent".to_owned());
            match note {
                Some(note) => (
                    format!("{name} transferred the conversation to {to}: {note}"),
                    true,
                ),
                None => (format!("{name} transferred the conversation to {to}"), true),
            }
        }
        EventBody::Requeued { from } => {
            let from = from.name.clone().unwrap_or_else(|| "The agent".to_owned());
            (format!("Back in the queue: {from} was away too long"), true)
        }
        EventBody::Email { to, sent: true, .. } => (format!("Reply emailed to {to}"), true),
        EventBody::Email { to, error, .. } => {
            // Highlighted like a hand-off: the visitor did not get the reply.
            is_handoff = true;
            let why = error.as_deref().unwrap_or("unknown error");
            (format!("Email to {to} failed: {why}"), true)
        }
        EventBody::Note { text, .. } => (text.clone(), false),
        EventBody::Unknown => ("(an update this console cannot show)".to_owned(), true),
    };
    Line {
        key: format!("s{}", e.seq),
        seq: Some(e.seq),
        role: role_key(e.author.role),
        who,
        text,
        is_notice,
        is_handoff,
        buttons,
        link,
        mood,
        at: Some(e.at),
        state: LineState::Stored,
        cobrowse,
        is_note,
    }
}

/// Whether a `conversation` frame deserves a count in the title while the tab is hidden: a new
/// waiting conversation, or (for conversations not shown — the shown one counts its visitor
/// events exactly) new events in one that is waiting or mine, with no change of status (a
/// status change is a take or close, not a visitor message) — except the bot's hand-over, which
/// turns a bot conversation into a waiting one.
fn notable(
    prev: Option<&ConversationSummary>,
    new: &ConversationSummary,
    me: &str,
    selected: bool,
) -> bool {
    match prev {
        None => is_waiting(new.status),
        // The bot handed over: for people this is a new waiting conversation.
        Some(p) if p.status == ConversationStatus::Bot => is_waiting(new.status),
        Some(_) if selected => false,
        Some(p) => {
            new.last_seq > p.last_seq
                && new.status == p.status
                && new.status != ConversationStatus::Closed
                && new.assignee.as_ref().is_none_or(|a| a.id == me)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Author, ErrorFrame};

    fn agent(id: &str) -> AgentInfo {
        AgentInfo {
            id: id.into(),
            username: id.into(),
            display_name: id.to_uppercase(),
        }
    }

    fn conv(
        id: &str,
        status: ConversationStatus,
        assignee: Option<&str>,
        updated: i64,
    ) -> ConversationSummary {
        ConversationSummary {
            id: id.into(),
            site: "demo".into(),
            site_name: "Demo".into(),
            visitor_id: format!("v-{id}"),
            status,
            assignee: assignee.map(agent),
            last_seq: 1,
            preview: Some("hi".into()),
            created_at: 0,
            updated_at: updated,
            context: PageContext::default(),
            rating: None,
            queued_at: None,
            offline_email: None,
            labels: Vec::new(),
        }
    }

    fn welcomed(convs: Vec<ConversationSummary>) -> Model {
        let mut m = Model::new();
        m.receive(
            ToAgent::Welcome {
                v: 1,
                agent: agent("me"),
                conversations: convs,
                agents_online: vec![agent("me")],
            },
            0,
        );
        m
    }

    fn ev(conv: &str, seq: Seq, role: Role, text: &str, cid: Option<&str>) -> Event {
        Event {
            conversation_id: conv.into(),
            seq,
            at: 0,
            author: Author {
                role,
                id: Some("me".into()),
                name: None,
            },
            body: EventBody::message(text, cid.map(ClientId::from)),
        }
    }

    #[test]
    fn tabs_filter_and_sort() {
        use ConversationStatus::*;
        let m = welcomed(vec![
            conv("a", Open, None, 10),
            conv("b", Assigned, Some("me"), 30),
            conv("c", Assigned, Some("other"), 20),
            conv("d", Closed, Some("me"), 40),
            conv("e", Open, None, 50),
        ]);
        let ids = |t| m.rows(t).into_iter().map(|r| r.id.0).collect::<Vec<_>>();
        assert_eq!(ids(Tab::Unassigned), ["e", "a"]);
        assert_eq!(ids(Tab::Mine), ["b"]);
        assert_eq!(ids(Tab::All), ["e", "d", "b", "c", "a"]);
        assert_eq!(m.counts(), [2, 1, 5]);
    }

    #[test]
    fn older_closed_pages_extend_the_list_without_overwriting() {
        use ConversationStatus::*;
        let mut m = welcomed(vec![
            conv("open", Open, None, 90),
            conv("c9", Closed, None, 50),
        ]);
        assert!(
            m.more_closed,
            "a closed one was listed: older ones may exist"
        );
        assert_eq!(m.oldest_closed(), Some((50, "c9".into())));
        // A page that repeats c9 (with an older summary) and adds two older ones.
        m.add_older(
            vec![
                conv("c9", Closed, None, 1),
                conv("c8", Closed, None, 40),
                conv("c7", Closed, None, 30),
            ],
            false,
        );
        assert!(!m.more_closed, "the last page");
        assert_eq!(m.oldest_closed(), Some((30, "c7".into())));
        let ids = m
            .rows(Tab::All)
            .into_iter()
            .map(|r| r.id.0)
            .collect::<Vec<_>>();
        assert_eq!(
            ids,
            ["open", "c9", "c8", "c7"],
            "c9 kept its listed summary"
        );
        let none_closed = welcomed(vec![conv("open", Open, None, 90)]);
        assert!(!none_closed.more_closed, "no history at all: no button");
    }

    #[test]
    fn select_opens_and_gap_reopens_after_held_seq() {
        let mut m = welcomed(vec![conv("a", ConversationStatus::Open, None, 1)]);
        let fx = m.select("a".into());
        assert_eq!(
            fx,
            vec![Effect::Send(AgentFrame::Open {
                conversation_id: "a".into(),
                after_seq: None
            })]
        );
        m.receive(
            ToAgent::History {
                conversation_id: "a".into(),
                events: vec![ev("a", 1, Role::Visitor, "hi", None)],
            },
            0,
        );
        let fx = m.receive(ToAgent::Event(ev("a", 3, Role::Visitor, "x", None)), 0);
        let reopen = Effect::Send(AgentFrame::Open {
            conversation_id: "a".into(),
            after_seq: Some(1),
        });
        assert_eq!(fx, vec![reopen.clone()]);
        // A second event past the gap does not send a second open.
        let fx = m.receive(ToAgent::Event(ev("a", 4, Role::Visitor, "y", None)), 0);
        assert!(fx.is_empty());
        // Reconnect: welcome re-opens the shown conversation after the held seq.
        let fx = m.receive(
            ToAgent::Welcome {
                v: 1,
                agent: agent("me"),
                conversations: vec![],
                agents_online: vec![],
            },
            0,
        );
        assert_eq!(fx, vec![reopen]);
    }

    #[test]
    fn pending_until_ack_and_resent_on_welcome() {
        let mut m = welcomed(vec![conv("a", ConversationStatus::Open, None, 1)]);
        m.select("a".into());
        let fx = m.compose("hello", ClientId::from("c1")).unwrap();
        assert_eq!(fx.len(), 1);
        assert_eq!(m.transcript()[0].state, LineState::Pending);
        let fx = m.receive(
            ToAgent::Welcome {
                v: 1,
                agent: agent("me"),
                conversations: vec![],
                agents_online: vec![],
            },
            0,
        );
        assert!(fx.iter().any(
            |f| matches!(f, Effect::Send(AgentFrame::Send { client_id, .. }) if client_id.0 == "c1")
        ));
        m.receive(
            ToAgent::Ack {
                client_id: "c1".into(),
                conversation_id: "a".into(),
                seq: 1,
            },
            0,
        );
        assert_eq!(m.transcript()[0].state, LineState::Delivered);
        m.receive(
            ToAgent::Event(ev("a", 1, Role::Agent, "hello", Some("c1"))),
            0,
        );
        let t = m.transcript();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].state, LineState::Stored);
        assert_eq!(t[0].who, "You");
    }

    #[test]
    fn a_note_is_sent_and_resent_as_a_note_never_as_a_reply() {
        let mut m = welcomed(vec![
            conv("a", ConversationStatus::Open, None, 1),
            conv("z", ConversationStatus::Closed, None, 1),
        ]);
        m.select("z".into());
        assert!(m.note("too late", ClientId::from("x0")).is_err(), "closed");
        m.select("a".into());
        // Not taken: a note needs no take.
        let fx = m.note("called the courier", ClientId::from("x1")).unwrap();
        let is_note = |f: &Effect| {
            matches!(f, Effect::Send(AgentFrame::Note { client_id, text, .. })
                if client_id.0 == "note-x1" && text == "called the courier")
        };
        assert!(fx.iter().any(is_note), "{fx:?}");
        let line = &m.transcript()[0];
        assert!(line.is_note && line.state == LineState::Pending);
        // After a reconnect it goes again, still as a note (no path resends it as `send`).
        let fx = m.receive(
            ToAgent::Welcome {
                v: 1,
                agent: agent("me"),
                conversations: vec![],
                agents_online: vec![],
            },
            0,
        );
        assert!(fx.iter().any(is_note), "{fx:?}");
        assert!(!fx
            .iter()
            .any(|f| matches!(f, Effect::Send(AgentFrame::Send { .. }))));
        // Its event settles it and shows as a note.
        m.receive(
            ToAgent::Event(Event {
                body: EventBody::Note {
                    text: "called the courier".into(),
                    client_id: Some("note-x1".into()),
                },
                ..ev("a", 1, Role::Agent, "", None)
            }),
            0,
        );
        let t = m.transcript();
        assert_eq!(t.len(), 1);
        assert!(t[0].is_note && t[0].state == LineState::Stored);
        assert!(m.note("  ", ClientId::from("x2")).is_err());
    }

    #[test]
    fn forbidden_fails_inline_and_rate_limit_retries() {
        let mut m = welcomed(vec![conv("a", ConversationStatus::Open, None, 1)]);
        m.select("a".into());
        m.compose("one", ClientId::from("c1")).unwrap();
        m.compose("two", ClientId::from("c2")).unwrap();
        let mut err = ErrorFrame::new(ErrorCode::Forbidden, "no").for_client(Some("c1".into()));
        m.receive(ToAgent::Error(err.clone()), 0);
        err.code = ErrorCode::RateLimited;
        err.client_id = Some("c2".into());
        err.retry_after_ms = Some(400);
        let fx = m.receive(ToAgent::Error(err), 0);
        assert!(matches!(fx.as_slice(), [Effect::SendAfter(400, _)]));
        let t = m.transcript();
        assert_eq!(t[0].state, LineState::Pending);
        assert_eq!(
            t[1].state,
            LineState::Failed("Another agent has this conversation".into())
        );
    }

    #[test]
    fn unread_and_attention() {
        let mut m = welcomed(vec![conv("a", ConversationStatus::Open, None, 1)]);
        assert!(m.rows(Tab::All)[0].unread);
        m.select("a".into());
        assert!(!m.rows(Tab::All)[0].unread);
        m.set_hidden(true);
        m.receive(
            ToAgent::Conversation(Box::new(conv("b", ConversationStatus::Open, None, 5))),
            0,
        );
        m.receive(
            ToAgent::History {
                conversation_id: "a".into(),
                events: vec![ev("a", 1, Role::Visitor, "old", None)],
            },
            0,
        );
        m.receive(ToAgent::Event(ev("a", 2, Role::Visitor, "new", None)), 0);
        assert_eq!(m.attention, 2);
        m.set_hidden(false);
        assert_eq!(m.attention, 0);
    }

    #[test]
    fn visitor_typing_expires() {
        let mut m = welcomed(vec![conv("a", ConversationStatus::Open, None, 1)]);
        m.select("a".into());
        m.receive(
            ToAgent::Typing {
                conversation_id: "a".into(),
                author: Author {
                    role: Role::Visitor,
                    id: None,
                    name: None,
                },
                active: true,
            },
            1_000,
        );
        assert!(m.visitor_typing(2_000));
        assert!(!m.visitor_typing(1_000 + VISITOR_TYPING_TTL_MS));
    }

    #[test]
    fn bot_conversations_are_in_all_not_unassigned_until_handoff() {
        use ConversationStatus::*;
        let mut m = welcomed(vec![conv("a", Open, None, 10), conv("b", Bot, None, 20)]);
        let ids = |m: &Model, t| m.rows(t).into_iter().map(|r| r.id.0).collect::<Vec<_>>();
        assert_eq!(ids(&m, Tab::Unassigned), ["a"]);
        assert!(ids(&m, Tab::Mine).is_empty());
        assert_eq!(ids(&m, Tab::All), ["b", "a"]);
        assert_eq!(m.rows(Tab::All)[0].status, "bot");
        assert_eq!(m.counts(), [1, 0, 2]);
        // The bot hands over: the relay sends the conversation again with status `open`.
        m.set_hidden(true);
        m.receive(
            ToAgent::Conversation(Box::new(conv("b", Open, None, 30))),
            0,
        );
        assert_eq!(ids(&m, Tab::Unassigned), ["b", "a"]);
        assert_eq!(m.rows(Tab::Unassigned)[0].status, "open");
        assert_eq!(m.attention, 1, "a hand-over asks for a person's attention");
        // A bot conversation arriving while hidden is not news for people.
        m.receive(ToAgent::Conversation(Box::new(conv("c", Bot, None, 40))), 0);
        assert_eq!(m.attention, 1);
    }

    #[test]
    fn bot_message_and_handoff_lines() {
        let mut m = welcomed(vec![conv("a", ConversationStatus::Bot, None, 1)]);
        m.select("a".into());
        let bot = |seq, body| Event {
            conversation_id: "a".into(),
            seq,
            at: 0,
            author: Author {
                role: Role::Bot,
                id: Some("bot".into()),
                name: Some("Parley Bot".into()),
            },
            body,
        };
        let answer = |link: &str| EventBody::Message {
            text: "Returns are free within 30 days".into(),
            client_id: None,
            buttons: vec![
                protocol::QuickReply {
                    label: "Talk to a person".into(),
                    text: "Talk to a person".into(),
                },
                protocol::QuickReply {
                    label: "Refunds".into(),
                    text: "When do I get my refund?".into(),
                },
            ],
            link: Some(link.into()),
            sentiment: None,
        };
        m.receive(
            ToAgent::History {
                conversation_id: "a".into(),
                events: vec![
                    ev("a", 1, Role::Visitor, "can I return this?", None),
                    bot(2, answer("/help.html#returns")),
                    bot(3, answer("javascript:alert(1)")),
                    ev("a", 4, Role::Visitor, "Talk to a person", None),
                    bot(
                        5,
                        EventBody::Handoff {
                            reason: protocol::HandoffReason::Asked,
                            summary: "Asked about returns; shown: returns".into(),
                        },
                    ),
                ],
            },
            0,
        );
        let t = m.transcript();
        assert_eq!(t.len(), 5);
        assert_eq!((t[1].role, t[1].who.as_str()), ("bot", "Parley Bot"));
        assert_eq!(t[1].buttons, ["Talk to a person", "Refunds"]);
        assert_eq!(t[1].link.as_deref(), Some("/help.html#returns"));
        assert!(!t[1].is_notice && !t[1].is_handoff);
        assert_eq!(t[2].link, None, "a javascript: link is never shown");
        assert!(t[3].buttons.is_empty() && t[3].link.is_none());
        assert!(t[4].is_notice && t[4].is_handoff);
        assert_eq!(
            t[4].text,
            "Handed over by the bot (visitor asked for a person): Asked about returns; shown: returns"
        );
    }

    #[test]
    fn link_safety() {
        for ok in [
            "/help.html#r",
            "help.html",
            "#faq",
            "https://x.example/a:b",
            "HTTP://x",
        ] {
            assert_eq!(safe_link(ok).as_deref(), Some(ok));
        }
        for bad in [
            "javascript:alert(1)",
            " JavaScript:alert(1)",
            "java\tscript:alert(1)",
            "data:text/html,x",
            "mailto:a@b",
            "",
            "/a b",
        ] {
            assert_eq!(safe_link(bad), None, "{bad:?}");
        }
    }

    fn cobrowse_ev(seq: Seq, role: Role, state: CobrowseState) -> Event {
        Event {
            conversation_id: "a".into(),
            seq,
            at: 0,
            author: Author {
                role,
                id: (role == Role::Agent).then(|| "me".into()),
                name: (role == Role::Agent).then(|| "ME".into()),
            },
            body: EventBody::Cobrowse { state },
        }
    }

    #[test]
    fn cobrowse_request_waits_then_follows_the_events() {
        let mut m = welcomed(vec![conv("a", ConversationStatus::Assigned, Some("me"), 1)]);
        m.select("a".into());
        let c = m.cobrowse().unwrap();
        assert!(c.can_request && !c.sharing && c.key().is_none());
        let fx = m.cobrowse_request();
        assert_eq!(
            fx,
            vec![Effect::Send(AgentFrame::CobrowseRequest {
                conversation_id: "a".into()
            })]
        );
        let c = m.cobrowse().unwrap();
        assert!(!c.can_request && c.asking);
        assert_eq!(c.key(), Some("pending"));
        assert!(
            m.cobrowse_request().is_empty(),
            "no second request while pending"
        );
        m.receive(
            ToAgent::Event(cobrowse_ev(1, Role::Agent, CobrowseState::Requested)),
            0,
        );
        let c = m.cobrowse().unwrap();
        assert!(!c.asking && !c.can_request);
        assert_eq!(c.key(), Some("requested"));
        m.receive(
            ToAgent::Event(cobrowse_ev(2, Role::Visitor, CobrowseState::Denied)),
            0,
        );
        let c = m.cobrowse().unwrap();
        assert!(
            c.can_request && !c.sharing,
            "asking again after a no is allowed"
        );
        let t = m.transcript();
        assert_eq!(t[0].text, "You asked to co-browse");
        assert_eq!(t[1].text, "Visitor declined co-browsing");
        assert_eq!(t[1].cobrowse, Some("denied"));
        assert!(t[1].is_notice);

        m.cobrowse_request();
        m.receive(
            ToAgent::Event(cobrowse_ev(3, Role::Agent, CobrowseState::Requested)),
            0,
        );
        m.receive(
            ToAgent::Event(cobrowse_ev(4, Role::Visitor, CobrowseState::Allowed)),
            0,
        );
        let c = m.cobrowse().unwrap();
        assert!(c.sharing && !c.can_request);
        let hl = Highlight {
            page: 1,
            target: protocol::cobrowse::HighlightTarget::Node(5),
            note: None,
        };
        assert_eq!(m.cobrowse_highlight(hl.clone()).len(), 1);
        assert_eq!(
            m.cobrowse_stop(),
            vec![Effect::Send(AgentFrame::CobrowseStop {
                conversation_id: "a".into()
            })]
        );
        m.receive(
            ToAgent::Event(cobrowse_ev(5, Role::Visitor, CobrowseState::Stopped)),
            0,
        );
        let c = m.cobrowse().unwrap();
        assert!(!c.sharing && c.can_request);
        assert!(
            m.cobrowse_highlight(hl).is_empty(),
            "no highlights once stopped"
        );
        assert_eq!(m.transcript()[4].text, "Visitor stopped co-browsing");
    }

    #[test]
    fn cobrowse_refused_request_unblocks_and_others_cannot_ask() {
        let mut m = welcomed(vec![
            conv("a", ConversationStatus::Assigned, Some("me"), 1),
            conv("b", ConversationStatus::Assigned, Some("other"), 1),
        ]);
        m.select("a".into());
        m.cobrowse_request();
        m.receive(
            ToAgent::Error(ErrorFrame::new(ErrorCode::Forbidden, "no")),
            0,
        );
        assert!(m.cobrowse().unwrap().can_request);
        assert!(m.notice.is_some());
        m.select("b".into());
        assert!(!m.cobrowse().unwrap().can_request);
        assert!(m.cobrowse_request().is_empty());
    }

    #[test]
    fn opening_a_shared_conversation_asks_for_a_snapshot() {
        let mut m = welcomed(vec![conv("a", ConversationStatus::Assigned, Some("me"), 1)]);
        m.select("a".into());
        let resync = Effect::Send(AgentFrame::CobrowseResync {
            conversation_id: "a".into(),
        });
        let fx = m.receive(
            ToAgent::History {
                conversation_id: "a".into(),
                events: vec![
                    cobrowse_ev(1, Role::Agent, CobrowseState::Requested),
                    cobrowse_ev(2, Role::Visitor, CobrowseState::Allowed),
                ],
            },
            0,
        );
        assert_eq!(fx, vec![resync.clone()]);
        // Reconnected: the refill is empty but the stream missed items meanwhile.
        let fx = m.receive(
            ToAgent::History {
                conversation_id: "a".into(),
                events: vec![],
            },
            0,
        );
        assert_eq!(fx, vec![resync]);
        // Once stopped, opening asks for nothing.
        m.receive(
            ToAgent::Event(cobrowse_ev(3, Role::Agent, CobrowseState::Stopped)),
            0,
        );
        assert_eq!(m.transcript()[2].text, "You stopped co-browsing");
        let fx = m.receive(
            ToAgent::History {
                conversation_id: "a".into(),
                events: vec![],
            },
            0,
        );
        assert!(fx.is_empty());
    }
}

//! The console's model: the live conversation list, the timelines of opened conversations, the
//! outboxes of unacknowledged replies, and what the relay's frames do to them.
//!
//! Pure Rust (no browser APIs): the UI keeps one [`Model`] in a signal, feeds it frames and user
//! actions, and sends the [`Effect`]s it returns. That keeps every protocol rule — re-open after
//! a gap, resend after reconnect, settle on ack — testable natively with `cargo test`.

use std::collections::HashMap;

use protocol::timeline::{Applied, Outbox, Pending, Timeline};
use protocol::{
    validate_text, AgentFrame, AgentInfo, ClientId, ConversationId, ConversationStatus,
    ConversationSummary, ErrorCode, Event, EventBody, HandoffReason, PageContext, Role, Seq,
    ToAgent, PROTOCOL_VERSION,
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
    /// The visitor left a message while nobody was available: replies are emailed here.
    pub offline_email: Option<String>,
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
    /// When it was stored (Unix ms); `None` while pending.
    pub at: Option<i64>,
    /// Delivery state.
    pub state: LineState,
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
            } => {
                if author.role == Role::Visitor && self.selected.as_ref() == Some(&conversation_id)
                {
                    self.visitor_typing_since = active.then_some(now);
                }
            }
            ToAgent::Presence { agents_online } => self.agents_online = agents_online,
            // Co-browse is not served by this console yet.
            ToAgent::Cobrowse { .. } => {}
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
                    (None, code) => self.notice = Some(error_text(code).to_owned()),
                }
            }
        }
        out
    }

    fn apply_event(&mut self, e: Event, live: bool, out: &mut Vec<Effect>) {
        let id = e.conversation_id.clone();
        let selected = self.selected.as_ref() == Some(&id);
        let from_visitor = e.author.role == Role::Visitor;
        let is_message = matches!(e.body, EventBody::Message { .. });
        let client_id = match &e.body {
            EventBody::Message { client_id, .. } => client_id.clone(),
            _ => None,
        };
        let thread = self.threads.entry(id.clone()).or_default();
        match thread.timeline.apply(e) {
            Applied::Appended => {
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
        let thread = self.threads.entry(id.clone()).or_default();
        thread.refilling = false;
        let frame = open_frame(id, thread.timeline.last_seq());
        self.mark_selected_seen();
        vec![Effect::Send(frame)]
    }

    /// Queues a reply to the selected conversation. `Err` is the reason to show at the composer.
    pub fn compose(&mut self, text: &str, client_id: ClientId) -> Result<Vec<Effect>, String> {
        let id = self
            .selected
            .clone()
            .ok_or_else(|| "No conversation selected".to_owned())?;
        if let Err(e) = validate_text(text) {
            return Err(match e.code {
                ErrorCode::TooLarge => "Message is too long".to_owned(),
                _ => "Message is empty".to_owned(),
            });
        }
        if self.conversations.get(&id).map(|c| c.status) == Some(ConversationStatus::Closed) {
            return Err(error_text(ErrorCode::Closed).to_owned());
        }
        let thread = self.threads.entry(id.clone()).or_default();
        thread.outbox.push(client_id, text.to_owned());
        let frame = thread
            .outbox
            .pending()
            .last()
            .map(|p| send_frame(&id, p))
            .into_iter()
            .map(Effect::Send)
            .collect();
        Ok(frame)
    }

    /// Take the selected conversation.
    pub fn take(&mut self) -> Vec<Effect> {
        self.notice = None;
        self.selected
            .clone()
            .map(|conversation_id| Effect::Send(AgentFrame::Take { conversation_id }))
            .into_iter()
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

    /// The rows of a tab, newest change first.
    pub fn rows(&self, tab: Tab) -> Vec<ListRow> {
        let me = self.me_id();
        let mut list: Vec<&ConversationSummary> = self
            .conversations
            .values()
            .filter(|c| tab.includes(c, me))
            .collect();
        list.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
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
                offline_email: c.offline_email.clone(),
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
            site_name: c.site_name.clone(),
            site: c.site.clone(),
            assignee: c.assignee.as_ref().map(|a| a.display_name.clone()),
            mine: c.assignee.as_ref().is_some_and(|a| a.id == self.me_id()),
            context: c.context.clone(),
            created_at: c.created_at,
            offline_email: c.offline_email.clone(),
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
            at: None,
            state,
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
    let (mut buttons, mut link, mut is_handoff) = (Vec::new(), None, false);
    let (text, is_notice) = match &e.body {
        EventBody::Message {
            text,
            buttons: offered,
            link: url,
            ..
        } => {
            if e.author.role == Role::Bot {
                buttons = offered.iter().map(|b| b.label.clone()).collect();
                link = url.as_deref().and_then(safe_link);
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
        // A kind from a newer relay: a neutral line keeps the seq visible without guessing.
        EventBody::Unknown => ("(an update this console cannot show)".to_owned(), true),
        EventBody::Cobrowse { .. } => ("(co-browse)".to_owned(), true),
        EventBody::Email { to, sent: true, .. } => (format!("Reply emailed to {to}"), true),
        EventBody::Email { to, error, .. } => {
            // Highlighted like a hand-off: the visitor did not get the reply.
            is_handoff = true;
            let why = error.as_deref().unwrap_or("unknown error");
            (format!("Email to {to} failed: {why}"), true)
        }
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
        at: Some(e.at),
        state: LineState::Stored,
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
            offline_email: None,
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
}

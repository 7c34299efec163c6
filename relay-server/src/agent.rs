//! The agent socket: `/ws/agent`, authenticated by the session cookie. Runs an [`AgentSession`]:
//! one handler per [`AgentFrame`] variant.

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use protocol::{
    AgentFrame, AgentInfo, Author, ClientFrame, ClientId, CobrowseState, ConversationId,
    ConversationStatus, ErrorCode, ErrorFrame, EventBody, Highlight, Role, Seq, ToAgent, ToVisitor,
};

use crate::access::Scope;
use crate::auth::{self, SessionAgent};
use crate::cobrowse::{self, Recipient, Relayed};
use crate::connection::{self, Cursor, Rate, Session, SOCKET_BUFFER};
use crate::http::AppError;
use crate::hub::{Inbox, Mailbox, QueueUpdate, Signal};
use crate::store::{Effect, NewEvent, StoreError};
use crate::App;
use protocol::Consent;

/// Most open conversations `welcome` lists (all of them on any sane deployment).
const OPEN_LIMIT: i64 = 1000;
/// Closed conversations `welcome` lists, the most recent; older ones are paged over HTTP
/// (`GET /api/conversations`), so `welcome` does not grow with the history.
pub const CLOSED_IN_WELCOME: i64 = 20;

/// `GET /ws/agent`: 401 without a session, 403 from a foreign origin.
pub async fn upgrade(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    SessionAgent(agent): SessionAgent,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    app.public.check_origin(&headers)?;
    let session = app
        .public
        .session_hash(&headers)
        .ok_or(AppError::Unauthorized)?;
    let ws = ws.map_err(|e| AppError::BadRequest(e.to_string()))?;
    let limits = app.limits.clone();
    let app2 = app.clone();
    Ok(ws
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER)
        .max_message_size(limits.max_frame_bytes * 2)
        .max_frame_size(limits.max_frame_bytes * 2)
        .on_upgrade(move |socket| {
            let mailbox = app2.hub.agent_mailbox();
            let session = AgentSession::new(app2.clone(), &agent, session, &mailbox);
            let rate = Rate {
                per_second: limits.agent_per_second,
                burst: limits.agent_burst,
            };
            let tracker = app2.tasks.clone();
            tracker.track_future(connection::run(socket, session, mailbox, app2, rate))
        })
        .into_response())
}

/// One agent connection (one console tab, or a bot).
pub struct AgentSession {
    app: Arc<App>,
    agent: AgentInfo,
    /// The sites whose conversations this agent may see and act on, as when the socket opened
    /// (a change closes it: [`protocol::CLOSE_ACCESS_CHANGED`]).
    scope: Scope,
    inbox: Inbox,
    /// Set by `hello`.
    greeted: bool,
    cursor: Cursor,
    /// Token hash of the session the socket was opened with (see [`crate::access`]).
    session: String,
    /// The session ended: the socket closes with [`protocol::CLOSE_SESSION_ENDED`].
    ended: bool,
    /// An admin changed the agent: the socket closes with [`protocol::CLOSE_ACCESS_CHANGED`].
    changed: bool,
}

/// The checks every written line (a reply or a note) passes first: a well-formed client id and
/// a text within bounds; the error names the client id.
fn checked_line(client_id: &ClientId, text: &str) -> Result<(), ErrorFrame> {
    if !client_id.is_valid() {
        return Err(ErrorFrame::new(
            ErrorCode::Invalid,
            "client_id must be 1-64 of [A-Za-z0-9_-]",
        )
        .for_client(Some(client_id.clone())));
    }
    protocol::validate_text(text).map_err(|e| e.for_client(Some(client_id.clone())))
}

impl AgentSession {
    /// A session before `hello`.
    pub fn new(
        app: Arc<App>,
        agent: &crate::store::AgentRecord,
        session: String,
        mailbox: &Mailbox,
    ) -> Self {
        Self {
            app,
            agent: auth::info(agent),
            scope: Scope::of(agent),
            inbox: mailbox.inbox.clone(),
            greeted: false,
            cursor: Cursor::default(),
            session,
            ended: false,
            changed: false,
        }
    }

    fn author(&self) -> Author {
        Author {
            role: Role::Agent,
            id: Some(self.agent.id.clone()),
            name: Some(self.agent.display_name.clone()),
        }
    }

    async fn on_hello(&mut self, v: u32, out: &mut Vec<ToAgent>) {
        if v != protocol::PROTOCOL_VERSION {
            return out.push(ToAgent::Error(ErrorFrame::new(
                ErrorCode::UnsupportedVersion,
                format!("this relay speaks protocol v{}", protocol::PROTOCOL_VERSION),
            )));
        }
        if !self.greeted {
            self.greeted = true;
            if self.app.hub.join_agent(&self.inbox, self.agent.clone()) {
                // Came online: waiting conversations may go to them now.
                self.app.hub.publish_queue_changed();
            }
        }
        let store = &self.app.store;
        let sites = self.scope.sites();
        let conversations = match tokio::try_join!(
            store.open_conversations(sites, OPEN_LIMIT),
            store.closed_conversations(sites, None, CLOSED_IN_WELCOME)
        ) {
            Ok((mut open, closed)) => {
                open.extend(closed);
                open
            }
            Err(e) => return out.push(internal(e, None)),
        };
        let mut summaries = Vec::with_capacity(conversations.len());
        for c in &conversations {
            summaries.push(self.app.summary(c).await);
        }
        out.push(ToAgent::Welcome {
            v: protocol::PROTOCOL_VERSION,
            agent: self.agent.clone(),
            conversations: summaries,
            agents_online: self.app.hub.agents_online(),
        });
        if let Some(queue) = self.app.queue.agents_frame() {
            out.push(queue);
        }
    }

    async fn on_open(
        &mut self,
        conversation_id: ConversationId,
        after_seq: Option<Seq>,
        out: &mut Vec<ToAgent>,
    ) {
        if let Err(e) = self.conversation(&conversation_id, None).await {
            return out.push(e);
        }
        self.app.hub.subscribe(&conversation_id, &self.inbox);
        self.cursor.track(&conversation_id, after_seq.unwrap_or(0));
        match self
            .cursor
            .catch_up(&*self.app.store, &conversation_id)
            .await
        {
            Ok(events) => out.push(ToAgent::History {
                conversation_id,
                events,
            }),
            Err(e) => out.push(internal(e, None)),
        }
    }

    /// Appends `joined` if nobody has the conversation. `Ok(false)`: someone else has it.
    async fn take(
        &mut self,
        conversation_id: &ConversationId,
        client_id: Option<&ClientId>,
    ) -> Result<(), ToAgent> {
        let conversation = self.conversation(conversation_id, client_id).await?;
        if conversation.status == ConversationStatus::Closed {
            return Err(closed(client_id.cloned()));
        }
        match conversation.assignee_id.as_deref() {
            Some(me) if me == self.agent.id => return Ok(()),
            Some(_) => return Err(forbidden(client_id.cloned())),
            None => {}
        }
        let new = NewEvent {
            author: self.author(),
            body: EventBody::Joined,
            client_id: None,
            effect: Effect::Assign(self.agent.id.clone()),
        };
        match self.app.append(conversation_id, new).await {
            Ok(appended) => {
                self.app.publish(&appended).await;
                Ok(())
            }
            Err(e) => Err(store_error(e, client_id.cloned())),
        }
    }

    async fn on_take(&mut self, conversation_id: ConversationId, out: &mut Vec<ToAgent>) {
        if let Err(e) = self.take(&conversation_id, None).await {
            out.push(e);
        }
    }

    /// Sets a conversation's labels: any agent serving the site may. No answer of its own:
    /// every agent (this one included) gets the changed `conversation` summary.
    async fn on_label(
        &mut self,
        conversation_id: ConversationId,
        labels: Vec<String>,
        out: &mut Vec<ToAgent>,
    ) {
        let labels = match protocol::agent::clean_labels(&labels) {
            Ok(l) => l,
            Err(why) => return out.push(ToAgent::Error(ErrorFrame::new(ErrorCode::Invalid, why))),
        };
        if let Err(e) = self.conversation(&conversation_id, None).await {
            return out.push(e);
        }
        match self.app.store.set_labels(&conversation_id, &labels).await {
            Ok(Some(record)) => self.app.publish_summary(&record).await,
            Ok(None) => out.push(not_found(None)),
            Err(e) => out.push(internal(e, None)),
        }
    }

    /// An internal note: any agent serving the site may write one, assigned or not (a closed
    /// conversation refuses it, like every append). Stored as an event agents see; visitors get
    /// it as `internal` (the projection).
    async fn on_note(
        &mut self,
        conversation_id: ConversationId,
        client_id: ClientId,
        text: String,
        out: &mut Vec<ToAgent>,
    ) {
        if let Err(e) = checked_line(&client_id, &text) {
            return out.push(ToAgent::Error(e));
        }
        if let Err(e) = self.conversation(&conversation_id, Some(&client_id)).await {
            return out.push(e);
        }
        let new = NewEvent {
            author: self.author(),
            body: EventBody::Note {
                text,
                client_id: Some(client_id.clone()),
            },
            client_id: Some(client_id.clone()),
            effect: Effect::None,
        };
        match self.app.append(&conversation_id, new).await {
            Ok(appended) => {
                out.push(ToAgent::Ack {
                    client_id,
                    conversation_id,
                    seq: appended.event.seq,
                });
                if !appended.duplicate {
                    self.app.publish(&appended).await;
                }
            }
            Err(e) => out.push(store_error(e, Some(client_id))),
        }
    }

    async fn on_send(
        &mut self,
        conversation_id: ConversationId,
        client_id: ClientId,
        text: String,
        out: &mut Vec<ToAgent>,
    ) {
        if let Err(e) = checked_line(&client_id, &text) {
            return out.push(ToAgent::Error(e));
        }
        if let Err(e) = self.take(&conversation_id, Some(&client_id)).await {
            return out.push(e);
        }
        let new = NewEvent {
            author: self.author(),
            body: EventBody::message(text, Some(client_id.clone())),
            client_id: Some(client_id.clone()),
            // Re-checked inside the append transaction: nobody else can have taken it meanwhile.
            effect: Effect::Assign(self.agent.id.clone()),
        };
        match self.app.append(&conversation_id, new).await {
            Ok(appended) => {
                out.push(ToAgent::Ack {
                    client_id,
                    conversation_id,
                    seq: appended.event.seq,
                });
                if !appended.duplicate {
                    self.app.publish(&appended).await;
                    // A conversation left offline: the visitor reads replies by email.
                    if let Some(to) = appended.conversation.offline_email.clone() {
                        self.app.tasks.spawn(crate::mail::send_reply(
                            self.app.clone(),
                            appended.event.conversation_id.clone(),
                            to,
                            appended.event.seq,
                        ));
                    }
                }
            }
            Err(e) => out.push(store_error(e, Some(client_id))),
        }
    }

    async fn on_typing(
        &mut self,
        conversation_id: ConversationId,
        active: bool,
        out: &mut Vec<ToAgent>,
    ) {
        // Only the agent who has the conversation types into it: anyone else's "typing…" would
        // be shown to the visitor as if it were theirs.
        if let Err(e) = self.assigned_to_me(&conversation_id).await {
            return out.push(e);
        }
        let author = self.author();
        self.app
            .hub
            .publish_typing(&self.inbox, &conversation_id, author, active);
    }

    async fn on_transfer(
        &mut self,
        conversation_id: ConversationId,
        to_agent: String,
        note: Option<String>,
        out: &mut Vec<ToAgent>,
    ) {
        let note = note.filter(|n| !n.trim().is_empty());
        if let Some(note) = &note {
            if let Err(e) = protocol::validate_text(note) {
                return out.push(ToAgent::Error(e));
            }
        }
        if to_agent == self.agent.id {
            return out.push(invalid("a conversation cannot be transferred to yourself"));
        }
        let conversation = match self.conversation(&conversation_id, None).await {
            Ok(c) => c,
            Err(e) => return out.push(e),
        };
        let target = match self.app.store.agent_by_id(&to_agent).await {
            Ok(Some(record)) if record.disabled => return out.push(invalid("no such agent")),
            Ok(Some(record)) if !Scope::of(&record).covers(&conversation.site) => {
                return out.push(invalid(
                    "that agent does not serve this conversation's site",
                ))
            }
            Ok(Some(record)) => auth::info(&record),
            Ok(None) => return out.push(invalid("no such agent")),
            Err(e) => return out.push(internal(e, None)),
        };
        let new = NewEvent {
            author: self.author(),
            body: EventBody::Transferred {
                to: crate::queue::agent_author(&target),
                note,
            },
            client_id: None,
            // Checked in the appending transaction: only the assignee may hand it on.
            effect: Effect::Transfer {
                from: self.agent.id.clone(),
                to: target.id.clone(),
            },
        };
        match self.app.append(&conversation_id, new).await {
            Ok(appended) => self.app.publish(&appended).await,
            Err(StoreError::Forbidden) => out.push(ToAgent::Error(ErrorFrame::new(
                ErrorCode::Forbidden,
                "only the assigned agent may transfer a conversation",
            ))),
            Err(e) => out.push(store_error(e, None)),
        }
    }

    async fn on_close(&mut self, conversation_id: ConversationId, out: &mut Vec<ToAgent>) {
        if let Err(e) = self.may_close(&conversation_id).await {
            return out.push(e);
        }
        let new = NewEvent {
            author: self.author(),
            body: EventBody::Closed,
            client_id: None,
            effect: Effect::Close,
        };
        match self.app.append(&conversation_id, new).await {
            Ok(appended) => self.app.publish(&appended).await,
            Err(e) => out.push(store_error(e, None)),
        }
    }
}

impl AgentSession {
    /// The conversation, if it exists and its site is one this agent serves; `not_found`
    /// otherwise (another team's conversation is not theirs to know of). Every frame about a
    /// conversation goes through here.
    async fn conversation(
        &self,
        conversation_id: &ConversationId,
        client_id: Option<&ClientId>,
    ) -> Result<crate::store::ConversationRecord, ToAgent> {
        match self.app.store.conversation(conversation_id).await {
            Ok(Some(c)) if self.scope.covers(&c.site) => Ok(c),
            Ok(_) => Err(not_found(client_id.cloned())),
            Err(e) => Err(internal(e, client_id.cloned())),
        }
    }

    /// The conversation, if this agent has it and it is not closed; else the error to send.
    async fn assigned_to_me(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<crate::store::ConversationRecord, ToAgent> {
        let record = self.conversation(conversation_id, None).await?;
        if record.status == ConversationStatus::Closed {
            return Err(closed(None));
        }
        if record.assignee_id.as_deref() != Some(self.agent.id.as_str()) {
            return Err(ToAgent::Error(ErrorFrame::new(
                ErrorCode::Forbidden,
                "only the agent the conversation is assigned to may do this",
            )));
        }
        Ok(record)
    }

    /// Whether this agent may close the conversation: it is theirs, or they are an admin (read
    /// from the store now, so a demotion counts at once). Anyone else's close is `forbidden`:
    /// a colleague's chat or the bot's is not theirs to end.
    async fn may_close(&self, conversation_id: &ConversationId) -> Result<(), ToAgent> {
        let record = self.conversation(conversation_id, None).await?;
        if record.assignee_id.as_deref() == Some(self.agent.id.as_str()) {
            return Ok(());
        }
        match self.app.store.agent_by_id(&self.agent.id).await {
            Ok(Some(me)) if me.admin => Ok(()),
            Ok(_) => Err(ToAgent::Error(ErrorFrame::new(
                ErrorCode::Forbidden,
                "only the assigned agent or an admin may close a conversation",
            ))),
            Err(e) => Err(internal(e, None)),
        }
    }

    /// The conversation and its consent state, for the co-browse frames.
    async fn consent(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<(crate::store::ConversationRecord, Consent), ToAgent> {
        let record = self.assigned_to_me(conversation_id).await?;
        match cobrowse::consent(&*self.app.store, &record).await {
            Ok(known) => Ok((record, known.consent)),
            Err(e) => Err(internal(e, None)),
        }
    }

    /// Stores a `cobrowse` event by this agent.
    async fn store_cobrowse(
        &self,
        conversation_id: &ConversationId,
        state: CobrowseState,
        out: &mut Vec<ToAgent>,
    ) {
        let new = NewEvent {
            author: self.author(),
            body: EventBody::Cobrowse { state },
            client_id: None,
            effect: Effect::None,
        };
        match self.app.append(conversation_id, new).await {
            Ok(appended) => self.app.publish(&appended).await,
            Err(e) => out.push(store_error(e, None)),
        }
    }

    async fn on_cobrowse_request(
        &mut self,
        conversation_id: ConversationId,
        out: &mut Vec<ToAgent>,
    ) {
        let (_, consent) = match self.consent(&conversation_id).await {
            Ok(c) => c,
            Err(e) => return out.push(e),
        };
        // `consent` already required this agent to be the assignee, and the rule ends any
        // earlier agent's request or share when the conversation changed hands.
        if consent.agent() == Some(self.agent.id.as_str()) {
            return out.push(ToAgent::Error(ErrorFrame::new(
                ErrorCode::Invalid,
                "co-browse is already requested or on in this conversation",
            )));
        }
        self.store_cobrowse(&conversation_id, CobrowseState::Requested, out)
            .await;
    }

    async fn on_cobrowse_stop(&mut self, conversation_id: ConversationId, out: &mut Vec<ToAgent>) {
        let (_, consent) = match self.consent(&conversation_id).await {
            Ok(c) => c,
            Err(e) => return out.push(e),
        };
        if consent.agent() != Some(self.agent.id.as_str()) {
            return out.push(ToAgent::Error(ErrorFrame::new(
                ErrorCode::Invalid,
                "not co-browsing: nothing to stop",
            )));
        }
        self.store_cobrowse(&conversation_id, CobrowseState::Stopped, out)
            .await;
    }

    /// Sends a frame to the visitor's tabs if the visitor shares their page with this agent.
    async fn to_sharing_visitor(
        &self,
        conversation_id: ConversationId,
        frame: ToVisitor,
        out: &mut Vec<ToAgent>,
    ) {
        let (_, consent) = match self.consent(&conversation_id).await {
            Ok(c) => c,
            Err(e) => return out.push(e),
        };
        if consent.sharing_with() != Some(self.agent.id.as_str()) {
            return out.push(ToAgent::Error(ErrorFrame::new(
                ErrorCode::Forbidden,
                "the visitor is not sharing their page with you",
            )));
        }
        self.app.hub.publish_cobrowse(Arc::new(Relayed {
            conversation_id,
            to: Recipient::Visitor { frame },
        }));
    }

    async fn on_cobrowse_highlight(
        &mut self,
        conversation_id: ConversationId,
        highlight: Highlight,
        out: &mut Vec<ToAgent>,
    ) {
        if let Err(e) = cobrowse::check_highlight(&highlight) {
            return out.push(ToAgent::Error(e));
        }
        let frame = ToVisitor::CobrowseHighlight {
            author: self.author(),
            highlight,
        };
        self.to_sharing_visitor(conversation_id, frame, out).await;
    }

    async fn on_cobrowse_resync(
        &mut self,
        conversation_id: ConversationId,
        out: &mut Vec<ToAgent>,
    ) {
        self.to_sharing_visitor(conversation_id, ToVisitor::CobrowseResync, out)
            .await;
    }
}

fn not_found(client_id: Option<ClientId>) -> ToAgent {
    ToAgent::Error(
        ErrorFrame::new(ErrorCode::NotFound, "no such conversation").for_client(client_id),
    )
}

fn invalid(message: &str) -> ToAgent {
    ToAgent::Error(ErrorFrame::new(ErrorCode::Invalid, message))
}

fn forbidden(client_id: Option<ClientId>) -> ToAgent {
    ToAgent::Error(
        ErrorFrame::new(
            ErrorCode::Forbidden,
            "conversation is assigned to someone else",
        )
        .for_client(client_id),
    )
}

fn closed(client_id: Option<ClientId>) -> ToAgent {
    ToAgent::Error(
        ErrorFrame::new(ErrorCode::Closed, "conversation is closed").for_client(client_id),
    )
}

fn internal(e: StoreError, client_id: Option<ClientId>) -> ToAgent {
    tracing::error!(error = %e, "store failed on an agent frame");
    ToAgent::Error(
        ErrorFrame::new(ErrorCode::Internal, "the relay could not store this; retry")
            .for_client(client_id),
    )
}

fn store_error(e: StoreError, client_id: Option<ClientId>) -> ToAgent {
    match e {
        StoreError::NotFound => not_found(client_id),
        StoreError::Forbidden => forbidden(client_id),
        StoreError::Closed => closed(client_id),
        other => internal(other, client_id),
    }
}

impl Session for AgentSession {
    type In = AgentFrame;
    type Out = ToAgent;

    async fn on_frame(&mut self, frame: AgentFrame, out: &mut Vec<ToAgent>) {
        if !self.greeted && !matches!(frame, AgentFrame::Hello { .. }) {
            return out.push(ToAgent::Error(
                ErrorFrame::new(ErrorCode::HelloRequired, "send hello first")
                    .for_client(frame.client_id().cloned()),
            ));
        }
        match frame {
            AgentFrame::Hello { v } => self.on_hello(v, out).await,
            AgentFrame::Open {
                conversation_id,
                after_seq,
            } => self.on_open(conversation_id, after_seq, out).await,
            AgentFrame::Take { conversation_id } => self.on_take(conversation_id, out).await,
            AgentFrame::Send {
                conversation_id,
                client_id,
                text,
            } => self.on_send(conversation_id, client_id, text, out).await,
            AgentFrame::Typing {
                conversation_id,
                active,
            } => self.on_typing(conversation_id, active, out).await,
            AgentFrame::Close { conversation_id } => self.on_close(conversation_id, out).await,
            AgentFrame::CobrowseRequest { conversation_id } => {
                self.on_cobrowse_request(conversation_id, out).await
            }
            AgentFrame::CobrowseStop { conversation_id } => {
                self.on_cobrowse_stop(conversation_id, out).await
            }
            AgentFrame::CobrowseHighlight {
                conversation_id,
                highlight,
            } => {
                self.on_cobrowse_highlight(conversation_id, highlight, out)
                    .await
            }
            AgentFrame::CobrowseResync { conversation_id } => {
                self.on_cobrowse_resync(conversation_id, out).await
            }
            AgentFrame::Transfer {
                conversation_id,
                to_agent,
                note,
            } => self.on_transfer(conversation_id, to_agent, note, out).await,
            AgentFrame::Note {
                conversation_id,
                client_id,
                text,
            } => self.on_note(conversation_id, client_id, text, out).await,
            AgentFrame::Label {
                conversation_id,
                labels,
            } => self.on_label(conversation_id, labels, out).await,
        }
    }

    async fn on_signal(&mut self, signal: Signal, out: &mut Vec<ToAgent>) {
        match signal {
            Signal::Event(event) => match self.cursor.deliver(&*self.app.store, event).await {
                Ok(events) => out.extend(events.into_iter().map(ToAgent::Event)),
                Err(e) => out.push(internal(e, None)),
            },
            Signal::Typing(t) => out.push(ToAgent::Typing {
                conversation_id: t.conversation_id.clone(),
                author: t.author.clone(),
                active: t.active,
            }),
            Signal::Summary(summary) => {
                if self.scope.covers(&summary.site) {
                    out.push(ToAgent::Conversation(Box::new((*summary).clone())))
                }
            }
            Signal::Presence => out.push(ToAgent::Presence {
                agents_online: self.app.hub.agents_online(),
            }),
            Signal::Cobrowse(relayed) => {
                if let Recipient::Agent { agent_id, frame } = &relayed.to {
                    if *agent_id != self.agent.id || !self.cursor.tracks(&relayed.conversation_id) {
                        return;
                    }
                    // Checked at delivery, from the store: a frame that was on its way when the
                    // conversation was transferred, requeued, taken or closed is dropped here.
                    match cobrowse::deliverable(
                        &*self.app.store,
                        &relayed.conversation_id,
                        &self.agent.id,
                    )
                    .await
                    {
                        Ok(true) => out.push(frame.clone()),
                        Ok(false) => {}
                        Err(e) => out.push(internal(e, None)),
                    }
                }
            }
            Signal::Erased(_) => {}
            Signal::Revoked(revocation) => {
                if revocation.ends(&self.agent.id, &self.session) {
                    self.ended = true;
                } else if revocation.rereads(&self.agent.id) {
                    // Sites, name or role changed: the console reconnects and gets `welcome`
                    // as the agent now is (what it opened under the old sites is dropped).
                    self.changed = true;
                }
            }
            Signal::Queue(update) => {
                if let QueueUpdate::Agents { waiting, agents } = &*update {
                    out.push(ToAgent::Queue {
                        waiting: *waiting,
                        agents: agents.clone(),
                    });
                }
            }
        }
    }

    async fn resync(&mut self, out: &mut Vec<ToAgent>) {
        // Every open conversation in one read of the store, however many there are.
        match self.cursor.catch_up_all(&*self.app.store).await {
            Ok(events) => out.extend(events.into_iter().map(ToAgent::Event)),
            Err(e) => out.push(internal(e, None)),
        }
        // List updates may have been lost too: send the list again.
        if self.greeted {
            self.on_hello(protocol::PROTOCOL_VERSION, out).await;
        }
    }

    /// Events are re-read from the store; once greeted, the list, who is online and the queue
    /// come again with `welcome`.
    fn resync_covers(&self, signal: &Signal) -> bool {
        match signal {
            Signal::Event(_) => true,
            Signal::Summary(_) | Signal::Presence | Signal::Queue(_) => self.greeted,
            // A revocation is checked after the resync anyway (`check`), but costs nothing.
            Signal::Typing(_) | Signal::Cobrowse(_) | Signal::Revoked(_) => false,
            Signal::Erased(_) => true,
        }
    }

    /// The session this socket was opened with must still be valid in the store: a revocation
    /// that never arrived (lagged socket, bus outage) or an expiry ends the socket here.
    async fn check(&mut self) {
        match self
            .app
            .store
            .session_agent(&self.session, crate::store::now_ms())
            .await
        {
            Ok(Some(agent)) if agent.id == self.agent.id => {
                // A change whose signal did not arrive: reconnect to the agent as now stored.
                if Scope::of(&agent) != self.scope || auth::info(&agent) != self.agent {
                    self.changed = true;
                }
            }
            Ok(_) => self.ended = true,
            // The store is unreachable: not a reason to end a session (the next check decides).
            Err(e) => tracing::warn!(error = %e, "could not re-check an agent session"),
        }
    }

    fn closing(&self) -> Option<(u16, &'static str)> {
        if self.ended {
            Some((protocol::CLOSE_SESSION_ENDED, "session ended"))
        } else if self.changed {
            Some((protocol::CLOSE_ACCESS_CHANGED, "access changed: reconnect"))
        } else {
            None
        }
    }

    fn finish(&mut self) {
        self.app.hub.leave(&self.inbox, self.cursor.tracked());
    }
}

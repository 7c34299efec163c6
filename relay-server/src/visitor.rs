//! The visitor socket: `/ws/visitor?site=KEY`. Checks site and origin before upgrading, then runs
//! a [`VisitorSession`]: one handler per [`VisitorFrame`] variant.

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use protocol::{
    Author, ClientId, ConversationId, ErrorCode, ErrorFrame, EventBody, Mood, PageContext, Role,
    Seq, ToVisitor, VisitorEvent, VisitorFrame,
};
use serde::Deserialize;

use crate::cobrowse::{self, Budget, Recipient, Relayed};
use crate::config::SiteConfig;
use crate::connection::{self, Cursor, Rate, Session, SOCKET_BUFFER};
use crate::http::AppError;
use crate::hub::{Inbox, Mailbox, QueueUpdate, Signal};
use crate::logsafe::Untrusted;
use crate::per_source::Source;
use crate::store::{Appended, Effect, NewEvent, StoreError, VisitorRecord};
use crate::{token, App};

/// Query of the visitor socket URL.
#[derive(Deserialize)]
pub struct VisitorQuery {
    /// Site key.
    site: Option<String>,
}

/// `GET /ws/visitor`: 404 for an unknown site, 403 for an origin the site does not allow.
pub async fn upgrade(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Query(query): Query<VisitorQuery>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let key = query.site.unwrap_or_default();
    let site = app.sites.get(&key).cloned().ok_or(AppError::UnknownSite)?;
    let origin = headers.get("origin").and_then(|v| v.to_str().ok());
    if !site.allows_origin(origin) {
        tracing::info!(
            site = %Untrusted(&key),
            origin = %Untrusted(origin.unwrap_or("")),
            "visitor socket refused: origin not allowed"
        );
        return Err(AppError::OriginNotAllowed);
    }
    let ws = ws.map_err(|e| AppError::BadRequest(e.to_string()))?;
    let limits = app.limits.clone();
    let app2 = app.clone();
    Ok(ws
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER)
        .max_message_size(limits.max_frame_bytes * 2)
        .max_frame_size(limits.max_frame_bytes * 2)
        .on_upgrade(move |socket| {
            let mailbox = app2.hub.mailbox();
            app2.hub.join_visitor(&mailbox.inbox);
            let source = Source::of(peer.ip());
            let session = VisitorSession::new(app2.clone(), site, source, &mailbox);
            let rate = Rate {
                per_second: limits.visitor_per_second,
                burst: limits.visitor_burst,
            };
            let tracker = app2.tasks.clone();
            tracker.track_future(connection::run(socket, session, mailbox, app2, rate))
        })
        .into_response())
}

/// One visitor connection (one browser tab).
pub struct VisitorSession {
    app: Arc<App>,
    site: Arc<SiteConfig>,
    inbox: Inbox,
    /// Set by `hello`; frames before it are refused.
    visitor: Option<VisitorRecord>,
    /// The visitor's current conversation, once one exists.
    conversation: Option<ConversationId>,
    /// Whether `conversation` was open when last seen: sends then go straight to it instead of
    /// asking the store for the open conversation first (a write transaction per message).
    /// A send that finds it closed clears this and opens a new one.
    conversation_open: bool,
    /// The page the visitor is on, as last reported.
    context: PageContext,
    cursor: Cursor,
    /// Co-browse consent as this connection knows it: the one rule (`protocol::consent`)
    /// folded over every event it delivers, from the state read at `hello`. Boxed and absent
    /// until there is a conversation, so idle connections stay small.
    cobrowse: Option<Box<CobrowseView>>,
    /// The client's address: new visitors and conversations are limited per address.
    source: Source,
    /// This visitor's row is gone: an admin erased it ([`protocol::CLOSE_ERASED`]) or another
    /// browser's identity merged it ([`protocol::CLOSE_MOVED`]). The socket closes with that.
    gone: Option<(u16, &'static str)>,
    /// When the page context was last written: a visitor's page changes are stored (and told
    /// to every agent) at most once per [`CONTEXT_EVERY`]; `context_due` holds the latest one
    /// until then.
    context_written: Option<tokio::time::Instant>,
    /// A page change waits to be written at this time (the latest one wins).
    context_due: Option<tokio::time::Instant>,
}

/// At most one page-context write (a store write and a summary to every agent) per connection
/// in this time: a page that changes its URL many times a second (a script, a hostile visitor)
/// costs one write per interval, and the last change is written at its end.
const CONTEXT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// A browser's token use is written down at most this often (ms): the anonymous TTL is days.
const TOKEN_TOUCH_MS: i64 = 3_600_000;

/// Now, in Unix seconds (identity tokens count in seconds).
fn now_secs() -> i64 {
    crate::store::now_ms() / 1000
}

/// The consent rule's state for the visitor's conversation, and the share's budget.
struct CobrowseView {
    /// Which conversation the fold is of.
    conversation: ConversationId,
    /// Where consent stands after the event `upto`.
    consent: protocol::Consent,
    /// The seq of the last event folded in: the next one must be `upto + 1`, or the fold is read
    /// again from the store (it never guesses across a gap).
    upto: Seq,
    /// Bandwidth left while sharing (shared with the visitor's other tabs: [`cobrowse::Budgets`]),
    /// with the agent it was granted for; `None` otherwise.
    budget: Option<(String, Arc<Budget>)>,
}

impl CobrowseView {
    /// The agent the stream goes to now, with its budget: only while the rule says sharing.
    fn sharing(&self) -> Option<(&str, &Budget)> {
        let agent = self.consent.sharing_with()?;
        self.budget
            .as_ref()
            .filter(|(a, _)| a == agent)
            .map(|(a, b)| (a.as_str(), &**b))
    }

    /// Takes the share's budget when sharing starts (or moves to another agent), drops it when
    /// it ends.
    fn settle_budget(&mut self, app: &App) {
        match self.consent.sharing_with() {
            Some(agent) if self.budget.as_ref().is_some_and(|(a, _)| a == agent) => {}
            Some(agent) => {
                let budget = app
                    .cobrowse_budgets
                    .of(&self.conversation, agent, &app.limits);
                self.budget = Some((agent.to_owned(), budget));
            }
            None => self.budget = None,
        }
    }
}

impl VisitorSession {
    /// A session before `hello`.
    pub fn new(app: Arc<App>, site: Arc<SiteConfig>, source: Source, mailbox: &Mailbox) -> Self {
        Self {
            source,
            gone: None,
            context_written: None,
            context_due: None,
            app,
            site,
            inbox: mailbox.inbox.clone(),
            visitor: None,
            conversation: None,
            conversation_open: false,
            context: PageContext::default(),
            cursor: Cursor::default(),
            cobrowse: None,
        }
    }

    fn author(visitor: &VisitorRecord) -> Author {
        Author {
            role: Role::Visitor,
            id: Some(visitor.id.clone()),
            name: None,
        }
    }

    /// The site's settings now (an admin may have changed routing or hours since the upgrade).
    fn current_site(&self) -> Arc<SiteConfig> {
        self.app
            .site(&self.site.key)
            .unwrap_or_else(|| self.site.clone())
    }

    fn presence(&self) -> ToVisitor {
        let now = self.app.availability(&self.current_site());
        ToVisitor::Presence {
            agents_online: self.app.hub.agents_online().len() as u32,
            available: now.available,
            opens_at: now.opens_at,
        }
    }

    /// The visitor's open conversation (creating one as the site's routing says), listened to.
    /// The visitor's open conversation, opened if needed. `waiting`: it joins the people's queue
    /// now (an agents-first site); a greeting opens one that waits only once the visitor writes.
    async fn open_conversation(
        &mut self,
        visitor: &VisitorRecord,
        waiting: bool,
    ) -> Result<ConversationId, OpenError> {
        if let (Some(id), true) = (&self.conversation, self.conversation_open) {
            return Ok(id.clone());
        }
        let site = self.current_site();
        // Counted before the store call, which may find the open conversation instead of making
        // one: a bound on what one address can create, not an exact count.
        if let Err(wait) = self.app.new_conversations.check(&self.source) {
            return Err(OpenError::Limited(wait));
        }
        let (c, _created) = self
            .app
            .store
            .open_conversation_as(
                &site.key,
                &visitor.id,
                &self.context,
                site.bot_first(),
                waiting,
            )
            .await
            .map_err(OpenError::Store)?;
        if self.conversation.as_ref() != Some(&c.id) || !self.cursor.tracks(&c.id) {
            self.listen(&c.id, c.last_seq);
        }
        self.conversation_open = true;
        Ok(c.id)
    }

    fn listen(&mut self, conversation: &ConversationId, from: Seq) {
        self.app.hub.subscribe(conversation, &self.inbox);
        self.cursor.track(conversation, from);
        self.conversation = Some(conversation.clone());
    }

    #[allow(clippy::too_many_arguments)]
    async fn on_hello(
        &mut self,
        v: u32,
        token: Option<String>,
        held: Option<ConversationId>,
        last_seq: Option<Seq>,
        context: PageContext,
        identity: Option<String>,
        out: &mut Vec<ToVisitor>,
    ) {
        if v != protocol::PROTOCOL_VERSION {
            out.push(ToVisitor::Error(ErrorFrame::new(
                ErrorCode::UnsupportedVersion,
                format!("this relay speaks protocol v{}", protocol::PROTOCOL_VERSION),
            )));
            return;
        }
        if self.visitor.is_some() {
            out.push(ToVisitor::Error(ErrorFrame::new(
                ErrorCode::Invalid,
                "hello was already sent",
            )));
            return;
        }
        let site = self.current_site();
        self.context = crate::rights::stored_context(&site, context);
        // Who the page says the visitor is, believed only when the site's secret signed it.
        let verified = match identity.as_deref() {
            None => Err("absent"),
            Some(t) => match crate::identity::verify(&site.key, &site.identity, t, now_secs()) {
                Ok(v) => Ok(v),
                Err(e) => {
                    tracing::debug!(site = %site.key, reason = e.reason(), "identity refused");
                    out.push(ToVisitor::Error(
                        ErrorFrame::new(ErrorCode::IdentityInvalid, e.to_string())
                            .because(e.reason()),
                    ));
                    Err(e.reason())
                }
            },
        };
        let store = &self.app.store;
        let known = match &token {
            Some(t) => {
                store
                    .visitor_by_token(&self.site.key, &token::hash(t))
                    .await
            }
            None => Ok(None),
        };
        // An anonymous browser's token left unused too long leads nowhere: a new visitor.
        let now = crate::store::now_ms();
        let known = known.map(|found| {
            found.filter(|v| {
                v.user_id.is_some()
                    || now.saturating_sub(v.token_seen_at) <= site.identity.anonymous_ttl_ms()
            })
        });
        if site.identity.require_identity
            && verified.is_err()
            && !matches!(&known, Ok(Some(v)) if v.user_id.is_some())
        {
            let why = verified.err().unwrap_or("absent");
            return out.push(ToVisitor::Error(
                ErrorFrame::new(
                    ErrorCode::IdentityRequired,
                    "this site takes only visitors its server signed in",
                )
                .because(why),
            ));
        }
        // The browser's visitor and token; a browser never seen gets a new token (stored with
        // its visitor below, or by the identity that names who it is).
        let (known, token) = match known {
            Ok(Some(v)) => (Some(v), token.unwrap_or_default()),
            Ok(None) => {
                if let Err(wait) = self.app.new_visitors.check(&self.source) {
                    return out.push(rate_limited(
                        wait,
                        "too many new visitors from this address",
                    ));
                }
                (None, token::generate())
            }
            Err(e) => return out.push(internal(e, None)),
        };
        let token_hash = token::hash(&token);
        let visitor = match (&verified, known) {
            (Ok(who), known) => {
                let device = known.as_ref().map(|v| v.id.as_str());
                match store
                    .identify_visitor(&site.key, device, &token_hash, who)
                    .await
                {
                    Ok((v, how)) => {
                        tracing::debug!(site = %site.key, visitor = %v.id, ?how, "visitor identified");
                        if let Some(old) = known.filter(|_| how == crate::store::Identified::Merged)
                        {
                            // Other tabs of this browser still speak as the merged-away
                            // visitor: they reconnect and find the person's history.
                            self.app.hub.publish_gone(Arc::new(crate::hub::Gone {
                                visitor_id: old.id,
                                merged: true,
                            }));
                        }
                        v
                    }
                    Err(e) => return out.push(internal(e, None)),
                }
            }
            (Err(_), Some(v)) => {
                if now.saturating_sub(v.token_seen_at) > TOKEN_TOUCH_MS {
                    // At most one write per browser per hour: enough for a TTL counted in days.
                    if let Err(e) = store.touch_visitor_token(&token_hash).await {
                        tracing::warn!(error = %e, "could not record a visitor token's use");
                    }
                }
                v
            }
            (Err(_), None) => match store.create_visitor(&site.key, &token_hash).await {
                Ok(v) => v,
                Err(e) => return out.push(internal(e, None)),
            },
        };
        let latest = match store.latest_conversation(&visitor.id).await {
            Ok(c) => c,
            Err(e) => return out.push(internal(e, None)),
        };
        let (conversation_id, head, recovered, from) = match &latest {
            None => (None, 0, held.is_none(), 0),
            Some(c) => {
                let same = held.as_ref() == Some(&c.id);
                let have = if same { last_seq.unwrap_or(0) } else { 0 };
                let recovered = (same || held.is_none()) && have <= c.last_seq;
                let from = if recovered { have } else { 0 };
                (Some(c.id.clone()), c.last_seq, recovered, from)
            }
        };
        let now = self.app.availability(&site);
        out.push(ToVisitor::Welcome {
            v: protocol::PROTOCOL_VERSION,
            token,
            visitor_id: visitor.id.clone(),
            conversation_id: conversation_id.clone(),
            last_seq: head,
            recovered,
            agents_online: self.app.hub.agents_online().len() as u32,
            available: now.available,
            opens_at: now.opens_at,
            bot_first: site.bot_first() && self.app.has_bot(&site.key),
            user_id: visitor.user_id.clone(),
        });
        self.visitor = Some(visitor);
        if let Some(conversation) = conversation_id {
            // Listen first, then read: an event stored in between arrives by both ways and the
            // cursor drops the second copy. Reading first could miss it.
            self.listen(&conversation, from);
            self.conversation_open = latest
                .as_ref()
                .is_some_and(|c| c.status != protocol::ConversationStatus::Closed);
            match self.cursor.catch_up(&*self.app.store, &conversation).await {
                Ok(events) => self.deliver(events, out).await,
                Err(e) => out.push(internal(e, None)),
            }
            // Still waiting for a person: where they stand, as this node last read the queue.
            out.extend(self.app.queue.position(&conversation));
            if latest
                .as_ref()
                .is_some_and(|c| c.status != protocol::ConversationStatus::Closed)
            {
                self.store_context(out).await;
                self.reload_consent(out).await;
            }
        }
    }

    /// Reads the consent state of the visitor's conversation from the store (after `hello`, a
    /// change of conversation, or a gap in what this connection folded).
    async fn reload_consent(&mut self, out: &mut Vec<ToVisitor>) {
        let Some(conversation) = self.conversation.clone() else {
            self.cobrowse = None;
            return;
        };
        match cobrowse::load(&*self.app.store, &conversation).await {
            Ok(Some((_, known))) => {
                let mut view = CobrowseView {
                    conversation,
                    consent: known.consent,
                    upto: known.upto,
                    budget: None,
                };
                if let Some(old) = self.cobrowse.take() {
                    view.budget = old.budget;
                }
                view.settle_budget(&self.app);
                self.cobrowse = Some(Box::new(view));
            }
            Ok(None) => self.cobrowse = None,
            Err(e) => {
                // Unknown is not sharing.
                self.cobrowse = None;
                out.push(internal(e, None));
            }
        }
    }

    /// Folds events of the visitor's conversation into the consent state, in seq order: every
    /// event this connection delivers passes here, so a close, transfer, requeue or take ends the
    /// share the moment it is delivered, whatever its kind (no list of "events that matter").
    /// Returns false when the fold needs a fresh read (another conversation, or a gap).
    fn fold(&mut self, events: &[protocol::Event]) -> bool {
        let Some(view) = self.cobrowse.as_mut() else {
            // Nothing read yet (a conversation begun on this connection): read it once the
            // conversation has events.
            return !events
                .iter()
                .any(|e| self.conversation.as_ref() == Some(&e.conversation_id));
        };
        for e in events {
            if e.conversation_id != view.conversation {
                if self.conversation.as_ref() == Some(&e.conversation_id) {
                    return false;
                }
                continue;
            }
            if e.seq <= view.upto {
                continue;
            }
            if e.seq != view.upto + 1 {
                return false;
            }
            view.consent.apply(e);
            view.upto = e.seq;
        }
        view.settle_budget(&self.app);
        true
    }

    /// Writes delivered events to the visitor (as the visitor's projection, the only type the
    /// visitor socket can carry) after folding them into the consent state.
    async fn deliver(&mut self, events: Vec<protocol::Event>, out: &mut Vec<ToVisitor>) {
        let folded = self.fold(&events);
        out.extend(
            events
                .into_iter()
                .map(|e| ToVisitor::Event(VisitorEvent::project(e))),
        );
        if !folded {
            self.reload_consent(out).await;
        }
    }

    /// The conversation and its consent state, for the two consent frames.
    async fn consent(
        &self,
        out: &mut Vec<ToVisitor>,
    ) -> Option<(crate::store::ConversationRecord, protocol::Consent)> {
        if self.visitor.is_none() {
            out.push(hello_required());
            return None;
        }
        let Some(conversation) = &self.conversation else {
            out.push(no_request());
            return None;
        };
        match cobrowse::load(&*self.app.store, conversation).await {
            Ok(Some((record, _))) if record.status == protocol::ConversationStatus::Closed => {
                out.push(ToVisitor::Error(ErrorFrame::new(
                    ErrorCode::Closed,
                    "the conversation is closed",
                )));
                None
            }
            Ok(Some((record, known))) => Some((record, known.consent)),
            Ok(None) => {
                out.push(no_request());
                None
            }
            Err(e) => {
                out.push(internal(e, None));
                None
            }
        }
    }

    /// Stores a `cobrowse` event by this visitor and tells everyone.
    async fn store_cobrowse(
        &mut self,
        record: &crate::store::ConversationRecord,
        state: protocol::CobrowseState,
        out: &mut Vec<ToVisitor>,
    ) -> Option<protocol::Event> {
        let Some(visitor) = &self.visitor else {
            return None;
        };
        let new = NewEvent {
            author: Self::author(visitor),
            body: EventBody::Cobrowse { state },
            client_id: None,
            effect: Effect::None,
        };
        match self.app.append(&record.id, new).await {
            Ok(appended) => {
                self.app.publish(&appended).await;
                Some(appended.event)
            }
            Err(StoreError::Closed) => {
                out.push(ToVisitor::Error(ErrorFrame::new(
                    ErrorCode::Closed,
                    "the conversation is closed",
                )));
                None
            }
            Err(e) => {
                out.push(internal(e, None));
                None
            }
        }
    }

    async fn on_cobrowse_answer(&mut self, allow: bool, out: &mut Vec<ToVisitor>) {
        let Some((record, consent)) = self.consent(out).await else {
            return;
        };
        let asker = consent.asked_by();
        if asker.is_none() || asker != record.assignee_id.as_deref() {
            return out.push(no_request());
        }
        let state = if allow {
            protocol::CobrowseState::Allowed
        } else {
            protocol::CobrowseState::Denied
        };
        // The stored answer is folded at once (its signal comes back too; the fold skips it by
        // seq), so the first stream frame after the answer finds the share on.
        if let Some(stored) = self.store_cobrowse(&record, state, out).await {
            if !self.fold(&[stored]) {
                self.reload_consent(out).await;
            }
        }
    }

    async fn on_cobrowse_stop(&mut self, out: &mut Vec<ToVisitor>) {
        let Some((record, consent)) = self.consent(out).await else {
            return;
        };
        let active = consent.agent().is_some() && consent.agent() == record.assignee_id.as_deref();
        // Whatever the store says, this connection streams nothing from now on.
        if let Some(view) = self.cobrowse.as_mut() {
            view.consent = protocol::Consent::Off;
            view.budget = None;
        }
        if !active {
            return out.push(ToVisitor::Error(ErrorFrame::new(
                ErrorCode::Invalid,
                "not co-browsing: nothing to stop",
            )));
        }
        self.store_cobrowse(&record, protocol::CobrowseState::Stopped, out)
            .await;
    }

    async fn on_cobrowse(
        &mut self,
        n: u32,
        data: String,
        index: u32,
        count: u32,
        out: &mut Vec<ToVisitor>,
    ) {
        if self.visitor.is_none() {
            return out.push(hello_required());
        }
        let Some((agent, budget)) = self.cobrowse.as_ref().and_then(|v| v.sharing()) else {
            return out.push(ToVisitor::Error(ErrorFrame::new(
                ErrorCode::Forbidden,
                "not sharing: co-browse frames are accepted only while the visitor shares the page",
            )));
        };
        let Some(conversation) = &self.conversation else {
            return out.push(no_request());
        };
        if let Err(e) = cobrowse::check_piece(&data, index, count) {
            return out.push(ToVisitor::Error(e));
        }
        if let Err(e) = budget.take(data.len()) {
            return out.push(ToVisitor::Error(e));
        }
        self.app.metrics.cobrowse_bytes.inc_by(data.len() as u64);
        let relayed = Relayed {
            conversation_id: conversation.clone(),
            to: Recipient::Agent {
                agent_id: agent.to_owned(),
                frame: protocol::ToAgent::Cobrowse {
                    conversation_id: conversation.clone(),
                    n,
                    data,
                    index,
                    count,
                },
            },
        };
        self.app.hub.publish_cobrowse(std::sync::Arc::new(relayed));
    }

    async fn on_send(&mut self, client_id: ClientId, text: String, out: &mut Vec<ToVisitor>) {
        let Some(visitor) = self.visitor.clone() else {
            return out.push(hello_required());
        };
        if !client_id.is_valid() {
            return out.push(ToVisitor::Error(
                ErrorFrame::new(
                    ErrorCode::Invalid,
                    "client_id must be 1-64 of [A-Za-z0-9_-]",
                )
                .for_client(Some(client_id)),
            ));
        }
        if let Err(e) = protocol::validate_text(&text) {
            return out.push(ToVisitor::Error(e.for_client(Some(client_id))));
        }
        let new = NewEvent {
            author: Self::author(&visitor),
            body: EventBody::Message {
                text: text.clone(),
                client_id: Some(client_id.clone()),
                buttons: Vec::new(),
                link: None,
                sentiment: Some(mood(&text)),
            },
            client_id: Some(client_id.clone()),
            effect: Effect::None,
        };
        // At most twice: a conversation believed open may have been closed by an agent meanwhile.
        for _ in 0..2 {
            let conversation = match self.open_conversation(&visitor, true).await {
                Ok(id) => id,
                Err(e) => return out.push(e.answer(Some(client_id))),
            };
            match self.app.append(&conversation, new.clone()).await {
                Ok(appended) => {
                    out.push(ToVisitor::Ack {
                        client_id,
                        conversation_id: conversation,
                        seq: appended.event.seq,
                    });
                    if !appended.duplicate {
                        self.app.publish(&appended).await;
                        self.bot_turn(&appended, text);
                    }
                    return;
                }
                Err(StoreError::Closed) => self.conversation_open = false,
                Err(e) => return out.push(internal(e, Some(client_id))),
            }
        }
        out.push(ToVisitor::Error(
            ErrorFrame::new(
                ErrorCode::Closed,
                "conversation closed; send again to start a new one",
            )
            .for_client(Some(client_id)),
        ));
    }

    /// Lets the site's bot answer a stored visitor message, if the bot still handles the
    /// conversation as the append left it (a hand-off or a take has cleared it otherwise). Runs
    /// as a task of its own: the visitor's ack and other frames never wait for a search.
    fn bot_turn(&self, appended: &Appended, text: String) {
        if appended.conversation.status != protocol::ConversationStatus::Bot {
            return;
        }
        if let Some(bot) = self.app.external_bots.get(&self.site.key).cloned() {
            let sender = self
                .visitor
                .as_ref()
                .map(|v| v.id.clone())
                .unwrap_or_default();
            self.app.tasks.spawn(crate::external_bot::reply(
                self.app.clone(),
                bot,
                appended.event.conversation_id.clone(),
                appended.event.seq,
                sender,
                text,
            ));
            return;
        }
        let Some(bot) = self.app.bots.get(&self.site.key).cloned() else {
            return;
        };
        let language = self.context.language.clone();
        self.app.tasks.spawn(crate::bot::reply(
            self.app.clone(),
            bot,
            appended.event.conversation_id.clone(),
            appended.event.seq,
            text,
            language,
        ));
    }

    /// Rates the visitor's current conversation once it is closed: stored with its `rating`
    /// event in one transaction, then published like any event (the visitor's tabs learn it
    /// was stored from that event; agents see it in the transcript and the list).
    async fn on_rate(&mut self, score: u8, comment: Option<String>, out: &mut Vec<ToVisitor>) {
        let Some(visitor) = self.visitor.clone() else {
            return out.push(hello_required());
        };
        if let Err(e) = protocol::validate_rating(score, comment.as_deref()) {
            return out.push(ToVisitor::Error(e));
        }
        let Some(conversation) = self.conversation.clone() else {
            return out.push(ToVisitor::Error(ErrorFrame::new(
                ErrorCode::NotFound,
                "no conversation to rate",
            )));
        };
        let comment = comment
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        match self
            .app
            .store
            .rate(
                &conversation,
                &visitor.id,
                Self::author(&visitor),
                score,
                comment,
            )
            .await
        {
            Ok(appended) => {
                self.app.metrics.stored(Role::Visitor);
                self.app.publish(&appended).await;
            }
            Err(StoreError::NotFound) => out.push(ToVisitor::Error(ErrorFrame::new(
                ErrorCode::NotFound,
                "no conversation to rate",
            ))),
            Err(StoreError::NotClosed) => out.push(ToVisitor::Error(ErrorFrame::new(
                ErrorCode::Invalid,
                "only a closed conversation can be rated",
            ))),
            Err(StoreError::AlreadyRated) => out.push(ToVisitor::Error(ErrorFrame::new(
                ErrorCode::Invalid,
                "this conversation was already rated",
            ))),
            Err(e) => out.push(internal(e, None)),
        }
    }

    /// `leave_message`: stores the text like a `send` in the visitor's conversation after marking
    /// it offline with the email (both stored before the `ack`), so it reaches the console's
    /// queue marked offline and agents' replies are mailed. Never handed to the bot.
    async fn on_leave_message(
        &mut self,
        client_id: ClientId,
        email: String,
        text: String,
        out: &mut Vec<ToVisitor>,
    ) {
        let Some(visitor) = self.visitor.clone() else {
            return out.push(hello_required());
        };
        let refuse = |message: &str, client_id: ClientId| {
            ToVisitor::Error(
                ErrorFrame::new(ErrorCode::Invalid, message).for_client(Some(client_id)),
            )
        };
        if !client_id.is_valid() {
            return out.push(refuse("client_id must be 1-64 of [A-Za-z0-9_-]", client_id));
        }
        let email = email.trim().to_owned();
        if !crate::mail::valid_email(&email) {
            return out.push(refuse("email is not a valid address", client_id));
        }
        if let Err(e) = protocol::validate_text(&text) {
            return out.push(ToVisitor::Error(e.for_client(Some(client_id))));
        }
        let new = NewEvent {
            author: Self::author(&visitor),
            body: EventBody::message(text, Some(client_id.clone())),
            client_id: Some(client_id.clone()),
            effect: Effect::None,
        };
        // At most twice, as in `send`: the conversation may have been closed meanwhile.
        for _ in 0..2 {
            let conversation = match self.open_conversation(&visitor, true).await {
                Ok(id) => id,
                Err(e) => return out.push(e.answer(Some(client_id))),
            };
            let marked = match self.app.store.mark_offline(&conversation, &email).await {
                Ok(record) => record,
                Err(StoreError::Closed) => {
                    self.conversation_open = false;
                    continue;
                }
                Err(e) => return out.push(internal(e, Some(client_id))),
            };
            match self.app.append(&conversation, new.clone()).await {
                Ok(appended) => {
                    out.push(ToVisitor::Ack {
                        client_id,
                        conversation_id: conversation,
                        seq: appended.event.seq,
                    });
                    if appended.duplicate {
                        self.app.publish_summary(&marked).await;
                    } else {
                        self.app.publish(&appended).await;
                    }
                    return;
                }
                Err(StoreError::Closed) => self.conversation_open = false,
                Err(e) => return out.push(internal(e, Some(client_id))),
            }
        }
        out.push(ToVisitor::Error(
            ErrorFrame::new(ErrorCode::Closed, "conversation closed; send again")
                .for_client(Some(client_id)),
        ));
    }

    /// `greeting`: the visitor opened the chat from a proactive greeting bubble. Stores the
    /// rule's text (from the config, never from the client) as the bot's message, once per
    /// conversation: the client id `greet-RULE` makes a repeat (another tab, a reload) a no-op.
    async fn on_greeting(&mut self, rule: String, out: &mut Vec<ToVisitor>) {
        let Some(visitor) = self.visitor.clone() else {
            return out.push(hello_required());
        };
        let site = self.current_site();
        let Some(greeting) = site.greetings.iter().find(|g| g.id == rule) else {
            return out.push(ToVisitor::Error(ErrorFrame::new(
                ErrorCode::Invalid,
                "no greeting rule has this id",
            )));
        };
        let conversation = match self.open_conversation(&visitor, false).await {
            Ok(id) => id,
            Err(e) => return out.push(e.answer(None)),
        };
        // The client id goes in the body too: clients see which greeting it was (PROTOCOL §12).
        let client_id = ClientId(format!("greet-{}", greeting.id));
        let new = NewEvent {
            author: Author {
                role: Role::Bot,
                id: Some("greeting".into()),
                name: Some(site.bot_name()),
            },
            body: EventBody::message(greeting.text.clone(), Some(client_id.clone())),
            client_id: Some(client_id),
            effect: Effect::None,
        };
        match self.app.append(&conversation, new).await {
            Ok(appended) if !appended.duplicate => self.app.publish(&appended).await,
            Ok(_) => {}
            // Closed meanwhile: the greeting is moot, the next send opens a new conversation.
            Err(StoreError::Closed) => self.conversation_open = false,
            Err(e) => out.push(internal(e, None)),
        }
    }

    async fn on_typing(&mut self, active: bool, out: &mut Vec<ToVisitor>) {
        let Some(visitor) = &self.visitor else {
            return out.push(hello_required());
        };
        if let Some(conversation) = &self.conversation {
            self.app
                .hub
                .publish_typing(&self.inbox, conversation, Self::author(visitor), active);
        }
    }

    async fn on_context(&mut self, context: PageContext, out: &mut Vec<ToVisitor>) {
        if self.visitor.is_none() {
            return out.push(hello_required());
        }
        self.context = crate::rights::stored_context(&self.current_site(), context);
        let now = tokio::time::Instant::now();
        match self.context_written {
            Some(at) if now < at + CONTEXT_EVERY => {
                self.context_due = Some(at + CONTEXT_EVERY);
            }
            _ => self.store_context(out).await,
        }
    }

    async fn store_context(&mut self, out: &mut Vec<ToVisitor>) {
        self.context_due = None;
        let Some(conversation) = &self.conversation else {
            return;
        };
        self.context_written = Some(tokio::time::Instant::now());
        match self
            .app
            .store
            .update_context(conversation, &self.context)
            .await
        {
            Ok(record) => self.app.publish_summary(&record).await,
            Err(e) => out.push(internal(e, None)),
        }
    }
}

/// The tone of a visitor's message by the bot crate's lexicon scorer (English and Korean),
/// stored with the message so every agent sees the same verdict.
fn mood(text: &str) -> Mood {
    match parley_bot::sentiment(text) {
        parley_bot::Sentiment::Negative => Mood::Negative,
        parley_bot::Sentiment::Neutral => Mood::Neutral,
        parley_bot::Sentiment::Positive => Mood::Positive,
    }
}

fn hello_required() -> ToVisitor {
    ToVisitor::Error(ErrorFrame::new(
        ErrorCode::HelloRequired,
        "send hello first",
    ))
}

fn no_request() -> ToVisitor {
    ToVisitor::Error(ErrorFrame::new(
        ErrorCode::Invalid,
        "no co-browse request is waiting for an answer",
    ))
}

/// Why a visitor's conversation could not be opened.
enum OpenError {
    /// Too many new conversations from this address: retry after the wait.
    Limited(std::time::Duration),
    /// The store failed.
    Store(StoreError),
}

impl OpenError {
    /// The answer to the frame that needed the conversation.
    fn answer(self, client_id: Option<ClientId>) -> ToVisitor {
        match self {
            OpenError::Limited(wait) => {
                let mut answer = rate_limited(wait, "too many new conversations from this address");
                if let ToVisitor::Error(e) = &mut answer {
                    e.client_id = client_id;
                }
                answer
            }
            OpenError::Store(e) => internal(e, client_id),
        }
    }
}

/// `rate_limited` with the wait: the frame was not processed, retry it after `wait`.
fn rate_limited(wait: std::time::Duration, why: &str) -> ToVisitor {
    let mut e = ErrorFrame::new(ErrorCode::RateLimited, why);
    e.retry_after_ms = Some(wait.as_millis().max(1) as u64);
    ToVisitor::Error(e)
}

fn internal(e: StoreError, client_id: Option<ClientId>) -> ToVisitor {
    tracing::error!(error = %e, "store failed on a visitor frame");
    ToVisitor::Error(
        ErrorFrame::new(ErrorCode::Internal, "the relay could not store this; retry")
            .for_client(client_id),
    )
}

impl Session for VisitorSession {
    type In = VisitorFrame;
    type Out = ToVisitor;

    async fn on_frame(&mut self, frame: VisitorFrame, out: &mut Vec<ToVisitor>) {
        match frame {
            VisitorFrame::Hello {
                v,
                token,
                conversation_id,
                last_seq,
                context,
                identity,
            } => {
                self.on_hello(v, token, conversation_id, last_seq, context, identity, out)
                    .await
            }
            VisitorFrame::Send { client_id, text } => self.on_send(client_id, text, out).await,
            VisitorFrame::Typing { active } => self.on_typing(active, out).await,
            VisitorFrame::Context { context } => self.on_context(context, out).await,
            VisitorFrame::CobrowseAnswer { allow } => self.on_cobrowse_answer(allow, out).await,
            VisitorFrame::CobrowseStop => self.on_cobrowse_stop(out).await,
            VisitorFrame::Cobrowse {
                n,
                data,
                index,
                count,
            } => self.on_cobrowse(n, data, index, count, out).await,
            VisitorFrame::Rate { score, comment } => self.on_rate(score, comment, out).await,
            VisitorFrame::LeaveMessage {
                client_id,
                email,
                text,
            } => self.on_leave_message(client_id, email, text, out).await,
            VisitorFrame::Greeting { rule } => self.on_greeting(rule, out).await,
        }
    }

    fn metered_elsewhere(&self, frame: &VisitorFrame) -> bool {
        matches!(frame, VisitorFrame::Cobrowse { .. })
            && self
                .cobrowse
                .as_ref()
                .is_some_and(|v| v.sharing().is_some())
    }

    async fn on_signal(&mut self, signal: Signal, out: &mut Vec<ToVisitor>) {
        match signal {
            Signal::Event(event) => match self.cursor.deliver(&*self.app.store, event).await {
                Ok(events) => self.deliver(events, out).await,
                Err(e) => out.push(internal(e, None)),
            },
            Signal::Cobrowse(relayed) => {
                // Highlights and resync requests reach the page only while it is shared.
                let sharing = self.cobrowse.as_ref().is_some_and(|v| {
                    v.conversation == relayed.conversation_id && v.sharing().is_some()
                });
                if let Recipient::Visitor { frame } = &relayed.to {
                    if sharing {
                        out.push(frame.clone());
                    }
                }
            }
            Signal::Typing(t) => out.push(ToVisitor::Typing {
                author: t.author.clone(),
                active: t.active,
            }),
            // Before `welcome` (which carries the same figures) nothing else may be sent: the
            // socket is in the hub from its upgrade, so agents coming and going reach it early.
            Signal::Presence if self.visitor.is_none() => {}
            Signal::Presence => out.push(self.presence()),
            Signal::Summary(_) | Signal::Revoked(_) => {}
            Signal::Erased(gone) => {
                if self
                    .visitor
                    .as_ref()
                    .is_some_and(|v| v.id == gone.visitor_id)
                {
                    self.gone = Some(if gone.merged {
                        (
                            protocol::CLOSE_MOVED,
                            "visitor merged into a signed-in visitor",
                        )
                    } else {
                        (protocol::CLOSE_ERASED, "visitor data erased")
                    });
                }
            }
            Signal::Queue(update) => {
                if let QueueUpdate::Position {
                    conversation_id,
                    position,
                    wait_ms,
                } = &*update
                {
                    if self.conversation.as_ref() == Some(conversation_id) {
                        out.push(ToVisitor::Queue {
                            position: *position,
                            wait_ms: *wait_ms,
                        });
                    }
                }
            }
        }
    }

    async fn resync(&mut self, out: &mut Vec<ToVisitor>) {
        match self.cursor.catch_up_all(&*self.app.store).await {
            Ok(events) => self.deliver(events, out).await,
            Err(e) => out.push(internal(e, None)),
        }
        if self.visitor.is_some() {
            out.push(self.presence());
        }
    }

    /// Events are re-read from the store (and folded into consent as they are delivered),
    /// presence is sent again; a visitor's socket ignores summaries.
    fn resync_covers(&self, signal: &Signal) -> bool {
        match signal {
            Signal::Event(_) => true,
            Signal::Presence | Signal::Summary(_) | Signal::Revoked(_) => true,
            Signal::Typing(_) | Signal::Cobrowse(_) | Signal::Queue(_) | Signal::Erased(_) => false,
        }
    }

    fn finish(&mut self) {
        self.app.hub.leave(&self.inbox, self.cursor.tracked());
    }

    fn closing(&self) -> Option<(u16, &'static str)> {
        self.gone
    }

    fn wakeup(&self) -> Option<tokio::time::Instant> {
        self.context_due
    }

    async fn on_wakeup(&mut self, out: &mut Vec<ToVisitor>) {
        if self.context_due.is_some() {
            self.store_context(out).await;
        }
    }
}

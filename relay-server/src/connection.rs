//! What every WebSocket connection does, whoever is on the other end: read with a size limit,
//! rate-limit, decode into typed frames, answer bad input with typed errors, ping and time out
//! idle peers, deliver hub signals in seq order, and close with 1001 on shutdown.
//!
//! The per-kind logic lives behind [`Session`] (visitor, agent): it turns frames and signals into
//! outgoing frames pushed to a `Vec`, so it can be tested without a socket.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::SinkExt;
use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use protocol::{ClientFrame, ConversationId, ErrorCode, ErrorFrame, Event, Seq, ServerFrame};

use crate::hub::{Mailbox, Signal};
use crate::store::{Store, StoreResult};
use crate::App;

/// The per-kind half of a connection.
pub trait Session: Send {
    /// Frames the client sends.
    type In: ClientFrame + Send;
    /// Frames the relay sends.
    type Out: ServerFrame + Send;

    /// Handles one decoded, rate-checked frame.
    fn on_frame(
        &mut self,
        frame: Self::In,
        out: &mut Vec<Self::Out>,
    ) -> impl std::future::Future<Output = ()> + Send;
    /// Handles one hub signal.
    fn on_signal(
        &mut self,
        signal: Signal,
        out: &mut Vec<Self::Out>,
    ) -> impl std::future::Future<Output = ()> + Send;
    /// Some signals were not queued: re-read what was missed from the store.
    fn resync(&mut self, out: &mut Vec<Self::Out>) -> impl std::future::Future<Output = ()> + Send;
    /// Whether [`Session::resync`] sends everything this queued signal would: such signals,
    /// queued before the resync, are dropped instead of handled after it (see [`catch_up`]).
    fn resync_covers(&self, signal: &Signal) -> bool;
    /// The socket is gone: leave the hub. Called exactly once, from [`Leave`]'s drop, also when
    /// a handler panicked.
    fn finish(&mut self);
    /// Whether a frame is exempt from the connection's frame rate limit because the session
    /// meters it itself *right now* (a sharing visitor's co-browse stream frames have their own,
    /// bandwidth-based budget; the same frames from a visitor who is not sharing count here).
    fn metered_elsewhere(&self, _frame: &Self::In) -> bool {
        false
    }
    /// A check of what may have changed without a signal reaching this socket (a lost
    /// revocation): run every ping interval and after every resync.
    fn check(&mut self) -> impl std::future::Future<Output = ()> + Send {
        async {}
    }
    /// Why the socket must close now (code and reason), if it must: asked after every frame,
    /// signal and check.
    fn closing(&self) -> Option<(u16, &'static str)> {
        None
    }
    /// When the session wants [`Session::on_wakeup`] called (work it put off, e.g. a coalesced
    /// write); `None`: never.
    fn wakeup(&self) -> Option<tokio::time::Instant> {
        None
    }
    /// The time [`Session::wakeup`] named has come.
    fn on_wakeup(
        &mut self,
        _out: &mut Vec<Self::Out>,
    ) -> impl std::future::Future<Output = ()> + Send {
        async {}
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Initial read and write buffer of every socket. Chat frames are small; tungstenite grows the
/// buffer for a bigger frame. Its default (128 KiB) would cost ~137 KB per idle connection.
pub const SOCKET_BUFFER: usize = 1024;

/// Most queued signals handled before the connection writes and flushes its batch.
const BATCH: usize = 64;

/// Rate limit of a connection kind.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Sustained frames per second.
    pub per_second: u32,
    /// Burst.
    pub burst: u32,
}

/// Runs a connection until the peer leaves, misbehaves past repair, idles out, or the relay stops.
pub async fn run<S: Session>(
    mut socket: WebSocket,
    session: S,
    mut mailbox: Mailbox,
    app: Arc<App>,
    rate: Rate,
) {
    let mut leave = Leave(session);
    let session = &mut leave.0;
    let quota = Quota::per_second(NonZeroU32::new(rate.per_second).unwrap_or(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN));
    let limiter = RateLimiter::direct(quota);
    let limits = app.limits.clone();
    let mut ping = tokio::time::interval(limits.ping_interval);
    ping.reset();
    let mut last_seen = Instant::now();
    let mut out: Vec<S::Out> = Vec::new();
    let mut close: Option<(u16, &'static str)> = None;

    loop {
        tokio::select! {
            biased;
            _ = app.shutdown.cancelled() => {
                close = Some((protocol::CLOSE_GOING_AWAY, "relay shutting down"));
            }
            msg = socket.recv() => match msg {
                None | Some(Ok(Message::Close(_))) => break,
                Some(Err(e)) => {
                    // tungstenite refuses messages above its hard cap while reading them.
                    if over_capacity(&e) {
                        close = Some((protocol::CLOSE_TOO_BIG, "message too big"));
                    } else {
                        tracing::debug!(error = %e, "socket read failed");
                        break;
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    last_seen = Instant::now();
                    if text.len() > limits.max_frame_bytes {
                        close = Some((protocol::CLOSE_TOO_BIG, "message too big"));
                    } else {
                        let decoded = protocol::decode::<S::In>(&text);
                        let checked = match &decoded {
                            Ok(frame) if session.metered_elsewhere(frame) => Ok(()),
                            _ => limiter.check(),
                        };
                        match checked {
                            Err(not_until) => {
                                let wait = not_until.wait_time_from(DefaultClock::default().now());
                                let mut e = ErrorFrame::new(ErrorCode::RateLimited, "too many frames; retry later")
                                    .for_client(decoded.as_ref().ok().and_then(|f| f.client_id().cloned()));
                                e.retry_after_ms = Some(wait.as_millis().max(1) as u64);
                                out.push(S::Out::from(e));
                            }
                            Ok(()) => match decoded {
                                // Boxed: the handler's state lives on the heap only while a frame is handled,
                                // so an idle connection does not carry it.
                                Ok(frame) => {
                                    let client_id = frame.client_id().cloned();
                                    let from = out.len();
                                    Box::pin(session.on_frame(frame, &mut out)).await;
                                    close = answered(&mut out[from..], client_id);
                                }
                                Err(e) => out.push(S::Out::from(e.into())),
                            },
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    last_seen = Instant::now();
                    out.push(S::Out::from(ErrorFrame::new(ErrorCode::Malformed, "binary frames are not accepted; send JSON text")));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => last_seen = Instant::now(),
            },
            signal = mailbox.recv() => {
                if let Some(signal) = signal {
                    Box::pin(session.on_signal(signal, &mut out)).await;
                    // Take what else is already queued, so a busy connection writes one batch
                    // and flushes once instead of a syscall per frame.
                    for _ in 0..BATCH {
                        match mailbox.try_recv() {
                            Some(signal) => Box::pin(session.on_signal(signal, &mut out)).await,
                            None => break,
                        }
                    }
                }
            }
            _ = sleep_until(session.wakeup()) => {
                Box::pin(session.on_wakeup(&mut out)).await;
            }
            _ = ping.tick() => {
                Box::pin(session.check()).await;
                if last_seen.elapsed() > limits.idle_timeout {
                    close = Some((protocol::CLOSE_POLICY, "idle timeout"));
                } else if !matches!(
                    tokio::time::timeout(limits.idle_timeout, socket.send(Message::Ping(Default::default()))).await,
                    Ok(Ok(()))
                ) {
                    break;
                }
            }
        }
        if mailbox.lagged.swap(false, Ordering::AcqRel) {
            app.metrics.resyncs.inc();
            Box::pin(catch_up(session, &mut mailbox, &mut out)).await;
            Box::pin(session.check()).await;
        }
        if close.is_none() {
            close = session.closing();
        }
        if !out.is_empty() {
            // Bounded like the peer's silence: a client that keeps its connection open but
            // stops reading fills the socket buffers, and an unbounded write would hold this
            // task (its pings and idle check included) forever. It resumes on a new socket.
            let written = tokio::time::timeout(limits.idle_timeout, async {
                for frame in out.drain(..) {
                    if let Some(e) = frame.error() {
                        app.metrics.refused(e.code);
                    }
                    let text = protocol::encode(&frame);
                    socket.feed(Message::Text(text.into())).await?;
                }
                socket.flush().await
            })
            .await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::debug!(
                        "peer took no frames within the idle timeout; dropping the socket"
                    );
                    break;
                }
            }
        }
        if let Some((code, reason)) = close {
            let _ = tokio::time::timeout(
                limits.idle_timeout,
                socket.send(Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                }))),
            )
            .await;
            break;
        }
    }
}

/// Owns a connection's session and makes it leave the hub when dropped: at the end of
/// [`run`], and also when a handler panicked and the task unwinds. Without it a crashed agent
/// connection stayed in the hub, "online" and assigned chats forever.
pub struct Leave<S: Session>(pub S);

impl<S: Session> Drop for Leave<S> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Whether a socket read failed because the message was over tungstenite's size cap: found by
/// its type (`tungstenite::Error::Capacity`) in the error's sources, not by its text.
fn over_capacity(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(error) = source {
        if let Some(t) = error.downcast_ref::<tungstenite::Error>() {
            return matches!(t, tungstenite::Error::Capacity(_));
        }
        source = error.source();
    }
    false
}

/// What every answer to one frame gets, whichever handler wrote it: its errors name the
/// frame's `client_id` (PROTOCOL.md §6), and an `unsupported_version` (§9) or
/// `identity_required` (§15) answer closes the socket after it is sent. Returns the close, if any.
fn answered<F: ServerFrame>(
    answers: &mut [F],
    client_id: Option<protocol::ClientId>,
) -> Option<(u16, &'static str)> {
    let mut close = None;
    for answer in answers {
        if let Some(e) = answer.error_mut() {
            if e.client_id.is_none() {
                e.client_id.clone_from(&client_id);
            }
            if e.code == ErrorCode::UnsupportedVersion {
                close = Some((protocol::CLOSE_POLICY, "unsupported protocol version"));
            }
            if e.code == ErrorCode::IdentityRequired {
                close = Some((protocol::CLOSE_POLICY, "identity required"));
            }
        }
    }
    close
}

/// A lagged connection's way back: first takes every signal still queued, then re-reads from
/// the store, then handles the taken signals the resync does not cover, in order.
///
/// Why take them first: they were published before the re-read, so it already holds what they
/// say. Handled after it they would only repeat it (an agent's list going back to an older
/// summary for a moment), and one batch at a time: measured with an agent that stopped reading
/// for 5 s at 5,000 msg/s, the queue stayed full through 37–58 back-to-back resyncs, each
/// re-reading every open conversation (BENCHMARKS.md). Taking them frees the queue at once, so
/// one resync is enough.
async fn catch_up<S: Session>(session: &mut S, mailbox: &mut Mailbox, out: &mut Vec<S::Out>) {
    let mut kept = Vec::new();
    while let Some(signal) = mailbox.try_recv() {
        if !session.resync_covers(&signal) {
            kept.push(signal);
        }
    }
    session.resync(out).await;
    for signal in kept {
        Box::pin(session.on_signal(signal, out)).await;
    }
}

/// Per-conversation delivery position of one connection: makes every client see each event once,
/// in seq order, with no gap, even when hub signals arrive out of order or were dropped.
#[derive(Default)]
pub struct Cursor {
    delivered: HashMap<ConversationId, Seq>,
}

impl Cursor {
    /// Starts tracking a conversation from `seq` (what the client already holds).
    pub fn track(&mut self, conversation: &ConversationId, seq: Seq) {
        self.delivered.insert(conversation.clone(), seq);
    }

    /// Whether a conversation is tracked.
    pub fn tracks(&self, conversation: &ConversationId) -> bool {
        self.delivered.contains_key(conversation)
    }

    /// The events to send for a signalled event: none if already delivered, it alone if next,
    /// else everything missing from the store up to and including it.
    pub async fn deliver(
        &mut self,
        store: &dyn Store,
        event: Arc<Event>,
    ) -> StoreResult<Vec<Event>> {
        let Some(&have) = self.delivered.get(&event.conversation_id) else {
            return Ok(Vec::new());
        };
        if event.seq <= have {
            return Ok(Vec::new());
        }
        if event.seq == have + 1 {
            self.delivered
                .insert(event.conversation_id.clone(), event.seq);
            return Ok(vec![(*event).clone()]);
        }
        self.catch_up(store, &event.conversation_id).await
    }

    /// Everything stored after what was delivered, for one conversation.
    pub async fn catch_up(
        &mut self,
        store: &dyn Store,
        conversation: &ConversationId,
    ) -> StoreResult<Vec<Event>> {
        let Some(&have) = self.delivered.get(conversation) else {
            return Ok(Vec::new());
        };
        let events = store.events_after(conversation, have, REPLAY_LIMIT).await?;
        if let Some(last) = events.last() {
            self.delivered.insert(conversation.clone(), last.seq);
        }
        Ok(events)
    }

    /// Everything stored after what was delivered, for every tracked conversation, in one read
    /// of the store; grouped by conversation, in seq order within one.
    pub async fn catch_up_all(&mut self, store: &dyn Store) -> StoreResult<Vec<Event>> {
        let positions: Vec<(ConversationId, Seq)> = self
            .delivered
            .iter()
            .map(|(id, seq)| (id.clone(), *seq))
            .collect();
        let events = store.events_after_each(&positions, REPLAY_LIMIT).await?;
        for event in &events {
            // Each conversation's events come oldest first, so the last one written stays.
            self.delivered
                .insert(event.conversation_id.clone(), event.seq);
        }
        Ok(events)
    }

    /// Every tracked conversation, borrowed (for leaving the hub).
    pub fn tracked(&self) -> impl Iterator<Item = &ConversationId> {
        self.delivered.keys()
    }
}

/// Most events replayed in one go. A conversation with more is replayed in several rounds
/// (the next signal or resync continues from the new position).
pub const REPLAY_LIMIT: i64 = 10_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Hub;
    use protocol::{Author, EventBody, ToVisitor, VisitorFrame};

    /// A session that writes down what it was asked to do, in order.
    #[derive(Default)]
    struct Recorder {
        log: Vec<String>,
    }

    impl Session for Recorder {
        type In = VisitorFrame;
        type Out = ToVisitor;

        async fn on_frame(&mut self, _frame: VisitorFrame, _out: &mut Vec<ToVisitor>) {}

        async fn on_signal(&mut self, signal: Signal, _out: &mut Vec<ToVisitor>) {
            self.log.push(match signal {
                Signal::Event(e) => format!("event {}", e.seq),
                Signal::Typing(_) => "typing".to_owned(),
                _ => "other".to_owned(),
            });
        }

        async fn resync(&mut self, _out: &mut Vec<ToVisitor>) {
            self.log.push("resync".to_owned());
        }

        fn resync_covers(&self, signal: &Signal) -> bool {
            matches!(signal, Signal::Event(_))
        }

        fn finish(&mut self) {}
    }

    /// An agent connection whose frame handler panics.
    struct Panicky {
        hub: Arc<Hub>,
        inbox: crate::hub::Inbox,
    }

    impl Session for Panicky {
        type In = VisitorFrame;
        type Out = ToVisitor;

        async fn on_frame(&mut self, _frame: VisitorFrame, _out: &mut Vec<ToVisitor>) {
            panic!("a handler bug");
        }

        async fn on_signal(&mut self, _signal: Signal, _out: &mut Vec<ToVisitor>) {}

        async fn resync(&mut self, _out: &mut Vec<ToVisitor>) {}

        fn resync_covers(&self, _signal: &Signal) -> bool {
            false
        }

        fn finish(&mut self) {
            self.hub.leave(&self.inbox, []);
        }
    }

    #[tokio::test]
    async fn a_panicking_connection_leaves_no_ghost() {
        let hub = Hub::new();
        let mailbox = hub.agent_mailbox();
        let agent = protocol::AgentInfo {
            id: "a1".into(),
            username: "mina".into(),
            display_name: "Mina".into(),
        };
        hub.join_agent(&mailbox.inbox, agent);
        assert_eq!(hub.agents_online().len(), 1, "online while connected");
        let session = Panicky {
            hub: hub.clone(),
            inbox: mailbox.inbox.clone(),
        };
        // As in `run`: the session lives in a `Leave` for the whole connection task.
        let task = tokio::spawn(async move {
            let mut leave = Leave(session);
            let frame = VisitorFrame::Typing { active: true };
            leave.0.on_frame(frame, &mut Vec::new()).await;
        });
        assert!(
            task.await.is_err_and(|e| e.is_panic()),
            "the handler panicked"
        );
        assert!(
            hub.agents_online().is_empty(),
            "the panicked connection left the hub"
        );
    }

    fn event(seq: Seq) -> Arc<Event> {
        Arc::new(Event {
            conversation_id: ConversationId::from("c1"),
            seq,
            at: 0,
            author: Author::system(),
            body: EventBody::Joined,
        })
    }

    #[tokio::test]
    async fn a_lagged_connection_drops_what_its_resync_covers_and_keeps_the_rest_in_order() {
        let hub = Hub::new();
        let mut mailbox = hub.mailbox();
        let other = hub.mailbox();
        let c1 = ConversationId::from("c1");
        hub.subscribe(&c1, &mailbox.inbox);
        hub.publish_event(event(1));
        hub.publish_typing(&other.inbox, &c1, Author::system(), true);
        hub.publish_event(event(2));
        hub.publish_typing(&other.inbox, &c1, Author::system(), false);
        hub.publish_event(event(3));

        let mut session = Recorder::default();
        let mut out = Vec::new();
        catch_up(&mut session, &mut mailbox, &mut out).await;

        assert_eq!(
            session.log,
            ["resync", "typing", "typing"],
            "queued events are covered by the re-read; typing is not, and comes after it"
        );
        assert!(
            mailbox.try_recv().is_none(),
            "the queue is empty again, so new signals fit"
        );
    }
}

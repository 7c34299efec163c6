//! One conformance suite for every `Store` engine: each case in [`cases`] is written once against
//! `Arc<dyn Store>` and runs twice, as `<case>::sqlite` (a file in a temp dir) and
//! `<case>::postgres` (a fresh database per test, see `parley_tests::pg` for why a database
//! and not a schema). If PostgreSQL is not reachable the `postgres` tests FAIL, saying so.
//!
//! At the end, the relay itself runs once on PostgreSQL end to end (visitor send → ack → agent
//! sees it), and an unknown database URL is refused.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;
use parley_tests::pg::{self, TestDatabase};
use parley_tests::{AgentClient, TestRelay, VisitorClient, AGENTS};
use relay_server::store::{self, Store};

/// A case's future, boxed so one runner can take any case.
type CaseFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Runs a case on its own task so a failed `assert!` (a panic) still lets the runner close the
/// store before the failure is passed on (a PostgreSQL database goes with its guard anyway).
async fn run_case(store: Arc<dyn Store>, case: fn(Arc<dyn Store>) -> CaseFuture) -> CaseOutcome {
    let outcome = tokio::spawn(case(store.clone())).await;
    store.close().await;
    outcome
}

type CaseOutcome = Result<anyhow::Result<()>, tokio::task::JoinError>;

/// The case's result, re-raising its panic if it had one.
fn finish(outcome: CaseOutcome) -> anyhow::Result<()> {
    match outcome {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(e.into()),
    }
}

/// Runs `case` on a new SQLite file.
async fn on_sqlite(case: fn(Arc<dyn Store>) -> CaseFuture) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("parley.db").display());
    let store = store::connect(&url).await?;
    finish(run_case(store, case).await)
}

/// Runs `case` on a new PostgreSQL database, dropped afterwards whatever happened (the guard's
/// `Drop` also runs while the case's panic is passed on).
async fn on_postgres(case: fn(Arc<dyn Store>) -> CaseFuture) -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let store = store::connect(db.url())
        .await
        .map_err(|e| e.context("PgStore::connect"))?;
    finish(run_case(store, case).await)
}

/// Declares, for every case name, a module with a `sqlite` and a `postgres` test.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() -> anyhow::Result<()> {
                super::on_sqlite(|s| Box::pin(super::cases::$case(s))).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() -> anyhow::Result<()> {
                super::on_postgres(|s| Box::pin(super::cases::$case(s))).await
            }
        }
    )*};
}

conformance!(
    seq_counts_up_from_one,
    repeated_client_id_returns_the_original,
    same_client_id_from_another_author_is_new,
    concurrent_appends_are_gap_free,
    concurrent_duplicates_store_one,
    refusals_in_a_burst_leave_the_others_stored,
    a_burst_over_many_conversations_keeps_each_in_order,
    takes_in_a_burst_assign_each_conversation_once,
    concurrent_opens_make_one_conversation,
    assign_effect,
    close_effect,
    events_after_pages,
    events_after_each_reads_many_conversations_at_once,
    sessions_expire,
    visitor_by_token_is_site_scoped,
    identities_follow_the_person_across_browsers,
    canned_replies_round_trip,
    labels_round_trip,
    open_conversations_newest_first,
    open_and_closed_lists_page_by_cursor,
    disabled_agents_have_no_sessions,
    lists_hold_only_the_sites_asked_for,
    console_agents_are_created_changed_and_audited,
    the_last_enabled_admin_stays,
    update_context_round_trip,
    upsert_agent_updates,
    knowledge_gaps_round_trip,
    message_sentiment_round_trips,
    rating_a_closed_conversation,
    agent_ratings_per_agent,
    queue_assigns_least_busy_then_round_robin,
    queue_state_positions_and_waits,
    transfer_and_requeue_effects,
    concurrent_assignments_respect_capacity,
    admin_flag_round_trip,
    mark_offline_sets_email_and_clears_bot,
    site_settings_round_trip,
    visitor_data_holds_everything_of_one_visitor,
    erasing_a_visitor_leaves_nothing_and_is_audited,
    expire_closed_takes_old_closed_conversations_oldest_first,
    retention_pass_is_bounded_and_per_site,
    retention_leaves_no_visitor_row_without_conversations,
);

/// The cases: each gets a fresh, empty store.
mod cases {
    use std::sync::Arc;
    use std::time::Duration;

    use anyhow::Context as _;
    use protocol::{
        AgentInfo, Author, ClientId, ConversationId, ConversationStatus, EventBody, PageContext,
        Role, Seq, Viewport,
    };
    use relay_server::store::{
        now_ms, AgentAudit, AgentChange, AgentRating, Capacity, ConversationRecord, Effect, Gap,
        GapKind, Managed, NewAgent, NewEvent, SiteSettingsRecord, Store, StoreError, VisitorRecord,
    };

    /// Tasks that append at once in the concurrency cases.
    const TASKS: u64 = 8;
    /// Appends per task.
    const PER_TASK: u64 = 50;

    fn context(url: &str) -> PageContext {
        PageContext {
            url: url.into(),
            title: "Shoes".into(),
            language: "ko-KR".into(),
            ..Default::default()
        }
    }

    /// A new visitor of `demo` with an open conversation.
    pub async fn chat(store: &dyn Store) -> anyhow::Result<(VisitorRecord, ConversationRecord)> {
        let visitor = store
            .create_visitor("demo", &relay_server::store::new_id())
            .await?;
        let (conversation, created) = store
            .open_conversation("demo", &visitor.id, &context("https://shop.example/"))
            .await?;
        assert!(created, "a new visitor's conversation is new");
        Ok((visitor, conversation))
    }

    pub fn visitor_author(v: &VisitorRecord) -> Author {
        Author {
            role: Role::Visitor,
            id: Some(v.id.clone()),
            name: None,
        }
    }

    fn agent_author(id: &str) -> Author {
        Author {
            role: Role::Agent,
            id: Some(id.into()),
            name: Some("Mina".into()),
        }
    }

    pub fn message(author: Author, client_id: Option<&str>, text: &str) -> NewEvent {
        NewEvent {
            author,
            body: EventBody::message(text, client_id.map(ClientId::from)),
            client_id: client_id.map(ClientId::from),
            effect: Effect::None,
        }
    }

    async fn seqs(store: &dyn Store, id: &ConversationId) -> anyhow::Result<Vec<Seq>> {
        Ok(store
            .events_after(id, 0, 10_000)
            .await?
            .iter()
            .map(|e| e.seq)
            .collect())
    }

    pub async fn seq_counts_up_from_one(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let (v, c) = chat(&*store).await?;
        assert_eq!(c.last_seq, 0, "a new conversation has no events");
        for i in 1..=5u64 {
            let a = store
                .append(
                    &c.id,
                    message(
                        visitor_author(&v),
                        Some(&format!("m{i}")),
                        &format!("hi {i}"),
                    ),
                )
                .await?;
            assert!(!a.duplicate);
            assert_eq!(a.event.seq, i, "seq strictly +1 from 1");
            assert_eq!(a.conversation.last_seq, i);
            assert_eq!(a.conversation.preview.as_deref(), Some(&*format!("hi {i}")));
        }
        let events = store.events_after(&c.id, 0, 100).await?;
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(events[2].message_text(), Some("hi 3"));
        assert_eq!(events[2].author, visitor_author(&v));
        assert_eq!(events[2].conversation_id, c.id);
        Ok(())
    }

    pub async fn repeated_client_id_returns_the_original(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        let (v, c) = chat(&*store).await?;
        let first = store
            .append(&c.id, message(visitor_author(&v), Some("c1"), "hello"))
            .await?;
        let again = store
            .append(
                &c.id,
                message(visitor_author(&v), Some("c1"), "hello, edited"),
            )
            .await?;
        assert!(again.duplicate, "a repeated client id is a duplicate");
        assert_eq!(again.event, first.event, "the original event comes back");
        assert_eq!(again.conversation.last_seq, 1, "nothing new was stored");
        assert_eq!(seqs(&*store, &c.id).await?, [1]);
        let next = store
            .append(&c.id, message(visitor_author(&v), Some("c2"), "next"))
            .await?;
        assert_eq!(next.event.seq, 2, "the repeat used no seq");
        Ok(())
    }

    pub async fn same_client_id_from_another_author_is_new(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        let (v, c) = chat(&*store).await?;
        let agent = store.upsert_agent("mina", "Mina", "$argon2id$x").await?;
        let a = store
            .append(
                &c.id,
                message(visitor_author(&v), Some("c1"), "from visitor"),
            )
            .await?;
        let b = store
            .append(
                &c.id,
                message(agent_author(&agent.id), Some("c1"), "from agent"),
            )
            .await?;
        assert!(
            !a.duplicate && !b.duplicate,
            "different authors, different messages"
        );
        assert_eq!((a.event.seq, b.event.seq), (1, 2));
        assert_eq!(seqs(&*store, &c.id).await?, [1, 2]);
        Ok(())
    }

    pub async fn concurrent_appends_are_gap_free(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let (v, c) = chat(&*store).await?;
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let (store, v, id) = (store.clone(), v.clone(), c.id.clone());
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..PER_TASK {
                    let a = store
                        .append(
                            &id,
                            message(visitor_author(&v), Some(&format!("t{t}-{i}")), "x"),
                        )
                        .await?;
                    anyhow::ensure!(!a.duplicate, "t{t}-{i} is not a repeat");
                    got.push(a.event.seq);
                }
                anyhow::Ok(got)
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            let got = task.await??;
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "one task's appends are ordered: {got:?}"
            );
            all.extend(got);
        }
        all.sort_unstable();
        let expected: Vec<Seq> = (1..=TASKS * PER_TASK).collect();
        assert_eq!(
            all,
            expected,
            "acked seqs are exactly 1..={}",
            TASKS * PER_TASK
        );
        assert_eq!(
            seqs(&*store, &c.id).await?,
            expected,
            "stored seqs, no gap or twin"
        );
        let conv = store.conversation(&c.id).await?.context("conversation")?;
        assert_eq!(conv.last_seq, TASKS * PER_TASK);
        Ok(())
    }

    pub async fn concurrent_duplicates_store_one(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let (v, c) = chat(&*store).await?;
        for round in 0..5u64 {
            let mut tasks = Vec::new();
            for _ in 0..TASKS {
                let (store, v, id) = (store.clone(), v.clone(), c.id.clone());
                let client_id = format!("dup-{round}");
                tasks.push(tokio::spawn(async move {
                    store
                        .append(&id, message(visitor_author(&v), Some(&client_id), "same"))
                        .await
                }));
            }
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await??);
            }
            let fresh = results.iter().filter(|a| !a.duplicate).count();
            assert_eq!(
                fresh, 1,
                "round {round}: exactly one append stores the event"
            );
            assert!(
                results.iter().all(|a| a.event == results[0].event),
                "round {round}: every twin gets the one stored event"
            );
            assert_eq!(results[0].event.seq, round + 1);
        }
        assert_eq!(seqs(&*store, &c.id).await?, [1, 2, 3, 4, 5]);
        Ok(())
    }

    /// Appends that arrive together may be stored together (SQLite's group commit): a refused
    /// one (closed conversation, bot silenced, unknown conversation) or a repeat among them must
    /// not fail, shift or lose the others.
    pub async fn refusals_in_a_burst_leave_the_others_stored(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        let (v, open) = chat(&*store).await?;
        let (closed_v, closed) = chat(&*store).await?;
        store
            .append(
                &closed.id,
                NewEvent {
                    effect: Effect::Close,
                    ..message(visitor_author(&closed_v), None, "bye")
                },
            )
            .await?;
        let bot_v = store
            .create_visitor("demo", &relay_server::store::new_id())
            .await?;
        let (silenced, _) = store
            .open_conversation_as(
                "demo",
                &bot_v.id,
                &context("https://shop.example/"),
                true,
                true,
            )
            .await?;
        store
            .append(
                &silenced.id,
                NewEvent {
                    effect: Effect::Handoff,
                    ..message(visitor_author(&bot_v), None, "a person please")
                },
            )
            .await?;
        store
            .append(
                &open.id,
                message(visitor_author(&v), Some("first"), "first"),
            )
            .await?;

        let mut tasks = Vec::new();
        for round in 0..PER_TASK {
            for kind in 0..5u64 {
                let store = store.clone();
                let (v, closed_v, bot_v) = (v.clone(), closed_v.clone(), bot_v.clone());
                let (open, closed, silenced) =
                    (open.id.clone(), closed.id.clone(), silenced.id.clone());
                tasks.push(tokio::spawn(async move {
                    let nowhere = ConversationId("no-such-conversation".into());
                    let outcome = match kind {
                        0 => store.append(
                            &open,
                            message(visitor_author(&v), Some(&format!("m{round}")), "fresh"),
                        ),
                        1 => {
                            store.append(&open, message(visitor_author(&v), Some("first"), "again"))
                        }
                        2 => {
                            store.append(&closed, message(visitor_author(&closed_v), None, "late"))
                        }
                        3 => store.append(
                            &silenced,
                            NewEvent {
                                effect: Effect::BotReply,
                                ..message(visitor_author(&bot_v), None, "bot, too late")
                            },
                        ),
                        _ => store.append(&nowhere, message(visitor_author(&v), None, "nowhere")),
                    }
                    .await;
                    (kind, outcome)
                }));
            }
        }
        let mut fresh = Vec::new();
        for task in tasks {
            match task.await? {
                (0, Ok(a)) => {
                    assert!(!a.duplicate, "a new client id is stored");
                    fresh.push(a.event.seq);
                }
                (1, Ok(a)) => {
                    assert!(a.duplicate, "a repeat is answered, not stored");
                    assert_eq!(a.event.seq, 1, "with the original event");
                }
                (2, Err(StoreError::Closed)) => {}
                (3, Err(StoreError::Forbidden)) => {}
                (4, Err(StoreError::NotFound)) => {}
                (kind, other) => anyhow::bail!("append of kind {kind} gave {other:?}"),
            }
        }
        fresh.sort_unstable();
        let expected: Vec<Seq> = (2..=PER_TASK + 1).collect();
        assert_eq!(
            fresh, expected,
            "every fresh append got its own seq, none skipped"
        );
        assert_eq!(seqs(&*store, &open.id).await?, [vec![1], expected].concat());
        assert_eq!(
            seqs(&*store, &closed.id).await?,
            [1],
            "nothing after the close"
        );
        assert_eq!(
            seqs(&*store, &silenced.id).await?,
            [1],
            "the bot stayed silent"
        );
        Ok(())
    }

    /// Appends to many conversations at once, as a busy node makes them, stored together by both
    /// engines' group commits: each conversation's seqs run 1, 2, 3… with nothing skipped, each
    /// caller's appends keep their order, a repeated client id gets its original, and each answer
    /// carries the conversation as *that* event left it (seq and preview), not as the batch did.
    pub async fn a_burst_over_many_conversations_keeps_each_in_order(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        const CONVERSATIONS: usize = 5;
        // More callers than a PostgreSQL node runs group statements at once (8), so that
        // appends wait together and are grouped on both engines.
        const CALLERS: u64 = 32;
        const EACH: u64 = 20;
        let mut chats = Vec::new();
        for _ in 0..CONVERSATIONS {
            chats.push(chat(&*store).await?);
        }
        let chats = Arc::new(chats);
        let mut tasks = Vec::new();
        for t in 0..CALLERS {
            let (store, chats) = (store.clone(), chats.clone());
            tasks.push(tokio::spawn(async move {
                // (conversation, seq, text) of each fresh append, in the order they were made.
                let mut fresh = Vec::new();
                for i in 0..EACH {
                    // Tasks walk the conversations from different starts, so appends to one
                    // conversation from several tasks meet in the same batches.
                    let which = (t + i) as usize % CONVERSATIONS;
                    let (v, c) = &chats[which];
                    let text = format!("t{t} m{i}{}", "!".repeat((i % 3) as usize));
                    let client_id = format!("t{t}-{i}");
                    let a = store
                        .append(&c.id, message(visitor_author(v), Some(&client_id), &text))
                        .await?;
                    anyhow::ensure!(!a.duplicate, "{client_id} is new");
                    anyhow::ensure!(
                        a.conversation.last_seq == a.event.seq,
                        "{client_id}: the answer's conversation ends at its own event ({} vs {})",
                        a.conversation.last_seq,
                        a.event.seq
                    );
                    anyhow::ensure!(
                        a.conversation.preview.as_deref() == Some(text.as_str()),
                        "{client_id}: the answer's preview is its own text, got {:?}",
                        a.conversation.preview
                    );
                    // Every fifth append is sent again, as a client that missed its ack does.
                    if i % 5 == 4 {
                        let again = store
                            .append(&c.id, message(visitor_author(v), Some(&client_id), "again"))
                            .await?;
                        anyhow::ensure!(again.duplicate, "{client_id} sent again is a repeat");
                        anyhow::ensure!(
                            again.event.seq == a.event.seq
                                && again.event.message_text() == Some(text.as_str()),
                            "{client_id} sent again gets its original"
                        );
                    }
                    fresh.push((which, a.event.seq, text));
                }
                anyhow::Ok(fresh)
            }));
        }
        let mut by_conversation: Vec<Vec<(Seq, String)>> = vec![Vec::new(); CONVERSATIONS];
        for task in tasks {
            let fresh = task.await??;
            for which in 0..CONVERSATIONS {
                let mine: Vec<Seq> = fresh
                    .iter()
                    .filter(|(w, _, _)| *w == which)
                    .map(|(_, seq, _)| *seq)
                    .collect();
                assert!(
                    mine.windows(2).all(|w| w[0] < w[1]),
                    "one caller's appends to a conversation keep their order: {mine:?}"
                );
            }
            for (which, seq, text) in fresh {
                by_conversation[which].push((seq, text));
            }
        }
        assert!(
            store.group_commit().appends.get() > 0,
            "appends that waited together were stored together"
        );
        for (which, mut acked) in by_conversation.into_iter().enumerate() {
            acked.sort_unstable();
            let id = &chats[which].1.id;
            let stored = store.events_after(id, 0, 10_000).await?;
            let stored: Vec<(Seq, String)> = stored
                .iter()
                .map(|e| (e.seq, e.message_text().unwrap_or_default().to_owned()))
                .collect();
            assert_eq!(
                stored, acked,
                "conversation {which}: stored exactly what was acked, seqs 1..=n"
            );
            assert!(
                stored
                    .iter()
                    .map(|(seq, _)| *seq)
                    .eq(1..=stored.len() as Seq),
                "conversation {which}: no gap"
            );
            let conversation = store.conversation(id).await?.context("conversation")?;
            assert_eq!(conversation.last_seq, stored.len() as Seq);
            assert_eq!(
                conversation.preview.as_deref(),
                stored.last().map(|(_, text)| text.as_str()),
                "conversation {which}: the preview is the newest message"
            );
        }
        Ok(())
    }

    pub async fn concurrent_opens_make_one_conversation(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        for round in 0..5 {
            let visitor = store
                .create_visitor("demo", &relay_server::store::new_id())
                .await?;
            let mut tasks = Vec::new();
            for _ in 0..TASKS {
                let (store, visitor_id) = (store.clone(), visitor.id.clone());
                tasks.push(tokio::spawn(async move {
                    store
                        .open_conversation("demo", &visitor_id, &context("https://a/"))
                        .await
                }));
            }
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await??);
            }
            let created = results.iter().filter(|(_, created)| *created).count();
            assert_eq!(
                created, 1,
                "round {round}: one open creates, the rest find it"
            );
            assert!(
                results.iter().all(|(c, _)| c.id == results[0].0.id),
                "round {round}: everyone gets the same conversation"
            );

            // Once it is closed, the next open starts a new one.
            let id = results[0].0.id.clone();
            store
                .append(
                    &id,
                    NewEvent {
                        author: visitor_author(&visitor),
                        body: EventBody::Closed,
                        client_id: None,
                        effect: Effect::Close,
                    },
                )
                .await?;
            let (next, created) = store
                .open_conversation("demo", &visitor.id, &context("https://a/"))
                .await?;
            assert!(
                created && next.id != id,
                "a closed conversation is not reopened"
            );
            let latest = store
                .latest_conversation(&visitor.id)
                .await?
                .context("latest")?;
            assert_eq!(latest.id, next.id, "latest_conversation is the newest");
        }
        Ok(())
    }

    fn take(agent_id: &str) -> NewEvent {
        NewEvent {
            author: agent_author(agent_id),
            body: EventBody::Joined,
            client_id: None,
            effect: Effect::Assign(agent_id.into()),
        }
    }

    pub async fn assign_effect(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let (_, c) = chat(&*store).await?;
        assert_eq!(c.status, ConversationStatus::Open);
        assert_eq!(c.assignee_id, None);
        let mina = store.upsert_agent("mina", "Mina", "$argon2id$a").await?;
        let joon = store.upsert_agent("joon", "Joon", "$argon2id$b").await?;

        let a = store.append(&c.id, take(&mina.id)).await?;
        assert_eq!(a.conversation.status, ConversationStatus::Assigned);
        assert_eq!(a.conversation.assignee_id.as_deref(), Some(&*mina.id));
        assert_eq!(a.event.body, EventBody::Joined);

        let refused = store.append(&c.id, take(&joon.id)).await;
        assert!(
            matches!(refused, Err(StoreError::Forbidden)),
            "another agent cannot take it: {refused:?}"
        );
        let again = store.append(&c.id, take(&mina.id)).await?;
        assert_eq!(again.conversation.assignee_id.as_deref(), Some(&*mina.id));
        assert_eq!(
            seqs(&*store, &c.id).await?,
            [1, 2],
            "the refusal stored nothing"
        );
        let missing = store
            .append(&ConversationId("nope".into()), take(&mina.id))
            .await;
        assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
        Ok(())
    }

    /// Two agents take the same unassigned conversations at once, among the visitors'
    /// messages: a take may be grouped with the messages, but only one agent gets each
    /// conversation, the other is refused, and nothing else is lost or doubled. (A take of a
    /// conversation nobody has is no plain message: it must assign, not just be stored.)
    pub async fn takes_in_a_burst_assign_each_conversation_once(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        // Five appends each, far more than a PostgreSQL node's 8 group statements at once.
        const CONVERSATIONS: usize = 32;
        let mina = store.upsert_agent("mina", "Mina", "$argon2id$a").await?;
        let joon = store.upsert_agent("joon", "Joon", "$argon2id$b").await?;
        let mut chats = Vec::new();
        for _ in 0..CONVERSATIONS {
            chats.push(chat(&*store).await?);
        }
        // All start at once, so most wait together and share a batch.
        let start = Arc::new(tokio::sync::Barrier::new(CONVERSATIONS * 5));
        let mut tasks = Vec::new();
        for (v, c) in &chats {
            for k in 0..5 {
                let (store, v, id) = (store.clone(), v.clone(), c.id.clone());
                let (mina, joon, start) = (mina.id.clone(), joon.id.clone(), start.clone());
                tasks.push(tokio::spawn(async move {
                    let new = match k {
                        0 => take(&mina),
                        1 => take(&joon),
                        _ => message(visitor_author(&v), Some(&format!("m{k}")), "hello"),
                    };
                    start.wait().await;
                    (k, store.append(&id, new).await)
                }));
            }
        }
        let mut takes = 0;
        for task in tasks {
            match task.await? {
                (0 | 1, Ok(a)) => {
                    assert_eq!(a.event.body, EventBody::Joined);
                    takes += 1;
                }
                (0 | 1, Err(StoreError::Forbidden)) => {}
                (_, Ok(a)) => assert!(!a.duplicate),
                (k, other) => anyhow::bail!("append {k} gave {other:?}"),
            }
        }
        assert_eq!(takes, CONVERSATIONS, "one take per conversation succeeded");
        for (_, c) in &chats {
            let conversation = store.conversation(&c.id).await?.context("conversation")?;
            assert_eq!(conversation.status, ConversationStatus::Assigned);
            assert!(
                [&mina.id, &joon.id]
                    .contains(&&conversation.assignee_id.clone().unwrap_or_default()),
                "assigned to one of the two: {:?}",
                conversation.assignee_id
            );
            let events = store.events_after(&c.id, 0, 100).await?;
            let joined = events
                .iter()
                .filter(|e| e.body == EventBody::Joined)
                .count();
            assert_eq!(joined, 1, "one joined event: {events:?}");
            assert!(
                events.iter().map(|e| e.seq).eq(1..=4),
                "three messages and the take, no gap: {events:?}"
            );
        }
        Ok(())
    }

    pub async fn close_effect(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let (v, c) = chat(&*store).await?;
        let first = store
            .append(&c.id, message(visitor_author(&v), Some("c1"), "bye"))
            .await?;
        let closed = store
            .append(
                &c.id,
                NewEvent {
                    author: visitor_author(&v),
                    body: EventBody::Closed,
                    client_id: None,
                    effect: Effect::Close,
                },
            )
            .await?;
        assert_eq!(closed.conversation.status, ConversationStatus::Closed);
        assert_eq!(closed.event.seq, 2);
        let refused = store
            .append(&c.id, message(visitor_author(&v), Some("c2"), "hello?"))
            .await;
        assert!(matches!(refused, Err(StoreError::Closed)), "{refused:?}");
        // A resend of something stored before the close is still answered with the original.
        let resend = store
            .append(&c.id, message(visitor_author(&v), Some("c1"), "bye"))
            .await?;
        assert!(resend.duplicate);
        assert_eq!(resend.event, first.event);
        assert_eq!(seqs(&*store, &c.id).await?, [1, 2]);
        let stored = store.conversation(&c.id).await?.context("conversation")?;
        assert_eq!(stored.status, ConversationStatus::Closed);
        Ok(())
    }

    pub async fn events_after_pages(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let (v, c) = chat(&*store).await?;
        for i in 1..=25 {
            store
                .append(&c.id, message(visitor_author(&v), None, &format!("m{i}")))
                .await?;
        }
        let page = |after: Seq| {
            let (store, id) = (store.clone(), c.id.clone());
            async move {
                anyhow::Ok(
                    store
                        .events_after(&id, after, 10)
                        .await?
                        .iter()
                        .map(|e| e.seq)
                        .collect::<Vec<_>>(),
                )
            }
        };
        assert_eq!(page(0).await?, (1..=10).collect::<Vec<_>>());
        assert_eq!(page(10).await?, (11..=20).collect::<Vec<_>>());
        assert_eq!(page(20).await?, (21..=25).collect::<Vec<_>>());
        assert_eq!(page(25).await?, Vec::<Seq>::new());
        assert_eq!(page(7).await?, (8..=17).collect::<Vec<_>>());
        let none = store
            .events_after(&ConversationId("nope".into()), 0, 10)
            .await?;
        assert!(none.is_empty());
        Ok(())
    }

    /// A lagged connection's catch-up: each conversation from its own position, at most `limit`
    /// of each, in one read; an unknown conversation or one with nothing new gives nothing.
    pub async fn events_after_each_reads_many_conversations_at_once(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        let (va, a) = chat(&*store).await?;
        let (vb, b) = chat(&*store).await?;
        let (_, quiet) = chat(&*store).await?;
        for i in 0..5 {
            store
                .append(
                    &a.id,
                    message(visitor_author(&va), Some(&format!("a{i}")), "a"),
                )
                .await?;
        }
        for i in 0..3 {
            store
                .append(
                    &b.id,
                    message(visitor_author(&vb), Some(&format!("b{i}")), "b"),
                )
                .await?;
        }
        let nowhere = ConversationId("no-such-conversation".into());
        let positions = [
            (a.id.clone(), 2),
            (b.id.clone(), 0),
            (quiet.id.clone(), 0),
            (nowhere, 0),
        ];
        let of = |events: &[protocol::Event], id: &ConversationId| -> Vec<Seq> {
            events
                .iter()
                .filter(|e| &e.conversation_id == id)
                .map(|e| e.seq)
                .collect()
        };

        let all = store.events_after_each(&positions, 100).await?;
        assert_eq!(of(&all, &a.id), [3, 4, 5], "a from its own position");
        assert_eq!(of(&all, &b.id), [1, 2, 3], "b from the start");
        assert_eq!(all.len(), 6, "nothing else: {all:?}");
        let a_at = all.iter().position(|e| e.conversation_id == a.id);
        assert!(
            a_at.is_some_and(|first| all[first..first + 3]
                .iter()
                .all(|e| e.conversation_id == a.id)),
            "one conversation's events come together: {all:?}"
        );

        let capped = store.events_after_each(&positions, 2).await?;
        assert_eq!(of(&capped, &a.id), [3, 4], "at most the limit of each");
        assert_eq!(of(&capped, &b.id), [1, 2]);

        assert!(store.events_after_each(&[], 100).await?.is_empty());
        Ok(())
    }

    pub async fn sessions_expire(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let agent = store.upsert_agent("mina", "Mina", "$argon2id$a").await?;
        let now = now_ms();
        store
            .create_session("tok-hash", &agent.id, now + 60_000)
            .await?;
        let live = store.session_agent("tok-hash", now).await?;
        assert_eq!(live.map(|a| a.id), Some(agent.id.clone()));
        assert!(
            store
                .session_agent("tok-hash", now + 60_000)
                .await?
                .is_none(),
            "a session is dead at its expiry time"
        );
        assert!(store
            .session_agent("tok-hash", now + 120_000)
            .await?
            .is_none());
        assert!(store.session_agent("other", now).await?.is_none());
        store.delete_session("tok-hash").await?;
        assert!(store.session_agent("tok-hash", now).await?.is_none());
        Ok(())
    }

    pub async fn visitor_by_token_is_site_scoped(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let v = store.create_visitor("demo", "hash-1").await?;
        assert_eq!(v.site, "demo");
        let found = store.visitor_by_token("demo", "hash-1").await?;
        assert_eq!(found.map(|f| f.id), Some(v.id));
        assert!(
            store.visitor_by_token("other", "hash-1").await?.is_none(),
            "a token is only good on its own site"
        );
        assert!(store.visitor_by_token("demo", "hash-2").await?.is_none());
        Ok(())
    }

    pub async fn identities_follow_the_person_across_browsers(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        use relay_server::identity::Verified;
        use relay_server::store::Identified;
        let ada = |name: &str| Verified {
            user_id: "ada".into(),
            name: Some(name.into()),
            ..Verified::default()
        };
        // A first sign-in: the browser's visitor becomes the person.
        let laptop = store.create_visitor("demo", "laptop").await?;
        assert_eq!(laptop.user_id, None);
        let (v, how) = store
            .identify_visitor("demo", Some(&laptop.id), "laptop", &ada("Ada"))
            .await?;
        assert_eq!(
            (v.id.as_str(), how),
            (laptop.id.as_str(), Identified::Claimed)
        );
        let (_, how) = store
            .identify_visitor("demo", Some(&laptop.id), "laptop", &ada("Ada Park"))
            .await?;
        assert_eq!(how, Identified::Same);
        let found = store
            .visitor_by_token("demo", "laptop")
            .await?
            .context("found")?;
        assert_eq!(found.user_id.as_deref(), Some("ada"));
        // Another browser with an anonymous conversation: merged, the conversation moves.
        let phone = store.create_visitor("demo", "phone").await?;
        let (c, _) = store
            .open_conversation("demo", &phone.id, &context("https://shop.example/"))
            .await?;
        let (v, how) = store
            .identify_visitor("demo", Some(&phone.id), "phone", &ada("Ada Park"))
            .await?;
        assert_eq!(
            (v.id.as_str(), how),
            (laptop.id.as_str(), Identified::Merged)
        );
        assert_eq!(
            store.visitor_by_token("demo", "phone").await?.map(|v| v.id),
            Some(laptop.id.clone()),
            "the phone's token now leads to the person"
        );
        assert!(
            store.visitor_profile(&phone.id).await?.is_none(),
            "merged away"
        );
        // A browser never seen, of a known person: its new token leads to them.
        let (v, how) = store
            .identify_visitor("demo", None, "tablet", &ada("Ada Park"))
            .await?;
        assert_eq!(
            (v.id.as_str(), how),
            (laptop.id.as_str(), Identified::Added)
        );
        assert_eq!(
            store
                .visitor_by_token("demo", "tablet")
                .await?
                .map(|v| v.id),
            Some(laptop.id.clone())
        );
        // A new person on a browser never seen: a visitor of their own.
        let (cy, how) = store
            .identify_visitor(
                "demo",
                None,
                "cy-browser",
                &Verified {
                    user_id: "cy".into(),
                    ..Verified::default()
                },
            )
            .await?;
        assert_eq!(how, Identified::Claimed);
        assert_eq!(
            store
                .visitor_by_token("demo", "cy-browser")
                .await?
                .map(|v| v.id),
            Some(cy.id.clone())
        );
        let profile = store
            .visitor_profile(&laptop.id)
            .await?
            .context("profile")?;
        assert_eq!(profile.conversations.len(), 1);
        assert_eq!(profile.conversations[0].id, c.id);
        assert_eq!(profile.conversations[0].visitor_id, laptop.id);
        let who = profile.identity.context("verified")?;
        assert_eq!(who.name.as_deref(), Some("Ada Park"));
        // A shared browser: someone else signs in on the laptop; Ada keeps her visitor.
        let bo = Verified {
            user_id: "bo".into(),
            ..Verified::default()
        };
        let (v, how) = store
            .identify_visitor("demo", Some(&laptop.id), "laptop", &bo)
            .await?;
        assert_eq!(how, Identified::Switched);
        assert_ne!(v.id, laptop.id);
        assert_eq!(
            store.visitor_by_token("demo", "phone").await?.map(|v| v.id),
            Some(laptop.id.clone()),
            "Ada's phone is still Ada's"
        );
        // Back to Ada on the laptop: the token follows the person again.
        let (v, how) = store
            .identify_visitor("demo", Some(&v.id), "laptop", &ada("Ada"))
            .await?;
        assert_eq!((v.id, how), (laptop.id.clone(), Identified::Switched));
        // Users are per site: the same user id on another site is another visitor.
        let other = store.create_visitor("other", "other-browser").await?;
        let (v, how) = store
            .identify_visitor("other", Some(&other.id), "other-browser", &ada("Ada"))
            .await?;
        assert_eq!((v.id, how), (other.id.clone(), Identified::Claimed));
        // A token's use is recorded.
        let before = store
            .visitor_by_token("other", "other-browser")
            .await?
            .context("token")?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        store.touch_visitor_token("other-browser").await?;
        let after = store
            .visitor_by_token("other", "other-browser")
            .await?
            .context("token")?;
        assert!(after.token_seen_at > before.token_seen_at);
        // Identifying a visitor that does not exist is refused, not invented.
        assert!(matches!(
            store
                .identify_visitor("demo", Some("no-such-visitor"), "x", &ada("Ada"))
                .await,
            Err(StoreError::NotFound)
        ));
        // Idle visitors without conversations expire with their tokens (Bo and Cy never chatted).
        let gone = store
            .expire_idle_visitors("demo", now_ms() + 1_000, 100)
            .await?;
        assert_eq!(gone, 2, "Bo's and Cy's visitors");
        assert!(store.visitor_by_token("demo", "laptop").await?.is_some());
        Ok(())
    }

    pub async fn labels_round_trip(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let (_, c) = chat(&*store).await?;
        assert!(c.labels.is_empty());
        let before = store.conversation(&c.id).await?.context("there")?;
        let labels = vec!["refund".to_owned(), "환불".to_owned()];
        let after = store.set_labels(&c.id, &labels).await?.context("there")?;
        assert_eq!(after.labels, labels);
        assert_eq!(
            after.updated_at, before.updated_at,
            "a label keeps the list order"
        );
        let listed = store.open_conversations(None, 100).await?;
        assert_eq!(
            listed
                .iter()
                .find(|x| x.id == c.id)
                .map(|x| x.labels.clone()),
            Some(labels)
        );
        let cleared = store.set_labels(&c.id, &[]).await?.context("there")?;
        assert!(cleared.labels.is_empty());
        assert!(store
            .set_labels(&ConversationId("no-such".into()), &["x".into()])
            .await?
            .is_none());
        Ok(())
    }

    pub async fn canned_replies_round_trip(store: Arc<dyn Store>) -> anyhow::Result<()> {
        use relay_server::store::CannedReply;
        let mina = store.upsert_agent("mina", "Mina", "x").await?;
        let joon = store.upsert_agent("joon", "Joon", "x").await?;
        let reply =
            |id: &str, site: Option<&str>, owner: Option<&str>, shortcut: &str| CannedReply {
                id: id.into(),
                site: site.map(str::to_owned),
                owner_id: owner.map(str::to_owned),
                shortcut: shortcut.into(),
                text: format!("text of {id}"),
                updated_by: "mina".into(),
                updated_at: now_ms(),
            };
        store
            .save_canned(&reply("r1", None, None, "returns"))
            .await?;
        store
            .save_canned(&reply("r2", Some("demo"), None, "returns"))
            .await?;
        store
            .save_canned(&reply("r3", None, Some(&mina.id), "returns"))
            .await?;
        store
            .save_canned(&reply("r4", None, Some(&joon.id), "returns"))
            .await?;
        // The same owner, site and shortcut twice (NULL site and NULL owner included).
        for dup in [
            reply("d1", None, None, "returns"),
            reply("d2", Some("demo"), None, "returns"),
            reply("d3", None, Some(&joon.id), "returns"),
        ] {
            assert!(
                matches!(
                    store.save_canned(&dup).await,
                    Err(StoreError::ShortcutTaken)
                ),
                "{dup:?}"
            );
        }
        // Saving by id replaces.
        let mut edited = reply("r1", None, None, "refunds");
        edited.text = "Refunds take 5 days.".into();
        store.save_canned(&edited).await?;
        let all = store.canned_replies().await?;
        assert_eq!(all.len(), 4);
        assert!(all.contains(&edited));
        assert!(store.delete_canned("r4").await?);
        assert!(!store.delete_canned("r4").await?);
        assert_eq!(store.canned_replies().await?.len(), 3);
        Ok(())
    }

    pub async fn open_conversations_newest_first(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let mut ids = Vec::new();
        for i in 0..3 {
            let (v, c) = chat(&*store).await?;
            // updated_at has millisecond resolution: keep the changes apart.
            tokio::time::sleep(Duration::from_millis(5)).await;
            store
                .append(&c.id, message(visitor_author(&v), None, &format!("m{i}")))
                .await?;
            ids.push((v, c.id));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        store
            .append(&ids[0].1, message(visitor_author(&ids[0].0), None, "again"))
            .await?;
        let recent: Vec<ConversationId> = store
            .open_conversations(None, 10)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(
            recent,
            [ids[0].1.clone(), ids[2].1.clone(), ids[1].1.clone()],
            "newest-changed first"
        );
        assert_eq!(store.open_conversations(None, 2).await?.len(), 2, "limit");
        Ok(())
    }

    pub async fn open_and_closed_lists_page_by_cursor(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let (_, open) = chat(&*store).await?;
        let mut closed = Vec::new();
        for _ in 0..5 {
            let (v, c) = chat(&*store).await?;
            store
                .append(
                    &c.id,
                    NewEvent {
                        author: visitor_author(&v),
                        body: EventBody::Closed,
                        client_id: None,
                        effect: Effect::Close,
                    },
                )
                .await?;
            closed.push(c.id);
        }
        let listed: Vec<ConversationId> = store
            .open_conversations(None, 10)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(listed, [open.id], "only the open one");
        // Pages of two, by the (updated_at, id) cursor: every closed one once, newest first.
        let mut paged = Vec::new();
        let mut cursor: Option<(i64, String)> = None;
        loop {
            let page = store
                .closed_conversations(None, cursor.as_ref().map(|(at, id)| (*at, id.as_str())), 2)
                .await?;
            let Some(last) = page.last() else { break };
            cursor = Some((last.updated_at, last.id.0.clone()));
            paged.extend(page.into_iter().map(|c| c.id));
        }
        closed.reverse();
        assert_eq!(paged, closed);
        Ok(())
    }

    pub async fn disabled_agents_have_no_sessions(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let agent = store.upsert_agent("mina", "Mina", "hash").await?;
        store
            .create_session("s1", &agent.id, now_ms() + 60_000)
            .await?;
        assert!(store.session_agent("s1", now_ms()).await?.is_some());
        store.set_agent_disabled(&agent.id, true).await?;
        assert!(
            store.session_agent("s1", now_ms()).await?.is_none(),
            "ended"
        );
        store
            .create_session("s2", &agent.id, now_ms() + 60_000)
            .await?;
        assert!(
            store.session_agent("s2", now_ms()).await?.is_none(),
            "a disabled agent's session does not count"
        );
        let listed = store.agents().await?;
        assert!(listed.iter().any(|a| a.id == agent.id && a.disabled));
        // Listed in the config again: enabled, but the old sessions stay gone.
        let again = store.upsert_agent("mina", "Mina", "hash").await?;
        assert!(!again.disabled);
        assert!(store.session_agent("s1", now_ms()).await?.is_none());
        assert!(store.session_agent("s2", now_ms()).await?.is_some());
        assert_eq!(store.delete_agent_sessions(&agent.id).await?, 1);
        store.create_session("old", &agent.id, now_ms() - 1).await?;
        assert_eq!(store.purge_expired_sessions(now_ms()).await?, 1);
        Ok(())
    }

    pub async fn lists_hold_only_the_sites_asked_for(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let (_, demo) = chat(&*store).await?;
        let other = store
            .create_visitor("bank", &relay_server::store::new_id())
            .await?;
        let (bank, _) = store
            .open_conversation("bank", &other.id, &context("https://bank.example/"))
            .await?;
        let ids = |rows: Vec<ConversationRecord>| -> Vec<ConversationId> {
            rows.into_iter().map(|c| c.id).collect()
        };
        let demo_only = ["demo".to_owned()];
        assert_eq!(
            ids(store.open_conversations(Some(&demo_only), 10).await?),
            std::slice::from_ref(&demo.id)
        );
        let both = ["bank".to_owned(), "demo".to_owned()];
        assert_eq!(store.open_conversations(Some(&both), 10).await?.len(), 2);
        assert_eq!(store.open_conversations(None, 10).await?.len(), 2);
        assert!(store.open_conversations(Some(&[]), 10).await?.is_empty());
        for id in [&demo.id, &bank.id] {
            store
                .append(
                    id,
                    NewEvent {
                        author: Author {
                            role: Role::System,
                            id: None,
                            name: None,
                        },
                        body: EventBody::Closed,
                        client_id: None,
                        effect: Effect::Close,
                    },
                )
                .await?;
        }
        let bank_only = ["bank".to_owned()];
        assert_eq!(
            ids(store
                .closed_conversations(Some(&bank_only), None, 10)
                .await?),
            std::slice::from_ref(&bank.id)
        );
        assert_eq!(store.closed_conversations(None, None, 10).await?.len(), 2);
        Ok(())
    }

    fn audit(action: &'static str) -> AgentAudit {
        AgentAudit {
            actor: "boss".into(),
            action,
            detail: "{}".into(),
        }
    }

    pub async fn console_agents_are_created_changed_and_audited(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        let new = NewAgent {
            username: "joon".into(),
            display_name: "Joon".into(),
            password_hash: "$argon2id$a".into(),
            admin: false,
            sites: Some(vec!["demo".into()]),
            max_chats: Some(2),
        };
        let joon = store.create_agent(&new, &audit("agent_create")).await?;
        assert_eq!(joon.managed_by, Managed::Console);
        assert_eq!(joon.sites.as_deref(), Some(&["demo".to_owned()][..]));
        assert_eq!(joon.max_chats, Some(2));
        assert!(matches!(
            store.create_agent(&new, &audit("agent_create")).await,
            Err(StoreError::UsernameTaken)
        ));
        store
            .create_session("j1", &joon.id, now_ms() + 60_000)
            .await?;
        // Every site and the site's limit again: `Some(None)` clears.
        let (changed, ended) = store
            .update_agent(
                &joon.id,
                &AgentChange {
                    sites: Some(None),
                    max_chats: Some(None),
                    display_name: Some("Joon K.".into()),
                    ..AgentChange::default()
                },
                Some(&audit("agent_update")),
            )
            .await?;
        assert!(!ended, "a change of sites keeps the sessions");
        assert_eq!((changed.sites, changed.max_chats), (None, None));
        assert_eq!(changed.display_name, "Joon K.");
        assert!(store.session_agent("j1", now_ms()).await?.is_some());
        // A new password ends the sessions.
        let (_, ended) = store
            .update_agent(
                &joon.id,
                &AgentChange {
                    password_hash: Some("$argon2id$b".into()),
                    ..AgentChange::default()
                },
                Some(&audit("agent_password")),
            )
            .await?;
        assert!(ended);
        assert!(store.session_agent("j1", now_ms()).await?.is_none());
        // Disabled by an admin: the config file listing the name does not enable them.
        store
            .create_session("j2", &joon.id, now_ms() + 60_000)
            .await?;
        let (off, ended) = store
            .update_agent(
                &joon.id,
                &AgentChange {
                    disabled: Some(true),
                    ..AgentChange::default()
                },
                Some(&audit("agent_disable")),
            )
            .await?;
        assert!(ended && off.disabled);
        assert_eq!(off.disabled_by.as_deref(), Some("boss"));
        let listed = store.upsert_agent("joon", "Joon", "$argon2id$c").await?;
        assert!(listed.disabled, "an admin's disable outlasts the config");
        assert_eq!(listed.managed_by, Managed::Config, "the file owns them now");
        assert!(matches!(
            store
                .update_agent("nobody", &AgentChange::default(), None)
                .await,
            Err(StoreError::NoSuchAgent)
        ));
        let log = store.audit_log(10).await?;
        let actions: Vec<&str> = log.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "agent_disable",
                "agent_password",
                "agent_update",
                "agent_create"
            ],
            "newest first, one line per change"
        );
        assert!(log
            .iter()
            .all(|r| r.actor == "boss" && r.subject == joon.id));
        Ok(())
    }

    pub async fn the_last_enabled_admin_stays(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let first = NewAgent {
            username: "admin".into(),
            display_name: "Admin".into(),
            password_hash: "$argon2id$a".into(),
            admin: true,
            sites: None,
            max_chats: None,
        };
        let admin = store.create_agent(&first, &audit("agent_create")).await?;
        let demote = AgentChange {
            admin: Some(false),
            ..AgentChange::default()
        };
        let disable = AgentChange {
            disabled: Some(true),
            ..AgentChange::default()
        };
        for change in [&demote, &disable] {
            assert!(matches!(
                store
                    .update_agent(&admin.id, change, Some(&audit("x")))
                    .await,
                Err(StoreError::LastAdmin)
            ));
        }
        let still = store.agent_by_id(&admin.id).await?.context("kept")?;
        assert!(
            still.admin && !still.disabled,
            "refused changes left nothing"
        );
        assert!(
            store.audit_log(10).await?.len() == 1,
            "a refused change writes no audit line"
        );
        // Once another admin exists, the generated one can be demoted.
        let other = NewAgent {
            username: "mina".into(),
            admin: true,
            ..first.clone()
        };
        store.create_agent(&other, &audit("agent_create")).await?;
        let (demoted, _) = store
            .update_agent(&admin.id, &demote, Some(&audit("agent_update")))
            .await?;
        assert!(!demoted.admin);
        Ok(())
    }

    pub async fn update_context_round_trip(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let (_, c) = chat(&*store).await?;
        assert_eq!(c.context, context("https://shop.example/"));
        let page = PageContext {
            url: "https://shop.example/cart?id=3".into(),
            title: "장바구니 \"cart\" <b>".into(),
            referrer: "https://search.example/?q=shoes".into(),
            language: "ko-KR".into(),
            user_agent: "Mozilla/5.0 (Test)".into(),
            viewport: Some(Viewport {
                width: 390,
                height: 844,
            }),
            entered_at: Some(1_700_000_000_123),
        };
        let updated = store.update_context(&c.id, &page).await?;
        assert_eq!(updated.context, page);
        assert!(updated.updated_at >= c.updated_at);
        let stored = store.conversation(&c.id).await?.context("conversation")?;
        assert_eq!(stored.context, page);
        let missing = store
            .update_context(&ConversationId("nope".into()), &page)
            .await;
        assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
        Ok(())
    }

    /// Agents `names`, as the relay passes online agents to `assign_next`, sorted by id (the
    /// round robin's last tie-break).
    async fn online(store: &dyn Store, names: &[&str]) -> anyhow::Result<Vec<AgentInfo>> {
        let mut list = Vec::new();
        for name in names {
            let a = store
                .upsert_agent(name, &name.to_uppercase(), "$argon2id$x")
                .await?;
            list.push(AgentInfo {
                id: a.id,
                username: a.username,
                display_name: a.display_name,
            });
        }
        list.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(list)
    }

    fn capacity(max: u32) -> Capacity {
        Capacity {
            default: max,
            ..Default::default()
        }
    }

    pub async fn queue_assigns_least_busy_then_round_robin(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        let agents = online(&*store, &["mina", "joon", "sora"]).await?;
        let mut conversations = Vec::new();
        for _ in 0..7 {
            conversations.push(chat(&*store).await?.1.id);
        }
        let mut order = Vec::new();
        for round in 0..6 {
            let head = store.queue_state().await?.waiting[0].clone();
            let a = store
                .assign_next(&agents, &capacity(2))
                .await?
                .with_context(|| format!("assignment {round}"))?;
            assert_eq!(a.event.conversation_id, head, "first in line goes first");
            assert_eq!(a.event.body, EventBody::Joined);
            assert_eq!(a.conversation.status, ConversationStatus::Assigned);
            assert_eq!(a.event.author.id, a.conversation.assignee_id);
            order.push(a.conversation.assignee_id.clone().context("assignee")?);
        }
        let ids: Vec<String> = agents.iter().map(|a| a.id.clone()).collect();
        assert_eq!(
            order,
            [ids.clone(), ids.clone()].concat(),
            "least busy first, then the least recently assigned"
        );
        assert!(
            store.assign_next(&agents, &capacity(2)).await?.is_none(),
            "everyone is at capacity: the seventh waits"
        );
        assert_eq!(store.queue_state().await?.waiting.len(), 1);
        // The second agent frees a place: they are now the least busy.
        let theirs = store.assigned_to(&ids[1]).await?;
        assert_eq!(theirs.len(), 2);
        store
            .append(
                &theirs[0],
                NewEvent {
                    author: agent_author(&ids[1]),
                    body: EventBody::Closed,
                    client_id: None,
                    effect: Effect::Close,
                },
            )
            .await?;
        let a = store
            .assign_next(&agents, &capacity(2))
            .await?
            .context("a freed place is filled")?;
        assert_eq!(a.conversation.assignee_id.as_deref(), Some(&*ids[1]));
        assert_eq!(a.event.conversation_id, conversations[6]);
        assert!(store.queue_state().await?.waiting.is_empty());
        // Nobody online: nothing happens.
        assert!(store.assign_next(&[], &capacity(2)).await?.is_none());
        Ok(())
    }

    pub async fn queue_state_positions_and_waits(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let agents = online(&*store, &["mina"]).await?;
        let empty = store.queue_state().await?;
        assert!(empty.waiting.is_empty() && empty.loads.is_empty());
        assert_eq!(empty.avg_wait_ms, None, "no history, no estimate");
        let (_, first) = chat(&*store).await?;
        let (_, second) = chat(&*store).await?;
        // A bot conversation is not in the people's queue until the bot hands it over.
        let visitor = store
            .create_visitor("demo", &relay_server::store::new_id())
            .await?;
        let (bot, _) = store
            .open_conversation_as(
                "demo",
                &visitor.id,
                &context("https://shop.example/"),
                true,
                true,
            )
            .await?;
        assert_eq!(bot.queued_at, None);
        assert!(
            first.queued_at.is_some(),
            "agents-first: queued from the start"
        );
        let state = store.queue_state().await?;
        assert_eq!(state.waiting, vec![first.id.clone(), second.id.clone()]);
        tokio::time::sleep(Duration::from_millis(30)).await;
        store
            .append(
                &bot.id,
                NewEvent {
                    author: Author::system(),
                    body: EventBody::Handoff {
                        reason: protocol::HandoffReason::Asked,
                        summary: "wants a person".into(),
                    },
                    client_id: None,
                    effect: Effect::Handoff,
                },
            )
            .await?;
        let state = store.queue_state().await?;
        assert_eq!(
            state.waiting,
            vec![first.id.clone(), second.id.clone(), bot.id.clone()],
            "a hand-off joins the end of the line"
        );
        // Taken by hand after >= 30 ms: the wait is recorded and averaged.
        store.append(&first.id, take(&agents[0].id)).await?;
        let state = store.queue_state().await?;
        assert_eq!(state.waiting, vec![second.id.clone(), bot.id.clone()]);
        assert_eq!(state.loads.get(&agents[0].id), Some(&1));
        let avg = state.avg_wait_ms.context("a wait was recorded")?;
        assert!(avg >= 30, "waited at least 30 ms, average {avg}");
        let taken = store.conversation(&first.id).await?.context("first")?;
        assert_eq!(taken.queued_at, None, "out of the queue");
        Ok(())
    }

    pub async fn transfer_and_requeue_effects(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let (_, c) = chat(&*store).await?;
        let mina = store.upsert_agent("mina", "Mina", "$argon2id$a").await?;
        let joon = store.upsert_agent("joon", "Joon", "$argon2id$b").await?;
        store.append(&c.id, take(&mina.id)).await?;
        let transfer = |from: &str, to: &str| NewEvent {
            author: agent_author(from),
            body: EventBody::Transferred {
                to: agent_author(to),
                note: Some("wants a refund".into()),
            },
            client_id: None,
            effect: Effect::Transfer {
                from: from.into(),
                to: to.into(),
            },
        };
        let refused = store.append(&c.id, transfer(&joon.id, &mina.id)).await;
        assert!(
            matches!(refused, Err(StoreError::Forbidden)),
            "only the assignee transfers: {refused:?}"
        );
        let moved = store.append(&c.id, transfer(&mina.id, &joon.id)).await?;
        assert_eq!(moved.conversation.assignee_id.as_deref(), Some(&*joon.id));
        assert_eq!(moved.conversation.status, ConversationStatus::Assigned);
        let stored = store.events_after(&c.id, 0, 10).await?;
        assert!(
            matches!(&stored[1].body, EventBody::Transferred { note: Some(n), .. } if n == "wants a refund"),
            "the note is stored for agents: {:?}",
            stored[1].body
        );
        assert_eq!(store.assigned_to(&joon.id).await?, vec![c.id.clone()]);
        assert!(store.assigned_to(&mina.id).await?.is_empty());

        let requeue = |agent: &str| NewEvent {
            author: Author::system(),
            body: EventBody::Requeued {
                from: agent_author(agent),
            },
            client_id: None,
            effect: Effect::Requeue(agent.into()),
        };
        let refused = store.append(&c.id, requeue(&mina.id)).await;
        assert!(
            matches!(refused, Err(StoreError::Forbidden)),
            "requeued only from its assignee: {refused:?}"
        );
        let back = store.append(&c.id, requeue(&joon.id)).await?;
        assert_eq!(back.conversation.status, ConversationStatus::Open);
        assert_eq!(back.conversation.assignee_id, None);
        assert!(back.conversation.queued_at.is_some());
        assert_eq!(store.queue_state().await?.waiting, vec![c.id.clone()]);
        assert!(store.assigned_to(&joon.id).await?.is_empty());
        let twice = store.append(&c.id, requeue(&joon.id)).await;
        assert!(
            matches!(twice, Err(StoreError::Forbidden)),
            "a second node's requeue stores nothing: {twice:?}"
        );
        assert_eq!(seqs(&*store, &c.id).await?, [1, 2, 3]);
        Ok(())
    }

    pub async fn concurrent_assignments_respect_capacity(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        let agents = online(&*store, &["mina", "joon", "sora"]).await?;
        let mut conversations = Vec::new();
        for _ in 0..20 {
            conversations.push(chat(&*store).await?.1.id);
        }
        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let store = store.clone();
            let agents = agents.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                while store.assign_next(&agents, &capacity(2)).await?.is_some() {
                    n += 1;
                }
                anyhow::Ok(n)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await??;
        }
        assert_eq!(total, 6, "three agents, two places each");
        let state = store.queue_state().await?;
        assert_eq!(state.waiting.len(), 14);
        for a in &agents {
            assert_eq!(
                state.loads.get(&a.id),
                Some(&2),
                "{} at capacity",
                a.username
            );
        }
        for c in &conversations {
            let joins = store
                .events_after(c, 0, 100)
                .await?
                .iter()
                .filter(|e| e.body == EventBody::Joined)
                .count();
            assert!(joins <= 1, "assigned at most once, got {joins}");
        }
        Ok(())
    }

    pub async fn upsert_agent_updates(store: Arc<dyn Store>) -> anyhow::Result<()> {
        assert_eq!(store.agent_count().await?, 0);
        let first = store.upsert_agent("mina", "Mina", "$argon2id$a").await?;
        let second = store.upsert_agent("mina", "Mina K.", "$argon2id$b").await?;
        assert_eq!(first.id, second.id, "same username, same agent");
        assert_eq!(store.agent_count().await?, 1);
        let found = store.agent_by_username("mina").await?.context("by name")?;
        assert_eq!(
            (found.display_name.as_str(), found.password_hash.as_str()),
            ("Mina K.", "$argon2id$b")
        );
        let by_id = store.agent_by_id(&first.id).await?.context("by id")?;
        assert_eq!(by_id.username, "mina");
        assert!(store.agent_by_username("nobody").await?.is_none());
        store.ping().await?;
        Ok(())
    }

    fn gap(c: &ConversationRecord, seq: Seq, kind: GapKind, question: &str) -> Gap {
        Gap {
            site: c.site.clone(),
            conversation_id: c.id.clone(),
            seq,
            kind,
            question: question.into(),
            entry_id: (kind == GapKind::HandoffAfterAnswer).then(|| "shipping".into()),
            entry_title: (kind == GapKind::HandoffAfterAnswer).then(|| "배송 안내".into()),
            page_url: Some("https://shop.example/cart?id=3".into()),
            at: 0,
        }
    }

    pub async fn knowledge_gaps_round_trip(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let (_, c) = chat(&*store).await?;
        let other_visitor = store.create_visitor("shop", "other-token").await?;
        let (other, _) = store
            .open_conversation(
                "shop",
                &other_visitor.id,
                &context("https://other.example/"),
            )
            .await?;
        let before = now_ms();
        let first = gap(&c, 1, GapKind::Unanswered, "Do you sell gift cards?");
        assert!(store.record_gap(&first).await?, "a new gap is stored");
        assert!(
            !store.record_gap(&first).await?,
            "the same message and kind again stores nothing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        let against = gap(&c, 1, GapKind::HandoffAfterAnswer, "배송은 얼마나 걸려요?");
        assert!(store.record_gap(&against).await?, "another kind, same seq");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let elsewhere = Gap {
            page_url: None,
            ..gap(&other, 4, GapKind::Unanswered, "gift card?")
        };
        assert!(store.record_gap(&elsewhere).await?);

        let all = store.gaps(None, 0, 100).await?;
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(
            all.iter().map(|g| g.question.as_str()).collect::<Vec<_>>(),
            [
                "gift card?",
                "배송은 얼마나 걸려요?",
                "Do you sell gift cards?"
            ],
            "newest first"
        );
        assert!(all.iter().all(|g| g.at >= before), "stamped by the store");
        let stored = &all[1];
        assert_eq!(
            Gap {
                at: 0,
                ..stored.clone()
            },
            against,
            "every field round-trips"
        );
        assert_eq!(all[0].page_url, None);

        let demo = store.gaps(Some("demo"), 0, 100).await?;
        assert_eq!(demo.len(), 2, "one site's gaps only: {demo:?}");
        assert!(demo.iter().all(|g| g.site == "demo"));
        assert_eq!(store.gaps(Some("nope"), 0, 100).await?.len(), 0);
        assert_eq!(store.gaps(None, now_ms() + 60_000, 100).await?.len(), 0);
        assert_eq!(store.gaps(None, 0, 1).await?.len(), 1, "limit");
        Ok(())
    }

    pub async fn message_sentiment_round_trips(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let (v, c) = chat(&*store).await?;
        let new = NewEvent {
            author: visitor_author(&v),
            body: EventBody::Message {
                text: "너무 실망했어요".into(),
                client_id: Some(ClientId::from("m1")),
                buttons: Vec::new(),
                link: None,
                sentiment: Some(protocol::Mood::Negative),
            },
            client_id: Some(ClientId::from("m1")),
            effect: Effect::None,
        };
        let appended = store.append(&c.id, new.clone()).await?;
        let events = store.events_after(&c.id, 0, 10).await?;
        assert_eq!(events, vec![appended.event.clone()]);
        assert_eq!(
            events[0].body, new.body,
            "the tone is stored with the message"
        );
        let again = store.append(&c.id, new).await?;
        assert!(again.duplicate);
        assert_eq!(again.event.body, events[0].body);
        Ok(())
    }

    /// Closes `c` as agent `agent_id` (assigning it first).
    async fn close_as(store: &dyn Store, c: &ConversationId, agent_id: &str) -> anyhow::Result<()> {
        store
            .append(
                c,
                NewEvent {
                    author: agent_author(agent_id),
                    body: EventBody::Joined,
                    client_id: None,
                    effect: Effect::Assign(agent_id.into()),
                },
            )
            .await?;
        store
            .append(
                c,
                NewEvent {
                    author: agent_author(agent_id),
                    body: EventBody::Closed,
                    client_id: None,
                    effect: Effect::Close,
                },
            )
            .await?;
        Ok(())
    }

    pub async fn rating_a_closed_conversation(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let agent = store.upsert_agent("mina", "Mina", "x").await?;
        let (v, c) = chat(&*store).await?;
        store
            .append(&c.id, message(visitor_author(&v), Some("c1"), "hi"))
            .await?;
        let early = store.rate(&c.id, &v.id, visitor_author(&v), 4, None).await;
        assert!(matches!(early, Err(StoreError::NotClosed)), "{early:?}");
        close_as(&*store, &c.id, &agent.id).await?;
        let other = store
            .create_visitor("demo", &relay_server::store::new_id())
            .await?;
        let foreign = store
            .rate(&c.id, &other.id, visitor_author(&other), 5, None)
            .await;
        assert!(matches!(foreign, Err(StoreError::NotFound)), "{foreign:?}");

        let rated = store
            .rate(
                &c.id,
                &v.id,
                visitor_author(&v),
                4,
                Some("Quick and kind".into()),
            )
            .await?;
        assert_eq!(rated.event.seq, 4, "the rating follows hi, joined, closed");
        assert_eq!(
            rated.event.body,
            EventBody::Rating {
                score: 4,
                comment: Some("Quick and kind".into())
            }
        );
        assert_eq!(rated.conversation.rating, Some(4));
        assert_eq!(rated.conversation.status, ConversationStatus::Closed);
        assert_eq!(rated.conversation.last_seq, 4);

        let again = store.rate(&c.id, &v.id, visitor_author(&v), 1, None).await;
        assert!(matches!(again, Err(StoreError::AlreadyRated)), "{again:?}");
        let stored = store.conversation(&c.id).await?.context("conversation")?;
        assert_eq!(stored.rating, Some(4), "the first rating stands");
        assert_eq!(seqs(&*store, &c.id).await?, [1, 2, 3, 4]);
        let events = store.events_after(&c.id, 3, 10).await?;
        assert_eq!(
            events[0], rated.event,
            "the rating event reads back as stored"
        );
        let missing = store
            .rate(
                &ConversationId::from("nope"),
                &v.id,
                visitor_author(&v),
                3,
                None,
            )
            .await;
        assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
        Ok(())
    }

    pub async fn agent_ratings_per_agent(store: Arc<dyn Store>) -> anyhow::Result<()> {
        assert!(store.agent_ratings().await?.is_empty());
        let mina = store.upsert_agent("mina", "Mina", "x").await?;
        let joon = store.upsert_agent("joon", "Joon", "x").await?;
        for (agent, score) in [(&mina.id, 5), (&mina.id, 4), (&joon.id, 2)] {
            let (v, c) = chat(&*store).await?;
            close_as(&*store, &c.id, agent).await?;
            store
                .rate(&c.id, &v.id, visitor_author(&v), score, None)
                .await?;
        }
        // Closed but not rated: not counted.
        let (_, c) = chat(&*store).await?;
        close_as(&*store, &c.id, &joon.id).await?;
        // Rated without any agent (closed from the queue).
        let (v, c) = chat(&*store).await?;
        store
            .append(
                &c.id,
                NewEvent {
                    author: Author::system(),
                    body: EventBody::Closed,
                    client_id: None,
                    effect: Effect::Close,
                },
            )
            .await?;
        store
            .rate(&c.id, &v.id, visitor_author(&v), 3, None)
            .await?;

        let mut numbers = store.agent_ratings().await?;
        numbers.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        let mut expected = vec![
            AgentRating {
                agent_id: None,
                count: 1,
                average: 3.0,
            },
            AgentRating {
                agent_id: Some(mina.id.clone()),
                count: 2,
                average: 4.5,
            },
            AgentRating {
                agent_id: Some(joon.id.clone()),
                count: 1,
                average: 2.0,
            },
        ];
        expected.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        assert_eq!(numbers, expected);
        let first = store.agent_ratings().await?;
        assert_eq!(
            first[0].agent_id.as_deref(),
            Some(mina.id.as_str()),
            "most rated first"
        );
        Ok(())
    }

    pub async fn admin_flag_round_trip(store: Arc<dyn Store>) -> anyhow::Result<()> {
        let mina = store.upsert_agent("mina", "Mina", "$argon2id$a").await?;
        assert!(!mina.admin, "agents are not admins by default");
        store.set_agent_admin("mina", true).await?;
        let found = store.agent_by_username("mina").await?.context("by name")?;
        assert!(found.admin);
        // A password reset from the config keeps the flag; the session lookup carries it.
        let again = store.upsert_agent("mina", "Mina", "$argon2id$b").await?;
        assert!(again.admin);
        store
            .create_session("tok", &mina.id, now_ms() + 60_000)
            .await?;
        let by_session = store
            .session_agent("tok", now_ms())
            .await?
            .context("session")?;
        assert!(by_session.admin);
        store.set_agent_admin("mina", false).await?;
        assert!(!store.agent_by_id(&mina.id).await?.context("by id")?.admin);
        // Unknown usernames are a no-op, not an error.
        store.set_agent_admin("nobody", true).await?;
        Ok(())
    }

    pub async fn mark_offline_sets_email_and_clears_bot(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        let visitor = store
            .create_visitor("demo", &relay_server::store::new_id())
            .await?;
        let (bot, _) = store
            .open_conversation_as(
                "demo",
                &visitor.id,
                &context("https://shop.example/"),
                true,
                true,
            )
            .await?;
        assert_eq!(bot.status, ConversationStatus::Bot);
        assert_eq!(bot.offline_email, None);
        let marked = store.mark_offline(&bot.id, "ada@example.com").await?;
        assert_eq!(marked.offline_email.as_deref(), Some("ada@example.com"));
        assert_eq!(marked.status, ConversationStatus::Open, "left for people");
        let read = store.conversation(&bot.id).await?.context("stored")?;
        assert_eq!(read.offline_email.as_deref(), Some("ada@example.com"));
        let listed = store.open_conversations(None, 10).await?;
        assert_eq!(listed[0].offline_email.as_deref(), Some("ada@example.com"));
        // The bot is silenced for good: its replies are refused.
        let reply = store
            .append(
                &bot.id,
                NewEvent {
                    effect: Effect::BotReply,
                    ..message(visitor_author(&visitor), None, "bot?")
                },
            )
            .await;
        assert!(matches!(reply, Err(StoreError::Forbidden)), "{reply:?}");
        store
            .append(
                &bot.id,
                NewEvent {
                    effect: Effect::Close,
                    ..message(visitor_author(&visitor), None, "bye")
                },
            )
            .await?;
        let closed = store.mark_offline(&bot.id, "ada@example.com").await;
        assert!(matches!(closed, Err(StoreError::Closed)), "{closed:?}");
        let missing = store
            .mark_offline(&ConversationId("nope".into()), "ada@example.com")
            .await;
        assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
        Ok(())
    }

    pub async fn site_settings_round_trip(store: Arc<dyn Store>) -> anyhow::Result<()> {
        assert!(store.site_settings().await?.is_empty());
        let mut demo = SiteSettingsRecord {
            site: "demo".into(),
            routing: "bot_first".into(),
            hours: Some(r#"{"tz":"Asia/Seoul","mon":"09:00-18:00"}"#.into()),
            max_chats_per_agent: Some(3),
            updated_at: 1,
            updated_by: "admin".into(),
        };
        store.put_site_settings(&demo).await?;
        let shop = SiteSettingsRecord {
            site: "shop".into(),
            routing: "agents_first".into(),
            hours: None,
            max_chats_per_agent: None,
            updated_at: 2,
            updated_by: "mina".into(),
        };
        store.put_site_settings(&shop).await?;
        assert_eq!(
            store.site_settings().await?,
            vec![demo.clone(), shop.clone()]
        );
        // Saving again replaces the row.
        demo.routing = "agents_first".into();
        demo.hours = None;
        demo.max_chats_per_agent = None;
        demo.updated_at = 3;
        store.put_site_settings(&demo).await?;
        assert_eq!(store.site_settings().await?, vec![demo, shop]);
        let bad = SiteSettingsRecord {
            site: "x".into(),
            routing: "random".into(),
            hours: None,
            max_chats_per_agent: None,
            updated_at: 4,
            updated_by: "admin".into(),
        };
        assert!(
            store.put_site_settings(&bad).await.is_err(),
            "CHECK routing"
        );
        Ok(())
    }

    /// The kinds of visitor data [`fill`] writes, each as `<tag>-<kind>` somewhere: what the
    /// canary tests look for in the files and tables. (The first page title, `<tag>-title`, is
    /// replaced by `retitle`: not stored any more, so not among them.)
    pub const KINDS: [&str; 14] = [
        "token", "url", "ref", "retitle", "msg", "bigtail", "gap", "lostpage", "mail", "comment",
        "user", "who", "attr", "phone",
    ];

    /// A visitor of `demo` with every kind of data the store keeps about visitors, each kind
    /// marked `<tag>-<kind>` ([`KINDS`]): token hash, a verified identity (user id, name, an
    /// attribute) and a second browser's token, page context (URL, referrer, title, and a
    /// later title), messages (one past a page, so overflow pages are covered), a knowledge
    /// gap, an offline email and a rating comment. Returns the visitor and their conversation.
    pub async fn fill(
        store: &dyn Store,
        tag: &str,
    ) -> anyhow::Result<(VisitorRecord, ConversationRecord)> {
        let agent = store.upsert_agent("mina", "Mina", "x").await?;
        let visitor = store
            .create_visitor("demo", &format!("{tag}-token"))
            .await?;
        let page = PageContext {
            url: format!("https://shop.example/{tag}-url"),
            referrer: format!("https://ref.example/{tag}-ref"),
            title: format!("{tag}-title"),
            ..Default::default()
        };
        let (c, _) = store.open_conversation("demo", &visitor.id, &page).await?;
        // A verified identity, and a second browser (its own token) merged into the person.
        let who = relay_server::identity::Verified {
            user_id: format!("{tag}-user"),
            name: Some(format!("{tag}-who")),
            email: None,
            attributes: [("plan".to_owned(), serde_json::json!(format!("{tag}-attr")))]
                .into_iter()
                .collect(),
        };
        store
            .identify_visitor("demo", Some(&visitor.id), &format!("{tag}-token"), &who)
            .await?;
        // A browser never seen: its token is stored by the identity.
        store
            .identify_visitor("demo", None, &format!("{tag}-phone"), &who)
            .await?;
        for i in 0..12 {
            store
                .append(
                    &c.id,
                    message(
                        visitor_author(&visitor),
                        Some(&format!("m{i}")),
                        &format!("{tag}-msg {i}: my order number is 12345"),
                    ),
                )
                .await?;
        }
        store
            .append(
                &c.id,
                message(
                    visitor_author(&visitor),
                    Some("big"),
                    &format!("{tag}-msg {} {tag}-bigtail", "x".repeat(9000)),
                ),
            )
            .await?;
        store
            .update_context(
                &c.id,
                &PageContext {
                    title: format!("{tag}-retitle"),
                    ..page
                },
            )
            .await?;
        store
            .record_gap(&Gap {
                question: format!("{tag}-gap do you ship to Jeju?"),
                page_url: Some(format!("https://shop.example/{tag}-lostpage")),
                ..gap(&c, 1, GapKind::Unanswered, "")
            })
            .await?;
        store
            .mark_offline(&c.id, &format!("{tag}-mail@example.com"))
            .await?;
        close_as(store, &c.id, &agent.id).await?;
        store
            .rate(
                &c.id,
                &visitor.id,
                visitor_author(&visitor),
                5,
                Some(format!("{tag}-comment")),
            )
            .await?;
        let c = store.conversation(&c.id).await?.context("filled")?;
        Ok((visitor, c))
    }

    pub async fn visitor_data_holds_everything_of_one_visitor(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        let (v, c) = fill(&*store, "EXP").await?;
        let (other, _) = fill(&*store, "OTHER").await?;
        // A second, still open conversation of the same visitor.
        let (second, created) = store
            .open_conversation("demo", &v.id, &context("https://shop.example/again"))
            .await?;
        assert!(created, "the first one is closed");
        let data = store.visitor_data(&v.id).await?.context("known visitor")?;
        assert_eq!(
            (data.id.as_str(), data.site.as_str()),
            (v.id.as_str(), "demo")
        );
        assert_eq!(
            data.conversations
                .iter()
                .map(|c| c.record.id.clone())
                .collect::<Vec<_>>(),
            vec![c.id.clone(), second.id.clone()],
            "both conversations, oldest first"
        );
        let first = &data.conversations[0];
        assert_eq!(first.record.context.title, "EXP-retitle");
        assert_eq!(
            first.record.offline_email.as_deref(),
            Some("EXP-mail@example.com")
        );
        assert_eq!(first.record.rating, Some(5));
        assert_eq!(first.rating_comment.as_deref(), Some("EXP-comment"));
        assert!(first.rated_at.is_some());
        // 13 messages, joined, closed, rating.
        assert_eq!(first.events.len(), 16, "{:?}", first.events);
        assert_eq!(
            first.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=16).collect::<Vec<_>>()
        );
        assert!(first.events[0]
            .message_text()
            .is_some_and(|t| t.starts_with("EXP-msg 0")));
        assert_eq!(first.gaps.len(), 1);
        assert!(first.gaps[0].question.starts_with("EXP-gap"));
        let all = format!("{data:?}");
        assert!(
            !all.contains("OTHER-"),
            "another visitor's data leaked into the export"
        );
        assert!(store.visitor_data(&other.id).await?.is_some());
        assert!(store.visitor_data("no-such-visitor").await?.is_none());
        Ok(())
    }

    pub async fn erasing_a_visitor_leaves_nothing_and_is_audited(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        let (v, c) = fill(&*store, "GONE").await?;
        let (kept, kept_c) = fill(&*store, "KEPT").await?;
        let (open, _) = store
            .open_conversation("demo", &v.id, &context("https://shop.example/open"))
            .await?;
        store
            .append(
                &open.id,
                message(visitor_author(&v), Some("o1"), "still here?"),
            )
            .await?;
        let erased = store
            .erase_visitor(&v.id, "ada")
            .await?
            .context("a known visitor is erased")?;
        assert_eq!(
            erased,
            relay_server::store::Erased {
                site: "demo".into(),
                conversations: 2,
                events: 17,
                gaps: 1,
            }
        );
        assert!(store.visitor_data(&v.id).await?.is_none());
        for id in [&c.id, &open.id] {
            assert!(store.conversation(id).await?.is_none());
            assert!(store.events_after(id, 0, 100).await?.is_empty());
        }
        assert!(store.latest_conversation(&v.id).await?.is_none());
        assert!(store
            .visitor_by_token("demo", "GONE-token")
            .await?
            .is_none());
        assert!(store
            .gaps(None, 0, 100)
            .await?
            .iter()
            .all(|g| !g.question.starts_with("GONE")));
        let mut left = store.open_conversations(None, 100).await?;
        left.extend(store.closed_conversations(None, None, 100).await?);
        assert!(left.iter().all(|r| r.visitor_id != v.id));
        // A socket that still holds the erased conversation or visitor cannot bring data back.
        let late = store
            .append(&open.id, message(visitor_author(&v), Some("o2"), "hello?"))
            .await;
        assert!(matches!(late, Err(StoreError::NotFound)), "{late:?}");
        let reopened = store
            .open_conversation("demo", &v.id, &context("https://shop.example/"))
            .await;
        assert!(
            reopened.is_err(),
            "a conversation for an erased visitor: {reopened:?}"
        );
        assert!(store.visitor_data(&v.id).await?.is_none());
        // The other visitor is untouched.
        let other = store.visitor_data(&kept.id).await?.context("kept")?;
        assert_eq!(other.conversations.len(), 1);
        assert_eq!(other.conversations[0].events.len(), 16);
        assert_eq!(other.conversations[0].gaps.len(), 1);
        assert_eq!(
            store
                .conversation(&kept_c.id)
                .await?
                .context("kept")?
                .rating,
            Some(5)
        );
        // Audited: who, what, when; naming ids, not content.
        let audit = store.audit_log(10).await?;
        assert_eq!(audit.len(), 1, "{audit:?}");
        assert_eq!(
            (
                audit[0].actor.as_str(),
                audit[0].action.as_str(),
                audit[0].subject.as_str()
            ),
            ("ada", "erase_visitor", v.id.as_str())
        );
        assert!(audit[0].at > 0);
        let detail: serde_json::Value = serde_json::from_str(&audit[0].detail)?;
        assert_eq!(detail["conversations"], 2);
        assert!(!audit[0].detail.contains("GONE"));
        // Unknown (or already erased): nothing changes, nothing is audited.
        assert!(store.erase_visitor(&v.id, "ada").await?.is_none());
        assert!(store
            .erase_visitor("no-such-visitor", "ada")
            .await?
            .is_none());
        assert_eq!(store.audit_log(10).await?.len(), 1);
        Ok(())
    }

    /// A closed conversation of `site` (a new visitor each), closed by agent `mina`.
    async fn closed(store: &dyn Store, site: &str) -> anyhow::Result<ConversationRecord> {
        let agent = store.upsert_agent("mina", "Mina", "x").await?;
        let v = store
            .create_visitor(site, &relay_server::store::new_id())
            .await?;
        let (c, _) = store
            .open_conversation(site, &v.id, &context("https://shop.example/"))
            .await?;
        store
            .append(&c.id, message(visitor_author(&v), Some("r1"), "old words"))
            .await?;
        store
            .record_gap(&gap(&c, 1, GapKind::Unanswered, "old question"))
            .await?;
        close_as(store, &c.id, &agent.id).await?;
        store.conversation(&c.id).await?.context("closed")
    }

    pub async fn expire_closed_takes_old_closed_conversations_oldest_first(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        let mut old = Vec::new();
        for _ in 0..3 {
            old.push(closed(&*store, "demo").await?);
            // Distinct `updated_at`s, so "oldest first" is observable.
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let shop = closed(&*store, "shop").await?;
        let (_, open) = chat(&*store).await?;
        // Nothing was closed before the first close: nothing goes.
        let none = store.expire_closed("demo", old[0].updated_at, 10).await?;
        assert_eq!(none.conversations, 0);
        assert!(
            store.audit_log(10).await?.is_empty(),
            "an empty pass is not audited"
        );
        // "Now" far ahead: all three are old. Two per call, oldest first.
        let later = now_ms() + 400 * 86_400_000;
        let first = store.expire_closed("demo", later, 2).await?;
        assert_eq!(
            (first.conversations, first.events, first.gaps),
            (2, 6, 2),
            "message, joined, closed and one gap each"
        );
        assert!(store.conversation(&old[0].id).await?.is_none());
        assert!(store.conversation(&old[1].id).await?.is_none());
        assert!(
            store.conversation(&old[2].id).await?.is_some(),
            "the newest waits"
        );
        assert!(store.events_after(&old[0].id, 0, 10).await?.is_empty());
        let second = store.expire_closed("demo", later, 2).await?;
        assert_eq!(second.conversations, 1);
        assert_eq!(
            store.expire_closed("demo", later, 2).await?.conversations,
            0
        );
        // Another site's and open conversations stay.
        assert!(store.conversation(&shop.id).await?.is_some());
        assert!(store.conversation(&open.id).await?.is_some());
        let audit = store.audit_log(10).await?;
        assert_eq!(audit.len(), 2, "one row per pass that deleted: {audit:?}");
        assert!(audit
            .iter()
            .all(|a| a.actor == "retention" && a.action == "retention" && a.subject == "demo"));
        Ok(())
    }

    pub async fn retention_pass_is_bounded_and_per_site(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        use relay_server::rights::retention_pass;
        for _ in 0..5 {
            closed(&*store, "demo").await?;
        }
        let kept = closed(&*store, "forever").await?;
        let mut demo = relay_server::config::demo_site(vec![]);
        demo.privacy.retention_days = Some(30);
        let mut forever = relay_server::config::demo_site(vec![]);
        forever.key = "forever".into();
        let sites = vec![Arc::new(demo), Arc::new(forever)];
        // Today nothing is 30 days old.
        let today = retention_pass(&*store, &sites, now_ms(), 3).await?;
        assert_eq!(today[0].conversations, 0, "{today:?}");
        // 31 days later: at most 3 per pass.
        let later = now_ms() + 31 * 86_400_000;
        let first = retention_pass(&*store, &sites, later, 3).await?;
        assert_eq!(first.len(), 1, "only sites with a retention: {first:?}");
        assert_eq!(first[0].conversations, 3);
        let second = retention_pass(&*store, &sites, later, 3).await?;
        assert_eq!(second[0].conversations, 2);
        assert_eq!(
            retention_pass(&*store, &sites, later, 3).await?[0].conversations,
            0
        );
        assert!(
            store.conversation(&kept.id).await?.is_some(),
            "no retention: kept"
        );
        Ok(())
    }

    pub async fn retention_leaves_no_visitor_row_without_conversations(
        store: Arc<dyn Store>,
    ) -> anyhow::Result<()> {
        use relay_server::rights::retention_pass;
        let never_chatted = store
            .create_visitor("demo", &relay_server::store::new_id())
            .await?;
        let long_gone = closed(&*store, "demo").await?.visitor_id;
        let still_talking = chat(&*store).await?.0;
        let other_site = store
            .create_visitor("forever", &relay_server::store::new_id())
            .await?;
        let mut demo = relay_server::config::demo_site(vec![]);
        demo.privacy.retention_days = Some(30);
        let mut forever = relay_server::config::demo_site(vec![]);
        forever.key = "forever".into();
        let sites = vec![Arc::new(demo), Arc::new(forever)];
        // Today everyone is younger than 30 days: nobody goes.
        retention_pass(&*store, &sites, now_ms(), 100).await?;
        assert!(store.visitor_data(&never_chatted.id).await?.is_some());
        let later = now_ms() + 31 * 86_400_000;
        retention_pass(&*store, &sites, later, 100).await?;
        assert!(
            store.visitor_data(&never_chatted.id).await?.is_none(),
            "never chatted"
        );
        assert!(
            store.visitor_data(&long_gone).await?.is_none(),
            "all conversations expired"
        );
        assert!(
            store.visitor_data(&still_talking.id).await?.is_some(),
            "an open conversation keeps its visitor"
        );
        assert!(
            store.visitor_data(&other_site.id).await?.is_some(),
            "a site without retention keeps its visitors"
        );
        Ok(())
    }
}

/// The whole relay on PostgreSQL: agents seeded there, a visitor's message stored, acked and
/// seen by an agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_runs_on_postgres() -> anyhow::Result<()> {
    // Dropped with the guard, also when an assert below panics.
    let db = TestDatabase::create().await?;
    let url = db.url().to_owned();
    let relay = TestRelay::builder()
        .config(move |c| c.database_url = url)
        .start()
        .await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    v.send("pg-1", "Hello from PostgreSQL").await?;
    assert_eq!(v.expect_ack("pg-1").await?, 1, "first event has seq 1");
    let conversation = v.conversation_id.clone().context("conversation id")?;

    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    assert!(
        agent.conversations.iter().any(|c| c.id == conversation),
        "the agent's welcome lists the conversation: {:?}",
        agent.conversations
    );
    let history = agent.open(&conversation, Some(0)).await?;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].message_text(), Some("Hello from PostgreSQL"));
    agent.send(&conversation, "a-1", "Hi!").await?;
    // Replying may first store a `joined` event, so only "after the visitor's" is certain.
    let seq = agent.expect_ack("a-1").await?;
    assert!(
        seq >= 2,
        "the reply comes after the visitor's message: {seq}"
    );
    let reply = v
        .expect_event("the agent's reply", |e| e.message_text() == Some("Hi!"))
        .await?;
    assert_eq!(reply.seq, seq, "the visitor sees the stored seq");
    relay.shutdown().await;
    Ok(())
}

/// Two nodes' stores on one PostgreSQL database append to the same conversations at once, one
/// node walking them forwards and the other backwards, so their group statements want the same
/// rows in opposite orders: every append is stored once, each conversation's seqs run 1..=n, and
/// PostgreSQL saw no deadlock. (A deadlock would lose nothing, since the batch it aborted falls
/// back to single appends, but it stalls both nodes for `deadlock_timeout`; group statements
/// lock their conversations in id order so that it cannot happen.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_nodes_appending_crosswise_do_not_deadlock() -> anyhow::Result<()> {
    use protocol::{Author, ClientId, EventBody, PageContext, Role};
    use relay_server::store::{Effect, NewEvent};
    use sqlx::Connection as _;

    const CONVERSATIONS: usize = 12;
    // More than the 8 group statements a node runs at once, so that appends wait together.
    const TASKS_PER_NODE: usize = 24;
    const PER_TASK: usize = 20;

    let db = TestDatabase::create().await?;
    let nodes = [
        store::connect(db.url()).await?,
        store::connect(db.url()).await?,
    ];
    let mut chats = Vec::new();
    for _ in 0..CONVERSATIONS {
        let visitor = nodes[0].create_visitor("demo", &store::new_id()).await?;
        let (conversation, _) = nodes[0]
            .open_conversation("demo", &visitor.id, &PageContext::default())
            .await?;
        chats.push((visitor.id, conversation.id));
    }
    let chats = Arc::new(chats);
    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for t in 0..TASKS_PER_NODE {
            let (node, chats) = (node.clone(), chats.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..PER_TASK {
                    let step = t + i;
                    let which = if n == 0 {
                        step % CONVERSATIONS
                    } else {
                        CONVERSATIONS - 1 - step % CONVERSATIONS
                    };
                    let (visitor, id) = &chats[which];
                    let client_id = ClientId::from(format!("n{n}-t{t}-{i}").as_str());
                    let new = NewEvent {
                        author: Author {
                            role: Role::Visitor,
                            id: Some(visitor.clone()),
                            name: None,
                        },
                        body: EventBody::message("crosswise", Some(client_id.clone())),
                        client_id: Some(client_id),
                        effect: Effect::None,
                    };
                    let appended = node.append(id, new).await?;
                    anyhow::ensure!(!appended.duplicate, "n{n}-t{t}-{i} is new");
                }
                anyhow::Ok(())
            }));
        }
    }
    for task in tasks {
        task.await??;
    }
    let mut total = 0;
    for (_, id) in chats.iter() {
        let seqs: Vec<u64> = nodes[1]
            .events_after(id, 0, 10_000)
            .await?
            .iter()
            .map(|e| e.seq)
            .collect();
        assert!(
            seqs.iter().copied().eq(1..=seqs.len() as u64),
            "seqs run 1..=n: {seqs:?}"
        );
        total += seqs.len();
    }
    assert_eq!(
        total,
        2 * TASKS_PER_NODE * PER_TASK,
        "every append stored once"
    );
    let grouped: u64 = nodes.iter().map(|n| n.group_commit().appends.get()).sum();
    assert!(
        grouped > 0,
        "appends arriving together were stored by group statements"
    );

    // A backend reports its deadlocks to the statistics when it exits, so close the pools
    // first and give the backends a moment to go.
    for node in &nodes {
        node.close().await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut connection = sqlx::PgConnection::connect(db.url()).await?;
    let deadlocks: i64 = sqlx::query_scalar(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut connection)
    .await?;
    let _ = connection.close().await;
    assert_eq!(deadlocks, 0, "PostgreSQL detected no deadlock");
    Ok(())
}

/// A failing test leaves no `parley_t_*` database behind: the guard drops it on an early `?`
/// return and while a panic unwinds, with the store's pool still connected to it; `drop_now`
/// drops it on the spot and leaves the guard nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_databases_are_dropped_on_error_and_on_panic() -> anyhow::Result<()> {
    // An error path: `?`-style early return with the guard and an open store in scope.
    let mut name = String::new();
    let failed: anyhow::Result<()> = async {
        let db = TestDatabase::create().await?;
        name = db.name().to_owned();
        let _store = store::connect(db.url()).await?;
        anyhow::ensure!(
            pg::database_exists(&name).await?,
            "{name} was never created"
        );
        anyhow::bail!("a test failing with its database in use")
    }
    .await;
    let message = format!("{:#}", failed.err().context("the error path must fail")?);
    assert!(
        message.contains("in use"),
        "failed for another reason: {message}"
    );
    assert!(
        !pg::database_exists(&name).await?,
        "{name} outlived its guard on the error path"
    );

    // A panic (a failed assert): the guard is dropped while the task unwinds.
    let (named, name_of) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let db = TestDatabase::create()
            .await
            .expect("create a test database");
        let _store = store::connect(db.url()).await.expect("connect to it");
        let exists = pg::database_exists(db.name()).await.expect("look it up");
        let _ = named.send((db.name().to_owned(), exists));
        panic!("deliberate: a failed assert with the database in use");
    });
    let joined = task.await;
    assert!(
        joined.as_ref().is_err_and(|e| e.is_panic()),
        "the task must have panicked: {joined:?}"
    );
    let (name, existed) = name_of.await.context("the task never named its database")?;
    assert!(existed, "{name} was never created");
    assert!(
        !pg::database_exists(&name).await?,
        "{name} outlived its guard after a panic"
    );

    // Explicitly, from async code.
    let db = TestDatabase::create().await?;
    let name = db.name().to_owned();
    assert!(
        pg::database_exists(&name).await?,
        "{name} was never created"
    );
    db.drop_now().await;
    assert!(
        !pg::database_exists(&name).await?,
        "{name} survived drop_now"
    );
    Ok(())
}

/// A URL naming no supported engine stops the relay at start with a message naming both.
#[tokio::test]
async fn unknown_database_url_is_refused() -> anyhow::Result<()> {
    let Err(e) = TestRelay::builder()
        .config(|c| c.database_url = "mysql://root@localhost/parley".into())
        .start()
        .await
    else {
        anyhow::bail!("a mysql:// URL must be refused");
    };
    let message = format!("{e:#}");
    assert!(
        message.contains("sqlite://") && message.contains("postgres://"),
        "the error names the accepted forms: {message}"
    );
    Ok(())
}

/// SQLite only: no commit checkpoints the WAL; the store's own task does, every second, beside
/// the writer. So the appended pages reach the database file, and the WAL stops growing (the
/// writer rewinds it once a checkpoint has caught up) instead of growing with every append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_checkpoints_run_beside_the_writer() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("parley.db");
    let wal = dir.path().join("parley.db-wal");
    let store = store::connect(&format!("sqlite://{}", path.display())).await?;
    let (visitor, conversation) = cases::chat(&*store).await?;
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut sizes = Vec::new();
    for round in 0..4 {
        for i in 0..300 {
            let text = format!("round {round} message {i}: {}", "x".repeat(200));
            let id = format!("r{round}m{i}");
            store
                .append(
                    &conversation.id,
                    cases::message(cases::visitor_author(&visitor), Some(&id), &text),
                )
                .await?;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
        sizes.push((size(&path), size(&wal)));
    }
    store.close().await;
    let (first, last) = (sizes[0], sizes[3]);
    assert!(
        last.0 > first.0,
        "checkpoints copy appended pages into the database file: {sizes:?}"
    );
    assert!(
        last.1 < first.1 * 2,
        "the WAL is rewound after checkpoints, not grown by every round: {sizes:?}"
    );
    Ok(())
}

/// Tasks that keep appending to their conversations until stopped, for the SQLite tests of
/// writes that never pause: `per_chat` of them on each of `chats`, each message `text`.
struct Appenders {
    stop: Arc<std::sync::atomic::AtomicBool>,
    appended: Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Appenders {
    fn start(
        store: &Arc<dyn Store>,
        chats: &[(store::VisitorRecord, store::ConversationRecord)],
        per_chat: usize,
        text: &str,
    ) -> Self {
        use std::sync::atomic::Ordering;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let appended = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for (c, (visitor, conversation)) in chats.iter().enumerate() {
            for a in 0..per_chat {
                let (store, stop, appended) = (store.clone(), stop.clone(), appended.clone());
                let (author, id) = (cases::visitor_author(visitor), conversation.id.clone());
                let text = text.to_owned();
                tasks.push(tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let client_id = format!("c{c}a{a}m{i}");
                        store
                            .append(&id, cases::message(author.clone(), Some(&client_id), &text))
                            .await?;
                        appended.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                    anyhow::Ok(())
                }));
            }
        }
        Self {
            stop,
            appended,
            tasks,
        }
    }

    /// Appends stored so far.
    fn count(&self) -> u64 {
        self.appended.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops every task; the first error any of them met, if one did.
    async fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in self.tasks {
            task.await??;
        }
        Ok(())
    }
}

/// SQLite only: under appends that never pause, a `PASSIVE` checkpoint never catches up with
/// the writer, so the WAL would never be rewound and would grow for as long as the load lasts
/// (measured at 5,000 msg/s: 70 MB/s). Past `wal_limit_mib` the checkpointer rewinds it anyway.
/// Each rewind bumps the checkpoint sequence number in the WAL's header (bytes 12..16, big
/// endian), which this reads while eight writers keep appending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_is_rewound_under_writes_that_never_pause() -> anyhow::Result<()> {
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("parley.db");
    let wal = dir.path().join("parley.db-wal");
    let store = store::connect(&format!("sqlite://{}?wal_limit_mib=1", path.display())).await?;
    let mut chats = Vec::new();
    for _ in 0..8 {
        chats.push(cases::chat(&*store).await?);
    }
    let writers = Appenders::start(&store, &chats, 1, &"x".repeat(1000));
    let header_seq = || -> Option<u32> {
        let bytes = std::fs::read(&wal).ok()?;
        Some(u32::from_be_bytes(bytes.get(12..16)?.try_into().ok()?))
    };
    // Every 100 ms: the WAL's checkpoint sequence number, and whether appends went on (a
    // loaded machine may pause them; that only lets the old behaviour pass, so it is reported,
    // not asserted).
    let mut seqs = Vec::new();
    let mut idle_ticks = 0;
    let started = Instant::now();
    let mut last = 0;
    while started.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = writers.count();
        if now == last {
            idle_ticks += 1;
        }
        last = now;
        if let Some(seq) = header_seq() {
            seqs.push(seq);
        }
    }
    let total = writers.count();
    writers.stop().await?;
    store.close().await;
    let (first, last) = (
        *seqs.first().context("a WAL header")?,
        *seqs.last().context("a WAL header")?,
    );
    assert!(
        last.wrapping_sub(first) >= 2,
        "the WAL was rewound at least twice in 6 s of {total} appends \
         (checkpoint sequence numbers seen: {first} .. {last}; 100 ms spans without an append: \
         {idle_ticks} of 60)"
    );
    Ok(())
}

/// SQLite only: past its limit the WAL is rewound by the committer between two batches (a
/// `PASSIVE` pass on the writer's connection), not by the checkpointer's `RESTART` fallback, which
/// is for a WAL past twice its limit and stalls appends longer; and a reader on an old snapshot
/// shows as a `blocked` rewind. Told apart by the store's WAL figures, the ones `/metrics`
/// exports. A reader holding its snapshot keeps every checkpoint short, so slow appends grow
/// the WAL just past its 1 MiB limit (and nowhere near twice it); once the reader is gone, the
/// next ask is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_is_rewound_by_the_committer_and_a_reader_blocks_it() -> anyhow::Result<()> {
    use sqlx::Connection as _;
    use std::time::{Duration, Instant};

    const LIMIT: i64 = 1024 * 1024;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("parley.db");
    let url = format!("sqlite://{}", path.display());
    let store = store::connect(&format!("{url}?wal_limit_mib=1")).await?;
    let wal = store.wal().context("a SQLite store has WAL figures")?;
    let (visitor, conversation) = cases::chat(&*store).await?;
    let mut appended = 0;
    let mut append = || {
        appended += 1;
        let new = cases::message(
            cases::visitor_author(&visitor),
            Some(&format!("m{appended}")),
            &"x".repeat(500),
        );
        let (store, id) = (store.clone(), conversation.id.clone());
        async move { store.append(&id, new).await }
    };
    let figures = |wal: &relay_server::metrics::Wal| {
        format!(
            "WAL {} bytes; rewinds done {}, blocked {}, busy {}; restarts done {}, gave up {}",
            wal.bytes.get(),
            wal.rewind_count("done"),
            wal.rewind_count("blocked"),
            wal.rewind_count("busy"),
            wal.restart_count("done"),
            wal.restart_count("gave_up"),
        )
    };

    // A reader on the snapshot of now: no checkpoint may copy past it.
    let mut reader = sqlx::SqliteConnection::connect(&url).await?;
    sqlx::query("BEGIN").execute(&mut reader).await?;
    sqlx::query("SELECT count(*) FROM events")
        .fetch_one(&mut reader)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while wal.bytes.get() <= LIMIT && Instant::now() < deadline {
        append().await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        wal.bytes.get() > LIMIT,
        "the WAL grew past its limit: {}",
        figures(&wal)
    );
    // Past the limit, the committer is asked to rewind (at most once a second) and cannot.
    while wal.rewind_count("blocked") == 0 && Instant::now() < deadline {
        append().await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        wal.rewind_count("blocked") >= 1,
        "a rewind was tried and the reader blocked it: {}",
        figures(&wal)
    );

    sqlx::query("COMMIT").execute(&mut reader).await?;
    reader.close().await?;
    // No appends for a while: the idle checkpoints copy everything and ask again once a
    // second has passed since the last ask; then one append lets the committer take it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    while wal.rewind_count("done") == 0 && Instant::now() < deadline {
        append().await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        wal.rewind_count("done") >= 1,
        "once the reader left, the committer rewound the WAL: {}",
        figures(&wal)
    );
    // The WAL started over: the next checkpoint pass sees only what came after.
    while wal.bytes.get() > LIMIT && Instant::now() < deadline {
        append().await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = figures(&wal);
    store.close().await;
    assert!(wal.bytes.get() <= LIMIT, "the WAL started over: {seen}");
    assert_eq!(
        (wal.restart_count("done"), wal.restart_count("gave_up")),
        (0, 0),
        "the WAL never reached twice its limit, so no RESTART ran: {seen}"
    );
    assert_eq!(wal.failures.get(), 0, "no checkpoint failed: {seen}");
    Ok(())
}

/// SQLite only: while appends keep coming, the group commit keeps the single writer connection
/// from one batch to the next, but only for a short while: other writes (a login's session
/// here) must still get their turn while the appends go on, not only once they stop. More
/// appenders than a batch holds keep the committer's queue from ever being empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_other_writes_go_on_while_appends_never_pause() -> anyhow::Result<()> {
    use std::time::{Duration, Instant};

    const APPENDERS: usize = 300;
    const SESSIONS: usize = 20;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("parley.db");
    let store = store::connect(&format!("sqlite://{}", path.display())).await?;
    let agent = store.upsert_agent("mina", "Mina", "not-a-hash").await?;
    let chat = cases::chat(&*store).await?;
    let appenders = Appenders::start(&store, std::slice::from_ref(&chat), APPENDERS, "hi");
    // Let the appends get going first.
    let started = Instant::now();
    while appenders.count() < 1000 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = appenders.count();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sessions = 0;
    while sessions < SESSIONS && Instant::now() < deadline {
        let token = format!("tok-{sessions}");
        let write = store.create_session(&token, &agent.id, i64::MAX);
        if let Ok(stored) = tokio::time::timeout_at(deadline.into(), write).await {
            stored?;
            sessions += 1;
        }
    }
    let during = appenders.count() - before;
    appenders.stop().await?;
    store.close().await;
    assert!(before >= 1000, "the appends got going ({before} stored)");
    assert_eq!(
        sessions, SESSIONS,
        "every session was stored while the appends went on ({during} appends meanwhile)"
    );
    assert!(
        during > 0,
        "appends went on beside the sessions ({during} meanwhile)"
    );
    Ok(())
}

/// SQLite URL options are checked: a misspelt or unknown one stops the relay at start instead
/// of being ignored.
#[tokio::test]
async fn sqlite_url_options_are_checked() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let base = format!("sqlite://{}", dir.path().join("parley.db").display());
    for (suffix, expected) in [
        ("?wal_limit_mib=0", "wal_limit_mib"),
        ("?wal_limit_mib=lots", "wal_limit_mib"),
        ("?synchronus=full", "unknown SQLite URL option"),
    ] {
        let Err(e) = store::connect(&format!("{base}{suffix}")).await else {
            anyhow::bail!("{suffix} must be refused");
        };
        assert!(
            format!("{e:#}").contains(expected),
            "{suffix}: the error names the problem: {e:#}"
        );
    }
    let store = store::connect(&format!("{base}?synchronous=full&wal_limit_mib=8")).await?;
    store.close().await;
    Ok(())
}

/// Which of `<tag>-<kind>` ([`cases::KINDS`]) occur anywhere in `bytes`.
fn kinds_in(bytes: &[u8], tag: &str) -> Vec<&'static str> {
    cases::KINDS
        .iter()
        .copied()
        .filter(|kind| {
            let needle = format!("{tag}-{kind}");
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .collect()
}

/// The SQLite database's files as they are on disk, after every connection is gone and a
/// `TRUNCATE` checkpoint has moved the WAL into the main file: the main file, the WAL and the
/// shared-memory index, concatenated (a missing one counts as empty).
async fn sqlite_files(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use sqlx::Connection as _;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await?;
    // The closed store's checkpointer and writer thread let go of the file on their own
    // threads, after `close` returned: until then the checkpoint may find it busy. Polled, with
    // a deadline, until it completes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut c)
            .await?;
        if busy == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the WAL could not be checkpointed: something still has the database open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    c.close().await?;
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::read(&file) {
            Ok(bytes) => all.extend(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(all)
}

/// Erasing a visitor leaves none of their words in the SQLite files: not in the database file
/// (free space and free pages are zeroed: `secure_delete`), not in the WAL. Positive control:
/// before the erasure every kind of their data IS found in the same files, and after it
/// another visitor's data still is, so the search is not blind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_leaves_no_canary_in_the_sqlite_files() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("parley.db");
    let url = format!("sqlite://{}", path.display());
    let gone = format!("CANARY{}", &store::new_id()[24..]);
    let kept = format!("KEEPER{}", &store::new_id()[24..]);

    let s = store::connect(&url).await?;
    let (visitor, _) = cases::fill(&*s, &gone).await?;
    cases::fill(&*s, &kept).await?;
    s.close().await;
    drop(s);
    let before = sqlite_files(&path).await?;
    assert_eq!(kinds_in(&before, &gone), cases::KINDS, "positive control");
    let title = format!("{gone}-title").into_bytes();
    assert!(
        !before.windows(title.len()).any(|w| w == title.as_slice()),
        "a replaced page title lingers in free space (secure_delete off?)"
    );

    let s = store::connect(&url).await?;
    let erased = s.erase_visitor(&visitor.id, "ada").await?;
    assert!(erased.is_some());
    s.close().await;
    drop(s);
    let after = sqlite_files(&path).await?;
    assert_eq!(
        kinds_in(&after, &gone),
        Vec::<&str>::new(),
        "left in the files"
    );
    assert_eq!(
        kinds_in(&after, &kept),
        cases::KINDS,
        "the other visitor is still there"
    );
    Ok(())
}

/// Erasing a visitor leaves none of their data in any PostgreSQL table (every table of the
/// schema, each row as text, so a table added later is searched too). Positive control: before
/// the erasure the same search finds every kind. What VACUUM means for the heap files is in
/// ARCHITECTURE.md (the rows are dead at once, their bytes gone after VACUUM reuses the space).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_leaves_no_canary_in_any_postgres_table() -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let db = TestDatabase::create().await?;
    let gone = format!("CANARY{}", &store::new_id()[24..]);
    let kept = format!("KEEPER{}", &store::new_id()[24..]);
    let s = store::connect(db.url()).await?;
    let (visitor, _) = cases::fill(&*s, &gone).await?;
    cases::fill(&*s, &kept).await?;

    let mut c = sqlx::PgConnection::connect(db.url()).await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::TEXT FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await?;
    assert!(tables.len() >= 9, "{tables:?}");
    // Every row of every table as text, with the kinds of `tag` each table holds.
    async fn found(
        c: &mut sqlx::PgConnection,
        tables: &[String],
        tag: &str,
    ) -> anyhow::Result<Vec<&'static str>> {
        let mut kinds = std::collections::BTreeSet::new();
        for table in tables {
            let rows: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT t::TEXT FROM \"{table}\" t WHERE t::TEXT LIKE $1"
            ))
            .bind(format!("%{tag}%"))
            .fetch_all(&mut *c)
            .await?;
            for row in rows {
                kinds.extend(kinds_in(row.as_bytes(), tag));
            }
        }
        Ok(cases::KINDS
            .iter()
            .copied()
            .filter(|k| kinds.contains(k))
            .collect())
    }
    assert_eq!(
        found(&mut c, &tables, &gone).await?,
        cases::KINDS,
        "positive control"
    );
    assert!(s.erase_visitor(&visitor.id, "ada").await?.is_some());
    assert_eq!(
        found(&mut c, &tables, &gone).await?,
        Vec::<&str>::new(),
        "left in a table"
    );
    assert_eq!(found(&mut c, &tables, &kept).await?, cases::KINDS);
    c.close().await?;
    s.close().await;
    Ok(())
}

//! Bot-first routing: the knowledge-base bot answers a bot-first site's visitors until it hands
//! the conversation to people.
//!
//! After a visitor's message in a conversation the bot handles (status `bot`) is stored, acked
//! and published, [`reply`] decides, in a task of its own so the visitor's socket never waits:
//! a request for a person or a strongly negative message hands over at once; otherwise the
//! knowledge base answers (confident: the entry, its link and quick replies; not sure: an offer
//! of a person, and a second "not sure" in a row hands over). The bot's words go through
//! [`App::append`] like anyone's, with [`Effect::BotReply`] / [`Effect::Handoff`]: the store
//! refuses them once a hand-off or an agent's take has cleared the bot flag, so the bot learns
//! it was silenced from the append itself, never from a cache that might be stale.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parley_bot::{
    sentiment, wants_human, Answer, Entry, KnowledgeBase, Lang, Sentiment, Suggestion,
};
use protocol::{Author, ConversationId, Event, EventBody, HandoffReason, QuickReply, Role, Seq};

use crate::config::SiteConfig;
use crate::store::{Effect, Gap, GapKind, NewEvent, StoreError};
use crate::App;

/// How long a knowledge-base search may take before the bot gives up and hands over.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Quick replies suggesting other entries, besides "talk to a person".
const MAX_SUGGESTIONS: usize = 2;
/// Events read back (the latest ones, ending at the visitor's message) to find the question,
/// the entries shown and earlier "not sure"s.
const HISTORY_LIMIT: u64 = 500;
/// Events after the visitor's message read as well: what earlier turns of the bot said while
/// this one waited for its turn.
const LATER_LIMIT: u64 = 100;

/// One site's bot: its knowledge base and the name it signs with.
pub struct SiteBot {
    /// The site's entries, searched on a blocking thread (tantivy is synchronous).
    kb: Arc<KnowledgeBase>,
    /// Shown as the author of bot messages.
    name: String,
    /// One turn at a time per conversation: two quick visitor messages must not get two
    /// answers computed from the same history side by side.
    turns: Turns,
}

/// The per-conversation turn locks of one site's bot (this relay node's turns; a visitor whose
/// tabs are on two nodes can still get two turns at once, which only costs a double answer).
#[derive(Default)]
pub(crate) struct Turns(std::sync::Mutex<HashMap<ConversationId, Arc<tokio::sync::Mutex<()>>>>);

/// A conversation's turn, held while the bot reads, decides and stores; dropping it lets the
/// next turn run and forgets the lock once nobody waits for it.
pub(crate) struct Turn<'a> {
    /// Whose lock this is.
    turns: &'a Turns,
    /// The conversation.
    conversation: ConversationId,
    /// The held lock; `None` only while dropping.
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Turns {
    fn map(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ConversationId, Arc<tokio::sync::Mutex<()>>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the conversation's earlier turns to finish (turns run in the order they ask).
    pub(crate) async fn begin(&self, conversation: &ConversationId) -> Turn<'_> {
        let lock = self.map().entry(conversation.clone()).or_default().clone();
        let guard = lock.lock_owned().await;
        Turn {
            turns: self,
            conversation: conversation.clone(),
            guard: Some(guard),
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.turns.map();
        // Only the map holds it: nobody runs or waits, so the entry can go.
        if map
            .get(&self.conversation)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            map.remove(&self.conversation);
        }
    }
}

impl SiteBot {
    /// A bot over an already loaded knowledge base (tests build their own).
    pub fn new(kb: KnowledgeBase, name: String) -> Self {
        Self {
            kb: Arc::new(kb),
            name,
            turns: Turns::default(),
        }
    }

    /// Loads the bot of a site that has a knowledge base; `None` for a site without one. A
    /// bot-first site without `kb`, or a knowledge base that does not load, is an error naming
    /// the site and the file, so a relay never starts with a bot that cannot answer.
    pub fn load(site: &SiteConfig) -> anyhow::Result<Option<Self>> {
        let Some(dir) = &site.kb else {
            // An external bot (`bot_url`) answers instead: see `crate::external_bot`.
            if site.bot_first() && site.bot_url.is_none() {
                anyhow::bail!(
                    "site {:?}: routing = \"bot_first\" needs `kb`, the directory of its knowledge base, or `bot_url`",
                    site.key
                );
            }
            return Ok(None);
        };
        let kb = KnowledgeBase::load(dir).map_err(|e| {
            anyhow::anyhow!(
                "site {:?}: cannot load knowledge base {}: {e}",
                site.key,
                dir.display()
            )
        })?;
        if site.bot_first() && kb.entries().is_empty() {
            anyhow::bail!(
                "site {:?}: knowledge base {} has no entries",
                site.key,
                dir.display()
            );
        }
        Ok(Some(Self::new(kb, site.bot_name())))
    }

    fn author(&self) -> Author {
        Author {
            role: Role::Bot,
            id: Some("bot".into()),
            name: Some(self.name.clone()),
        }
    }
}

/// Loads the bots of every site that has a knowledge base, by site key.
pub fn load_all(sites: &[SiteConfig]) -> anyhow::Result<HashMap<String, Arc<SiteBot>>> {
    let mut bots = HashMap::new();
    for site in sites {
        if let Some(bot) = SiteBot::load(site)? {
            tracing::info!(site = %site.key, entries = bot.kb.entries().len(), "knowledge base loaded");
            bots.insert(site.key.clone(), Arc::new(bot));
        }
    }
    Ok(bots)
}

/// The language to answer in: Korean when the message has Hangul; English when it has Latin
/// letters; otherwise (digits, emoji) the visitor's browser language.
pub fn language(text: &str, browser_language: &str) -> Lang {
    if text.chars().any(is_hangul) {
        Lang::Ko
    } else if text.chars().any(|c| c.is_ascii_alphabetic()) {
        Lang::En
    } else if browser_language.to_ascii_lowercase().starts_with("ko") {
        Lang::Ko
    } else {
        Lang::En
    }
}

fn is_hangul(c: char) -> bool {
    matches!(c, '\u{AC00}'..='\u{D7A3}' | '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}')
}

/// The quick reply that asks for a person; its text makes [`wants_human`] true.
pub fn talk_to_a_person(lang: Lang) -> QuickReply {
    let text = match lang {
        Lang::En => "Talk to a person",
        Lang::Ko => "상담원 연결",
    };
    QuickReply {
        label: text.into(),
        text: text.into(),
    }
}

/// What the bot says when no entry is a confident match.
pub fn not_sure_text(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "I'm not sure I understood. Could you rephrase, or talk to a person?",
        Lang::Ko => "잘 이해하지 못했어요. 다르게 질문해 주시거나 상담원과 이야기해 보시겠어요?",
    }
}

/// What the bot does about one visitor message.
enum Decision {
    /// Store this bot message.
    Say(EventBody),
    /// Hand the conversation to people.
    Handoff(HandoffReason),
}

/// Answers the visitor message `text` just stored in `conversation` (a bot conversation).
/// Every outcome is stored and published, or logged: a failing search hands over
/// (`bot_failed`) rather than leaving the visitor waiting.
pub async fn reply(
    app: Arc<App>,
    bot: Arc<SiteBot>,
    conversation: ConversationId,
    seq: Seq,
    text: String,
    browser_language: String,
) {
    let _turn = bot.turns.begin(&conversation).await;
    let lang = language(&text, &browser_language);
    // The latest window, not the first events: in a long conversation "the bot's last message"
    // must be the last one, and reading from seq 1 would grow with every message. It also holds
    // what earlier turns said while this one waited.
    let from = seq.saturating_sub(HISTORY_LIMIT);
    let (history, readable) = match app
        .store
        .events_after(&conversation, from, (HISTORY_LIMIT + LATER_LIMIT) as i64)
        .await
    {
        Ok(events) => (events, true),
        Err(e) => {
            tracing::warn!(error = %e, "bot could not read the conversation; handing over");
            (Vec::new(), false)
        }
    };
    if answered_later(&history, seq) {
        // A turn for a later message ran first and answered it: answering this older one now
        // would only confuse the visitor.
        tracing::debug!(conversation = %conversation.0, seq, "bot turn superseded");
        return;
    }
    let shown = last_answer(&bot.kb, &history);
    let mut gap = None;
    let decision = if !readable {
        Decision::Handoff(HandoffReason::BotFailed)
    } else if wants_human(&text, lang) {
        Decision::Handoff(HandoffReason::Asked)
    } else if !clicked_quick_reply(&history, &text) && sentiment(&text) == Sentiment::Negative {
        // A quick reply the bot offered ("Damaged or faulty item") names a topic; it is not the
        // visitor's mood, so only typed text can hand over for negativity.
        Decision::Handoff(HandoffReason::Negative)
    } else {
        match search(&bot, &text, lang).await {
            None => Decision::Handoff(HandoffReason::BotFailed),
            Some(Answer::Confident {
                entry, suggestions, ..
            }) => Decision::Say(EventBody::Message {
                text: cut(&entry.body),
                client_id: None,
                buttons: buttons(&suggestions, lang),
                link: (!entry.url.is_empty()).then(|| entry.url.clone()),
                sentiment: None,
            }),
            Some(Answer::NotSure { suggestions }) => {
                gap = Some((GapKind::Unanswered, text.clone(), None));
                if last_bot_was_not_sure(&history) {
                    Decision::Handoff(HandoffReason::NotUnderstood)
                } else {
                    Decision::Say(EventBody::Message {
                        text: not_sure_text(lang).into(),
                        client_id: None,
                        buttons: buttons(&suggestions, lang),
                        link: None,
                        sentiment: None,
                    })
                }
            }
        }
    };
    if let (
        Decision::Handoff(HandoffReason::Asked | HandoffReason::Negative),
        Some((entry, question)),
    ) = (&decision, &shown)
    {
        // The visitor asked for a person right after an answer: that entry did not help.
        gap = Some((
            GapKind::HandoffAfterAnswer,
            question.clone(),
            Some((entry.id.clone(), entry.title.clone())),
        ));
    }
    let new = match decision {
        Decision::Say(body) => NewEvent {
            author: bot.author(),
            body,
            client_id: None,
            effect: Effect::BotReply,
        },
        Decision::Handoff(reason) => NewEvent {
            author: Author::system(),
            body: EventBody::Handoff {
                reason,
                summary: summary(&bot.kb, &history, &text),
            },
            client_id: None,
            effect: Effect::Handoff,
        },
    };
    match app.append(&conversation, new).await {
        Ok(appended) => app.publish(&appended).await,
        // A hand-off or an agent's take got there first: the bot is silent from now on.
        Err(StoreError::Forbidden) | Err(StoreError::Closed) => {
            tracing::debug!(conversation = %conversation.0, "bot silenced before it spoke");
        }
        Err(e) => {
            tracing::error!(error = %e, conversation = %conversation.0, "bot could not store its reply")
        }
    }
    if let Some((kind, question, entry)) = gap {
        record_gap(&app, &conversation, seq, kind, question, entry).await;
    }
}

/// Keeps a knowledge gap for the managers' report (see [`crate::gaps`]), with the site and the
/// visitor's page from the conversation. A failure is logged: the visitor's chat goes on.
async fn record_gap(
    app: &App,
    conversation: &ConversationId,
    seq: Seq,
    kind: GapKind,
    question: String,
    entry: Option<(String, String)>,
) {
    let record = match app.store.conversation(conversation).await {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the conversation of a knowledge gap");
            return;
        }
    };
    let (entry_id, entry_title) = entry.unzip();
    let gap = Gap {
        site: record.site,
        conversation_id: conversation.clone(),
        seq,
        kind,
        question,
        entry_id,
        entry_title,
        page_url: (!record.context.url.is_empty()).then_some(record.context.url),
        at: 0,
    };
    if let Err(e) = app.store.record_gap(&gap).await {
        tracing::warn!(error = %e, "could not record a knowledge gap");
    }
}

/// Whether a visitor message after `seq` was already answered by the bot (its turn ran first).
fn answered_later(history: &[Event], seq: Seq) -> bool {
    let Some(later) = history
        .iter()
        .find(|e| e.seq > seq && e.author.role == Role::Visitor)
    else {
        return false;
    };
    history
        .iter()
        .any(|e| e.seq > later.seq && e.author.role == Role::Bot)
}

/// The entry the bot's latest message answered with, and the visitor's question before it;
/// `None` when the bot's latest message was not an entry (a "not sure", nothing yet).
fn last_answer<'k>(kb: &'k KnowledgeBase, history: &[Event]) -> Option<(&'k Entry, String)> {
    let at = history.iter().rposition(|e| e.author.role == Role::Bot)?;
    let text = history[at].message_text()?;
    let entry = kb.entries().iter().find(|e| e.body.trim() == text.trim())?;
    let question = history[..at]
        .iter()
        .rev()
        .find(|e| e.author.role == Role::Visitor)
        .and_then(Event::message_text)?;
    Some((entry, question.to_owned()))
}

/// Searches on a blocking thread; `None` when the search panicked or took too long.
async fn search(bot: &SiteBot, text: &str, lang: Lang) -> Option<Answer> {
    let kb = bot.kb.clone();
    let question = text.to_owned();
    let task = tokio::task::spawn_blocking(move || kb.answer(&question, lang));
    match tokio::time::timeout(SEARCH_TIMEOUT, task).await {
        Ok(Ok(answer)) => Some(answer),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "knowledge-base search failed");
            None
        }
        Err(_) => {
            tracing::error!("knowledge-base search timed out");
            None
        }
    }
}

/// Up to [`MAX_SUGGESTIONS`] other entries, then "talk to a person".
fn buttons(suggestions: &[Suggestion], lang: Lang) -> Vec<QuickReply> {
    suggestions
        .iter()
        .take(MAX_SUGGESTIONS)
        .map(|s| QuickReply {
            label: s.title.clone(),
            text: s.title.clone(),
        })
        .chain(std::iter::once(talk_to_a_person(lang)))
        .collect()
}

/// Whether `text` is one of the quick replies of the bot's latest message (a click, not typing).
fn clicked_quick_reply(history: &[Event], text: &str) -> bool {
    history
        .iter()
        .rev()
        .find(|e| e.author.role == Role::Bot)
        .is_some_and(|e| offered(e).iter().any(|b| b.text == text))
}

/// The quick replies a bot message offered.
fn offered(e: &Event) -> &[QuickReply] {
    match &e.body {
        EventBody::Message { buttons, .. } => buttons,
        _ => &[],
    }
}

/// The visitor's messages that were typed: a message repeating a quick reply of the bot
/// message before it was a click, which names a topic and says nothing of the visitor's mood.
fn typed_visitor_texts(history: &[Event]) -> Vec<&str> {
    let mut buttons: &[QuickReply] = &[];
    let mut typed = Vec::new();
    for e in history {
        match (e.author.role, e.message_text()) {
            (Role::Bot, _) => buttons = offered(e),
            (Role::Visitor, Some(text)) if !buttons.iter().any(|b| b.text == text) => {
                typed.push(text)
            }
            _ => {}
        }
    }
    typed
}

/// Whether the bot's previous message was "not sure" (in either language).
fn last_bot_was_not_sure(history: &[Event]) -> bool {
    history
        .iter()
        .rev()
        .find(|e| e.author.role == Role::Bot)
        .and_then(Event::message_text)
        .is_some_and(|t| t == not_sure_text(Lang::En) || t == not_sure_text(Lang::Ko))
}

/// The hand-off line for agents: the first question, the entries the bot showed, the mood.
pub fn summary(kb: &KnowledgeBase, history: &[Event], current: &str) -> String {
    let visitor: Vec<&str> = history
        .iter()
        .filter(|e| e.author.role == Role::Visitor)
        .filter_map(Event::message_text)
        .collect();
    let first = visitor.first().copied().unwrap_or(current);
    let mut shown: Vec<&str> = Vec::new();
    for text in history
        .iter()
        .filter(|e| e.author.role == Role::Bot)
        .filter_map(Event::message_text)
    {
        if let Some(entry) = kb.entries().iter().find(|e| e.body.trim() == text.trim()) {
            if !shown.contains(&entry.title.as_str()) {
                shown.push(&entry.title);
            }
        }
    }
    let typed = typed_visitor_texts(history);
    let moods: Vec<Sentiment> = typed
        .iter()
        .copied()
        .chain(visitor.is_empty().then_some(current))
        .map(sentiment)
        .collect();
    let mood = if moods.contains(&Sentiment::Negative) {
        "negative"
    } else if moods.last() == Some(&Sentiment::Positive) {
        "positive"
    } else {
        "neutral"
    };
    let first: String = first.split_whitespace().collect::<Vec<_>>().join(" ");
    let first: String = if first.chars().count() > 120 {
        first
            .chars()
            .take(120)
            .chain(std::iter::once('…'))
            .collect()
    } else {
        first
    };
    let shown = if shown.is_empty() {
        "nothing".to_owned()
    } else {
        shown.join(", ")
    };
    format!("Asked about: {first}; shown: {shown}; mood: {mood}")
}

/// An entry body cut to what a message may carry.
fn cut(text: &str) -> String {
    let text = text.trim();
    if text.len() <= protocol::MAX_TEXT_BYTES {
        return text.to_owned();
    }
    let mut end = protocol::MAX_TEXT_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_talk_to_a_person_button_asks_for_a_person() {
        for lang in [Lang::En, Lang::Ko] {
            assert!(wants_human(&talk_to_a_person(lang).text, lang), "{lang:?}");
        }
    }

    #[test]
    fn a_clicked_topic_is_not_a_mood() {
        let bot_said = Event {
            conversation_id: ConversationId::from("c"),
            seq: 2,
            at: 0,
            author: Author {
                role: Role::Bot,
                id: Some("bot".into()),
                name: None,
            },
            body: EventBody::Message {
                text: "Returns are free.".into(),
                client_id: None,
                buttons: vec![protocol::QuickReply {
                    label: "Damaged or faulty item".into(),
                    text: "Damaged or faulty item".into(),
                }],
                link: None,
                sentiment: None,
            },
        };
        let history = vec![bot_said.clone()];
        assert!(clicked_quick_reply(&history, "Damaged or faulty item"));
        assert!(!clicked_quick_reply(
            &history,
            "my item arrived damaged, awful"
        ));
        // The premise of the fix: the scorer alone reads this topic as negative.
        assert_eq!(sentiment("Damaged or faulty item"), Sentiment::Negative);

        // The agent's summary must not call the visitor negative for a click either.
        let visitor = |seq, text: &str| Event {
            conversation_id: ConversationId::from("c"),
            seq,
            at: 0,
            author: Author {
                role: Role::Visitor,
                id: Some("v".into()),
                name: None,
            },
            body: EventBody::message(text, None),
        };
        let mut history = vec![
            visitor(1, "How do I return an item?"),
            bot_said,
            visitor(3, "Damaged or faulty item"),
        ];
        assert_eq!(
            typed_visitor_texts(&history),
            vec!["How do I return an item?"]
        );
        // The crate's directory at run time first (see `parley_tests::repo_root` for why).
        let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
        let kb =
            KnowledgeBase::load(crate_dir.join("../demo-site/kb")).expect("demo knowledge base");
        let line = summary(&kb, &history, "Damaged or faulty item");
        assert!(line.contains("mood: neutral"), "{line}");
        // …while a typed complaint still counts.
        history.push(visitor(4, "this is awful, the mug arrived broken"));
        let line = summary(&kb, &history, "this is awful, the mug arrived broken");
        assert!(line.contains("mood: negative"), "{line}");
    }

    #[test]
    fn answers_in_the_language_of_the_message() {
        assert_eq!(language("반품은 어떻게 하나요?", "en-US"), Lang::Ko);
        assert_eq!(language("How long does shipping take?", "ko-KR"), Lang::En);
        assert_eq!(language("???", "ko-KR"), Lang::Ko);
        assert_eq!(language("123", ""), Lang::En);
    }

    #[test]
    fn cuts_long_bodies_on_a_char_boundary() {
        let long = "가".repeat(protocol::MAX_TEXT_BYTES);
        let cut = cut(&long);
        assert!(cut.len() <= protocol::MAX_TEXT_BYTES);
        assert!(cut.ends_with('…'));
    }
}

//! Knowledge-base bot core for Parley.
//!
//! A bot answers visitors first and hands over to a human agent when it cannot help. This crate
//! holds everything that decision needs and nothing about transport:
//!
//! - [`KnowledgeBase`] loads a per-site directory of Markdown entries (TOML front matter between
//!   `+++` lines, see [`kb`]) and answers questions with [`KnowledgeBase::answer`], returning an
//!   [`Answer`]: a confident entry, or "not sure" (the relay then offers a person).
//! - [`wants_human`] spots visitors who ask for a person outright.
//! - [`sentiment`] is a small lexicon scorer for English and Korean, so an upset visitor can be
//!   routed to a person sooner.
//! - [`similar`] groups similar questions (the relay's knowledge-gap report) with the same
//!   tokenizers as the search.
//! - [`eval`] measures answer quality on a labelled question set (used by the
//!   `parley-bot-eval` binary and by a test that guards quality in CI).

pub mod eval;
pub mod handoff;
pub mod kb;
mod retrieval;
pub mod sentiment;
pub mod similar;
mod tokenize;

pub use handoff::wants_human;
pub use kb::{Answer, Entry, KbError, KnowledgeBase, Lang, Suggestion, DEFAULT_THRESHOLD};
pub use sentiment::{sentiment, Sentiment};

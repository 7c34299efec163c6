//! The knowledge-gap report for managers: `GET /api/gaps`.
//!
//! The bot records a [`Gap`] when it is not sure (an unanswered question) and when a visitor
//! asks for a person right after an answer (counted against the entry shown; see
//! [`crate::bot`]). This module reads the recent ones and builds a [`GapReport`]: unanswered
//! questions grouped by similarity with the bot crate's tokenizers
//! ([`parley_bot::similar::group`]), computed on read so the grouping can improve without
//! rewriting stored rows, and the entries counted against, with counts.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use parley_bot::similar;
use protocol::{EntryMisses, GapReport, QuestionGroup};
use serde::Deserialize;

use crate::access::Scope;
use crate::auth::SessionAgent;
use crate::http::AppError;
use crate::store::{now_ms, Gap, GapKind};
use crate::App;

/// Days covered when the request does not say.
const DEFAULT_DAYS: u32 = 30;
/// Longest period a request may ask for.
const MAX_DAYS: u32 = 366;
/// Most gaps read for one report: grouping is quadratic in the worst case, and the newest
/// few thousand questions say what is missing well enough.
const READ_LIMIT: i64 = 2000;
/// Examples, pages and conversations listed per group.
const SHOWN: usize = 5;

/// Query of `GET /api/gaps`.
#[derive(Deserialize)]
pub struct GapsQuery {
    /// One site's gaps; all sites when absent.
    site: Option<String>,
    /// How many days back (1–366, default 30).
    days: Option<u32>,
}

/// `GET /api/gaps?site=KEY&days=N`: the report, for a logged-in agent.
pub async fn report(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    SessionAgent(agent): SessionAgent,
    query: Result<Query<GapsQuery>, QueryRejection>,
) -> Result<Json<GapReport>, AppError> {
    app.public.check_origin(&headers)?;
    let Query(query) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let days = query.days.unwrap_or(DEFAULT_DAYS);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(AppError::BadRequest(format!(
            "days must be 1 to {MAX_DAYS}"
        )));
    }
    let scope = Scope::of(&agent);
    if let Some(site) = &query.site {
        // Another team's site is as unknown to this agent as a site that does not exist.
        if !app.sites.contains_key(site) || !scope.covers(site) {
            return Err(AppError::UnknownSite);
        }
    }
    let since = now_ms() - i64::from(days) * 24 * 60 * 60 * 1000;
    let gaps = app
        .store
        .gaps(query.site.as_deref(), since, READ_LIMIT)
        .await
        .map_err(|e| AppError::Internal(e.into()))?
        .into_iter()
        .filter(|g| scope.covers(&g.site))
        .collect::<Vec<_>>();
    // Tokenizing and grouping a few thousand texts is CPU work: off the async threads.
    let report = tokio::task::spawn_blocking(move || build(&gaps, since))
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    Ok(Json(report))
}

/// Builds the report from gaps listed newest first.
pub fn build(gaps: &[Gap], since: i64) -> GapReport {
    let unanswered: Vec<&Gap> = gaps
        .iter()
        .filter(|g| g.kind == GapKind::Unanswered)
        .collect();
    let texts: Vec<&str> = unanswered.iter().map(|g| g.question.as_str()).collect();
    let mut questions: Vec<QuestionGroup> = similar::group(&texts, similar::DEFAULT_SIMILARITY)
        .into_iter()
        .map(|members| {
            let members: Vec<&Gap> = members.into_iter().map(|i| unanswered[i]).collect();
            QuestionGroup {
                count: members.len() as u32,
                examples: distinct(members.iter().map(|g| g.question.trim())),
                sites: distinct_all(members.iter().map(|g| g.site.as_str())),
                pages: distinct(members.iter().filter_map(|g| g.page_url.as_deref())),
                latest_at: members.iter().map(|g| g.at).max().unwrap_or(0),
                conversations: distinct(members.iter().map(|g| g.conversation_id.0.as_str()))
                    .into_iter()
                    .map(protocol::ConversationId)
                    .collect(),
            }
        })
        .collect();
    questions.sort_by(|a, b| b.count.cmp(&a.count).then(b.latest_at.cmp(&a.latest_at)));

    let mut entries: Vec<EntryMisses> = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    for g in gaps
        .iter()
        .filter(|g| g.kind == GapKind::HandoffAfterAnswer)
    {
        let Some(id) = g.entry_id.as_deref() else {
            continue;
        };
        let i = *index.entry((g.site.as_str(), id)).or_insert_with(|| {
            entries.push(EntryMisses {
                site: g.site.clone(),
                entry_id: id.to_owned(),
                title: g.entry_title.clone().unwrap_or_else(|| id.to_owned()),
                count: 0,
                questions: Vec::new(),
                latest_at: g.at,
            });
            entries.len() - 1
        });
        let e = &mut entries[i];
        e.count += 1;
        e.latest_at = e.latest_at.max(g.at);
        let q = g.question.trim();
        if e.questions.len() < SHOWN && !e.questions.iter().any(|x| x == q) {
            e.questions.push(q.to_owned());
        }
    }
    entries.sort_by(|a, b| b.count.cmp(&a.count).then(b.latest_at.cmp(&a.latest_at)));

    GapReport {
        since,
        unanswered: unanswered.len() as u32,
        questions,
        entries,
    }
}

/// The first [`SHOWN`] distinct values, in order.
fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if out.len() == SHOWN {
            break;
        }
        if !v.is_empty() && !out.iter().any(|o| o == v) {
            out.push(v.to_owned());
        }
    }
    out
}

/// Every distinct value, in order.
fn distinct_all<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if !out.iter().any(|o| o == v) {
            out.push(v.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(seq: u64, kind: GapKind, question: &str, entry: Option<&str>, at: i64) -> Gap {
        Gap {
            site: "demo".into(),
            conversation_id: format!("c{seq}").as_str().into(),
            seq,
            kind,
            question: question.into(),
            entry_id: entry.map(Into::into),
            entry_title: entry.map(|e| format!("Title of {e}")),
            page_url: Some("https://shop.example/cart".into()),
            at,
        }
    }

    #[test]
    fn groups_questions_and_counts_entries() {
        use GapKind::*;
        let gaps = vec![
            gap(7, Unanswered, "Do you sell gift cards?", None, 70),
            gap(
                6,
                HandoffAfterAnswer,
                "How long is shipping?",
                Some("shipping"),
                60,
            ),
            gap(5, Unanswered, "Do you ship to Canada?", None, 50),
            gap(4, Unanswered, "gift card available?", None, 40),
            gap(
                3,
                HandoffAfterAnswer,
                "shipping time?",
                Some("shipping"),
                30,
            ),
            gap(2, Unanswered, "Do you sell gift cards?", None, 20),
            gap(1, HandoffAfterAnswer, "refund?", Some("returns"), 10),
        ];
        let r = build(&gaps, 0);
        assert_eq!(r.unanswered, 4);
        assert_eq!(r.questions.len(), 2, "{:?}", r.questions);
        assert_eq!(r.questions[0].count, 3);
        assert_eq!(
            r.questions[0].examples,
            ["Do you sell gift cards?", "gift card available?"]
        );
        assert_eq!(r.questions[0].latest_at, 70);
        assert_eq!(r.questions[0].pages, ["https://shop.example/cart"]);
        assert_eq!(r.questions[1].count, 1);
        assert_eq!(r.entries.len(), 2);
        assert_eq!(r.entries[0].entry_id, "shipping");
        assert_eq!(r.entries[0].count, 2);
        assert_eq!(r.entries[0].title, "Title of shipping");
        assert_eq!(
            r.entries[0].questions,
            ["How long is shipping?", "shipping time?"]
        );
        assert_eq!(r.entries[1].count, 1);
        assert_eq!(
            build(&[], 5),
            GapReport {
                since: 5,
                ..GapReport::default()
            }
        );
    }
}

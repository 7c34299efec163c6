//! Measuring answer quality on a labelled question set.
//!
//! The set is a TOML file of `[[question]]` tables with `text`, `lang` ("en" | "ko") and
//! `expect` (an entry id, or `"none"` for questions the KB should not answer). Used by the
//! `parley-bot-eval` binary (for calibration) and by a test that fails CI when a KB or
//! tokenizer change degrades quality.

use std::path::Path;

use serde::Deserialize;

use crate::kb::{Answer, KnowledgeBase, Lang};

/// What `expect` holds for out-of-scope questions.
pub const NONE: &str = "none";

/// One labelled question.
#[derive(Debug, Clone, Deserialize)]
pub struct Question {
    /// What the visitor types.
    pub text: String,
    /// The visitor's language.
    pub lang: Lang,
    /// Expected entry id, or [`NONE`].
    pub expect: String,
}

/// The file layout.
#[derive(Deserialize)]
struct QuestionFile {
    /// All questions.
    question: Vec<Question>,
}

/// Why the question set could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The file could not be read.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The file is not valid.
    #[error("{0}: {1}")]
    Parse(String, toml::de::Error),
    /// A question expects an id the KB does not have (a typo in the set would silently count
    /// as a miss otherwise).
    #[error("question {0:?} expects unknown entry {1:?}")]
    UnknownId(String, String),
}

/// Reads a question set and checks its labels against `kb`.
pub fn load_questions(path: &Path, kb: &KnowledgeBase) -> Result<Vec<Question>, EvalError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::Io(name.clone(), e))?;
    let file: QuestionFile = toml::from_str(&text).map_err(|e| EvalError::Parse(name, e))?;
    for q in &file.question {
        if q.expect != NONE && kb.entry(&q.expect).is_none() {
            return Err(EvalError::UnknownId(q.text.clone(), q.expect.clone()));
        }
    }
    Ok(file.question)
}

/// A question the bot got wrong (or handed off when it need not have).
#[derive(Debug, Clone)]
pub struct Miss {
    /// The question.
    pub question: Question,
    /// Entry the bot answered with confidently, if it did.
    pub got: Option<String>,
    /// Best candidate's confidence (0 when there was none).
    pub score: f32,
    /// True when the miss is a confident wrong answer (worse than handing off).
    pub wrong: bool,
}

/// Aggregate figures of one run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Threshold used.
    pub threshold: f32,
    /// Questions with an expected entry.
    pub answerable: usize,
    /// Questions labelled `none`.
    pub out_of_scope: usize,
    /// Answerable questions answered confidently with the expected entry.
    pub correct: usize,
    /// Confident answers with the wrong entry, or to out-of-scope questions.
    pub wrong: usize,
    /// Out-of-scope questions the bot was not sure about (would hand off).
    pub correctly_not_sure: usize,
    /// Every question not handled ideally.
    pub misses: Vec<Miss>,
}

impl Report {
    /// Correct answers, as % of answerable questions.
    pub fn correct_pct(&self) -> f32 {
        pct(self.correct, self.answerable)
    }
    /// Wrong answers, as % of all questions.
    pub fn wrong_pct(&self) -> f32 {
        pct(self.wrong, self.answerable + self.out_of_scope)
    }
    /// Hand-offs on out-of-scope questions, as % of those.
    pub fn correctly_not_sure_pct(&self) -> f32 {
        pct(self.correctly_not_sure, self.out_of_scope)
    }
}

/// `n / d` in percent (0 when `d` is 0).
fn pct(n: usize, d: usize) -> f32 {
    if d == 0 {
        0.0
    } else {
        100.0 * n as f32 / d as f32
    }
}

/// Asks `kb` every question and tallies the outcomes at the KB's current threshold.
pub fn run(kb: &KnowledgeBase, questions: &[Question]) -> Report {
    let mut r = Report {
        threshold: kb.threshold(),
        answerable: 0,
        out_of_scope: 0,
        correct: 0,
        wrong: 0,
        correctly_not_sure: 0,
        misses: Vec::new(),
    };
    for q in questions {
        let in_scope = q.expect != NONE;
        if in_scope {
            r.answerable += 1;
        } else {
            r.out_of_scope += 1;
        }
        let (got, score) = match kb.answer(&q.text, q.lang) {
            Answer::Confident { entry, score, .. } => (Some(entry.id), score),
            Answer::NotSure { .. } => (None, kb.best_score(&q.text, q.lang)),
        };
        let ok = match (&got, in_scope) {
            (Some(id), true) if *id == q.expect => {
                r.correct += 1;
                true
            }
            (None, false) => {
                r.correctly_not_sure += 1;
                true
            }
            (Some(_), _) => {
                r.wrong += 1;
                false
            }
            (None, true) => false,
        };
        if !ok {
            r.misses.push(Miss {
                question: q.clone(),
                wrong: got.is_some(),
                got,
                score,
            });
        }
    }
    r
}

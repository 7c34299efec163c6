//! The knowledge base: loading Markdown entries and answering questions.
//!
//! # File format
//! One entry per `*.md` file anywhere under the site's KB directory (sub-directories such as
//! `en/` and `ko/` are only for people). Each file starts with TOML front matter:
//!
//! ```text
//! +++
//! id = "returns"                # unique across the KB; what the eval set refers to
//! lang = "en"                   # "en" or "ko"
//! title = "Return policy"       # shown on quick-reply buttons
//! url = "/help.html#returns"    # page of the site with the long version
//! questions = ["Can I send something back?"]   # optional: phrasings that boost retrieval
//! tags = ["returns"]            # optional
//! +++
//!
//! Answer text (plain Markdown, sent to the visitor as plain text).
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::retrieval::Retriever;

/// Confidence at or above which [`KnowledgeBase::answer`] answers on its own.
///
/// Calibrated on `bot/eval/questions.toml` with `parley-bot-eval`, which prints a sweep. On
/// the demo KB (99 questions, 18 out of scope):
///
/// | threshold | correct (of answerable) | wrong (of all) | not sure (of out-of-scope) |
/// |-----------|-------------------------|----------------|----------------------------|
/// | 0.25      | 88.9 %                  | 7.1 %          | 88.9 %                     |
/// | **0.30**  | **86.4 %**              | **3.0 %**      | **94.4 %**                 |
/// | 0.35      | 81.5 %                  | 2.0 %          | 94.4 %                     |
/// | 0.45      | 76.5 %                  | 0.0 %          | 100 %                      |
///
/// 0.30 is the lowest value that keeps wrong answers well under the 5 % target; erring high
/// is cheap (a person takes over), erring low gives visitors wrong answers.
pub const DEFAULT_THRESHOLD: f32 = 0.30;

/// Language of an entry or a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// English.
    En,
    /// Korean.
    Ko,
}

impl Lang {
    /// The code used in front matter and the eval file ("en" / "ko").
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ko => "ko",
        }
    }
}

/// One knowledge-base entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Stable identifier, unique across the KB (eval labels and logs refer to it).
    pub id: String,
    /// Language; questions are only matched against entries of their own language.
    pub lang: Lang,
    /// Short title, used for quick-reply buttons.
    pub title: String,
    /// Page of the site with more detail, so the bot can link to it.
    pub url: String,
    /// Example phrasings; indexed with a boost because they look like what visitors type.
    pub questions: Vec<String>,
    /// Free-form tags, for site owners' own grouping.
    pub tags: Vec<String>,
    /// The answer, plain text (Markdown source; the bot never renders it as HTML).
    pub body: String,
    /// File the entry came from, so errors and logs can point at it.
    pub path: PathBuf,
}

/// A related entry offered as a quick-reply button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    /// Entry id (what the button sends back).
    pub id: String,
    /// Entry title (the button label).
    pub title: String,
}

/// What the bot makes of a question.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The best entry scored at or above the threshold: send its body.
    Confident {
        /// The entry to answer with.
        entry: Entry,
        /// Normalised confidence in `0.0..=1.0` (see [`crate::retrieval`]).
        score: f32,
        /// Up to 3 other relevant entries.
        suggestions: Vec<Suggestion>,
    },
    /// Nothing scored high enough: the relay should offer a person.
    NotSure {
        /// Up to 3 entries that might still help, best first (may be empty).
        suggestions: Vec<Suggestion>,
    },
}

/// Why a knowledge base could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KbError {
    /// The directory or a file in it could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file does not start with a `+++` line.
    #[error("{path}:1: missing front matter (the file must start with a `+++` line)")]
    MissingFrontMatter {
        /// The offending file.
        path: PathBuf,
    },
    /// The opening `+++` has no closing `+++` line.
    #[error("{path}:{line}: front matter opened here is never closed with `+++`")]
    UnclosedFrontMatter {
        /// The offending file.
        path: PathBuf,
        /// Line of the opening `+++`.
        line: usize,
    },
    /// The front matter is not valid TOML or lacks a required key.
    #[error("{path}:{line}: bad front matter: {message}")]
    FrontMatter {
        /// The offending file.
        path: PathBuf,
        /// 1-based line in the file.
        line: usize,
        /// What the TOML parser said.
        message: String,
    },
    /// The entry has no answer text.
    #[error("{path}: entry has an empty body")]
    EmptyBody {
        /// The offending file.
        path: PathBuf,
    },
    /// Two files use the same id.
    #[error("{path}: duplicate id {id:?} (first used in {first})")]
    DuplicateId {
        /// The id used twice.
        id: String,
        /// The second file.
        path: PathBuf,
        /// The first file.
        first: PathBuf,
    },
    /// The search index could not be built.
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
}

/// Front matter as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    /// See [`Entry::id`].
    id: String,
    /// See [`Entry::lang`].
    lang: Lang,
    /// See [`Entry::title`].
    title: String,
    /// See [`Entry::url`].
    url: String,
    /// See [`Entry::questions`].
    #[serde(default)]
    questions: Vec<String>,
    /// See [`Entry::tags`].
    #[serde(default)]
    tags: Vec<String>,
}

/// Parses one entry file's text; `path` is only used in errors.
pub fn parse_entry(path: &Path, text: &str) -> Result<Entry, KbError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    if lines.next().map(str::trim_end) != Some("+++") {
        return Err(KbError::MissingFrontMatter {
            path: path.to_owned(),
        });
    }
    let fm_start = text.find('\n').map_or(text.len(), |i| i + 1);
    let mut offset = fm_start;
    let mut fm_end = None;
    for line in lines {
        if line.trim_end() == "+++" {
            fm_end = Some((offset, offset + line.len()));
            break;
        }
        offset += line.len();
    }
    let Some((fm_end, body_start)) = fm_end else {
        return Err(KbError::UnclosedFrontMatter {
            path: path.to_owned(),
            line: 1,
        });
    };
    let fm_text = &text[fm_start..fm_end];
    let fm: FrontMatter = toml::from_str(fm_text).map_err(|e| {
        let line_in_fm = e.span().map_or(0, |s| {
            fm_text[..s.start.min(fm_text.len())].matches('\n').count()
        });
        KbError::FrontMatter {
            path: path.to_owned(),
            // +1 for the opening `+++`, +1 for 1-based lines.
            line: line_in_fm + 2,
            message: e.message().to_owned(),
        }
    })?;
    let body = text[body_start..].trim().to_owned();
    if body.is_empty() {
        return Err(KbError::EmptyBody {
            path: path.to_owned(),
        });
    }
    Ok(Entry {
        id: fm.id,
        lang: fm.lang,
        title: fm.title,
        url: fm.url,
        questions: fm.questions,
        tags: fm.tags,
        body,
        path: path.to_owned(),
    })
}

/// A loaded knowledge base with its in-memory search index.
pub struct KnowledgeBase {
    /// All entries, sorted by path so loading is deterministic.
    entries: Vec<Entry>,
    /// One index per language (see [`crate::retrieval`]).
    retriever: Retriever,
    /// Confidence needed for [`Answer::Confident`].
    threshold: f32,
}

impl std::fmt::Debug for KnowledgeBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeBase")
            .field("entries", &self.entries.len())
            .field("threshold", &self.threshold)
            .finish()
    }
}

impl KnowledgeBase {
    /// Loads every `*.md` file under `dir` (recursively) and builds the index in RAM.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, KbError> {
        let mut paths = Vec::new();
        collect_md(dir.as_ref(), &mut paths)?;
        paths.sort();
        let mut entries = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| KbError::Io {
                path: path.clone(),
                source,
            })?;
            entries.push(parse_entry(&path, &text)?);
        }
        Self::from_entries(entries)
    }

    /// Builds a knowledge base from entries already in memory (ids must be unique).
    pub fn from_entries(entries: Vec<Entry>) -> Result<Self, KbError> {
        let mut seen: std::collections::HashMap<&str, &Path> = Default::default();
        for e in &entries {
            if let Some(first) = seen.insert(&e.id, &e.path) {
                return Err(KbError::DuplicateId {
                    id: e.id.clone(),
                    path: e.path.clone(),
                    first: first.to_owned(),
                });
            }
        }
        let retriever = Retriever::build(&entries)?;
        Ok(Self {
            entries,
            retriever,
            threshold: DEFAULT_THRESHOLD,
        })
    }

    /// All entries.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry with this id, if any (quick-reply buttons send ids back).
    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// The confidence threshold in use.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Replaces the confidence threshold (for calibration; the default is
    /// [`DEFAULT_THRESHOLD`]).
    pub fn set_threshold(&mut self, threshold: f32) {
        self.threshold = threshold;
    }

    /// Confidence of the best candidate for `question` (0 when nothing matches); for
    /// calibration and logs.
    pub fn best_score(&self, question: &str, lang: Lang) -> f32 {
        self.retriever
            .rank(question, lang)
            .first()
            .map_or(0.0, |h| h.confidence)
    }

    /// Best candidate's entry id and confidence, whatever the threshold; for calibration.
    pub fn best_match(&self, question: &str, lang: Lang) -> Option<(&Entry, f32)> {
        self.retriever
            .rank(question, lang)
            .first()
            .map(|h| (&self.entries[h.entry], h.confidence))
    }

    /// Answers `question`, matching only entries in `lang`.
    pub fn answer(&self, question: &str, lang: Lang) -> Answer {
        let ranked = self.retriever.rank(question, lang);
        let suggestion = |i: usize| Suggestion {
            id: self.entries[i].id.clone(),
            title: self.entries[i].title.clone(),
        };
        // Suggestions must be somewhat relevant: an out-of-scope question gets none rather
        // than three random buttons.
        let floor = self.threshold * 0.6;
        let mut seen = HashSet::new();
        let mut relevant = ranked
            .iter()
            .filter(|h| h.confidence >= floor && seen.insert(h.entry));
        match ranked.first() {
            Some(top) if top.confidence >= self.threshold => {
                let suggestions = relevant
                    .filter(|h| h.entry != top.entry)
                    .take(3)
                    .map(|h| suggestion(h.entry))
                    .collect();
                Answer::Confident {
                    entry: self.entries[top.entry].clone(),
                    score: top.confidence,
                    suggestions,
                }
            }
            _ => Answer::NotSure {
                suggestions: relevant
                    .by_ref()
                    .take(3)
                    .map(|h| suggestion(h.entry))
                    .collect(),
            },
        }
    }
}

/// Pushes every `*.md` file under `dir` onto `out`.
fn collect_md(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), KbError> {
    let io = |source| KbError::Io {
        path: dir.to_owned(),
        source,
    };
    for item in std::fs::read_dir(dir).map_err(io)? {
        let item = item.map_err(io)?;
        let path = item.path();
        let kind = item.file_type().map_err(io)?;
        if kind.is_dir() {
            collect_md(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "md") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Entry, KbError> {
        parse_entry(Path::new("x.md"), text)
    }

    #[test]
    fn parses_front_matter_and_body() {
        let e = parse("+++\nid = \"a\"\nlang = \"ko\"\ntitle = \"T\"\nurl = \"/\"\nquestions = [\"q\"]\n+++\n\nBody\n").unwrap();
        assert_eq!(e.id, "a");
        assert_eq!(e.lang, Lang::Ko);
        assert_eq!(e.questions, vec!["q"]);
        assert_eq!(e.body, "Body");
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("+++\nid = \"a\"\nlang = \"fr\"\ntitle = \"T\"\nurl = \"/\"\n+++\nB\n")
            .unwrap_err();
        match &err {
            KbError::FrontMatter { line, .. } => assert_eq!(*line, 3, "{err}"),
            other => panic!("{other}"),
        }
        assert!(err.to_string().starts_with("x.md:3:"), "{err}");
        assert!(matches!(
            parse("id = 1\n"),
            Err(KbError::MissingFrontMatter { .. })
        ));
        assert!(matches!(
            parse("+++\nid = \"a\"\n"),
            Err(KbError::UnclosedFrontMatter { .. })
        ));
        let missing = parse("+++\nid = \"a\"\n+++\nB\n").unwrap_err();
        assert!(missing.to_string().contains("missing field"), "{missing}");
        assert!(matches!(
            parse("+++\nid = \"a\"\nlang = \"en\"\ntitle = \"T\"\nurl = \"/\"\n+++\n \n"),
            Err(KbError::EmptyBody { .. })
        ));
    }

    #[test]
    fn duplicate_ids_are_rejected() {
        let e =
            parse("+++\nid = \"a\"\nlang = \"en\"\ntitle = \"T\"\nurl = \"/\"\n+++\nB\n").unwrap();
        let err = KnowledgeBase::from_entries(vec![e.clone(), e]).unwrap_err();
        assert!(matches!(err, KbError::DuplicateId { .. }));
    }
}

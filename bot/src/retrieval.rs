//! Retrieval: tantivy BM25 for ranking, plus a normalised confidence for the answer/hand-off
//! decision.
//!
//! # Index
//! One in-RAM tantivy index per language, built at load time (a KB is small). Every entry is
//! indexed twice: with the word-internal 2–3 gram analyzer (title, questions, body) and with a
//! word analyzer (English: stop words + stemmer; Korean: plain lowercased words). Questions
//! and titles are boosted over the body because they look like what visitors type.
//!
//! # Confidence
//! Raw BM25 scores are not comparable between queries or languages (they grow with query
//! length, and Korean queries produce more n-grams than English ones), so a fixed threshold on
//! them does not work. The confidence is instead the *IDF-weighted share of the question's
//! content words that the entry contains*, in `0.0..=1.0` — the ratio "top score / the
//! query's self-score" with term frequency and length normalisation taken out:
//!
//! - English words count after stop-word removal and stemming; a word the entry lacks still
//!   counts partly if most of its trigrams occur there (typos such as "shiping").
//! - Korean words are reduced to their first two syllables (≈ the stem: 배송은 → 배송,
//!   가능해요 → 가능; 컵이 → 컵), because particles and endings differ between the KB's
//!   합니다-style and visitors' 해요-style; words made only of endings (있어요) are dropped.
//! - Words the KB never uses (weather, stock prices, 날씨, 주가) carry the highest IDF, so an
//!   out-of-scope question scores near 0 even if it shares a few common words with an entry.
//!
//! Both languages thus land on the same scale, and one threshold works for both; it is
//! calibrated with `parley-bot-eval` (see [`crate::DEFAULT_THRESHOLD`]). A margin between
//! the top two BM25 scores is not used: related entries (refunds vs returns) give small
//! margins even when the top one is right, and a margin says nothing about an out-of-scope
//! question whose few common words happen to favour one entry.
//! Candidates are the BM25 top hits, re-ranked by a key that is mostly BM25.

use std::collections::{HashMap, HashSet};

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{doc, Index, IndexReader, TantivyDocument, Term};

use crate::kb::{Entry, Lang};
use crate::tokenize::{self, NGRAM, WORD_EN, WORD_PLAIN};

/// How many BM25 hits are re-ranked by confidence.
const CANDIDATES: usize = 10;
/// Weight of the confidence in the ranking key (the rest is BM25 relative to the top hit).
/// BM25 alone ranks best-first better than confidence alone; a little confidence breaks
/// near-ties in favour of the entry that covers more of the question (eval: +1 correct).
const RANK_CONFIDENCE_WEIGHT: f32 = 0.2;
/// Boosts for the (title, questions, body) fields.
const FIELD_BOOSTS: [f32; 3] = [1.5, 2.0, 1.0];

/// One ranked candidate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit {
    /// Index into the knowledge base's entry list.
    pub entry: usize,
    /// Normalised confidence (see the module docs).
    pub confidence: f32,
}

/// Terms and document frequencies of one analyzer over one language's entries.
struct TermStats {
    /// Per entry (same order as [`LangIndex::entries`]): all terms of title, questions, body.
    per_entry: Vec<HashSet<String>>,
    /// In how many entries each term occurs.
    df: HashMap<String, usize>,
}

impl TermStats {
    /// Collects terms of all entries with `analyzer`.
    fn new(analyzer: &mut TextAnalyzer, entries: &[&Entry]) -> Self {
        let mut df: HashMap<String, usize> = HashMap::new();
        let per_entry: Vec<HashSet<String>> = entries
            .iter()
            .map(|e| {
                let set: HashSet<String> = tokenize::terms(analyzer, &all_text(e))
                    .into_iter()
                    .collect();
                for t in &set {
                    *df.entry(t.clone()).or_default() += 1;
                }
                set
            })
            .collect();
        Self { per_entry, df }
    }

    /// BM25's IDF; terms the KB never uses get the highest value.
    fn idf(&self, term: &str) -> f32 {
        let n = self.per_entry.len() as f32;
        let df = self.df.get(term).copied().unwrap_or(0) as f32;
        idf(n, df)
    }

    /// True if entry `i` has a term starting with `prefix` (one-syllable Korean stems, which
    /// the 2–3 gram index has no term for).
    fn has_prefix(&self, i: usize, prefix: &str) -> bool {
        self.per_entry[i].iter().any(|t| t.starts_with(prefix))
    }

    /// IDF of "has a term starting with `prefix`".
    fn prefix_idf(&self, prefix: &str) -> f32 {
        let df = (0..self.per_entry.len())
            .filter(|&i| self.has_prefix(i, prefix))
            .count();
        idf(self.per_entry.len() as f32, df as f32)
    }
}

/// One unit of meaning in a query, for the confidence score.
#[derive(Debug)]
enum Unit {
    /// A Hangul word, represented by its first two syllables (≈ the stem: 배송은 → 배송,
    /// 가능해요 → 가능), looked up among the entry's n-grams.
    Stem(String),
    /// Any other word, after the word analyzer (English: stemmed), looked up among the entry's
    /// words; `grams` are its trigrams, for typo tolerance ("shiping").
    Word {
        /// The analysed word.
        term: String,
        /// The word's 3-grams (lowercased).
        grams: Vec<String>,
    },
}

/// Splits a question into [`Unit`]s, dropping stop words and pure particles/endings.
fn units(question: &str, word_analyzer: &mut TextAnalyzer) -> Vec<Unit> {
    let mut out = Vec::new();
    for (_, word) in tokenize::words(question) {
        let lower = word.to_lowercase();
        let is_hangul = lower
            .chars()
            .any(|c| ('\u{ac00}'..='\u{d7a3}').contains(&c));
        if is_hangul {
            let chars: Vec<char> = lower.chars().collect();
            // 컵이 → 컵: a one-syllable noun plus a particle keeps only the noun.
            let keep = if chars.len() >= 2 && tokenize::is_function_gram(&chars[1].to_string()) {
                1
            } else {
                2
            };
            let stem: String = chars.iter().take(keep).collect();
            if !tokenize::is_function_gram(&stem) {
                out.push(Unit::Stem(stem));
            }
            continue;
        }
        for term in tokenize::terms(word_analyzer, &lower) {
            let chars: Vec<char> = lower.chars().collect();
            let grams = chars.windows(3).map(|w| w.iter().collect()).collect();
            out.push(Unit::Word { term, grams });
        }
    }
    out
}

/// Confidence that entry `i` answers a question made of `units` (see the module docs).
fn confidence(units: &[Unit], grams: &TermStats, words: &TermStats, i: usize) -> f32 {
    let mut total = 0.0;
    let mut found = 0.0;
    for unit in units {
        let (weight, matched) = match unit {
            Unit::Stem(stem) if stem.chars().count() == 1 => {
                (grams.prefix_idf(stem), f32::from(grams.has_prefix(i, stem)))
            }
            Unit::Stem(stem) => (
                grams.idf(stem),
                f32::from(grams.per_entry[i].contains(stem)),
            ),
            Unit::Word { term, grams: tri } => {
                let weight = words.idf(term);
                if words.per_entry[i].contains(term) {
                    (weight, 1.0)
                } else if tri.len() >= 3 {
                    // Typo tolerance: most of the word's trigrams occur in the entry.
                    let hit = tri
                        .iter()
                        .filter(|g| grams.per_entry[i].contains(*g))
                        .count();
                    let share = hit as f32 / tri.len() as f32;
                    (weight, if share >= 0.6 { share * 0.8 } else { 0.0 })
                } else {
                    (weight, 0.0)
                }
            }
        };
        total += weight;
        found += weight * matched;
    }
    if total > 0.0 {
        found / total
    } else {
        0.0
    }
}

/// BM25's IDF for a term in `df` of `n` documents.
fn idf(n: f32, df: f32) -> f32 {
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
}

/// Everything searchable in an entry, for term statistics.
fn all_text(e: &Entry) -> String {
    format!(
        "{}\n{}\n{}\n{}",
        e.title,
        e.questions.join("\n"),
        e.tags.join("\n"),
        e.body
    )
}

/// The index of one language.
struct LangIndex {
    /// Reader over the in-RAM index.
    reader: IndexReader,
    /// Stored field holding the position in [`LangIndex::entries`].
    slot: Field,
    /// (title, questions, body) fields with the n-gram analyzer.
    gram_fields: [Field; 3],
    /// (title, questions, body) fields with the word analyzer.
    word_fields: [Field; 3],
    /// Query-time copy of the n-gram analyzer.
    gram_analyzer: TextAnalyzer,
    /// Query-time copy of the word analyzer.
    word_analyzer: TextAnalyzer,
    /// Global entry index of each slot.
    entries: Vec<usize>,
    /// N-gram statistics for confidence.
    grams: TermStats,
    /// Word statistics for confidence.
    words: TermStats,
}

/// Per-language indexes over a knowledge base.
pub(crate) struct Retriever {
    /// Index by language; a language without entries has none.
    langs: HashMap<Lang, LangIndex>,
}

impl Retriever {
    /// Builds the indexes for `entries`.
    pub(crate) fn build(entries: &[Entry]) -> tantivy::Result<Self> {
        let mut langs = HashMap::new();
        for lang in [Lang::En, Lang::Ko] {
            let ids: Vec<usize> = (0..entries.len())
                .filter(|&i| entries[i].lang == lang)
                .collect();
            if ids.is_empty() {
                continue;
            }
            langs.insert(lang, LangIndex::build(lang, entries, ids)?);
        }
        Ok(Self { langs })
    }

    /// Candidates for `question` in `lang`, best first (may be empty).
    pub(crate) fn rank(&self, question: &str, lang: Lang) -> Vec<Hit> {
        match self.langs.get(&lang) {
            // A search error on an in-RAM index is not expected; treat it as "no match" so
            // the visitor is offered a person instead of seeing a failure.
            Some(index) => index.rank(question).unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

impl LangIndex {
    /// Indexes the entries at `ids` (all of language `lang`).
    fn build(lang: Lang, all: &[Entry], ids: Vec<usize>) -> tantivy::Result<Self> {
        let word_name = match lang {
            Lang::En => WORD_EN,
            Lang::Ko => WORD_PLAIN,
        };
        let text = |analyzer: &str| {
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(analyzer)
                    .set_index_option(IndexRecordOption::WithFreqs),
            )
        };
        let mut sb = Schema::builder();
        let slot = sb.add_u64_field("slot", STORED);
        let gram_fields = [
            sb.add_text_field("title_g", text(NGRAM)),
            sb.add_text_field("questions_g", text(NGRAM)),
            sb.add_text_field("body_g", text(NGRAM)),
        ];
        let word_fields = [
            sb.add_text_field("title_w", text(word_name)),
            sb.add_text_field("questions_w", text(word_name)),
            sb.add_text_field("body_w", text(word_name)),
        ];
        let index = Index::create_in_ram(sb.build());
        let mut analyzers: HashMap<&str, TextAnalyzer> = HashMap::new();
        for (name, analyzer) in tokenize::analyzers()? {
            index.tokenizers().register(name, analyzer.clone());
            analyzers.insert(name, analyzer);
        }
        let missing = || tantivy::TantivyError::InvalidArgument("analyzer missing".into());
        let mut gram_analyzer = analyzers.get(NGRAM).cloned().ok_or_else(missing)?;
        let mut word_analyzer = analyzers.get(word_name).cloned().ok_or_else(missing)?;

        let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, 15_000_000)?;
        for (s, &i) in ids.iter().enumerate() {
            let e = &all[i];
            // Tags are keywords: index them with the questions.
            let questions = format!("{}\n{}", e.questions.join("\n"), e.tags.join("\n"));
            writer.add_document(doc!(
                slot => s as u64,
                gram_fields[0] => e.title.as_str(),
                gram_fields[1] => questions.as_str(),
                gram_fields[2] => e.body.as_str(),
                word_fields[0] => e.title.as_str(),
                word_fields[1] => questions.as_str(),
                word_fields[2] => e.body.as_str(),
            ))?;
        }
        writer.commit()?;
        let reader = index.reader()?;
        let mine: Vec<&Entry> = ids.iter().map(|&i| &all[i]).collect();
        let grams = TermStats::new(&mut gram_analyzer, &mine);
        let words = TermStats::new(&mut word_analyzer, &mine);
        Ok(Self {
            reader,
            slot,
            gram_fields,
            word_fields,
            gram_analyzer,
            word_analyzer,
            entries: ids,
            grams,
            words,
        })
    }

    /// BM25 top hits re-ranked by confidence.
    fn rank(&self, question: &str) -> tantivy::Result<Vec<Hit>> {
        // N-grams only of content words: grams of "will I have to" would otherwise pull up
        // whichever long entry happens to contain them.
        let mut word_analyzer = self.word_analyzer.clone();
        let content: Vec<&str> = tokenize::words(question)
            .map(|(_, w)| w)
            .filter(|w| {
                w.chars().any(|c| ('\u{ac00}'..='\u{d7a3}').contains(&c))
                    || !tokenize::terms(&mut word_analyzer, w).is_empty()
            })
            .collect();
        let gram_terms = tokenize::terms(&mut self.gram_analyzer.clone(), &content.join(" "));
        let word_terms = tokenize::terms(&mut self.word_analyzer.clone(), question);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (fields, terms) in [
            (&self.gram_fields, &gram_terms),
            (&self.word_fields, &word_terms),
        ] {
            for (field, boost) in fields.iter().zip(FIELD_BOOSTS) {
                for t in terms {
                    let q = TermQuery::new(
                        Term::from_field_text(*field, t),
                        IndexRecordOption::WithFreqs,
                    );
                    clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(q), boost))));
                }
            }
        }
        if clauses.is_empty() {
            return Ok(Vec::new());
        }
        let units = units(question, &mut self.word_analyzer.clone());
        let searcher = self.reader.searcher();
        let top = searcher.search(
            &BooleanQuery::new(clauses),
            &TopDocs::with_limit(CANDIDATES).order_by_score(),
        )?;
        let mut hits = Vec::with_capacity(top.len());
        for (bm25, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let Some(slot) = doc.get_first(self.slot).and_then(|v| v.as_u64()) else {
                continue;
            };
            let slot = slot as usize;
            let confidence = confidence(&units, &self.grams, &self.words, slot);
            hits.push((
                Hit {
                    entry: self.entries[slot],
                    confidence,
                },
                bm25,
            ));
        }
        let top_bm25 = hits.first().map_or(1.0, |h| h.1).max(f32::MIN_POSITIVE);
        let key = |h: &(Hit, f32)| {
            RANK_CONFIDENCE_WEIGHT * h.0.confidence
                + (1.0 - RANK_CONFIDENCE_WEIGHT) * h.1 / top_bm25
        };
        hits.sort_by(|a, b| key(b).total_cmp(&key(a)));
        Ok(hits.into_iter().map(|(h, _)| h).collect())
    }
}

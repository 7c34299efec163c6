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
//! them does not work. The confidence is instead *IDF-weighted query coverage* of the top
//! entry: the share of the query's information (sum of IDF of its terms) that the entry
//! contains, in `0.0..=1.0`. It is the BM25 ratio "top score / the query's self-score" with
//! term frequency and length normalisation taken out:
//! a query that only an entry could have produced scores 1, a query made of words the KB never
//! uses (weather, stock prices) scores near 0 because unseen terms carry the highest IDF, and
//! stop-word-like terms that every entry shares count for little. N-gram coverage and word
//! coverage are blended (words matter more in English, where 2-grams are weak), which keeps
//! the scale the same across languages so one threshold works for both.
//! Candidates are the BM25 top hits, re-ranked by this confidence (BM25 breaks ties).

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
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
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
        let is_hangul = lower.chars().any(|c| ('\u{ac00}'..='\u{d7a3}').contains(&c));
        if is_hangul {
            let stem: String = lower.chars().take(2).collect();
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
            Unit::Stem(stem) => (grams.idf(stem), f32::from(grams.per_entry[i].contains(stem))),
            Unit::Word { term, grams: tri } => {
                let weight = words.idf(term);
                if words.per_entry[i].contains(term) {
                    (weight, 1.0)
                } else if tri.len() >= 3 {
                    // Typo tolerance: most of the word's trigrams occur in the entry.
                    let hit = tri.iter().filter(|g| grams.per_entry[i].contains(*g)).count();
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
        let gram_terms = tokenize::terms(&mut self.gram_analyzer.clone(), question);
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
            hits.push((Hit { entry: self.entries[slot], confidence }, bm25));
        }
        if std::env::var_os("PARLEY_BOT_RANK_BM25").is_some() {
            return Ok(hits.into_iter().map(|(h, _)| h).collect());
        }
        hits.sort_by(|a, b| {
            b.0.confidence
                .total_cmp(&a.0.confidence)
                .then(b.1.total_cmp(&a.1))
        });
        Ok(hits.into_iter().map(|(h, _)| h).collect())
    }
}

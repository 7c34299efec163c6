//! Grouping similar questions, so a site manager sees "12 visitors asked about gift cards" rather
//! than twelve lines.
//!
//! Each text becomes a set of features with the same tokenizers the search uses (see
//! [`crate::tokenize`]): the 2–3 character n-grams of its content words (Korean particles and
//! endings dropped, English stop words dropped) plus the stemmed English words. N-grams make
//! 배송은 / 배송이 / 배송을 and "shipping" / "ship" overlap without a dictionary. Two texts are
//! similar when the cosine of their feature sets (`|A ∩ B| / √(|A|·|B|)`) reaches a threshold;
//! [`group`] clusters greedily: each text joins the group holding its most similar member, or
//! starts a new one.

use std::collections::HashSet;

use tantivy::tokenizer::TextAnalyzer;

use crate::tokenize::{self, NGRAM, WORD_EN};

/// Cosine at or above which two questions are put in the same group. Tuned on the examples in
/// the tests: rephrasings of one question score 0.4–0.8, different questions below 0.2.
pub const DEFAULT_SIMILARITY: f32 = 0.4;

/// How many members of a group a new text is compared with (the first ones), so grouping a
/// large backlog stays bounded: O(texts × groups × this).
const COMPARE_MEMBERS: usize = 16;

/// The features of one text (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features(HashSet<String>);

impl Features {
    /// Whether the text had no content words at all ("?", "hi").
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Cosine similarity of two feature sets, 0 when either is empty.
    pub fn cosine(&self, other: &Features) -> f32 {
        if self.0.is_empty() || other.0.is_empty() {
            return 0.0;
        }
        let shared = self.0.intersection(&other.0).count() as f32;
        shared / ((self.0.len() * other.0.len()) as f32).sqrt()
    }
}

/// Turns texts into [`Features`]; holds the analyzers so a batch builds them once.
pub struct Featurizer {
    /// Word n-grams (function grams dropped).
    grams: TextAnalyzer,
    /// English words, stop words removed, stemmed; also tells content words from stop words.
    words: TextAnalyzer,
}

impl Featurizer {
    /// Builds the analyzers.
    pub fn new() -> Self {
        let mut grams = None;
        let mut words = None;
        // Building the analyzers only fails on an invalid n-gram range, a constant here.
        if let Ok(all) = tokenize::analyzers() {
            for (name, analyzer) in all {
                match name {
                    NGRAM => grams = Some(analyzer),
                    WORD_EN => words = Some(analyzer),
                    _ => {}
                }
            }
        }
        Self {
            grams: grams.unwrap_or_default(),
            words: words.unwrap_or_default(),
        }
    }

    /// The features of `text`.
    pub fn features(&mut self, text: &str) -> Features {
        let mut out = HashSet::new();
        let mut content = Vec::new();
        for (_, word) in tokenize::words(text) {
            let hangul = word.chars().any(|c| ('\u{ac00}'..='\u{d7a3}').contains(&c));
            if hangul {
                content.push(word);
                continue;
            }
            let terms = tokenize::terms(&mut self.words, word);
            if !terms.is_empty() {
                content.push(word);
                out.extend(terms.into_iter().map(|t| format!("w:{t}")));
            }
        }
        out.extend(tokenize::terms(&mut self.grams, &content.join(" ")));
        Features(out)
    }
}

impl Default for Featurizer {
    fn default() -> Self {
        Self::new()
    }
}

/// Groups `texts` by similarity (cosine ≥ `threshold`), in order: every group lists indexes
/// into `texts`, its first member is the first text of it, groups are ordered by their first
/// member. Texts without content words ("?", "hi") each form a group of their own unless they
/// are identical after trimming and lowercasing.
pub fn group(texts: &[&str], threshold: f32) -> Vec<Vec<usize>> {
    let mut featurizer = Featurizer::new();
    let features: Vec<Features> = texts.iter().map(|t| featurizer.features(t)).collect();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, f) in features.iter().enumerate() {
        let mut best: Option<(usize, f32)> = None;
        for (g, members) in groups.iter().enumerate() {
            let score = members
                .iter()
                .take(COMPARE_MEMBERS)
                .map(|&m| {
                    if f.is_empty() || features[m].is_empty() {
                        let same = texts[i].trim().to_lowercase() == texts[m].trim().to_lowercase();
                        f32::from(same)
                    } else {
                        f.cosine(&features[m])
                    }
                })
                .fold(0.0, f32::max);
            if score >= threshold && best.is_none_or(|(_, s)| score > s) {
                best = Some((g, score));
            }
        }
        match best {
            Some((g, _)) => groups[g].push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(a: &str, b: &str) -> f32 {
        let mut f = Featurizer::new();
        f.features(a).cosine(&f.features(b))
    }

    #[test]
    fn rephrasings_are_similar_and_topics_are_not() {
        assert!(sim("Do you ship to Canada?", "shipping to canada?") >= DEFAULT_SIMILARITY);
        assert!(sim("Do you sell gift cards?", "gift card available?") >= DEFAULT_SIMILARITY);
        assert!(sim("Do you ship to Canada?", "Do you sell gift cards?") < 0.2);
        assert!(sim("캐나다로 배송되나요?", "캐나다 배송 가능해요?") >= DEFAULT_SIMILARITY);
        assert!(sim("캐나다로 배송되나요?", "기프트카드 있나요?") < 0.2);
        assert_eq!(sim("?", "?"), 0.0);
    }

    #[test]
    fn groups_keep_order_and_collect_rephrasings() {
        let texts = [
            "Do you sell gift cards?",
            "Do you ship to Canada?",
            "gift card available?",
            "캐나다로 배송되나요?",
            "Can you ship to canada",
            "캐나다 배송 가능해요?",
            "?",
            "?",
            "hi",
        ];
        let groups = group(&texts, DEFAULT_SIMILARITY);
        assert_eq!(
            groups,
            vec![vec![0, 2], vec![1, 4], vec![3, 5], vec![6, 7], vec![8]]
        );
        assert!(group(&[], DEFAULT_SIMILARITY).is_empty());
    }
}

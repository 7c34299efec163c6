//! Tokenizers shared by the index and the confidence score.
//!
//! Korean glues particles onto words (배송은 / 배송이 / 배송을), so whole-word matching fails;
//! character n-grams (2–3, via tantivy's [`NgramTokenizer`]) match the shared stem in both
//! languages and also survive typos. N-grams are taken *within* words only: grams spanning a
//! space ("송 얼") never match anything useful and would only dilute the score.
//! English gets a second, word-level analyzer (stop words removed, Snowball stemmer) because
//! short English n-grams ("th", "er") are too common to carry meaning on their own.

use tantivy::tokenizer::{
    Language, LowerCaser, NgramTokenizer, RemoveLongFilter, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// Name under which the n-gram analyzer is registered with tantivy.
pub(crate) const NGRAM: &str = "parley_ngram";
/// Name of the English word analyzer (stop words + stemmer).
pub(crate) const WORD_EN: &str = "parley_word_en";
/// Name of the plain word analyzer used for Korean word fields.
pub(crate) const WORD_PLAIN: &str = "parley_word_plain";

/// Splits text into words (runs of alphanumeric characters), lowercases them and emits the
/// 2–3 character n-grams of each word; one-character words are emitted whole.
#[derive(Clone)]
pub(crate) struct WordNgramTokenizer {
    /// tantivy's n-gram tokenizer, applied to one word at a time.
    inner: NgramTokenizer,
}

impl WordNgramTokenizer {
    /// Builds the tokenizer with 2–3 grams.
    pub(crate) fn new() -> tantivy::Result<Self> {
        Ok(Self {
            inner: NgramTokenizer::new(2, 3, false)?,
        })
    }
}

/// A token stream over tokens computed up front (the texts here are short).
pub(crate) struct VecTokenStream {
    /// All tokens of the text, in order.
    tokens: Vec<Token>,
    /// Index of the current token plus one (0 = before the first).
    next: usize,
}

impl TokenStream for VecTokenStream {
    fn advance(&mut self) -> bool {
        if self.next < self.tokens.len() {
            self.next += 1;
            true
        } else {
            false
        }
    }
    fn token(&self) -> &Token {
        &self.tokens[self.next.saturating_sub(1)]
    }
    fn token_mut(&mut self) -> &mut Token {
        let i = self.next.saturating_sub(1);
        &mut self.tokens[i]
    }
}

impl Tokenizer for WordNgramTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        let mut tokens = Vec::new();
        let mut position = 0;
        for (start, word) in words(text) {
            let lower = word.to_lowercase();
            if lower.chars().count() == 1 {
                if is_function_gram(&lower) {
                    continue;
                }
                tokens.push(token(start, start + word.len(), position, lower));
                position += 1;
                continue;
            }
            let mut stream = self.inner.token_stream(&lower);
            while let Some(t) = stream.next() {
                if is_function_gram(&t.text) {
                    continue;
                }
                // Offsets are approximate after lowercasing; nothing here highlights text.
                tokens.push(token(start, start + word.len(), position, t.text.clone()));
                position += 1;
            }
        }
        // tantivy requires at least a valid token() even before advance(); keep one placeholder
        // that advance() never exposes when the text is empty.
        if tokens.is_empty() {
            return VecTokenStream {
                tokens: vec![Token::default()],
                next: 1,
            };
        }
        VecTokenStream { tokens, next: 0 }
    }
}

/// Hangul syllables that mostly make up particles and verb endings (은/는/을/를, 해요, 있나요,
/// 주세요, 싶어요, 합니다...). A gram made only of these says how something is asked, not what
/// is asked about: "가능한가요" should match on 가능, not on 한가요. Dropping such grams on both
/// the index and the query side also stops the polite endings of the KB (합니다) and of
/// visitors (해요) from counting as mismatches.
const FUNCTION_SYLLABLES: &str = "은는이가을를에서의도만로으와과랑하고해했한할합니다까요나아어여니죠데면서지게세주있없되돼된될싶든건거것좀요며라야네군";

/// True for a gram made entirely of [`FUNCTION_SYLLABLES`].
pub(crate) fn is_function_gram(gram: &str) -> bool {
    gram.chars().all(|c| FUNCTION_SYLLABLES.contains(c))
}

/// One token with the given text and position.
fn token(from: usize, to: usize, position: usize, text: String) -> Token {
    Token {
        offset_from: from,
        offset_to: to,
        position,
        text,
        position_length: 1,
    }
}

/// Byte offset and text of every run of alphanumeric characters.
pub(crate) fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(move |w| (w.as_ptr() as usize - text.as_ptr() as usize, w))
}

/// Words that say how a visitor asks, not what about ("I want", "please tell me", "can I").
/// They are not in tantivy's English stop list but would otherwise count as terms the KB
/// lacks and drag the confidence down.
const EXTRA_EN_STOP_WORDS: &[&str] = &[
    "i", "me", "my", "you", "your", "we", "our", "can", "could", "would", "should", "do", "does",
    "did", "want", "wanted", "like", "need", "please", "pls", "hi", "hello", "hey", "tell", "know",
    "help", "just", "get", "got", "what", "how", "when", "where", "why", "which", "who", "is",
    "am", "are", "was", "any", "there", "it", "its", "i'm", "i'd", "thanks", "one", "some", "way",
    "possible", "still",
];

/// Common English function words (tantivy's own list is not public).
const EN_STOP_WORDS: &[&str] = &[
    "a", "an", "and", "as", "at", "be", "but", "by", "for", "if", "in", "into", "no", "not", "of",
    "on", "or", "such", "that", "the", "their", "then", "these", "they", "this", "to", "will",
    "with", "have", "has", "had", "so", "than", "too", "very", "from", "about", "us",
];

/// [`EN_STOP_WORDS`] plus [`EXTRA_EN_STOP_WORDS`].
fn english_stop_words() -> Vec<String> {
    EN_STOP_WORDS
        .iter()
        .chain(EXTRA_EN_STOP_WORDS)
        .map(|w| (*w).to_owned())
        .collect()
}

/// The three analyzers, by registration name.
pub(crate) fn analyzers() -> tantivy::Result<Vec<(&'static str, TextAnalyzer)>> {
    let ngram = TextAnalyzer::builder(WordNgramTokenizer::new()?).build();
    let word_en = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(english_stop_words()))
        .filter(Stemmer::new(Language::English))
        .build();
    let word_plain = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .build();
    Ok(vec![
        (NGRAM, ngram),
        (WORD_EN, word_en),
        (WORD_PLAIN, word_plain),
    ])
}

/// The distinct terms `analyzer` produces for `text`, in first-seen order.
pub(crate) fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while let Some(t) = stream.next() {
        if !out.contains(&t.text) {
            out.push(t.text.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ngrams_stay_inside_words() {
        let mut a = TextAnalyzer::builder(WordNgramTokenizer::new().unwrap()).build();
        let t = terms(&mut a, "배송은 얼마");
        assert!(t.contains(&"배송".to_string()));
        assert!(t.contains(&"배송은".to_string()));
        assert!(t.iter().all(|g| !g.contains(' ')), "{t:?}");
        assert!(terms(&mut a, "").is_empty());
        assert!(terms(&mut a, " !? ").is_empty());
    }

    #[test]
    fn english_words_are_stemmed_and_stopped() {
        let mut all = analyzers().unwrap();
        let (_, a) = &mut all[1];
        assert_eq!(terms(a, "The Shipping of parcels"), vec!["ship", "parcel"]);
    }
}

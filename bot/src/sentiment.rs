//! A small lexicon sentiment scorer for English and Korean.
//!
//! Good enough to notice an upset visitor ("this is terrible!!!", "너무 실망했어요") so the relay
//! can hand over sooner; not a general classifier. Each lexicon word scores ±1 (strong words
//! ±2); a negation before it ("not good", "안 좋아요") or after it in Korean ("좋지 않아요")
//! flips the sign; an intensifier before it ("very", "너무") multiplies by 1.5; two or more
//! `!` multiply the total by 1.5.

/// Overall tone of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sentiment {
    /// Upset, angry, disappointed.
    Negative,
    /// Nothing notable either way.
    Neutral,
    /// Happy, thankful.
    Positive,
}

/// English lexicon: (word, score). Words are compared after lowercasing.
const EN_LEXICON: &[(&str, f32)] = &[
    ("good", 1.0),
    ("great", 1.5),
    ("excellent", 2.0),
    ("amazing", 2.0),
    ("awesome", 2.0),
    ("love", 2.0),
    ("lovely", 1.5),
    ("perfect", 2.0),
    ("happy", 1.0),
    ("thanks", 1.0),
    ("thank", 1.0),
    ("helpful", 1.0),
    ("nice", 1.0),
    ("fast", 1.0),
    ("beautiful", 1.5),
    ("pleased", 1.0),
    ("satisfied", 1.0),
    ("bad", -1.0),
    ("terrible", -2.0),
    ("awful", -2.0),
    ("horrible", -2.0),
    ("worst", -2.0),
    ("hate", -2.0),
    ("angry", -1.5),
    ("annoyed", -1.5),
    ("annoying", -1.5),
    ("disappointed", -1.5),
    ("disappointing", -1.5),
    ("useless", -2.0),
    ("broken", -1.0),
    ("damaged", -1.0),
    ("late", -1.0),
    ("slow", -1.0),
    ("poor", -1.0),
    ("ridiculous", -2.0),
    ("unacceptable", -2.0),
    ("scam", -2.0),
    ("frustrated", -1.5),
    ("frustrating", -1.5),
    ("upset", -1.5),
    ("wrong", -1.0),
    ("never", -0.5),
];

/// English words that flip the next sentiment word within three words.
const EN_NEGATIONS: &[&str] = &[
    "not", "never", "don't", "dont", "doesn't", "doesnt", "isn't", "isnt", "wasn't", "wasnt",
    "aren't", "didn't", "didnt", "can't", "cant", "won't", "hardly",
];

/// English intensifiers.
const EN_INTENSIFIERS: &[&str] = &[
    "very",
    "really",
    "so",
    "extremely",
    "super",
    "totally",
    "absolutely",
    "incredibly",
    "too",
];

/// Korean lexicon: (stem, score), matched as substrings of a word; longer stems listed first
/// where one contains another (불친절 before 친절).
const KO_LEXICON: &[(&str, f32)] = &[
    ("불친절", -2.0),
    ("불만", -1.5),
    ("최악", -2.0),
    ("실망", -1.5),
    ("화나", -1.5),
    ("화가", -1.5),
    ("짜증", -2.0),
    ("별로", -1.0),
    ("엉망", -2.0),
    ("형편없", -2.0),
    ("나쁘", -1.0),
    ("나빠", -1.0),
    ("싫", -1.0),
    ("답답", -1.5),
    ("늦", -1.0),
    ("느려", -1.0),
    ("느리", -1.0),
    ("어이없", -2.0),
    ("황당", -1.5),
    ("사기", -2.0),
    ("깨졌", -1.0),
    ("파손", -1.0),
    ("고장", -1.0),
    ("좋", 1.0),
    ("감사", 1.0),
    ("고마", 1.0),
    ("고맙", 1.0),
    ("최고", 2.0),
    ("만족", 1.5),
    ("훌륭", 2.0),
    ("친절", 1.0),
    ("예쁘", 1.0),
    ("예뻐", 1.0),
    ("마음에 들", 1.5),
    ("빠르", 1.0),
    ("빨라", 1.0),
    ("행복", 1.5),
];

/// Korean negation words standing before the predicate.
const KO_NEGATIONS_BEFORE: &[&str] = &["안", "못", "전혀"];
/// Korean negation starting the word after the predicate ("좋지 않아요", "좋지 못해요").
const KO_NEGATIONS_AFTER: &[&str] = &["않", "못", "아니"];
/// Korean intensifiers.
const KO_INTENSIFIERS: &[&str] = &[
    "너무", "정말", "진짜", "완전", "엄청", "매우", "아주", "넘", "진심", "참",
];

/// Scores `text` (English and Korean may be mixed).
pub fn sentiment(text: &str) -> Sentiment {
    let score = score(text);
    if score >= 1.0 {
        Sentiment::Positive
    } else if score <= -1.0 {
        Sentiment::Negative
    } else {
        Sentiment::Neutral
    }
}

/// The raw score: sum of word scores after negation, intensifiers and `!`.
fn score(text: &str) -> f32 {
    let words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let mut total = 0.0;
    for (i, word) in words.iter().enumerate() {
        let Some(mut value) = word_score(word) else {
            continue;
        };
        let before = &words[i.saturating_sub(3)..i];
        let prev = i.checked_sub(1).map(|p| words[p].as_str());
        let negated = before.iter().any(|w| EN_NEGATIONS.contains(&w.as_str()))
            || prev.is_some_and(|p| KO_NEGATIONS_BEFORE.contains(&p))
            || is_hangul_word(word) && ko_glued_negation(word)
            || words.get(i + 1).is_some_and(|next| {
                is_hangul_word(word)
                    && (word.ends_with('지') || word.ends_with("지는"))
                    && KO_NEGATIONS_AFTER.iter().any(|n| next.starts_with(n))
            });
        if negated {
            // "not bad" is mildly good, "not good" is plainly bad.
            value = -value * if value < 0.0 { 0.5 } else { 1.0 };
        }
        if prev.is_some_and(|p| EN_INTENSIFIERS.contains(&p) || KO_INTENSIFIERS.contains(&p)) {
            value *= 1.5;
        }
        total += value;
    }
    if text.matches('!').count() >= 2 {
        total *= 1.5;
    }
    total
}

/// Score of one lowercased word, if it is in a lexicon.
fn word_score(word: &str) -> Option<f32> {
    let bare = word.trim_matches('\'');
    if let Some((_, v)) = EN_LEXICON.iter().find(|(w, _)| *w == bare) {
        return Some(*v);
    }
    if is_hangul_word(word) {
        return KO_LEXICON
            .iter()
            .find(|(stem, _)| word.contains(stem))
            .map(|(_, v)| *v);
    }
    None
}

/// "안좋아요", "못났어요": a negation glued in front of the predicate.
fn ko_glued_negation(word: &str) -> bool {
    ["안", "못"].iter().any(|n| {
        word.strip_prefix(n)
            .is_some_and(|rest| !rest.is_empty() && word_score(rest).is_some())
    }) || word.contains("지않")
        || word.contains("지못")
}

/// True if the word contains Hangul syllables.
fn is_hangul_word(word: &str) -> bool {
    word.chars().any(|c| ('\u{ac00}'..='\u{d7a3}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Sentiment::*;

    #[test]
    fn english() {
        assert_eq!(sentiment("Thanks, that was really helpful"), Positive);
        assert_eq!(sentiment("This is terrible"), Negative);
        assert_eq!(sentiment("the tray is not good"), Negative);
        assert_eq!(sentiment("I'm not happy with this"), Negative);
        assert_eq!(sentiment("not bad"), Neutral);
        assert_eq!(sentiment("Where is my order?"), Neutral);
        assert_eq!(sentiment("very good"), Positive);
        assert_eq!(sentiment("no problem, thanks"), Positive);
        assert_eq!(sentiment(""), Neutral);
    }

    #[test]
    fn exclamations_and_intensifiers_amplify() {
        assert!(score("bad!!!") < score("bad"));
        assert!(score("very bad") < score("bad"));
        assert_eq!(sentiment("so slow!!!"), Negative);
    }

    #[test]
    fn korean() {
        assert_eq!(sentiment("정말 감사합니다"), Positive);
        assert_eq!(sentiment("너무 좋아요!"), Positive);
        assert_eq!(sentiment("안 좋아요"), Negative);
        assert_eq!(sentiment("안좋아요"), Negative);
        assert_eq!(sentiment("품질이 좋지 않아요"), Negative);
        assert_eq!(sentiment("배송이 너무 늦어요"), Negative);
        assert_eq!(sentiment("최악이에요!!!"), Negative);
        assert_eq!(sentiment("직원이 불친절해요"), Negative);
        assert_eq!(sentiment("배송은 얼마나 걸려요?"), Neutral);
        assert_eq!(sentiment("안녕하세요"), Neutral);
    }
}

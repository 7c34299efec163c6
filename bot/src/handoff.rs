//! Spotting visitors who ask for a person outright ("talk to a human", "상담원 연결해 주세요").
//!
//! Such a request should skip the bot entirely, whatever the knowledge base could answer.
//! Visitors mix languages (a Korean page, an English question), so both phrase lists are
//! checked; the visitor's language only decides which list is tried first.

use crate::kb::Lang;

/// English phrases, matched as whole word sequences (so "humanity" does not match "human").
const EN_PHRASES: &[&str] = &[
    "human",
    "humans",
    "agent",
    "agents",
    "a person",
    "real person",
    "live person",
    "actual person",
    "someone real",
    "real people",
    "representative",
    "operator",
    "customer service",
    "customer support",
    "support team",
    "talk to someone",
    "speak to someone",
    "speak with someone",
    "talk with someone",
    "talk to somebody",
    "speak to somebody",
    "staff member",
    "not a bot",
    "no bot",
    "live chat",
    "live agent",
];

/// Korean phrases, matched as substrings (particles attach directly: 상담원이랑, 상담원과).
const KO_PHRASES: &[&str] = &[
    "상담원",
    "상담사",
    "상담직원",
    "사람이랑",
    "사람하고",
    "사람과",
    "사람한테",
    "사람 연결",
    "사람으로",
    "실제 사람",
    "진짜 사람",
    "직원 연결",
    "직원이랑",
    "직원분",
    "직원과",
    "직원하고",
    "담당자",
    "상담 연결",
    "연결해 주세요",
    "연결해주세요",
    "봇 말고",
    "챗봇 말고",
    "로봇 말고",
];

/// True when `text` asks for a human agent.
pub fn wants_human(text: &str, lang: Lang) -> bool {
    match lang {
        Lang::En => matches_en(text) || matches_ko(text),
        Lang::Ko => matches_ko(text) || matches_en(text),
    }
}

/// Whole-word match of any English phrase.
fn matches_en(text: &str) -> bool {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let hay = format!(" {} ", words.join(" "));
    EN_PHRASES.iter().any(|p| hay.contains(&format!(" {p} ")))
}

/// Substring match of any Korean phrase (spacing normalised to single spaces).
fn matches_ko(text: &str) -> bool {
    let norm: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    KO_PHRASES.iter().any(|p| norm.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_requests() {
        for t in [
            "Can I talk to a person?",
            "HUMAN please",
            "I want an agent!",
            "let me speak to someone",
            "get me a real person",
            "customer service",
        ] {
            assert!(wants_human(t, Lang::En), "{t}");
        }
        for t in [
            "How long does shipping take?",
            "humanity is great",
            "what is your return policy",
            "",
        ] {
            assert!(!wants_human(t, Lang::En), "{t}");
        }
    }

    #[test]
    fn korean_requests() {
        for t in [
            "상담원 연결해 주세요",
            "사람이랑 얘기하고 싶어요",
            "직원 연결 부탁드립니다",
            "상담원이랑 통화할래요",
            "챗봇 말고 사람으로요",
        ] {
            assert!(wants_human(t, Lang::Ko), "{t}");
        }
        for t in [
            "배송은 얼마나 걸려요?",
            "반품하고 싶어요",
            "사람들이 많이 사나요",
        ] {
            assert!(!wants_human(t, Lang::Ko), "{t}");
        }
        // Mixed languages.
        assert!(wants_human("agent 부탁해요", Lang::Ko));
        assert!(wants_human("상담원 please", Lang::En));
    }
}

//! Every word the visitor reads, in English and Korean, and the rule that picks the language.
//!
//! Strings live in one table per language so that adding a language is adding a table; texts
//! that embed a name are small functions because word order differs between the languages.

/// A language the panel speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// English (the fallback for every language we do not speak).
    En,
    /// Korean.
    Ko,
}

impl Lang {
    /// Picks the language: the site's explicit `data-lang` wins when it names one we speak,
    /// otherwise the browser's language (`ko*` → Korean), otherwise English.
    pub fn choose(explicit: Option<&str>, browser: Option<&str>) -> Self {
        let parse = |tag: &str| {
            let tag = tag.trim().to_ascii_lowercase();
            if tag == "ko" || tag.starts_with("ko-") || tag.starts_with("ko_") {
                Some(Lang::Ko)
            } else if tag == "en" || tag.starts_with("en-") || tag.starts_with("en_") {
                Some(Lang::En)
            } else {
                None
            }
        };
        explicit
            .and_then(parse)
            .or_else(|| browser.and_then(parse))
            .unwrap_or(Lang::En)
    }

    /// The fixed strings of this language.
    pub fn strings(self) -> &'static Strings {
        match self {
            Lang::En => &EN,
            Lang::Ko => &KO,
        }
    }

    /// "Mina joined".
    pub fn joined(self, name: &str) -> String {
        match self {
            Lang::En => format!("{name} joined"),
            Lang::Ko => format!("{name} 님이 참여했습니다"),
        }
    }

    /// "Mina left".
    pub fn left(self, name: &str) -> String {
        match self {
            Lang::En => format!("{name} left"),
            Lang::Ko => format!("{name} 님이 나갔습니다"),
        }
    }

    /// "Mina is typing…".
    pub fn typing(self, name: &str) -> String {
        match self {
            Lang::En => format!("{name} is typing…"),
            Lang::Ko => format!("{name} 님이 입력 중…"),
        }
    }
}

/// The fixed strings of one language.
#[derive(Debug)]
pub struct Strings {
    /// Sender label of the visitor's own messages.
    pub you: &'static str,
    /// Sender label of an agent that has no display name.
    pub agent: &'static str,
    /// Sender label of a bot that has no name.
    pub bot: &'static str,
    /// aria-label of the composer (a DOM hook the browser tests use).
    pub message: &'static str,
    /// Placeholder of the composer.
    pub placeholder: &'static str,
    /// aria-label of the send button (a DOM hook).
    pub send: &'static str,
    /// aria-label of the panel's own close button.
    pub close: &'static str,
    /// aria-label of the message list.
    pub history: &'static str,
    /// Shown when no agent is online, so the visitor knows a reply may take a while.
    pub no_agents: &'static str,
    /// Shown when nobody can answer (outside hours / no agent): the composer takes an email.
    pub away: &'static str,
    /// Placeholder and label of that email field.
    pub email: &'static str,
    /// Connection state words.
    pub connecting: &'static str,
    /// Connection state words.
    pub online: &'static str,
    /// Connection state words.
    pub reconnecting: &'static str,
    /// Connection state words.
    pub offline: &'static str,
    /// System line for a closed conversation.
    pub closed: &'static str,
    /// Shown under a message that is waiting for the relay.
    pub sending: &'static str,
    /// Why a message failed: longer than the relay accepts.
    pub too_large: &'static str,
    /// Why a message failed: the relay refused it as invalid.
    pub invalid: &'static str,
    /// Why a message failed: any other refusal.
    pub not_sent: &'static str,
    /// System line when the bot hands the conversation to people (the summary is for agents).
    pub handoff: &'static str,
    /// Text of the link under a bot answer to the page that answers in full.
    pub read_more: &'static str,
    /// aria-label of the group of quick-reply buttons under the bot's latest message.
    pub quick_replies: &'static str,
}

static EN: Strings = Strings {
    you: "You",
    agent: "Agent",
    bot: "Bot",
    message: "Message",
    placeholder: "Type a message…",
    send: "Send",
    close: "Close",
    history: "Messages",
    no_agents: "No agents are online right now. Leave a message and we'll reply as soon as we can.",
    away: "We're away right now — leave a message and we'll email you",
    email: "Your email",
    connecting: "Connecting…",
    online: "Online",
    reconnecting: "Reconnecting…",
    offline: "Offline",
    closed: "Conversation closed",
    sending: "Sending…",
    too_large: "Not sent: the message is too long.",
    invalid: "Not sent: the message was refused.",
    not_sent: "Not sent.",
    handoff: "Connecting you with a person…",
    read_more: "Read more",
    quick_replies: "Suggested replies",
};

static KO: Strings = Strings {
    you: "나",
    agent: "상담원",
    bot: "봇",
    message: "메시지",
    placeholder: "메시지를 입력하세요…",
    send: "보내기",
    close: "닫기",
    history: "대화 내용",
    no_agents:
        "지금은 상담 가능한 상담원이 없습니다. 메시지를 남겨 주시면 최대한 빨리 답변드리겠습니다.",
    away: "지금은 상담 시간이 아닙니다 — 메시지를 남겨 주시면 이메일로 답변드리겠습니다",
    email: "이메일 주소",
    connecting: "연결 중…",
    online: "연결됨",
    reconnecting: "다시 연결 중…",
    offline: "오프라인",
    closed: "상담이 종료되었습니다",
    sending: "보내는 중…",
    too_large: "전송 실패: 메시지가 너무 깁니다.",
    invalid: "전송 실패: 메시지가 거부되었습니다.",
    not_sent: "전송 실패.",
    handoff: "상담원에게 연결하고 있어요…",
    read_more: "자세히 보기",
    quick_replies: "추천 답변",
};

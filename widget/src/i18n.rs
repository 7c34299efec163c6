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

    /// The co-browse consent card: what sharing shows and what it never shows.
    pub fn cobrowse_ask(self, name: &str) -> String {
        match self {
            Lang::En => format!("{name} asks to see this page. They will see this page and the next pages you open on this site while sharing is on, and can point at things. They will not see what you type into fields (hidden as ••••), other tabs, or anything outside this page. You can stop at any time."),
            Lang::Ko => format!("{name} 님이 이 페이지를 보고 싶어 합니다. 공유 중에는 이 페이지와 이 사이트에서 여는 다음 페이지를 보고 특정 위치를 가리킬 수 있습니다. 입력란에 입력한 내용(••••로 가려짐), 다른 탭, 이 페이지 밖의 내용은 볼 수 없습니다. 언제든지 중지할 수 있습니다."),
        }
    }

    /// A request that was answered since.
    pub fn cobrowse_asked(self, name: &str) -> String {
        match self {
            Lang::En => format!("{name} asked to see this page"),
            Lang::Ko => format!("{name} 님이 페이지 공유를 요청했습니다"),
        }
    }

    /// "You shared this page with Mina".
    pub fn cobrowse_allowed(self, name: &str) -> String {
        match self {
            Lang::En => format!("You shared this page with {name}"),
            Lang::Ko => format!("{name} 님과 페이지를 공유했습니다"),
        }
    }

    /// "You are now talking to Joon" (a transfer).
    pub fn talking_to(self, name: &str) -> String {
        match self {
            Lang::En => format!("You are now talking to {name}"),
            Lang::Ko => format!("이제 {name} 님과 대화합니다"),
        }
    }

    /// "You are #2 in line · about 3 min" (the estimate only when the relay has one).
    pub fn queue(self, position: u32, wait_ms: Option<u64>) -> String {
        let minutes = wait_ms.map(|ms| ms.div_ceil(60_000).max(1));
        match (self, minutes) {
            (Lang::En, Some(m)) => format!("You are #{position} in line · about {m} min"),
            (Lang::En, None) => format!("You are #{position} in line"),
            (Lang::Ko, Some(m)) => format!("대기 순서 {position}번 · 약 {m}분"),
            (Lang::Ko, None) => format!("대기 순서 {position}번"),
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
    /// aria-label of the button that saves the conversation as a text file.
    pub save_transcript: &'static str,
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
    /// Co-browse consent buttons.
    pub allow: &'static str,
    /// Co-browse consent buttons.
    pub deny: &'static str,
    /// System line: the visitor declined to share.
    pub declined: &'static str,
    /// System line: sharing ended.
    pub sharing_stopped: &'static str,
    /// Button on that line: open the log of what was shared.
    pub what_shared: &'static str,
    /// Question above the rating buttons shown once the conversation is closed (CSAT).
    pub rate: &'static str,
    /// aria-label of the optional rating comment.
    pub comment: &'static str,
    /// The button that sends the rating.
    pub send_rating: &'static str,
    /// System line once the rating is stored.
    pub thanks: &'static str,
    /// aria-labels of the five score buttons ("4 of 5"); static, no formatting code.
    pub scores: [&'static str; 5],
}

static EN: Strings = Strings {
    you: "You",
    agent: "Agent",
    bot: "Bot",
    message: "Message",
    placeholder: "Type a message…",
    send: "Send",
    close: "Close",
    save_transcript: "Save this conversation",
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
    allow: "Allow",
    deny: "Deny",
    declined: "You declined",
    sharing_stopped: "Sharing stopped",
    what_shared: "What was shared",
    rate: "How was this conversation?",
    comment: "Comment (optional)",
    send_rating: "Send rating",
    thanks: "Thanks for your feedback!",
    scores: ["1 of 5", "2 of 5", "3 of 5", "4 of 5", "5 of 5"],
};

static KO: Strings = Strings {
    you: "나",
    agent: "상담원",
    bot: "봇",
    message: "메시지",
    placeholder: "메시지를 입력하세요…",
    send: "보내기",
    close: "닫기",
    save_transcript: "대화 내용 저장",
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
    allow: "허용",
    deny: "거절",
    declined: "공유를 거절했습니다",
    sharing_stopped: "공유가 중지되었습니다",
    what_shared: "공유된 내용",
    rate: "상담은 어떠셨나요?",
    comment: "의견 (선택)",
    send_rating: "평가 보내기",
    thanks: "소중한 의견 감사합니다!",
    scores: [
        "5점 중 1점",
        "5점 중 2점",
        "5점 중 3점",
        "5점 중 4점",
        "5점 중 5점",
    ],
};

//! The words of the sharing indicator, the picker and the log, in English and Korean (the panel's
//! language, passed by the loader).

/// The fixed strings of one language.
pub struct Strings {
    /// Indicator text before the agent's name.
    pub sharing_with: fn(&str) -> String,
    /// Stop button.
    pub stop: &'static str,
    /// "Show the agent" button.
    pub show: &'static str,
    /// Hint while picking.
    pub pick_hint: &'static str,
    /// "What was shared" button and log title.
    pub log: &'static str,
    /// Log close button.
    pub close: &'static str,
    /// Log line of a snapshot: url, KB, masked fields.
    pub page_line: fn(&str, f64, u32) -> String,
    /// Log line of what followed a snapshot.
    pub then_line: fn(&Counts) -> String,
    /// Log line when sharing started.
    pub started: fn(&str) -> String,
    /// Log line when sharing stopped.
    pub stopped: &'static str,
    /// The log is empty.
    pub empty: &'static str,
}

/// What was sent after one snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Change batches.
    pub changes: u32,
    /// Their bytes.
    pub change_bytes: u32,
    /// Pointer positions.
    pub pointer: u32,
    /// Scroll positions.
    pub scroll: u32,
    /// Field updates (masked unless marked safe).
    pub input: u32,
    /// Field updates that were masked.
    pub input_masked: u32,
    /// Things the visitor pointed at.
    pub highlight: u32,
}

fn kb(bytes: u32) -> f64 {
    (bytes as f64 / 102.4).round() / 10.0
}

static EN: Strings = Strings {
    sharing_with: |a| format!("Sharing this page with {a}"),
    stop: "Stop",
    show: "Show the agent",
    pick_hint: "Click something, or drag over an area, to show it to the agent. Esc cancels.",
    log: "What was shared",
    close: "Close",
    page_line: |url, k, m| format!("Page {url} — {k} KB, {m} field(s) hidden"),
    then_line: |c| {
        format!(
            "then {} change(s) ({} KB), {} pointer move(s), {} scroll(s), {} field update(s) ({} hidden), {} thing(s) shown",
            c.changes,
            kb(c.change_bytes),
            c.pointer,
            c.scroll,
            c.input,
            c.input_masked,
            c.highlight
        )
    },
    started: |a| format!("Sharing started with {a}"),
    stopped: "Sharing stopped",
    empty: "Nothing was shared.",
};

static KO: Strings = Strings {
    sharing_with: |a| format!("{a} 님과 이 페이지를 공유 중"),
    stop: "중지",
    show: "상담원에게 보여주기",
    pick_hint: "보여줄 곳을 클릭하거나 드래그하세요. Esc: 취소",
    log: "공유된 내용",
    close: "닫기",
    page_line: |url, k, m| format!("페이지 {url} — {k} KB, 가려진 입력란 {m}개"),
    then_line: |c| {
        format!(
            "이후 변경 {}회 ({} KB), 포인터 {}회, 스크롤 {}회, 입력란 변경 {}회 (가려짐 {}회), 보여준 곳 {}개",
            c.changes,
            kb(c.change_bytes),
            c.pointer,
            c.scroll,
            c.input,
            c.input_masked,
            c.highlight
        )
    },
    started: |a| format!("{a} 님과 공유 시작"),
    stopped: "공유 중지됨",
    empty: "공유된 내용이 없습니다.",
};

/// The strings for a language tag (`ko*` → Korean, anything else English).
pub fn strings(lang: &str) -> &'static Strings {
    if lang.to_ascii_lowercase().starts_with("ko") {
        &KO
    } else {
        &EN
    }
}

/// Bytes as KB with one decimal.
pub fn kilobytes(bytes: u32) -> f64 {
    kb(bytes)
}

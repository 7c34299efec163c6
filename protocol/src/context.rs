//! What the widget tells the relay about the visitor's page, so the agent knows where they are.

use serde::{Deserialize, Serialize};

/// Size of the visitor's browser viewport in CSS pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewport {
    /// Width in CSS pixels.
    pub width: u32,
    /// Height in CSS pixels.
    pub height: u32,
}

/// The visitor's page as the widget sees it. Sent in `hello` and again on every navigation.
/// Every field is optional on the wire so that minimal clients (bots, load tools) can omit it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageContext {
    /// Full URL of the page (the widget strips nothing: sites decide what goes in URLs).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// `document.title`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// `document.referrer`: where the visitor came from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub referrer: String,
    /// Browser language tag, e.g. `ko-KR`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub language: String,
    /// `navigator.userAgent`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    /// Viewport size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewport: Option<Viewport>,
    /// When this browsing session reached the site (Unix milliseconds), for "time on site".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entered_at: Option<i64>,
}

impl PageContext {
    /// Longest accepted string field, in bytes; longer values are cut by the relay.
    pub const MAX_FIELD_BYTES: usize = 2048;

    /// Cuts every string field to [`Self::MAX_FIELD_BYTES`] on a character boundary, so that a
    /// hostile page cannot make the relay store megabytes of "title".
    pub fn truncated(mut self) -> Self {
        for field in [
            &mut self.url,
            &mut self.title,
            &mut self.referrer,
            &mut self.language,
            &mut self.user_agent,
        ] {
            truncate_utf8(field, Self::MAX_FIELD_BYTES);
        }
        self
    }
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        let ctx = PageContext {
            title: "가".repeat(2000),
            ..Default::default()
        }
        .truncated();
        assert!(ctx.title.len() <= PageContext::MAX_FIELD_BYTES);
        assert!(ctx.title.chars().all(|c| c == '가'));
    }
}

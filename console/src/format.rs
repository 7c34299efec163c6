//! Pure text formatting for the console: relative times, durations, short visitor labels and the
//! human wording of protocol error codes. No browser APIs here, so it is unit-tested natively.

use protocol::ErrorCode;

/// Product name shown in the document title; the unread count is put in front of it.
pub const APP_TITLE: &str = "Parley console";

/// "just now", "5 min ago", "3 h ago", "2 d ago" for an instant `at` seen from `now` (both Unix
/// ms). Times in the future (clock skew between relay and browser) read as "just now".
pub fn relative_time(now: i64, at: i64) -> String {
    let secs = now.saturating_sub(at) / 1000;
    if secs < 60 {
        "just now".to_owned()
    } else if secs < 3600 {
        format!("{} min ago", secs / 60)
    } else if secs < 86_400 {
        format!("{} h ago", secs / 3600)
    } else {
        format!("{} d ago", secs / 86_400)
    }
}

/// A length of time for "time on site": "45 s", "12 min", "1 h 05 min". Negative reads as 0 s.
pub fn duration_short(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    if secs < 60 {
        format!("{secs} s")
    } else if secs < 3600 {
        format!("{} min", secs / 60)
    } else {
        format!("{} h {:02} min", secs / 3600, (secs % 3600) / 60)
    }
}

/// "14:05" for Unix ms `at` in a zone `offset_min` minutes *behind* UTC (the sign convention of
/// JavaScript's `Date.getTimezoneOffset`, so the caller can pass it straight through).
pub fn clock_time(at: i64, offset_min: i64) -> String {
    let local_min = (at / 60_000).saturating_sub(offset_min);
    let day_min = local_min.rem_euclid(24 * 60);
    format!("{:02}:{:02}", day_min / 60, day_min % 60)
}

/// "Visitor 3f2a": the last four alphanumeric characters of the visitor id. The *last* ones,
/// because ids are UUIDv7 whose leading characters are a timestamp shared by every visitor.
pub fn visitor_label(visitor_id: &str) -> String {
    let tail: Vec<char> = visitor_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let start = tail.len().saturating_sub(4);
    let short: String = tail[start..].iter().collect::<String>().to_lowercase();
    if short.is_empty() {
        "Visitor".to_owned()
    } else {
        format!("Visitor {short}")
    }
}

/// What an agent is told when the relay refuses one of their frames.
pub fn error_text(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Forbidden => "Another agent has this conversation",
        ErrorCode::Closed => "This conversation is closed",
        ErrorCode::TooLarge => "Message is too long",
        ErrorCode::Invalid => "The relay refused this message",
        ErrorCode::NotFound => "This conversation no longer exists",
        ErrorCode::RateLimited => "Sending too fast; retrying",
        ErrorCode::Internal => "The relay failed; retrying",
        ErrorCode::Malformed
        | ErrorCode::UnknownType
        | ErrorCode::HelloRequired
        | ErrorCode::UnsupportedVersion
        // Visitor-only codes: never sent to an agent.
        | ErrorCode::IdentityInvalid
        | ErrorCode::IdentityRequired => "The relay did not understand the console",
    }
}

/// The line under the login form for a failed `POST /api/login` with this HTTP `status`.
/// `retry_after_ms` comes from a 429 body.
pub fn login_error(status: u16, retry_after_ms: Option<u64>) -> String {
    match status {
        401 => "Wrong username or password".to_owned(),
        429 => {
            let secs = retry_after_ms.unwrap_or(1000).div_ceil(1000).max(1);
            format!("Too many attempts, try again in {secs} s")
        }
        0 => "Cannot reach the server".to_owned(),
        s => format!("Login failed (HTTP {s})"),
    }
}

/// The document title with `count` things needing attention in front: "(2) Parley console".
pub fn title_with_count(count: u32) -> String {
    if count == 0 {
        APP_TITLE.to_owned()
    } else {
        format!("({count}) {APP_TITLE}")
    }
}

/// `url` if it is safe to put in a link's `href` (http or https only: a page could report a
/// `javascript:` URL to attack the agent), else `None`.
pub fn safe_href(url: &str) -> Option<&str> {
    let lower = url
        .trim_start()
        .get(..8)
        .unwrap_or(url)
        .to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        let now = 10_000_000_000;
        assert_eq!(relative_time(now, now), "just now");
        assert_eq!(relative_time(now, now + 5_000), "just now");
        assert_eq!(relative_time(now, now - 59_000), "just now");
        assert_eq!(relative_time(now, now - 61_000), "1 min ago");
        assert_eq!(relative_time(now, now - 3 * 3_600_000), "3 h ago");
        assert_eq!(relative_time(now, now - 2 * 86_400_000), "2 d ago");
    }

    #[test]
    fn durations() {
        assert_eq!(duration_short(-5), "0 s");
        assert_eq!(duration_short(45_000), "45 s");
        assert_eq!(duration_short(12 * 60_000 + 3_000), "12 min");
        assert_eq!(duration_short(3_600_000 + 5 * 60_000), "1 h 05 min");
    }

    #[test]
    fn clock() {
        // 1970-01-01 14:05 UTC; Seoul is UTC+9 (offset -540).
        let at = (14 * 60 + 5) * 60_000;
        assert_eq!(clock_time(at, 0), "14:05");
        assert_eq!(clock_time(at, -540), "23:05");
        assert_eq!(clock_time(at, 900), "23:05");
    }

    #[test]
    fn visitor_labels() {
        assert_eq!(
            visitor_label("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f3F2A"),
            "Visitor 3f2a"
        );
        assert_eq!(visitor_label("ab"), "Visitor ab");
        assert_eq!(visitor_label("--"), "Visitor");
    }

    #[test]
    fn login_errors() {
        assert_eq!(login_error(401, None), "Wrong username or password");
        assert_eq!(
            login_error(429, Some(4_100)),
            "Too many attempts, try again in 5 s"
        );
        assert_eq!(
            login_error(429, Some(0)),
            "Too many attempts, try again in 1 s"
        );
    }

    #[test]
    fn only_http_links() {
        assert_eq!(
            safe_href("https://shop.example/a"),
            Some("https://shop.example/a")
        );
        assert_eq!(safe_href("HTTP://x"), Some("HTTP://x"));
        assert_eq!(safe_href("javascript:alert(1)"), None);
        assert_eq!(safe_href(" javascript:alert(1)"), None);
        assert_eq!(safe_href(""), None);
    }

    #[test]
    fn titles() {
        assert_eq!(title_with_count(0), "Parley console");
        assert_eq!(title_with_count(2), "(2) Parley console");
    }
}

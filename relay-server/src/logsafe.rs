//! Text from outside (a login name, a site key from a URL, an error a remote bot returned) on its
//! way into a log line. [`Untrusted`] is the one way such text is logged: it escapes every
//! control character (so a newline cannot start a forged line) and caps the length (so a 2 MB
//! username cannot fill the disk).

use std::fmt;

/// Most characters of untrusted text a log line shows; the rest is replaced by `…(N bytes)`.
pub const MAX_CHARS: usize = 128;

/// Displays untrusted text safely for a log line: control characters escaped as `\n`, `\u{1b}`,
/// quotes and backslashes escaped, at most [`MAX_CHARS`] characters.
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, c) in self.0.chars().enumerate() {
            if shown == MAX_CHARS {
                return write!(f, "…({} bytes)", self.0.len());
            }
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                c if c.is_control() => write!(f, "{}", c.escape_default())?,
                // Unicode line and paragraph separators and bidi overrides: some log viewers
                // break lines or reorder text on them.
                '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                    write!(f, "{}", c.escape_unicode())?
                }
                c => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_escapes_cannot_forge_a_line() {
        let forged = "x\nINFO login ok username=admin\r\u{1b}[2J\u{2028}";
        let shown = Untrusted(forged).to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r') && !shown.contains('\u{1b}'));
        assert!(!shown.contains('\u{2028}'));
        assert!(shown.starts_with("x\\nINFO login ok"), "{shown}");
        // Positive control: plain text passes unchanged.
        assert_eq!(Untrusted("mina").to_string(), "mina");
        assert_eq!(format!("{:?}", Untrusted("a\"b")), "\"a\\\"b\"");
    }

    #[test]
    fn long_text_is_capped() {
        let long = "é".repeat(10_000);
        let shown = Untrusted(&long).to_string();
        assert_eq!(shown.chars().filter(|c| *c == 'é').count(), MAX_CHARS);
        assert!(shown.ends_with("…(20000 bytes)"), "{shown}");
    }
}

//! When the console tells the relay the agent is typing: at most one frame per
//! [`TypingThrottle::MIN_INTERVAL_MS`], and "stopped" after [`TypingThrottle::IDLE_MS`] without
//! a keystroke. Pure; the UI calls it on input, on a timer tick and on send.

/// Throttle state for the agent's own typing frames in the shown conversation.
#[derive(Clone, Debug, Default)]
pub struct TypingThrottle {
    /// When the last `active: true` frame went out: repeats are spaced by the minimum interval.
    last_sent_at: Option<i64>,
    /// Last keystroke, to detect idleness.
    last_input_at: i64,
    /// Whether the relay currently believes we are typing.
    active: bool,
}

impl TypingThrottle {
    /// Least time between two `active: true` frames.
    pub const MIN_INTERVAL_MS: i64 = 2_000;
    /// Idle time after which typing is reported stopped.
    pub const IDLE_MS: i64 = 3_000;

    /// A keystroke at `now`. `Some(true)` means: send `typing active: true`.
    pub fn on_input(&mut self, now: i64) -> Option<bool> {
        self.last_input_at = now;
        let due = self
            .last_sent_at
            .is_none_or(|t| now.saturating_sub(t) >= Self::MIN_INTERVAL_MS);
        if due {
            self.last_sent_at = Some(now);
            self.active = true;
            Some(true)
        } else {
            None
        }
    }

    /// A timer tick at `now`. `Some(false)` means: send `typing active: false` (idle).
    pub fn on_tick(&mut self, now: i64) -> Option<bool> {
        if self.active && now.saturating_sub(self.last_input_at) >= Self::IDLE_MS {
            self.active = false;
            Some(false)
        } else {
            None
        }
    }

    /// The message was sent, or the agent switched conversation: typing stops now.
    pub fn stop(&mut self) -> Option<bool> {
        self.last_sent_at = None;
        if std::mem::take(&mut self.active) {
            Some(false)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_and_goes_idle() {
        let mut t = TypingThrottle::default();
        assert_eq!(t.on_input(0), Some(true));
        assert_eq!(t.on_input(500), None);
        assert_eq!(t.on_input(1_999), None);
        assert_eq!(t.on_input(2_000), Some(true));
        assert_eq!(t.on_tick(4_000), None);
        assert_eq!(t.on_tick(5_000), Some(false));
        assert_eq!(t.on_tick(6_000), None);
        assert_eq!(t.on_input(6_500), Some(true));
        assert_eq!(t.stop(), Some(false));
        assert_eq!(t.stop(), None);
    }
}

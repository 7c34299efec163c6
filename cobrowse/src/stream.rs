//! Numbering, splitting and pacing of stream items.
//!
//! Every item gets `n` = previous + 1 on this page (the first is 1); an item whose JSON is over
//! [`PIECE_BYTES`] (counting the escaping it gets inside the frame) goes out as several pieces
//! with the same `n`. Items leave through a token bucket of [`RATE`] frames a second (burst
//! [`BURST`]) so co-browse never eats the visitor socket's rate limit that chat needs; pointer,
//! scroll and viewport updates are "latest wins" slots that only use spare tokens, so a burst of
//! them collapses to the newest position.

use std::collections::VecDeque;

use protocol::cobrowse::{NodeId, Stream};

/// Largest piece of an item's JSON, in bytes once JSON-escaped inside the frame's `data` string.
pub const PIECE_BYTES: usize = 48 * 1024;
/// Sustained frames per second.
pub const RATE: f64 = 5.0;
/// Largest burst of frames.
pub const BURST: f64 = 8.0;

/// One frame to send: `(n, data, index, count)`.
pub type Piece = (u32, String, u32, u32);

/// Cuts `json` into pieces whose escaped size is at most `limit` bytes, on character boundaries.
pub fn split(json: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cost = 0;
    for c in json.chars() {
        let w = match c {
            '"' | '\\' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if cost + w > limit && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
            cost = 0;
        }
        cur.push(c);
        cost += w;
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

/// What is waiting to be sent.
#[derive(Default)]
pub struct Queue {
    /// The last `n` given.
    n: u32,
    tokens: f64,
    /// Pieces of items that must all arrive, in order.
    pieces: VecDeque<Piece>,
    /// Latest-wins items: the pointer, the window's and elements' scroll, the viewport.
    pub pointer: Option<Stream>,
    /// Window (`None`) or element scroll positions not sent yet.
    pub scrolls: Vec<(Option<NodeId>, Stream)>,
    /// Viewport not sent yet.
    pub viewport: Option<Stream>,
}

impl Queue {
    /// A queue with a full bucket.
    pub fn new() -> Self {
        Queue {
            tokens: BURST,
            ..Queue::default()
        }
    }

    /// Numbers `item`, splits it and queues its pieces; returns its JSON size in bytes.
    pub fn push(&mut self, item: &Stream) -> usize {
        let Ok(json) = serde_json::to_string(item) else {
            return 0;
        };
        let pieces = self.number(&json);
        self.pieces.extend(pieces);
        json.len()
    }

    fn number(&mut self, json: &str) -> Vec<Piece> {
        self.n += 1;
        let parts = split(json, PIECE_BYTES);
        let count = parts.len() as u32;
        parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| (self.n, p, i as u32, count))
            .collect()
    }

    /// Drops everything not sent yet (a snapshot is coming that covers it).
    pub fn clear(&mut self) {
        self.pieces.clear();
        self.pointer = None;
        self.scrolls.clear();
        self.viewport = None;
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
            && self.pointer.is_none()
            && self.scrolls.is_empty()
            && self.viewport.is_none()
    }

    /// Adds the tokens of `secs` seconds and takes the frames that may go now.
    pub fn due(&mut self, secs: f64) -> Vec<Piece> {
        self.tokens = (self.tokens + secs * RATE).min(BURST);
        let mut out = Vec::new();
        while self.tokens >= 1.0 {
            let next = if let Some(p) = self.pieces.pop_front() {
                p
            } else if let Some(v) = self.viewport.take() {
                self.numbered(&v)
            } else if !self.scrolls.is_empty() {
                let (_, s) = self.scrolls.remove(0);
                self.numbered(&s)
            } else if let Some(p) = self.pointer.take() {
                self.numbered(&p)
            } else {
                break;
            };
            self.tokens -= 1.0;
            out.push(next);
        }
        out
    }

    fn numbered(&mut self, item: &Stream) -> Piece {
        let json = serde_json::to_string(item).unwrap_or_default();
        self.n += 1;
        (self.n, json, 0, 1)
    }
}

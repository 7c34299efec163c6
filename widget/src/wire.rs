//! Relay → visitor frames, decoded with the browser's own `JSON.parse` into the protocol
//! crate's types.
//!
//! Why not `serde_json`: deserializing the protocol's internally tagged enums links serde's
//! buffering deserializer, serde_json's parser and their error formatting (float printing
//! included) — about a quarter of the panel's wasm. The browser already has a JSON parser, so
//! the panel reads the parsed object field by field instead. Sending still uses
//! `protocol::encode` (serialization is small). The rules follow PROTOCOL.md: unknown fields
//! are ignored, a missing required field drops the frame, an event of an unknown `kind` becomes
//! `VisitorBody::Unknown` (kept so seqs stay contiguous; the view shows it as nothing).

use js_sys::{Array, Reflect, JSON};
use protocol::cobrowse::{CobrowseState, Highlight, HighlightTarget, Rect};
use protocol::{
    Author, ClientId, ConversationId, ErrorCode, ErrorFrame, QuickReply, Role, ToVisitor,
    VisitorBody, VisitorEvent,
};
use wasm_bindgen::JsValue;

fn get(o: &JsValue, key: &str) -> JsValue {
    Reflect::get(o, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn text(o: &JsValue, key: &str) -> Option<String> {
    get(o, key).as_string()
}

fn uint(o: &JsValue, key: &str) -> Option<u64> {
    get(o, key)
        .as_f64()
        .filter(|n| *n >= 0.0 && n.fract() == 0.0 && *n <= 9_007_199_254_740_991.0)
        .map(|n| n as u64)
}

fn int(o: &JsValue, key: &str) -> Option<i32> {
    get(o, key).as_f64().map(|n| n as i32)
}

fn flag(o: &JsValue, key: &str) -> Option<bool> {
    get(o, key).as_bool()
}

/// Parses JSON text into a JS value (None when it is not JSON).
pub fn parse(json: &str) -> Option<JsValue> {
    JSON::parse(json).ok().filter(|v| v.is_object())
}

fn role(name: &str) -> Role {
    match name {
        "visitor" => Role::Visitor,
        "agent" => Role::Agent,
        "bot" => Role::Bot,
        // PROTOCOL.md lists four roles; anything newer is shown like the relay's own lines.
        _ => Role::System,
    }
}

fn error_code(name: &str) -> ErrorCode {
    match name {
        "malformed" => ErrorCode::Malformed,
        "unknown_type" => ErrorCode::UnknownType,
        "too_large" => ErrorCode::TooLarge,
        "rate_limited" => ErrorCode::RateLimited,
        "hello_required" => ErrorCode::HelloRequired,
        "unsupported_version" => ErrorCode::UnsupportedVersion,
        "not_found" => ErrorCode::NotFound,
        "forbidden" => ErrorCode::Forbidden,
        "closed" => ErrorCode::Closed,
        "internal" => ErrorCode::Internal,
        "identity_invalid" => ErrorCode::IdentityInvalid,
        "identity_required" => ErrorCode::IdentityRequired,
        // `invalid` and codes of later revisions: not retried.
        _ => ErrorCode::Invalid,
    }
}

fn author(o: &JsValue) -> Option<Author> {
    Some(Author {
        role: role(&text(o, "role")?),
        id: text(o, "id"),
        name: text(o, "name"),
    })
}

/// Quick replies of a bot message; a malformed entry is skipped, not the whole message.
fn buttons(list: &JsValue) -> Vec<QuickReply> {
    if !Array::is_array(list) {
        return Vec::new();
    }
    Array::from(list)
        .iter()
        .filter_map(|b| {
            Some(QuickReply {
                label: text(&b, "label")?,
                text: text(&b, "text")?,
            })
        })
        .filter(|b| !b.label.trim().is_empty() && !b.text.trim().is_empty())
        .collect()
}

/// The link of a bot message when it is safe to put in an `href`: a relative URL or an
/// http(s) one. Anything with another scheme (`javascript:`, `data:`…) or with whitespace or
/// control characters (which browsers strip, so `java\tscript:` would still run) is refused.
pub fn safe_link(url: &str) -> Option<String> {
    // Byte checks only: the characters browsers strip or split on are all ASCII. No `str`
    // slicing either: its panic path links Unicode escape tables (kilobytes of panel).
    let url = url.trim_matches(|c| c <= ' ');
    let bytes = url.as_bytes();
    if bytes.is_empty() || bytes.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return None;
    }
    let scheme = bytes
        .iter()
        .position(|&b| matches!(b, b':' | b'/' | b'?' | b'#'))
        .filter(|&i| bytes.get(i) == Some(&b':'))
        .and_then(|i| bytes.get(..i));
    match scheme {
        None => Some(url.to_owned()),
        Some(s) => (s.eq_ignore_ascii_case(b"http") || s.eq_ignore_ascii_case(b"https"))
            .then(|| url.to_owned()),
    }
}

/// A co-browse highlight (`{"page","target":"clear"|{"node"}|{"rect"},"note"?}`). The panel only
/// checks it and hands the frame's text to the co-browse module, which draws it.
fn highlight(o: &JsValue) -> Option<Highlight> {
    let t = get(o, "target");
    let r = get(&t, "rect");
    let target = if t.as_string().as_deref() == Some("clear") {
        HighlightTarget::Clear
    } else if let Some(n) = uint(&t, "node") {
        HighlightTarget::Node(n as u32)
    } else {
        HighlightTarget::Rect(Rect {
            x: int(&r, "x")?,
            y: int(&r, "y")?,
            w: int(&r, "w")?,
            h: int(&r, "h")?,
        })
    };
    Some(Highlight {
        page: uint(o, "page")? as u32,
        target,
        note: text(o, "note"),
    })
}

fn event(o: &JsValue) -> Option<VisitorEvent> {
    let body = get(o, "body");
    let body = match text(&body, "kind")?.as_str() {
        "message" => VisitorBody::Message {
            text: text(&body, "text")?,
            client_id: text(&body, "client_id").map(ClientId),
            buttons: buttons(&get(&body, "buttons")),
            link: text(&body, "link"),
        },
        "handoff" => VisitorBody::Handoff,
        "transferred" => match author(&get(&body, "to")) {
            Some(to) => VisitorBody::Transferred { to },
            None => VisitorBody::Unknown,
        },
        "requeued" => match author(&get(&body, "from")) {
            Some(from) => VisitorBody::Requeued { from },
            None => VisitorBody::Unknown,
        },
        "joined" => VisitorBody::Joined,
        "left" => VisitorBody::Left,
        "closed" => VisitorBody::Closed,
        "cobrowse" => VisitorBody::Cobrowse {
            state: match text(&body, "state")?.as_str() {
                "requested" => CobrowseState::Requested,
                "allowed" => CobrowseState::Allowed,
                "denied" => CobrowseState::Denied,
                // `stopped`, and states of later revisions (read as stopped).
                _ => CobrowseState::Stopped,
            },
        },
        // Not `?`: a dropped event would look like a seq gap. The panel only needs the kind.
        // The panel only needs to know a rating was stored (the comment is for agents).
        "rating" => VisitorBody::Rating {
            score: 0,
            comment: None,
        },
        _ => VisitorBody::Unknown,
    };
    Some(VisitorEvent {
        conversation_id: ConversationId(text(o, "conversation_id")?),
        seq: uint(o, "seq")?,
        at: get(o, "at").as_f64().unwrap_or(0.0) as i64,
        author: author(&get(o, "author"))?,
        body,
    })
}

/// Decodes one frame from the relay; None for anything that is not a well-formed visitor frame.
pub fn decode(json: &str) -> Option<ToVisitor> {
    let o = parse(json)?;
    Some(match text(&o, "type")?.as_str() {
        "welcome" => ToVisitor::Welcome {
            v: uint(&o, "v")? as u32,
            token: text(&o, "token")?,
            visitor_id: text(&o, "visitor_id").unwrap_or_default(),
            conversation_id: text(&o, "conversation_id").map(ConversationId),
            last_seq: uint(&o, "last_seq").unwrap_or(0),
            recovered: flag(&o, "recovered")?,
            agents_online: uint(&o, "agents_online").unwrap_or(0) as u32,
            available: flag(&o, "available").unwrap_or(true),
            opens_at: uint(&o, "opens_at").map(|n| n as i64),
            bot_first: flag(&o, "bot_first").unwrap_or(false),
            user_id: text(&o, "user_id"),
        },
        "event" => ToVisitor::Event(event(&o)?),
        "ack" => ToVisitor::Ack {
            client_id: ClientId(text(&o, "client_id")?),
            conversation_id: ConversationId(text(&o, "conversation_id")?),
            seq: uint(&o, "seq")?,
        },
        "typing" => ToVisitor::Typing {
            author: author(&get(&o, "author"))?,
            active: flag(&o, "active")?,
        },
        "presence" => ToVisitor::Presence {
            agents_online: uint(&o, "agents_online")? as u32,
            available: flag(&o, "available").unwrap_or(true),
            opens_at: uint(&o, "opens_at").map(|n| n as i64),
        },
        "cobrowse_highlight" => ToVisitor::CobrowseHighlight {
            author: author(&get(&o, "author"))?,
            highlight: highlight(&get(&o, "highlight"))?,
        },
        "cobrowse_resync" => ToVisitor::CobrowseResync,
        "queue" => ToVisitor::Queue {
            position: uint(&o, "position")? as u32,
            wait_ms: uint(&o, "wait_ms"),
        },
        "error" => ToVisitor::Error(ErrorFrame {
            code: error_code(&text(&o, "code")?),
            message: text(&o, "message").unwrap_or_default(),
            client_id: text(&o, "client_id").map(ClientId),
            retry_after_ms: uint(&o, "retry_after_ms"),
            reason: text(&o, "reason"),
        }),
        _ => return None,
    })
}

/// The `(client_id, text)` pairs of a stored outbox (`[{"client_id","text"}, …]`).
pub fn pairs(json: &str) -> Vec<(String, String)> {
    let Some(list) = parse(json).filter(Array::is_array) else {
        return Vec::new();
    };
    Array::from(&list)
        .iter()
        .filter_map(|item| Some((text(&item, "client_id")?, text(&item, "text")?)))
        .collect()
}

//! Text ⇄ frame, with errors typed the way the relay reports them.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::agent::{AgentFrame, ToAgent};
use crate::error::{ErrorCode, ErrorFrame};
use crate::ids::ClientId;
use crate::visitor::{ToVisitor, VisitorFrame};

/// A frame type: which `type` values it accepts, so an unknown one is told apart from a broken one.
pub trait Frame: Serialize + DeserializeOwned {
    /// Every `type` value of this frame enum.
    const TYPES: &'static [&'static str];
}

impl Frame for VisitorFrame {
    const TYPES: &'static [&'static str] = &[
        "hello",
        "send",
        "typing",
        "context",
        "cobrowse_answer",
        "cobrowse_stop",
        "cobrowse",
        "rate",
        "leave_message",
        "greeting",
    ];
}

impl Frame for ToVisitor {
    const TYPES: &'static [&'static str] = &[
        "welcome",
        "event",
        "ack",
        "typing",
        "presence",
        "error",
        "cobrowse_highlight",
        "cobrowse_resync",
        "queue",
    ];
}

impl Frame for AgentFrame {
    const TYPES: &'static [&'static str] = &[
        "hello",
        "open",
        "take",
        "send",
        "typing",
        "close",
        "cobrowse_request",
        "cobrowse_stop",
        "cobrowse_highlight",
        "cobrowse_resync",
        "transfer",
        "note",
        "label",
    ];
}

impl Frame for ToAgent {
    const TYPES: &'static [&'static str] = &[
        "welcome",
        "conversation",
        "history",
        "event",
        "ack",
        "typing",
        "presence",
        "error",
        "cobrowse",
        "queue",
    ];
}

/// A frame a client sends: it may carry the client id a refusal must name.
pub trait ClientFrame: Frame {
    /// The idempotency key of a send, if this frame is one.
    fn client_id(&self) -> Option<&ClientId>;
}

/// A frame the relay sends: an error frame can be built from and recognised in it.
pub trait ServerFrame: Frame + From<ErrorFrame> {
    /// The error this frame carries, if it is an error frame.
    fn error(&self) -> Option<&ErrorFrame>;
    /// The same, to change (the relay names the `client_id` of the frame an error answers).
    fn error_mut(&mut self) -> Option<&mut ErrorFrame>;
}

impl ClientFrame for VisitorFrame {
    fn client_id(&self) -> Option<&ClientId> {
        match self {
            VisitorFrame::Send { client_id, .. } | VisitorFrame::LeaveMessage { client_id, .. } => {
                Some(client_id)
            }
            _ => None,
        }
    }
}

impl ClientFrame for AgentFrame {
    fn client_id(&self) -> Option<&ClientId> {
        match self {
            AgentFrame::Send { client_id, .. } => Some(client_id),
            _ => None,
        }
    }
}

impl From<ErrorFrame> for ToVisitor {
    fn from(e: ErrorFrame) -> Self {
        ToVisitor::Error(e)
    }
}

impl From<ErrorFrame> for ToAgent {
    fn from(e: ErrorFrame) -> Self {
        ToAgent::Error(e)
    }
}

impl ServerFrame for ToVisitor {
    fn error(&self) -> Option<&ErrorFrame> {
        match self {
            ToVisitor::Error(e) => Some(e),
            _ => None,
        }
    }

    fn error_mut(&mut self) -> Option<&mut ErrorFrame> {
        match self {
            ToVisitor::Error(e) => Some(e),
            _ => None,
        }
    }
}

impl ServerFrame for ToAgent {
    fn error(&self) -> Option<&ErrorFrame> {
        match self {
            ToAgent::Error(e) => Some(e),
            _ => None,
        }
    }

    fn error_mut(&mut self) -> Option<&mut ErrorFrame> {
        match self {
            ToAgent::Error(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a text could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// `malformed`, `unknown_type` or `invalid`.
    pub code: ErrorCode,
    /// What was wrong, for developers.
    pub detail: String,
    /// The frame's `client_id`, when it was JSON with a well-formed one: the error names it
    /// (PROTOCOL.md §6), so the client knows which send failed.
    pub client_id: Option<ClientId>,
}

impl From<DecodeError> for ErrorFrame {
    fn from(e: DecodeError) -> Self {
        ErrorFrame::new(e.code, e.detail).for_client(e.client_id)
    }
}

/// Parses one frame. Valid frames take the fast path (one parse); a failure is parsed again
/// loosely to say whether the JSON, the `type` or a field was at fault.
pub fn decode<T: Frame>(text: &str) -> Result<T, DecodeError> {
    match serde_json::from_str::<T>(text) {
        Ok(frame) => Ok(frame),
        Err(err) => Err(diagnose::<T>(text, err)),
    }
}

fn diagnose<T: Frame>(text: &str, err: serde_json::Error) -> DecodeError {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return DecodeError {
                code: ErrorCode::Malformed,
                detail: format!("not JSON: {e}"),
                client_id: None,
            }
        }
    };
    let client_id = value
        .get("client_id")
        .and_then(|c| c.as_str())
        .map(|c| ClientId(c.to_owned()))
        .filter(ClientId::is_valid);
    match value.get("type").and_then(|t| t.as_str()) {
        None => DecodeError {
            code: ErrorCode::Malformed,
            detail: "a frame is a JSON object with a string `type`".into(),
            client_id,
        },
        Some(t) if !T::TYPES.contains(&t) => DecodeError {
            code: ErrorCode::UnknownType,
            detail: format!("unknown frame type `{t}`; expected one of {:?}", T::TYPES),
            client_id,
        },
        Some(t) => DecodeError {
            code: ErrorCode::Invalid,
            detail: format!("bad `{t}` frame: {err}"),
            client_id,
        },
    }
}

/// Serializes a frame. Infallible for the types of this crate (no maps with non-string keys).
pub fn encode<T: Serialize>(frame: &T) -> String {
    serde_json::to_string(frame).unwrap_or_else(|_| {
        // Unreachable for this crate's types; kept total so no caller has to unwrap. The error
        // is not formatted into the text: that would link serde_json's error messages (and
        // std's I/O error names) into the visitor's panel for a case that cannot happen.
        r#"{"type":"error","code":"internal","message":"encode failed"}"#.to_owned()
    })
}

/// Checks a rating: score 1–5, comment (if any) at most [`crate::MAX_COMMENT_BYTES`] bytes. A
/// blank comment counts as none.
pub fn validate_rating(score: u8, comment: Option<&str>) -> Result<(), ErrorFrame> {
    if !(1..=5).contains(&score) {
        return Err(ErrorFrame::new(
            ErrorCode::Invalid,
            format!("score must be 1 to 5, not {score}"),
        ));
    }
    if let Some(c) = comment {
        if c.len() > crate::MAX_COMMENT_BYTES {
            return Err(ErrorFrame::new(
                ErrorCode::TooLarge,
                format!(
                    "comment is {} bytes; the limit is {}",
                    c.len(),
                    crate::MAX_COMMENT_BYTES
                ),
            ));
        }
    }
    Ok(())
}

/// Checks a chat text: not blank, at most [`crate::MAX_TEXT_BYTES`] bytes.
pub fn validate_text(text: &str) -> Result<(), ErrorFrame> {
    if text.trim().is_empty() {
        return Err(ErrorFrame::new(ErrorCode::Invalid, "empty message"));
    }
    if text.len() > crate::MAX_TEXT_BYTES {
        return Err(ErrorFrame::new(
            ErrorCode::TooLarge,
            format!(
                "message is {} bytes; the limit is {}",
                text.len(),
                crate::MAX_TEXT_BYTES
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientId, PageContext};

    #[test]
    fn tells_malformed_unknown_and_invalid_apart() {
        let e = decode::<VisitorFrame>("{nope").unwrap_err();
        assert_eq!(e.code, ErrorCode::Malformed);
        let e = decode::<VisitorFrame>(r#"{"text":"hi"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::Malformed);
        let e = decode::<VisitorFrame>(r#"{"type":"launch_missiles"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownType);
        let e = decode::<VisitorFrame>(r#"{"type":"send","text":"hi"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::Invalid);
    }

    #[test]
    fn round_trips_and_types_are_listed() {
        let frames = vec![
            VisitorFrame::Hello {
                identity: None,
                v: 1,
                token: None,
                conversation_id: Some("c1".into()),
                last_seq: Some(3),
                context: PageContext::default(),
            },
            VisitorFrame::Send {
                client_id: ClientId::from("c1"),
                text: "hello".into(),
            },
            VisitorFrame::Typing { active: true },
            VisitorFrame::Context {
                context: PageContext::default(),
            },
        ];
        for f in frames {
            let text = encode(&f);
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let t = v["type"].as_str().unwrap();
            assert!(VisitorFrame::TYPES.contains(&t), "{t} missing from TYPES");
            assert_eq!(decode::<VisitorFrame>(&text).unwrap(), f);
        }
    }

    #[test]
    fn serialization_is_deterministic() {
        let f = VisitorFrame::Send {
            client_id: ClientId::from("abc"),
            text: "hi".into(),
        };
        assert_eq!(
            encode(&f),
            r#"{"type":"send","client_id":"abc","text":"hi"}"#
        );
    }

    #[test]
    fn unknown_event_kinds_and_statuses_still_decode() {
        let text = r#"{"type":"event","conversation_id":"c","seq":4,"at":1,"author":{"role":"system"},"body":{"kind":"poll","question":"?"}}"#;
        match decode::<ToVisitor>(text).expect("decodes") {
            ToVisitor::Event(e) => assert_eq!(e.body, crate::VisitorBody::Unknown),
            other => panic!("expected an event, got {other:?}"),
        }
        let status: crate::ConversationStatus =
            serde_json::from_str(r#""snoozed""#).expect("decodes");
        assert_eq!(status, crate::ConversationStatus::Unknown);
    }

    #[test]
    fn rating_limits() {
        let e = decode::<VisitorFrame>(r#"{"type":"rate","score":4,"comment":"quick"}"#);
        assert_eq!(
            e.unwrap(),
            VisitorFrame::Rate {
                score: 4,
                comment: Some("quick".into())
            }
        );
        // Out of u8 range is a bad field, not a broken frame.
        let e = decode::<VisitorFrame>(r#"{"type":"rate","score":900}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::Invalid);
        assert_eq!(
            validate_rating(0, None).unwrap_err().code,
            ErrorCode::Invalid
        );
        assert_eq!(
            validate_rating(6, None).unwrap_err().code,
            ErrorCode::Invalid
        );
        let long = "a".repeat(crate::MAX_COMMENT_BYTES + 1);
        assert_eq!(
            validate_rating(5, Some(&long)).unwrap_err().code,
            ErrorCode::TooLarge
        );
        assert!(validate_rating(1, Some("좋아요")).is_ok());
    }

    #[test]
    fn text_limits() {
        assert_eq!(validate_text("  ").unwrap_err().code, ErrorCode::Invalid);
        let big = "a".repeat(crate::MAX_TEXT_BYTES + 1);
        assert_eq!(validate_text(&big).unwrap_err().code, ErrorCode::TooLarge);
        assert!(validate_text("안녕하세요").is_ok());
    }
}

//! Signing visitor identities the way a site's server does (HS256 JWTs with `jsonwebtoken`),
//! for the identity tests.

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::Value;

/// Now, in Unix seconds (JWT time).
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `claims` signed with HS256 and `secret`.
pub fn sign(claims: &Value, secret: &str) -> String {
    // Serialising a JSON value with a fixed header cannot fail.
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_default()
}

//! Signed visitor identity: a site's server vouches for its logged-in visitor with a short-lived
//! HS256 JWT signed by the site's secret, and the relay believes nothing else about who a visitor
//! is.
//!
//! The one rule, owned here: a visitor's `user_id`, name, email and attributes come only from a
//! token [`verify`] accepted — signed with this site's secret (or the previous one, during a
//! rotation), `exp` not passed, a lifetime (`exp - iat`) within the site's limit, `iat` not in the
//! future, `aud` (when present) naming this site, every claim within its size bounds. A refused
//! token is a typed [`IdentityError`]; the visitor then chats anonymously unless the site
//! requires identity. What the store does with a verified identity (one visitor per user id, a
//! device's anonymous history merged in) is `Store::identify_visitor`.

use std::collections::BTreeMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::mail::MAX_EMAIL_BYTES;

/// Longest token accepted, in bytes: a token is sent in every `hello`.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Longest `sub` (the site's user id), in bytes.
pub const MAX_SUB_BYTES: usize = 256;
/// Longest `name`, in characters.
pub const MAX_NAME_CHARS: usize = 120;
/// Most custom attributes in one token.
pub const MAX_ATTRIBUTES: usize = 20;
/// Longest attribute name, in bytes (`[A-Za-z0-9_.-]`).
pub const MAX_ATTRIBUTE_NAME: usize = 64;
/// Longest attribute text value, in characters.
pub const MAX_ATTRIBUTE_VALUE: usize = 256;
/// Shortest secret accepted: HS256 keys shorter than the hash are guessable.
pub const MIN_SECRET_BYTES: usize = 32;
/// Clock skew forgiven on `exp` and `iat`, in seconds.
pub const LEEWAY_SECS: i64 = 30;
/// Longest token lifetime (`exp - iat`) a site accepts unless it says otherwise: short, so a
/// leaked token is soon worth nothing (the widget asks the page for a fresh one on reconnect).
pub const DEFAULT_MAX_LIFETIME_SECS: i64 = 600;
/// Days an anonymous visitor's token stays good without being used, unless the site says.
pub const DEFAULT_ANONYMOUS_TTL_DAYS: i64 = 180;

/// A secret from the config file: compared and used, never printed (`Debug` hides it, and
/// configs are logged).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret's bytes (the HMAC key).
    pub fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

/// A site's identity settings (`[[site]]` keys, all optional).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct IdentityConfig {
    /// The HS256 secret the site's server signs identity tokens with (at least
    /// [`MIN_SECRET_BYTES`] bytes). Absent: the site takes no identities.
    #[serde(default)]
    pub identity_secret: Option<Secret>,
    /// The secret before the last rotation, still accepted so pages signed just before the
    /// switch keep working; remove it once every page signs with the new one.
    #[serde(default)]
    pub identity_previous_secret: Option<Secret>,
    /// Refuse visitors without a valid identity (a logged-in area). Needs `identity_secret`.
    #[serde(default)]
    pub require_identity: bool,
    /// Longest token lifetime accepted (`exp - iat`, seconds).
    #[serde(default = "default_max_lifetime")]
    pub identity_max_lifetime_secs: i64,
    /// An anonymous visitor's token left unused this many days no longer works: the browser
    /// starts as a new visitor (a shared computer does not keep someone's chat for ever).
    #[serde(default = "default_anonymous_ttl")]
    pub anonymous_ttl_days: i64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            identity_secret: None,
            identity_previous_secret: None,
            require_identity: false,
            identity_max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
            anonymous_ttl_days: DEFAULT_ANONYMOUS_TTL_DAYS,
        }
    }
}

fn default_max_lifetime() -> i64 {
    DEFAULT_MAX_LIFETIME_SECS
}

fn default_anonymous_ttl() -> i64 {
    DEFAULT_ANONYMOUS_TTL_DAYS
}

/// Why a site's identity settings are refused (the relay does not start with them).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityConfigError {
    /// A secret shorter than [`MIN_SECRET_BYTES`].
    #[error("identity secrets must be at least {MIN_SECRET_BYTES} bytes")]
    ShortSecret,
    /// `require_identity` without a secret to check with.
    #[error("require_identity needs identity_secret")]
    RequiredWithoutSecret,
    /// A previous secret without a current one.
    #[error("identity_previous_secret needs identity_secret")]
    PreviousWithoutSecret,
    /// A lifetime outside 30 s – 1 day.
    #[error("identity_max_lifetime_secs must be 30-86400, not {0}")]
    Lifetime(i64),
    /// A TTL outside 1 – 36,500 days.
    #[error("anonymous_ttl_days must be 1-36500, not {0}")]
    AnonymousTtl(i64),
}

impl IdentityConfig {
    /// Checks the settings.
    pub fn check(&self) -> Result<(), IdentityConfigError> {
        for s in [&self.identity_secret, &self.identity_previous_secret]
            .into_iter()
            .flatten()
        {
            if s.bytes().len() < MIN_SECRET_BYTES {
                return Err(IdentityConfigError::ShortSecret);
            }
        }
        if self.identity_secret.is_none() {
            if self.require_identity {
                return Err(IdentityConfigError::RequiredWithoutSecret);
            }
            if self.identity_previous_secret.is_some() {
                return Err(IdentityConfigError::PreviousWithoutSecret);
            }
        }
        if !(30..=86_400).contains(&self.identity_max_lifetime_secs) {
            return Err(IdentityConfigError::Lifetime(
                self.identity_max_lifetime_secs,
            ));
        }
        if !(1..=36_500).contains(&self.anonymous_ttl_days) {
            return Err(IdentityConfigError::AnonymousTtl(self.anonymous_ttl_days));
        }
        Ok(())
    }

    /// How long an anonymous visitor's token stays good unused, in ms.
    pub fn anonymous_ttl_ms(&self) -> i64 {
        self.anonymous_ttl_days.saturating_mul(86_400_000)
    }
}

/// What a verified token says about the visitor: the only source of a visitor's identity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    /// The site's user id (`sub`).
    pub user_id: String,
    /// Display name (`name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Email address (`email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Other facts the site vouches for (`attributes`: plan, account id, …): text, numbers and
    /// booleans only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

/// Why an identity token was refused. `reason()` is the short word the `error` frame carries.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum IdentityError {
    /// The site has no `identity_secret`.
    #[error("this site takes no signed identities")]
    NotEnabled,
    /// Not a JWT, not HS256, or claims that are not JSON.
    #[error("the identity token is not an HS256 JWT")]
    Malformed,
    /// Over [`MAX_TOKEN_BYTES`].
    #[error("the identity token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    /// Signed with another key (another site's secret, or forged).
    #[error("the identity token is not signed with this site's secret")]
    BadSignature,
    /// `exp` has passed.
    #[error("the identity token has expired")]
    Expired,
    /// `iat` is in the future.
    #[error("the identity token was issued in the future")]
    NotYetValid,
    /// `exp - iat` is over the site's limit.
    #[error("the identity token lives longer than this site allows")]
    TooLongLived,
    /// `aud` names another site.
    #[error("the identity token is for another site")]
    WrongSite,
    /// A required claim is absent.
    #[error("the identity token has no `{0}`")]
    Missing(&'static str),
    /// A claim over its size limit or of the wrong shape.
    #[error("the identity token's `{0}` is too long or malformed")]
    BadClaim(&'static str),
}

impl IdentityError {
    /// One word for the error frame (`identity_invalid`'s `message` carries the sentence).
    pub fn reason(&self) -> &'static str {
        match self {
            IdentityError::NotEnabled => "not_enabled",
            IdentityError::Malformed => "malformed",
            IdentityError::TooLong => "too_long",
            IdentityError::BadSignature => "bad_signature",
            IdentityError::Expired => "expired",
            IdentityError::NotYetValid => "not_yet_valid",
            IdentityError::TooLongLived => "lifetime",
            IdentityError::WrongSite => "wrong_site",
            IdentityError::Missing(_) => "missing_claim",
            IdentityError::BadClaim(_) => "bad_claim",
        }
    }
}

/// The claims as sent; each is checked by hand so a missing one is named.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<serde_json::Value>,
    #[serde(default)]
    iat: Option<f64>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    name: Option<serde_json::Value>,
    #[serde(default)]
    email: Option<serde_json::Value>,
    #[serde(default)]
    attributes: Option<serde_json::Value>,
}

/// Checks `token` for site `site_key` at `now` (Unix seconds). See the module doc for the rule.
pub fn verify(
    site_key: &str,
    cfg: &IdentityConfig,
    token: &str,
    now: i64,
) -> Result<Verified, IdentityError> {
    let secrets: Vec<&Secret> = [&cfg.identity_secret, &cfg.identity_previous_secret]
        .into_iter()
        .flatten()
        .collect();
    if secrets.is_empty() {
        return Err(IdentityError::NotEnabled);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(IdentityError::TooLong);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| IdentityError::Malformed)?;
    if header.alg != Algorithm::HS256 {
        return Err(IdentityError::Malformed);
    }
    // Signature only: the claims are checked below, against `now`, with named errors.
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let mut claims = None;
    for secret in secrets {
        match jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(secret.bytes()),
            &validation,
        ) {
            Ok(data) => {
                claims = Some(data.claims);
                break;
            }
            Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature => continue,
            Err(_) => return Err(IdentityError::Malformed),
        }
    }
    let c = claims.ok_or(IdentityError::BadSignature)?;
    let exp = c.exp.ok_or(IdentityError::Missing("exp"))?;
    let iat = c.iat.ok_or(IdentityError::Missing("iat"))?;
    let now = now as f64;
    if now > exp + LEEWAY_SECS as f64 {
        return Err(IdentityError::Expired);
    }
    if iat > now + LEEWAY_SECS as f64 {
        return Err(IdentityError::NotYetValid);
    }
    if exp - iat > cfg.identity_max_lifetime_secs as f64 {
        return Err(IdentityError::TooLongLived);
    }
    if let Some(aud) = &c.aud {
        let names_site = match aud {
            serde_json::Value::String(s) => s == site_key,
            serde_json::Value::Array(a) => a.iter().any(|v| v.as_str() == Some(site_key)),
            _ => false,
        };
        if !names_site {
            return Err(IdentityError::WrongSite);
        }
    }
    let user_id = match c.sub {
        None | Some(serde_json::Value::Null) => return Err(IdentityError::Missing("sub")),
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(IdentityError::BadClaim("sub")),
    };
    if user_id.is_empty() {
        return Err(IdentityError::Missing("sub"));
    }
    if user_id.len() > MAX_SUB_BYTES || user_id.chars().any(char::is_control) {
        return Err(IdentityError::BadClaim("sub"));
    }
    let name = optional_text(c.name, MAX_NAME_CHARS, "name")?;
    let email = optional_text(c.email, MAX_EMAIL_BYTES, "email")?;
    if let Some(e) = &email {
        if !crate::mail::valid_email(e) {
            return Err(IdentityError::BadClaim("email"));
        }
    }
    let attributes = match c.attributes {
        None | Some(serde_json::Value::Null) => BTreeMap::new(),
        Some(serde_json::Value::Object(map)) => attributes(map)?,
        Some(_) => return Err(IdentityError::BadClaim("attributes")),
    };
    Ok(Verified {
        user_id,
        name,
        email,
        attributes,
    })
}

/// An optional text claim: trimmed, at most `max` characters, no control characters; empty is
/// absent.
fn optional_text(
    v: Option<serde_json::Value>,
    max: usize,
    claim: &'static str,
) -> Result<Option<String>, IdentityError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => {
            let t = s.trim();
            if t.chars().count() > max || t.chars().any(char::is_control) {
                return Err(IdentityError::BadClaim(claim));
            }
            Ok((!t.is_empty()).then(|| t.to_owned()))
        }
        Some(_) => Err(IdentityError::BadClaim(claim)),
    }
}

fn attributes(
    map: serde_json::Map<String, serde_json::Value>,
) -> Result<BTreeMap<String, serde_json::Value>, IdentityError> {
    let bad = IdentityError::BadClaim("attributes");
    if map.len() > MAX_ATTRIBUTES {
        return Err(bad);
    }
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let name_ok = !k.is_empty()
            && k.len() <= MAX_ATTRIBUTE_NAME
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        let value_ok = match &v {
            serde_json::Value::String(s) => {
                s.chars().count() <= MAX_ATTRIBUTE_VALUE && !s.chars().any(char::is_control)
            }
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => true,
            _ => false,
        };
        if !name_ok || !value_ok {
            return Err(bad);
        }
        out.insert(k, v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-demo";
    const NOW: i64 = 1_800_000_000;

    fn cfg() -> IdentityConfig {
        IdentityConfig {
            identity_secret: Some(SECRET.into()),
            ..IdentityConfig::default()
        }
    }

    fn sign(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn good() -> serde_json::Value {
        json!({"sub": "u-42", "iat": NOW - 5, "exp": NOW + 300, "name": " Ada ",
               "email": "ada@example.com", "attributes": {"plan": "pro", "seats": 3}})
    }

    #[test]
    fn a_good_token_says_who_the_visitor_is() {
        let v = verify("demo", &cfg(), &sign(good(), SECRET), NOW).unwrap();
        assert_eq!(v.user_id, "u-42");
        assert_eq!(v.name.as_deref(), Some("Ada"));
        assert_eq!(v.email.as_deref(), Some("ada@example.com"));
        assert_eq!(v.attributes.get("seats"), Some(&json!(3)));
    }

    #[test]
    fn every_bad_token_is_refused_with_its_reason() {
        let with = |patch: serde_json::Value| {
            let mut c = good();
            for (k, v) in patch.as_object().unwrap() {
                if v.is_null() {
                    c.as_object_mut().unwrap().remove(k);
                } else {
                    c[k] = v.clone();
                }
            }
            sign(c, SECRET)
        };
        let cases = [
            ("not a jwt".to_owned(), IdentityError::Malformed),
            (
                sign(good(), "another-site-secret-0123456789abcdef"),
                IdentityError::BadSignature,
            ),
            (
                with(json!({"exp": NOW - 60, "iat": NOW - 300})),
                IdentityError::Expired,
            ),
            (
                with(json!({"iat": NOW + 600, "exp": NOW + 700})),
                IdentityError::NotYetValid,
            ),
            (
                with(json!({"exp": NOW + 3_600})),
                IdentityError::TooLongLived,
            ),
            (with(json!({"aud": "other-site"})), IdentityError::WrongSite),
            (with(json!({"sub": null})), IdentityError::Missing("sub")),
            (with(json!({"exp": null})), IdentityError::Missing("exp")),
            (
                with(json!({"sub": "x".repeat(MAX_SUB_BYTES + 1)})),
                IdentityError::BadClaim("sub"),
            ),
            (with(json!({"sub": 42})), IdentityError::BadClaim("sub")),
            (
                with(json!({"email": "not an address"})),
                IdentityError::BadClaim("email"),
            ),
            (
                with(json!({"attributes": {"nested": {"a": 1}}})),
                IdentityError::BadClaim("attributes"),
            ),
            (
                format!("{}.{}", sign(good(), SECRET), "x".repeat(MAX_TOKEN_BYTES)),
                IdentityError::TooLong,
            ),
        ];
        for (token, want) in cases {
            assert_eq!(verify("demo", &cfg(), &token, NOW), Err(want), "{want:?}");
        }
        // Another algorithm (here HS512 with the right secret) is not accepted either.
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &good(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            verify("demo", &cfg(), &hs512, NOW),
            Err(IdentityError::Malformed)
        );
        // A site without a secret takes no identity at all.
        assert_eq!(
            verify(
                "demo",
                &IdentityConfig::default(),
                &sign(good(), SECRET),
                NOW
            ),
            Err(IdentityError::NotEnabled)
        );
        // `aud` naming this site (alone or in a list) is fine.
        for aud in [json!("demo"), json!(["x", "demo"])] {
            assert!(verify("demo", &cfg(), &with(json!({ "aud": aud })), NOW).is_ok());
        }
    }

    #[test]
    fn the_previous_secret_works_during_a_rotation() {
        let rotated = IdentityConfig {
            identity_secret: Some("a-brand-new-secret-0123456789abcdef".into()),
            identity_previous_secret: Some(SECRET.into()),
            ..IdentityConfig::default()
        };
        assert!(verify("demo", &rotated, &sign(good(), SECRET), NOW).is_ok());
        let after = IdentityConfig {
            identity_previous_secret: None,
            ..rotated
        };
        assert_eq!(
            verify("demo", &after, &sign(good(), SECRET), NOW),
            Err(IdentityError::BadSignature)
        );
    }

    #[test]
    fn settings_are_checked_and_secrets_never_printed() {
        assert_eq!(cfg().check(), Ok(()));
        let short = IdentityConfig {
            identity_secret: Some("short".into()),
            ..IdentityConfig::default()
        };
        assert_eq!(short.check(), Err(IdentityConfigError::ShortSecret));
        let required = IdentityConfig {
            require_identity: true,
            ..IdentityConfig::default()
        };
        assert_eq!(
            required.check(),
            Err(IdentityConfigError::RequiredWithoutSecret)
        );
        let ttl = IdentityConfig {
            anonymous_ttl_days: 0,
            ..IdentityConfig::default()
        };
        assert_eq!(ttl.check(), Err(IdentityConfigError::AnonymousTtl(0)));
        assert!(!format!("{:?}", cfg()).contains(SECRET));
    }
}

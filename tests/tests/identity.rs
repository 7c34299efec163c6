//! Signed visitor identity (issue #25), against the real relay on loopback (SQLite): a site's
//! server signs who its visitor is (HS256 JWT, signed here with `jsonwebtoken` as a site's
//! server would); every browser that proves the same user has that user's one history; an
//! anonymous history joins the person who signs in (and the other tabs of that browser are told
//! to reconnect); a shared computer does not hand one person's chat to the next; every bad
//! token is refused with a typed reason while the visitor still chats anonymously; a site that
//! requires identity refuses anonymous visitors; anonymous tokens unused too long stop working;
//! agents see the verified identity and the visitor's conversations.

use anyhow::Context as _;
use parley_tests::identity::{now_secs as now, sign};
use parley_tests::{TestRelay, VisitorClient, AGENTS};
use protocol::{ErrorCode, PageContext, ToVisitor, VisitorFrame};
use serde_json::{json, Value};

const SECRET: &str = "shop-secret-0123456789abcdef0123456789";
const BANK_SECRET: &str = "bank-secret-0123456789abcdef0123456789";

/// `demo` takes identities signed with [`SECRET`]; `bank` requires them (signed with
/// [`BANK_SECRET`]); anonymous tokens last `ttl_days` unused.
async fn relay(ttl_days: i64) -> anyhow::Result<TestRelay> {
    TestRelay::builder()
        .config(move |c| {
            c.sites[0].identity.identity_secret = Some(SECRET.into());
            c.sites[0].identity.anonymous_ttl_days = ttl_days;
            let mut bank = c.sites[0].clone();
            bank.key = "bank".into();
            bank.name = "Bank".into();
            bank.identity.identity_secret = Some(BANK_SECRET.into());
            bank.identity.require_identity = true;
            c.sites.push(bank);
        })
        .start()
        .await
}

fn claims(user: &str) -> Value {
    json!({"sub": user, "iat": now() - 5, "exp": now() + 300,
           "name": "Ada Park", "email": "ada@example.com", "attributes": {"plan": "pro"}})
}

fn identity(user: &str) -> String {
    sign(&claims(user), SECRET)
}

/// Says hello on a raw socket of `site` with `identity` and returns the frames up to and
/// including `welcome` (or up to the close).
async fn hello_frames(
    relay: &TestRelay,
    site: &str,
    token: Option<&str>,
    identity: Option<String>,
) -> anyhow::Result<(parley_tests::ws::RawSocket, Vec<ToVisitor>)> {
    let mut sock = VisitorClient::raw_on(relay, site).await?;
    sock.send_json(&VisitorFrame::Hello {
        v: protocol::PROTOCOL_VERSION,
        token: token.map(str::to_owned),
        conversation_id: None,
        last_seq: None,
        context: PageContext::default(),
        identity,
    })
    .await?;
    let mut frames = Vec::new();
    loop {
        let frame: ToVisitor = sock.next_json().await.context("frames after hello")?;
        let done = matches!(
            frame,
            ToVisitor::Welcome { .. }
                | ToVisitor::Error(protocol::ErrorFrame {
                    code: ErrorCode::IdentityRequired,
                    ..
                })
        );
        frames.push(frame);
        if done {
            return Ok((sock, frames));
        }
    }
}

/// `GET /api/visitors/{id}` as Mina.
async fn profile(relay: &TestRelay, visitor_id: &str) -> anyhow::Result<(u16, Value)> {
    let (user, _, pass) = AGENTS[0];
    parley_tests::ws::HttpAgent::login(relay, user, pass)
        .await?
        .call(
            reqwest::Method::GET,
            &format!("/api/visitors/{visitor_id}"),
            None,
        )
        .await
}

#[tokio::test]
async fn one_person_has_one_history_on_every_browser() -> anyhow::Result<()> {
    let relay = relay(180).await?;
    let mut laptop =
        VisitorClient::connect_identified(&relay, "demo", None, &identity("ada-1")).await?;
    assert_eq!(laptop.user_id.as_deref(), Some("ada-1"));
    laptop.send("l1", "Where is my order 1042?").await?;
    laptop.expect_ack("l1").await?;
    let conversation = laptop.conversation_id.clone().context("a conversation")?;

    // Another browser, never seen: the same person, the same conversation, the history replayed.
    let mut phone =
        VisitorClient::connect_identified(&relay, "demo", None, &identity("ada-1")).await?;
    assert_eq!(
        phone.visitor_id, laptop.visitor_id,
        "one visitor per person"
    );
    assert_eq!(phone.conversation_id.as_ref(), Some(&conversation));
    assert_ne!(
        phone.token, laptop.token,
        "each browser keeps a token of its own"
    );
    phone
        .expect_event("the laptop's message, replayed", |e| {
            matches!(&e.body, protocol::VisitorBody::Message { text, .. } if text.contains("1042"))
        })
        .await?;
    // The phone's own token is enough later (the identity token has a short life).
    let again = VisitorClient::reconnect_on(&relay, "demo", &phone.token).await?;
    assert_eq!(again.visitor_id, laptop.visitor_id);
    assert_eq!(again.user_id.as_deref(), Some("ada-1"));

    // Agents see who it is, verified, and the conversation.
    let (status, body) = profile(&relay, &laptop.visitor_id).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["identity"]["user_id"], "ada-1");
    assert_eq!(body["identity"]["name"], "Ada Park");
    assert_eq!(body["identity"]["attributes"]["plan"], "pro");
    assert_eq!(body["conversations"].as_array().map(Vec::len), Some(1));
    let (status, _) = profile(&relay, "no-such-visitor").await?;
    assert_eq!(status, 404);
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_anonymous_history_joins_the_person_who_signs_in() -> anyhow::Result<()> {
    let relay = relay(180).await?;
    // The person already has a conversation from another browser.
    let mut known =
        VisitorClient::connect_identified(&relay, "demo", None, &identity("ada-2")).await?;
    known.send("k1", "Question from the office").await?;
    known.expect_ack("k1").await?;
    let theirs = known.conversation_id.clone().context("a conversation")?;

    // At home they chat before signing in, in two tabs.
    let mut home = VisitorClient::connect_on(&relay, "demo").await?;
    home.send("h1", "Question before signing in").await?;
    home.expect_ack("h1").await?;
    let anonymous = home.conversation_id.clone().context("a conversation")?;
    let mut other_tab = VisitorClient::reconnect_on(&relay, "demo", &home.token).await?;
    assert_eq!(other_tab.visitor_id, home.visitor_id);

    // Signing in on the home browser merges the anonymous history into the person's.
    let signed_in =
        VisitorClient::connect_identified(&relay, "demo", Some(&home.token), &identity("ada-2"))
            .await?;
    assert_eq!(signed_in.visitor_id, known.visitor_id);
    assert_eq!(signed_in.token, home.token, "the browser keeps its token");
    // The other tab spoke as the merged-away visitor: it is told to reconnect.
    other_tab
        .sock
        .expect_close_code(protocol::CLOSE_MOVED, "the other tab")
        .await?;
    let (status, body) = profile(&relay, &known.visitor_id).await?;
    assert_eq!(status, 200, "{body}");
    let mut ids: Vec<String> = body["conversations"]
        .as_array()
        .context("conversations")?
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    let mut want = vec![theirs.0.clone(), anonymous.0.clone()];
    want.sort();
    assert_eq!(ids, want, "both conversations, once each");
    let (status, _) = profile(&relay, &home.visitor_id).await?;
    assert_eq!(status, 404, "the anonymous visitor is gone, not copied");

    // A first sign-in on an anonymous browser keeps its visitor (nothing to merge).
    let fresh = VisitorClient::connect_on(&relay, "demo").await?;
    let claimed =
        VisitorClient::connect_identified(&relay, "demo", Some(&fresh.token), &identity("ada-3"))
            .await?;
    assert_eq!(claimed.visitor_id, fresh.visitor_id);
    assert_eq!(claimed.user_id.as_deref(), Some("ada-3"));

    // A shared computer: the next person signing in on it gets their own visitor; the previous
    // person's history stays theirs.
    let next =
        VisitorClient::connect_identified(&relay, "demo", Some(&home.token), &identity("bo-4"))
            .await?;
    assert_ne!(next.visitor_id, known.visitor_id);
    assert_eq!(next.conversation_id, None, "none of Ada's conversations");
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn bad_identities_are_refused_with_a_reason_and_chat_goes_on_anonymously(
) -> anyhow::Result<()> {
    let relay = relay(180).await?;
    let mut long = claims("x");
    long["sub"] = json!("u".repeat(300));
    let mut expired = claims("ada-5");
    expired["iat"] = json!(now() - 900);
    expired["exp"] = json!(now() - 600);
    let mut other_site = claims("ada-5");
    other_site["aud"] = json!("bank");
    let cases = [
        ("malformed", "not-a-token".to_owned()),
        ("expired", sign(&expired, SECRET)),
        ("bad_signature", sign(&claims("ada-5"), BANK_SECRET)),
        ("wrong_site", sign(&other_site, SECRET)),
        ("bad_claim", sign(&long, SECRET)),
    ];
    for (reason, token) in cases {
        let (mut sock, frames) = hello_frames(&relay, "demo", None, Some(token)).await?;
        match frames.as_slice() {
            [ToVisitor::Error(e), ToVisitor::Welcome { user_id, .. }] => {
                assert_eq!(e.code, ErrorCode::IdentityInvalid, "{reason}");
                assert_eq!(e.reason.as_deref(), Some(reason));
                assert_eq!(user_id, &None, "{reason}: anonymous");
            }
            other => anyhow::bail!("{reason}: {other:?}"),
        }
        // Still a working chat.
        sock.send_json(&VisitorFrame::Send {
            client_id: "a1".into(),
            text: format!("hello after a {reason} identity"),
        })
        .await?;
        let ack: ToVisitor = sock.next_json().await?;
        assert!(matches!(ack, ToVisitor::Ack { .. }), "{reason}: {ack:?}");
    }

    // A site that requires identity: none, or a bad one, closes the socket (1008) with a reason.
    for (why, token) in [
        ("absent", None),
        ("bad_signature", Some(sign(&claims("ada-6"), SECRET))),
    ] {
        let (mut sock, frames) = hello_frames(&relay, "bank", None, token).await?;
        match frames.last() {
            Some(ToVisitor::Error(e)) => {
                assert_eq!(e.code, ErrorCode::IdentityRequired);
                assert_eq!(e.reason.as_deref(), Some(why));
            }
            other => anyhow::bail!("{why}: {other:?}"),
        }
        sock.expect_close_code(protocol::CLOSE_POLICY, why).await?;
    }
    let bank = VisitorClient::connect_identified(
        &relay,
        "bank",
        None,
        &sign(&claims("ada-6"), BANK_SECRET),
    )
    .await?;
    assert_eq!(bank.user_id.as_deref(), Some("ada-6"));
    // Later visits of that browser need no fresh token: it is a signed-in browser.
    let back = VisitorClient::reconnect_on(&relay, "bank", &bank.token).await?;
    assert_eq!(back.visitor_id, bank.visitor_id);
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_anonymous_token_unused_too_long_starts_a_new_visitor() -> anyhow::Result<()> {
    let relay = relay(1).await?;
    let first = VisitorClient::connect_on(&relay, "demo").await?;
    let signed =
        VisitorClient::connect_identified(&relay, "demo", None, &identity("ada-7")).await?;
    // Both tokens were last used two days ago.
    let db =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", relay.database_path().display())).await?;
    let two_days_ago = (now() - 2 * 86_400) * 1000;
    sqlx::query("UPDATE visitor_tokens SET last_seen_at = ?")
        .bind(two_days_ago)
        .execute(&db)
        .await?;
    db.close().await;
    let later = VisitorClient::reconnect_on(&relay, "demo", &first.token).await?;
    assert_ne!(
        later.visitor_id, first.visitor_id,
        "a new anonymous visitor"
    );
    assert_ne!(later.token, first.token);
    // A signed-in browser's token is not anonymous: it still leads to the person.
    let person = VisitorClient::reconnect_on(&relay, "demo", &signed.token).await?;
    assert_eq!(person.visitor_id, signed.visitor_id);
    relay.shutdown().await;
    Ok(())
}

//! The visitor's data rights over HTTP with the real relay (issue #18): an admin exports and
//! erases a visitor, the erasure is audited, a visitor still connected cannot bring the data
//! back, page URLs are stored without secrets, and bad input is refused with a typed error that
//! changes nothing. The store side (every table, both engines, the files) is proven in
//! `store_conformance.rs`.

use anyhow::Context as _;
use parley_tests::ws::login_cookie;
use parley_tests::{TestRelay, VisitorClient};
use protocol::{PageContext, VisitorFrame};

/// `GET`s `path` with the session cookie; status and JSON body.
async fn get(
    relay: &TestRelay,
    cookie: &str,
    path: &str,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let response = reqwest::Client::new()
        .get(relay.url(path))
        .header("Cookie", cookie)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or_default()))
}

/// `DELETE`s `path` with the session cookie and, if given, an `Origin`.
async fn delete(
    relay: &TestRelay,
    cookie: &str,
    origin: Option<&str>,
    path: &str,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut request = reqwest::Client::new()
        .delete(relay.url(path))
        .header("Cookie", cookie);
    if let Some(o) = origin {
        request = request.header("Origin", o);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_exports_and_erases_a_visitor() -> anyhow::Result<()> {
    let relay = TestRelay::builder()
        .admin("mina")
        .config(|c| c.sites[0].privacy.keep_query_params = vec!["utm_source".into()])
        .start()
        .await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    let secret_url = relay.url("/reset?token=SECRET-token&utm_source=mail#SECRET-fragment");
    v.sock
        .send_json(&VisitorFrame::Context {
            context: PageContext {
                url: secret_url,
                referrer: "https://mail.example/?to=SECRET-email".into(),
                title: "Reset your password".into(),
                ..Default::default()
            },
        })
        .await?;
    v.send("m1", "CANARY-words my order is late").await?;
    v.expect_ack("m1").await?;
    let visitor = v.visitor_id.clone();
    let mut bystander = VisitorClient::connect(&relay, None).await?;
    let export_path = format!("/api/admin/visitors/{visitor}/export");
    let visitor_path = format!("/api/admin/visitors/{visitor}");

    // Admins only: no session 401, another agent 403, and nothing is erased by them.
    let anonymous = reqwest::Client::new()
        .delete(relay.url(&visitor_path))
        .send()
        .await?;
    assert_eq!(anonymous.status().as_u16(), 401);
    let joon = login_cookie(&relay, "joon", "joon-password-2").await?;
    let (status, body) = get(&relay, &joon, &export_path).await?;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    let (status, _) = delete(&relay, &joon, None, &visitor_path).await?;
    assert_eq!(status, 403);

    let mina = login_cookie(&relay, "mina", "mina-password-1").await?;
    let (status, export) = get(&relay, &mina, &export_path).await?;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["visitor"]["id"], visitor.as_str());
    assert_eq!(export["visitor"]["site"], "demo");
    let conversation = &export["conversations"][0];
    assert_eq!(
        conversation["context"]["url"],
        relay.url("/reset?utm_source=mail"),
        "query and fragment dropped, the listed parameter kept"
    );
    assert_eq!(conversation["context"]["referrer"], "https://mail.example/");
    let text = export.to_string();
    assert!(
        text.contains("CANARY-words"),
        "the message is exported: {text}"
    );
    assert!(!text.contains("SECRET"), "a URL secret was stored: {text}");

    // A foreign origin may not erase (same-origin check, as for the other admin writes).
    let (status, body) = delete(&relay, &mina, Some("https://evil.example"), &visitor_path).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("origin_not_allowed"))
    );
    assert_eq!(
        get(&relay, &mina, &export_path).await?.0,
        200,
        "still there"
    );

    let (status, erased) = delete(&relay, &mina, Some(&relay.origin()), &visitor_path).await?;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["visitor_id"], visitor.as_str());
    assert_eq!(erased["by"], "mina");
    assert_eq!(erased["erased"]["conversations"], 1);
    assert_eq!(erased["erased"]["events"], 1);
    let (status, body) = get(&relay, &mina, &export_path).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_visitor"))
    );

    // The erased visitor's open socket closes at once (4410): nothing more is stored for them.
    let (closed, seen) = v.sock.expect_close().await?;
    assert!(
        matches!(&closed, parley_tests::ws::Closed::Frame(Some(f)) if u16::from(f.code) == protocol::CLOSE_ERASED),
        "{closed:?} after {seen:?}"
    );
    // Positive control: another visitor's socket is not touched.
    bystander.send("b2", "still here").await?;
    bystander.expect_ack("b2").await?;
    assert_eq!(get(&relay, &mina, &export_path).await?.0, 404);
    // Its token no longer names anyone: coming back makes a new visitor.
    let again = VisitorClient::connect(&relay, Some(&v.token)).await?;
    assert_ne!(again.visitor_id, visitor);

    // Audited: who erased whom, when, and how much.
    let (status, audit) = get(&relay, &mina, "/api/admin/audit").await?;
    assert_eq!(status, 200);
    let entry = &audit["entries"][0];
    assert_eq!(entry["action"], "erase_visitor");
    assert_eq!(entry["actor"], "mina");
    assert_eq!(entry["subject"], visitor.as_str());
    assert_eq!(entry["detail"]["conversations"], 1);
    assert!(entry["at"].as_i64().context("at")? > 0);
    assert!(
        !audit.to_string().contains("CANARY"),
        "the audit names ids, not content"
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_or_exporting_an_unknown_visitor_is_a_typed_404_that_changes_nothing(
) -> anyhow::Result<()> {
    let relay = TestRelay::builder().admin("mina").start().await?;
    let mut v = VisitorClient::connect(&relay, None).await?;
    v.send("m1", "still mine").await?;
    v.expect_ack("m1").await?;
    let mina = login_cookie(&relay, "mina", "mina-password-1").await?;
    for path in [
        "/api/admin/visitors/no-such-visitor".to_owned(),
        format!("/api/admin/visitors/{}x", v.visitor_id),
    ] {
        let (status, body) = delete(&relay, &mina, Some(&relay.origin()), &path).await?;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"], "unknown_visitor");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        let (status, body) = get(&relay, &mina, &format!("{path}/export")).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("unknown_visitor"))
        );
    }
    let (_, audit) = get(&relay, &mina, "/api/admin/audit").await?;
    assert_eq!(audit["entries"], serde_json::json!([]), "nothing audited");
    let (status, export) = get(
        &relay,
        &mina,
        &format!("/api/admin/visitors/{}/export", v.visitor_id),
    )
    .await?;
    assert_eq!(status, 200);
    assert!(export.to_string().contains("still mine"));
    let (status, body) = get(&relay, &mina, "/api/admin/audit?limit=0").await?;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid")));
    relay.shutdown().await;
    Ok(())
}

/// A retention of 0 or negative days, or a parameter name that can never match, stops the relay
/// from starting (so nothing is deleted or stored under a typo), naming the site and the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_privacy_settings_refuse_to_start() -> anyhow::Result<()> {
    for days in [0, -3] {
        let refused = TestRelay::builder()
            .config(move |c| c.sites[0].privacy.retention_days = Some(days))
            .start()
            .await;
        let error = format!("{:#}", refused.err().context("a relay started")?);
        assert!(
            error.contains("demo") && error.contains("retention_days"),
            "{error}"
        );
    }
    let refused = TestRelay::builder()
        .config(|c| c.sites[0].privacy.keep_query_params = vec!["utm_source=x".into()])
        .start()
        .await;
    let error = format!("{:#}", refused.err().context("a relay started")?);
    assert!(error.contains("keep_query_params"), "{error}");
    Ok(())
}

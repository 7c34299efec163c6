//! Operations endpoints over real HTTP: health, readiness and Prometheus metrics that move when
//! messages are stored and frames are refused.

use parley_tests::{start_server, VisitorClient};

async fn get_text(url: &str) -> anyhow::Result<(u16, String)> {
    let response = reqwest::get(url).await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

#[tokio::test]
async fn health_readiness_and_metrics() -> anyhow::Result<()> {
    let relay = start_server().await?;
    assert_eq!(get_text(&relay.url("/healthz")).await?.0, 200);
    assert_eq!(get_text(&relay.url("/readyz")).await?.0, 200);

    let mut v = VisitorClient::connect(&relay, None).await?;
    v.send("m1", "hello").await?;
    v.expect_ack("m1").await?;
    // An empty message is refused with a typed error, which /metrics counts.
    v.send("m2", "   ").await?;
    v.expect(
        "invalid error",
        |f| matches!(f, protocol::ToVisitor::Error(e) if e.code == protocol::ErrorCode::Invalid),
    )
    .await?;

    let (status, text) = get_text(&relay.url("/metrics")).await?;
    assert_eq!(status, 200);
    assert!(
        text.contains(r#"parley_events_stored_total{author="visitor"} 1"#),
        "one visitor message stored:\n{text}"
    );
    assert!(
        text.contains(r#"parley_frames_refused_total{code="invalid"} 1"#),
        "one refusal counted:\n{text}"
    );
    assert!(
        text.contains(r#"parley_connections{kind="Visitor"} 1"#),
        "one visitor socket open:\n{text}"
    );
    assert!(
        text.contains("parley_store_append_seconds_count 1"),
        "{text}"
    );
    // The test relay runs on SQLite: its write-ahead log's figures are there too.
    assert!(text.contains("parley_sqlite_wal_bytes "), "{text}");
    assert!(
        text.contains("parley_sqlite_checkpoint_failures_total 0"),
        "{text}"
    );
    // One message alone is no group: the group-commit counters are exported, at zero.
    assert!(
        text.contains("parley_store_group_commits_total 0"),
        "{text}"
    );
    assert!(
        text.contains("parley_store_grouped_appends_total 0"),
        "{text}"
    );
    relay.shutdown().await;
    Ok(())
}

/// The co-browse mirror page carries its own policy: nothing may run in it, only the console may
/// frame it, and the visitor's page may make the agent's browser load styles, images and fonts
/// only from the site's own origins; the console's own strict policy still covers the rest of
/// `/console/`.
#[tokio::test]
async fn console_mirror_page_runs_no_scripts_and_fetches_only_from_the_site() -> anyhow::Result<()>
{
    let relay = start_server().await?;
    let csp_of = |path: String| async move {
        let response = reqwest::get(path).await?;
        assert_eq!(response.status().as_u16(), 200);
        let csp = response
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(response.text().await?.contains("<body></body>"));
        anyhow::Ok(csp)
    };
    let site = relay.origin();
    let csp = csp_of(relay.url("/console/mirror.html?site=demo")).await?;
    for part in [
        "default-src 'none'".to_owned(),
        "script-src 'none'".to_owned(),
        format!("style-src {site} 'unsafe-inline'"),
        format!("img-src {site} data:"),
        format!("font-src {site} data:"),
        "frame-ancestors 'self'".to_owned(),
    ] {
        assert!(csp.contains(&part), "{part} missing from {csp:?}");
    }
    assert!(!csp.contains('*'), "no wildcard source: {csp:?}");
    // Without a known site, nothing outside the page loads at all.
    let csp = csp_of(relay.url("/console/mirror.html?site=nope")).await?;
    assert!(
        csp.contains("img-src data:;") && !csp.contains("http"),
        "{csp:?}"
    );

    let console = reqwest::get(relay.url("/console")).await?;
    let csp = console
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp:?}");
    assert!(!csp.contains("frame-src") || csp.contains("frame-src 'self'"));
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn readiness_means_the_store_can_commit() -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let relay = start_server().await?;
    assert_eq!(
        get_text(&relay.url("/readyz")).await?.0,
        200,
        "positive control"
    );
    // Another process holds SQLite's write lock: reads still work, commits cannot happen.
    let mut other =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", relay.database_path().display()))
            .await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await?;
    let (status, body) = get_text(&relay.url("/readyz")).await?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not_ready"), "{body}");
    sqlx::query("ROLLBACK").execute(&mut other).await?;
    assert_eq!(get_text(&relay.url("/readyz")).await?.0, 200, "ready again");
    relay.shutdown().await;
    Ok(())
}

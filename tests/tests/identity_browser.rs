//! Signed identity in real browsers, on a third-party origin (issue #25): a shop on
//! `http://localhost:PORT` (an axum server in this test, playing the site's server: it signs
//! the visitor's identity with the site's secret) embeds the widget from the relay on
//! `http://127.0.0.1:PORT`. The same signed-in person in two browsers has one history; an
//! anonymous chat joins the person when they sign in; `Parley.reset()` on logout leaves the next
//! visitor nothing; the agent's console shows who the visitor is (verified) and their other
//! conversations; expired, forged and other-site tokens are refused with their reason and the
//! visitor still chats anonymously.
//!
//! Needs the built bundles (`cargo xtask build`); without them it fails, never skips.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use fantoccini::Client;
use parley_tests::browser::{wait_js, Browser, Console, Widget};
use parley_tests::identity::{now_secs as now, sign};
use parley_tests::{require_dist, AgentClient, TestRelay, AGENTS};
use serde_json::json;

const SECRET: &str = "shop-secret-0123456789abcdef0123456789";
const OTHER_SECRET: &str = "bank-secret-0123456789abcdef0123456789";

/// What the shop's server signs for a logged-in `user`.
fn token_for(user: &str) -> String {
    sign(
        &json!({"sub": user, "iat": now(), "exp": now() + 300, "name": "Ada Park"}),
        SECRET,
    )
}

/// Where the shop's pages find the relay.
#[derive(Clone)]
struct Shop {
    relay: Arc<std::sync::Mutex<String>>,
}

/// `/shop?user=U` (signed in: the page hands the widget a function that asks `/token`),
/// `/shop?bad=KIND` (a bad token in `data-identity`), `/shop` (anonymous). Every page records
/// `console.warn` lines in `window.__warn` and has a Log out button that calls
/// `Parley.reset()`.
async fn shop_page(
    State(shop): State<Shop>,
    Query(q): Query<HashMap<String, String>>,
) -> Html<String> {
    let relay = shop.relay.lock().map(|r| r.clone()).unwrap_or_default();
    let bad = q.get("bad").map(|kind| {
        let mut claims = json!({"sub": "ada", "iat": now() - 5, "exp": now() + 300});
        let secret = match kind.as_str() {
            "expired" => {
                claims["iat"] = json!(now() - 900);
                claims["exp"] = json!(now() - 600);
                SECRET
            }
            "wrong_site" => {
                claims["aud"] = json!("bank");
                SECRET
            }
            _ => OTHER_SECRET,
        };
        sign(&claims, secret)
    });
    let identity_attr = bad
        .map(|t| format!(r#" data-identity="{t}""#))
        .unwrap_or_default();
    let sign_in = q
        .get("user")
        .map(|u| {
            format!(
                "<script>addEventListener('load', () => Parley.identify(() => \
                 fetch('/token?user={u}').then(r => r.text())));</script>"
            )
        })
        .unwrap_or_default();
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<script>window.__warn = []; const warn = console.warn.bind(console);
console.warn = (...a) => {{ window.__warn.push(a.map(String).join(' ')); warn(...a); }};</script>
</head><body><h1>Shop</h1><button id="logout" onclick="Parley.reset()">Log out</button>
<script src="{relay}/widget.js" data-site="demo"{identity_attr} async></script>{sign_in}</body></html>"#
    ))
}

/// `/token?user=U`: the shop's server signing its logged-in user.
async fn shop_token(Query(q): Query<HashMap<String, String>>) -> String {
    token_for(q.get("user").map(String::as_str).unwrap_or("nobody"))
}

/// Starts the shop; returns its origin (`http://localhost:PORT`).
async fn start_shop(shop: Shop) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new()
        .route("/shop", get(shop_page))
        .route("/token", get(shop_token))
        .with_state(shop);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://localhost:{port}"))
}

/// The visitor ids of the open conversations whose preview is `text`, as Mina sees them.
async fn visitor_of(relay: &TestRelay, text: &str) -> anyhow::Result<String> {
    let (user, _, pass) = AGENTS[0];
    let agent = AgentClient::login(relay, user, pass).await?;
    agent
        .conversations
        .iter()
        .find(|c| c.preview.as_deref() == Some(text))
        .map(|c| c.visitor_id.clone())
        .with_context(|| format!("a conversation whose last message is {text:?}"))
}

async fn session_scenario(
    relay: &TestRelay,
    shop: &str,
    browser: &Browser,
    sessions: &mut Vec<Client>,
) -> anyhow::Result<()> {
    let page = |q: &str| format!("{shop}/shop?{q}");

    // The laptop: signed in as Ada, writes.
    let laptop = browser.new_session().await?;
    sessions.push(laptop.clone());
    laptop.goto(&page("user=ada")).await?;
    let w = Widget::new(&laptop);
    w.open().await?;
    w.send("Hello from the laptop").await?;
    w.wait_message("visitor", "Hello from the laptop").await?;

    // The phone: another browser (its own storage), the same person: the same history.
    let phone = browser.new_session().await?;
    sessions.push(phone.clone());
    phone.goto(&page("user=ada")).await?;
    let w = Widget::new(&phone);
    w.open().await?;
    w.wait_message("visitor", "Hello from the laptop").await?;

    // A third browser chats anonymously, then the person signs in there: their chat joins.
    let home = browser.new_session().await?;
    sessions.push(home.clone());
    home.goto(&page("")).await?;
    let w = Widget::new(&home);
    w.open().await?;
    w.send("Asked before signing in").await?;
    w.wait_message("visitor", "Asked before signing in").await?;
    let anonymous = visitor_of(relay, "Asked before signing in").await?;
    let ada = visitor_of(relay, "Hello from the laptop").await?;
    assert_ne!(anonymous, ada);
    home.goto(&page("user=ada")).await?;
    let w = Widget::new(&home);
    w.open().await?;
    w.wait_message("visitor", "Asked before signing in").await?;
    assert_eq!(
        visitor_of(relay, "Asked before signing in").await?,
        ada,
        "the anonymous conversation is now the person's"
    );

    // Logging out forgets this browser's chat: nothing shown, a new anonymous visitor after.
    home.execute("document.getElementById('logout').click();", vec![])
        .await?;
    w.wait(
        "the transcript emptied by Parley.reset()",
        "return root.querySelectorAll('ol.parley-messages > li.parley-msg').length === 0;",
        vec![],
    )
    .await?;
    w.wait_online().await?;
    w.send("Someone else on this computer").await?;
    w.wait_message("visitor", "Someone else on this computer")
        .await?;
    let next = visitor_of(relay, "Someone else on this computer").await?;
    assert_ne!(next, ada, "the next person is not Ada");
    let shown: Vec<String> = w.messages().await?.into_iter().map(|m| m.text).collect();
    assert_eq!(shown, vec!["Someone else on this computer".to_owned()]);

    // The agent sees who Ada is, verified by the shop, and her other conversation; the next
    // visitor is anonymous.
    let desk = browser.new_session().await?;
    sessions.push(desk.clone());
    let console = Console::new(&desk);
    let (user, _, pass) = AGENTS[0];
    console.login(&relay.base_url(), user, pass).await?;
    let id = console.wait_conversation("Asked before signing in").await?;
    console.open_conversation(&id).await?;
    let card = wait_js(
        &desk,
        "the visitor card: verified, named, with one other conversation",
        "const c = document.querySelector('.visitor-card'); if (!c) return null;
         const badge = c.querySelector('.verified-badge'), name = c.querySelector('.visitor-name');
         const head = c.querySelector('.visitor-history-head');
         return badge && name && head && head.textContent.includes('(1)')
           ? [name.textContent, c.querySelector('.visitor-user-id').textContent] : null;",
        vec![],
    )
    .await?;
    assert_eq!(card, json!(["Ada Park", "ada"]));
    let id = console
        .wait_conversation("Someone else on this computer")
        .await?;
    console.open_conversation(&id).await?;
    wait_js(
        &desk,
        "the next visitor shown as anonymous",
        "const c = document.querySelector('.visitor-card');
         return !!c && !c.querySelector('.verified-badge') && c.textContent.includes('Anonymous visitor');",
        vec![],
    )
    .await?;
    Ok(())
}

async fn bad_tokens_scenario(
    shop: &str,
    browser: &Browser,
    sessions: &mut Vec<Client>,
) -> anyhow::Result<()> {
    for kind in ["expired", "bad_signature", "wrong_site"] {
        let client = browser.new_session().await?;
        sessions.push(client.clone());
        client.goto(&format!("{shop}/shop?bad={kind}")).await?;
        let w = Widget::new(&client);
        w.open().await?;
        wait_js(
            &client,
            &format!("a console warning naming the refused identity ({kind})"),
            "return window.__warn.some(l => l.includes('identity refused (' + arguments[0] + ')'));",
            vec![json!(kind)],
        )
        .await?;
        let text = format!("Anonymous after a {kind} token");
        w.send(&text).await?;
        w.wait_message("visitor", &text).await?;
    }
    Ok(())
}

#[tokio::test]
async fn signed_in_visitors_keep_one_history_and_bad_tokens_chat_anonymously() -> anyhow::Result<()>
{
    require_dist()?;
    let shop_state = Shop {
        relay: Arc::new(std::sync::Mutex::new(String::new())),
    };
    let shop = start_shop(shop_state.clone()).await?;
    let origin = shop.clone();
    let relay = TestRelay::builder()
        .config(move |c| {
            c.sites[0].identity.identity_secret = Some(SECRET.into());
            c.sites[0].allowed_origins.push(origin);
        })
        .start()
        .await?;
    if let Ok(mut r) = shop_state.relay.lock() {
        *r = relay.base_url();
    }
    let browser = Browser::start().await?;
    let mut sessions = Vec::new();
    let result = async {
        session_scenario(&relay, &shop, &browser, &mut sessions).await?;
        bad_tokens_scenario(&shop, &browser, &mut sessions).await
    }
    .await;
    for s in sessions {
        let _ = s.close().await;
    }
    relay.shutdown().await;
    result
}

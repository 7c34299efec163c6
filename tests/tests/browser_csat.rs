//! End to end in headless Chromium: an external (Rasa-shaped) bot answers in the real widget
//! and hands over when the visitor clicks its "Talk to a person" button; the agent takes and
//! closes the conversation in the real console; the visitor rates it 4 with a comment in the
//! widget, and the rating is stored and shown in the console (list, transcript, Numbers).
//!
//! Needs the built bundles (`cargo xtask build`); without them it fails, never skips.

use anyhow::{bail, Context as _};
use fantoccini::Client;
use parley_tests::browser::{wait_js, Browser, Console, Widget};
use parley_tests::fake_bot::{BotReply, FakeBot};
use parley_tests::ws::login_cookie;
use parley_tests::{require_dist, TestRelay, AGENTS};
use serde_json::json;

#[tokio::test]
async fn external_bot_hands_over_and_the_visitor_rates_the_agent() -> anyhow::Result<()> {
    require_dist()?;
    let bot = FakeBot::start(|message| {
        BotReply::Json(json!([{
            "recipient_id": "v",
            "text": format!("Bot here. You asked: {message}"),
            "buttons": [{"title": "Talk to a person", "payload": "/handoff"}]
        }]))
    })
    .await?;
    let relay = TestRelay::builder()
        .external_bot(bot.url(), 3_000)
        .start()
        .await?;
    let browser = Browser::start().await?;
    let visitor = browser.new_session().await?;
    let agent = browser.new_session().await?;
    let result = scenario(&relay, &bot, &visitor, &agent).await;
    let _ = visitor.close().await;
    let _ = agent.close().await;
    relay.shutdown().await;
    result
}

async fn scenario(
    relay: &TestRelay,
    bot: &FakeBot,
    visitor: &Client,
    agent: &Client,
) -> anyhow::Result<()> {
    let (user, name, pass) = AGENTS[0];
    visitor.goto(&relay.url("/")).await?;
    let widget = Widget::new(visitor);
    widget.open().await?;
    widget.wait_online().await?;
    widget.send("Where is my order?").await?;
    widget
        .wait_message("bot", "Bot here. You asked: Where is my order?")
        .await
        .context("the external bot's answer in the widget")?;
    widget.click_quick("Talk to a person").await?;
    widget
        .wait_line_containing("Connecting you with a person")
        .await
        .context("the hand-off line")?;
    assert_eq!(
        bot.requests().len(),
        1,
        "the /handoff click is not sent to the bot"
    );

    let console = Console::new(agent);
    console.login(&relay.base_url(), user, pass).await?;
    let id = console.wait_conversation("/handoff").await?;
    console.open_conversation(&id).await?;
    console
        .wait_transcript("bot", "Bot here. You asked: Where is my order?")
        .await?;
    console.take(&id).await?;
    console.reply("Your order ships today.").await?;
    widget
        .wait_message("agent", "Your order ships today.")
        .await?;
    console.close_conversation().await?;
    widget
        .wait_line_containing("Conversation closed")
        .await
        .context("the close in the widget")?;

    widget.rate(4, "Very helpful").await?;
    widget
        .wait_line_containing("Thanks for your feedback!")
        .await
        .context("the thank-you after rating")?;
    widget
        .wait(
            "the rating form to be gone",
            "const f = root.querySelector('form.parley-rate'); return !!f && f.hidden;",
            vec![],
        )
        .await?;

    // Stored: the API counts it for the agent.
    let cookie = login_cookie(relay, user, pass).await?;
    let numbers: serde_json::Value = reqwest::Client::new()
        .get(relay.url("/api/ratings"))
        .header("cookie", cookie)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    if numbers["agents"][0]["agent"]["display_name"] != name
        || numbers["agents"][0]["count"] != 1
        || numbers["agents"][0]["average"] != 4.0
    {
        bail!("the API does not count the rating: {numbers}");
    }

    // Shown in the console: list (closed conversations are under All), transcript, Numbers.
    console
        .element("button[data-tab=all]")
        .await?
        .click()
        .await?;
    wait_js(
        agent,
        "the conversation listed with its rating (★ 4 / 5)",
        "const li = document.querySelector(`ul.conversations > li.conversation[data-id=\"${arguments[0]}\"]`);
         const r = li && li.querySelector('.rating'); return !!r && r.textContent.includes('4 / 5');",
        vec![json!(id)],
    )
    .await?;
    wait_js(
        agent,
        "the rating line in the transcript",
        "return Array.from(document.querySelectorAll('ol.transcript > li.event'))
           .some(e => e.textContent.includes('Visitor rated 4 / 5') && e.textContent.includes('Very helpful'));",
        vec![],
    )
    .await?;
    console
        .element("button.numbers-toggle")
        .await?
        .click()
        .await?;
    wait_js(
        agent,
        "the Numbers table with Mina 4.00 over 1",
        "const row = Array.from(document.querySelectorAll('tr.numbers-row'))
           .find(r => (r.querySelector('.numbers-agent') || {}).textContent === arguments[0]);
         return !!row && row.querySelector('.numbers-average').textContent === '4.00'
           && row.querySelector('.numbers-count').textContent === '1';",
        vec![json!(name)],
    )
    .await?;
    Ok(())
}

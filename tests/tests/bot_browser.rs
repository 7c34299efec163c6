//! The bot end to end in headless Chromium: the real widget on the demo shop (bot-first) and the
//! real console. The bot answers from the knowledge base in English and in Korean (the right
//! entry's text and link), an unanswerable question shows up on the console's knowledge-gaps
//! page, "Talk to a person" hands over with the transcript and the summary in the console, an
//! answer followed by that hand-off counts against its entry, each visitor message carries its
//! tone, and after the agent's take the bot stays silent.
//!
//! Needs the built bundles (`cargo xtask build`); without them these tests fail, never skip.

use std::time::Duration;

use anyhow::{bail, Context as _};
use fantoccini::Client;
use parley_bot::KnowledgeBase;
use parley_tests::browser::{screenshot, wait_js_for, Browser, Console, Widget};
use parley_tests::{repo_root, require_dist, TestRelay, AGENTS};
use serde_json::json;

/// How long a bot reply that must NOT come is waited for (a search takes milliseconds).
const QUIET: Duration = Duration::from_millis(1500);

const KOREAN_QUESTION: &str = "반품은 어떻게 하나요?";
const UNANSWERABLE: &str = "write me a poem about cats";
const ENGLISH_QUESTION: &str = "How long does shipping take?";

#[tokio::test]
async fn bot_answers_hands_over_and_reports_gaps_in_real_browsers() -> anyhow::Result<()> {
    require_dist()?;
    let relay = TestRelay::builder().bot_first().start().await?;
    let browser = Browser::start().await?;
    let visitor = browser.new_session().await?;
    let agent = browser.new_session().await?;
    let result = scenario(&relay, &visitor, &agent).await;
    let _ = visitor.close().await;
    let _ = agent.close().await;
    relay.shutdown().await;
    result
}

async fn scenario(relay: &TestRelay, visitor: &Client, agent: &Client) -> anyhow::Result<()> {
    let kb = KnowledgeBase::load(repo_root().join("demo-site").join("kb"))?;
    let body = |id: &str| -> anyhow::Result<String> {
        Ok(kb
            .entry(id)
            .with_context(|| format!("entry {id} in the demo KB"))?
            .body
            .trim()
            .to_owned())
    };

    visitor.goto(&relay.url("/")).await?;
    let widget = Widget::new(visitor);
    widget.open().await.context("opening the panel")?;
    widget.wait_online().await?;

    // Korean: the returns entry, its Korean page, the Korean "talk to a person".
    widget.send(KOREAN_QUESTION).await?;
    let ko = widget
        .wait_bot_reply(0)
        .await
        .context("the Korean answer")?;
    assert_eq!(ko.text, body("returns-ko")?, "the returns entry, in Korean");
    assert_eq!(ko.link.as_deref(), Some("/ko.html#returns"));
    assert!(ko.quick.iter().any(|q| q == "상담원 연결"), "{ko:?}");

    // Out of scope: the bot says it is not sure (and keeps the question for the managers).
    widget.send(UNANSWERABLE).await?;
    let unsure = widget
        .wait_bot_reply(1)
        .await
        .context("the not-sure reply")?;
    assert!(unsure.text.starts_with("I'm not sure"), "{unsure:?}");
    assert_eq!(unsure.link, None);

    // English: the shipping-times entry and its help page.
    widget.send(ENGLISH_QUESTION).await?;
    let en = widget
        .wait_bot_reply(2)
        .await
        .context("the English answer")?;
    assert_eq!(en.text, body("shipping-times")?, "the shipping-times entry");
    assert_eq!(en.link.as_deref(), Some("/help.html#shipping"));
    assert!(en.quick.iter().any(|q| q == "Talk to a person"), "{en:?}");

    // The quick reply hands over.
    widget.click_quick("Talk to a person").await?;
    widget
        .wait_message("visitor", "Talk to a person")
        .await
        .context("the click is sent as the visitor's message")?;
    wait_js_for(
        visitor,
        "the hand-off line in the widget (li[data-kind=handoff])",
        "const host = document.querySelector('parley-chat'); const root = host && host.shadowRoot;
         return !!root && !!root.querySelector('ol.parley-messages > li[data-kind=handoff]');",
        vec![],
        parley_tests::TIMEOUT,
    )
    .await?;

    // The agent sees the whole transcript, the summary and each visitor message's tone.
    let (user, name, pass) = AGENTS[0];
    let console = Console::new(agent);
    console.login(&relay.base_url(), user, pass).await?;
    let id = console.wait_conversation("Talk to a person").await?;
    console.open_conversation(&id).await?;
    for text in [
        KOREAN_QUESTION,
        UNANSWERABLE,
        ENGLISH_QUESTION,
        "Talk to a person",
    ] {
        console.wait_transcript("visitor", text).await?;
    }
    console.wait_transcript("bot", &body("returns-ko")?).await?;
    console
        .wait_transcript("bot", &body("shipping-times")?)
        .await?;
    let lines = console.transcript().await?;
    let handoff = lines
        .iter()
        .find(|l| l.handoff)
        .with_context(|| format!("a hand-off line in {lines:?}"))?;
    assert!(
        handoff.text.contains(&format!(
            "Asked about: {KOREAN_QUESTION}; shown: 반품 정책, Shipping times"
        )),
        "the one-line summary: {handoff:?}"
    );
    let visitor_lines: Vec<_> = lines.iter().filter(|l| l.role == "visitor").collect();
    assert_eq!(visitor_lines.len(), 4, "{lines:?}");
    assert!(
        visitor_lines
            .iter()
            .all(|l| l.mood.as_deref() == Some("neutral")),
        "every visitor message carries its tone: {visitor_lines:?}"
    );

    // The agent takes it; from then on the bot stays silent.
    console.take(&id).await?;
    widget
        .wait_line_containing(&format!("{name} joined"))
        .await?;
    let bot_before = bot_count(&widget).await?;
    widget.send("Thanks, that was really helpful!").await?;
    widget
        .wait_message("visitor", "Thanks, that was really helpful!")
        .await?;
    console
        .wait_transcript("visitor", "Thanks, that was really helpful!")
        .await?;
    console.reply("Glad to help. Anything else?").await?;
    widget
        .wait_message("agent", "Glad to help. Anything else?")
        .await?;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        bot_count(&widget).await?,
        bot_before,
        "no bot message after the take"
    );
    let after_take: Vec<String> = widget
        .messages()
        .await?
        .into_iter()
        .skip_while(|m| !m.text.contains("joined"))
        .map(|m| m.role)
        .collect();
    assert_eq!(
        after_take,
        ["system", "visitor", "agent"],
        "only the join, the visitor and the agent after the take"
    );
    let lines = console.transcript().await?;
    let thanks = lines
        .iter()
        .find(|l| l.text == "Thanks, that was really helpful!")
        .context("the thanks in the console")?;
    assert_eq!(thanks.mood.as_deref(), Some("positive"), "{thanks:?}");
    assert!(
        lines.last().is_some_and(|l| l.role == "agent"),
        "the agent's reply is the last line: {lines:?}"
    );

    // The knowledge-gaps page: the unanswered question, and the answer followed by the hand-off.
    console.open_gaps().await?;
    let count = console.wait_gap_question(UNANSWERABLE).await?;
    assert_eq!(count, 1, "asked once");
    let (count, questions) = console.wait_gap_entry("shipping-times").await?;
    assert_eq!(count, 1, "one hand-off right after the shipping answer");
    assert_eq!(questions, [ENGLISH_QUESTION]);
    let others = agent
        .execute(
            "return document.querySelectorAll('ol.gap-entry-list > li.gap-entry').length;",
            vec![],
        )
        .await?;
    assert_eq!(
        others,
        json!(1),
        "the Korean answer was not followed by a hand-off"
    );
    screenshot(agent, "console-knowledge-gaps.png").await?;
    Ok(())
}

/// How many bot messages the widget lists.
async fn bot_count(widget: &Widget<'_>) -> anyhow::Result<usize> {
    let messages = widget.messages().await?;
    if messages.is_empty() {
        bail!("the widget lists no messages");
    }
    Ok(messages.iter().filter(|m| m.role == "bot").count())
}

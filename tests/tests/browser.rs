//! End to end in headless Chromium: the real widget bundle on the demo site and the real console,
//! against a real relay. Also the screenshots in docs/.
//!
//! These tests need the built bundles (`cargo xtask build`); without them they fail, never skip.

use anyhow::{bail, Context as _};
use fantoccini::Client;
use parley_tests::browser::{screenshot, wait_js, Browser, Console, Widget};
use parley_tests::{require_dist, start_server, AgentClient, TestRelay, AGENTS};
use protocol::{ConversationId, ToAgent};

/// Runs a named part of a scenario, recording its failure instead of stopping, so one run
/// reports every broken part.
async fn part(
    failures: &mut Vec<String>,
    name: &str,
    f: impl std::future::Future<Output = anyhow::Result<()>>,
) {
    if let Err(e) = f.await {
        failures.push(format!("── {name} ──\n{e:#}"));
    }
}

fn report(failures: Vec<String>) -> anyhow::Result<()> {
    if failures.is_empty() {
        Ok(())
    } else {
        bail!(
            "{} part(s) failed:\n\n{}",
            failures.len(),
            failures.join("\n\n")
        )
    }
}

#[tokio::test]
async fn visitor_and_agent_chat_in_real_browsers() -> anyhow::Result<()> {
    require_dist()?;
    let relay = start_server().await?;
    let browser = Browser::start().await?;
    let visitor = browser.new_session().await?;
    let agent = browser.new_session().await?;
    let result = chat_scenario(&relay, &visitor, &agent).await;
    let _ = visitor.close().await;
    let _ = agent.close().await;
    relay.shutdown().await;
    result
}

async fn chat_scenario(relay: &TestRelay, visitor: &Client, agent: &Client) -> anyhow::Result<()> {
    let (user, name, pass) = AGENTS[0];
    let loaded_after = unix_ms();
    visitor.goto(&relay.url("/")).await?;
    let widget = Widget::new(visitor);
    let launcher = widget.launcher().await?;
    assert_eq!(launcher.label, "Open chat", "launcher aria-label");
    screenshot(visitor, "launcher.png").await?;

    widget.open().await.context("opening the panel")?;
    widget.wait_online().await?;
    widget.send("hello").await?;
    widget
        .wait_message("visitor", "hello")
        .await
        .context("the visitor's message must be acked (data-seq)")?;

    // The page context the panel sent carries when this browsing session reached the site,
    // which the loader keeps as `Date.now()` text (for the console's "time on site").
    let listing = AgentClient::login(relay, user, pass).await?;
    let context = &listing
        .conversations
        .iter()
        .find(|c| c.preview.as_deref() == Some("hello"))
        .context("the agent's list must hold the visitor's conversation")?
        .context;
    let entered = context
        .entered_at
        .context("the widget must send entered_at with the page context")?;
    assert!(
        (loaded_after - 1_000..=unix_ms()).contains(&entered),
        "entered_at {entered} must fall between the page load ({loaded_after}) and now"
    );

    let console = Console::new(agent);
    console.login(&relay.base_url(), user, pass).await?;
    let styled = agent
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const sheets = Array.from(document.styleSheets).map(s => {
               let rules = -1; try { rules = s.cssRules.length; } catch (e) {}
               return { href: s.href, rules };
             });
             const link = document.querySelector('link[rel=stylesheet]');
             const href = link ? link.href : null;
             (href ? fetch(href).then(r => r.status + ' ' + (r.headers.get('content-type') || ''), e => String(e))
                   : Promise.resolve('no <link rel=stylesheet>'))
               .then(fetched => done({ ok: sheets.some(s => s.rules > 0), sheets, href, fetched }));",
            vec![],
        )
        .await?;
    assert_eq!(
        styled["ok"], true,
        "the console must load its stylesheet (a person sees an unstyled page otherwise): {styled}"
    );
    let id = console.wait_conversation("hello").await?;
    console.open_conversation(&id).await?;
    console.wait_transcript("visitor", "hello").await?;
    console.take(&id).await?;
    console.reply("Hi, how can I help?").await?;
    console
        .wait_transcript("agent", "Hi, how can I help?")
        .await?;

    widget
        .wait_message("agent", "Hi, how can I help?")
        .await
        .context("the visitor must see the agent's reply")?;
    widget
        .wait_line_containing(&format!("{name} joined"))
        .await
        .context("the visitor must see who joined")?;
    // An internal note: the console shows it as one; the visitor's panel gets nothing to show
    // (a reply sent after it arrives, so the note had its chance to leak first).
    console.note("NOTECANARY wants the blue one").await?;
    console.reply("The blue one is in stock.").await?;
    widget
        .wait_message("agent", "The blue one is in stock.")
        .await?;
    let shown = visitor
        .execute(
            "const r = document.querySelector('parley-chat').shadowRoot; return r.textContent;",
            vec![],
        )
        .await?;
    anyhow::ensure!(
        !shown.as_str().unwrap_or_default().contains("NOTECANARY"),
        "the note reached the visitor's panel"
    );
    // A canned reply: saved in the right column, then `/` + a few letters and Tab in the
    // composer fills it in, with the agent's name.
    console
        .element(".canned-panel summary")
        .await?
        .click()
        .await?;
    console
        .element(".canned-add input[name=shortcut]")
        .await?
        .send_keys("thanks")
        .await?;
    console
        .element(".canned-add textarea[name=text]")
        .await?
        .send_keys("Thanks for waiting, this is {agent.name}.")
        .await?;
    console
        .element(".canned-add button[type=submit]")
        .await?
        .click()
        .await?;
    console
        .element(".canned-item[data-shortcut=thanks]")
        .await?;
    let composer = console.element("textarea[aria-label=\"Reply\"]").await?;
    composer.click().await?;
    composer.send_keys("/than").await?;
    console.element(".canned-suggestions .canned-pick").await?;
    composer.send_keys("\u{e004}").await?; // Tab
    console.element("button.send").await?.click().await?;
    let filled = format!("Thanks for waiting, this is {name}.");
    widget.wait_message("agent", &filled).await?;
    // A label: added in the header, shown in the list, and the list filters by it.
    let add = console.element(".label-add input").await?;
    add.send_keys("vip\u{e007}").await?; // Enter
    console.element(".conversations .label-chip").await?;
    let filter = console.element("input.label-filter").await?;
    filter.send_keys("refund").await?;
    wait_js(
        agent,
        "the list filtered to nothing by another label",
        "return document.querySelectorAll('ul.conversations > li.conversation').length === 0;",
        vec![],
    )
    .await?;
    filter.clear().await?;
    filter.send_keys("VI").await?;
    wait_js(
        agent,
        "the labelled conversation back in the filtered list",
        "return document.querySelectorAll('ul.conversations > li.conversation').length === 1;",
        vec![],
    )
    .await?;
    screenshot(visitor, "panel.png").await?;
    screenshot(agent, "console.png").await?;

    // A reload keeps the conversation (token in localStorage, replay from the relay).
    visitor.refresh().await?;
    widget
        .open()
        .await
        .context("reopening the panel after reload")?;
    widget
        .wait_message("visitor", "hello")
        .await
        .context("history after reload")?;
    widget
        .wait_message("agent", "Hi, how can I help?")
        .await
        .context("history after reload")?;
    let after_reload = widget.messages().await?;
    let hellos = after_reload
        .iter()
        .filter(|m| m.role == "visitor" && m.text == "hello")
        .count();
    assert_eq!(
        hellos, 1,
        "the visitor's message must appear once after reload: {after_reload:?}"
    );

    // A second tab of the same visitor (same session: same localStorage).
    let first_tab = visitor.window().await?;
    let second = visitor.new_window(true).await?;
    visitor.switch_to_window(second.handle.clone()).await?;
    visitor.goto(&relay.url("/")).await?;
    widget.open().await.context("opening the panel in tab 2")?;
    widget
        .wait_message("agent", "Hi, how can I help?")
        .await
        .context("tab 2 must show the same conversation")?;

    console.reply("Both tabs see this").await?;
    widget
        .wait_message("agent", "Both tabs see this")
        .await
        .context("live message in tab 2")?;
    visitor.switch_to_window(first_tab).await?;
    widget
        .wait_message("agent", "Both tabs see this")
        .await
        .context("live message in tab 1 (background tab)")?;

    // And the console's visitor context names the page.
    console
        .element(".visitor-context")
        .await
        .context("visitor context panel")?;
    let ctx = agent
        .execute(
            "return document.querySelector('.visitor-context').textContent;",
            vec![],
        )
        .await?;
    let ctx = ctx.as_str().unwrap_or_default();
    assert!(
        ctx.contains(&relay.base_url()),
        "visitor context must show the page URL {}; shows: {ctx}",
        relay.base_url()
    );
    Ok(())
}

/// Milliseconds since the Unix epoch, as the browser's `Date.now()` counts them.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Waits for the conversation whose newest message is `text`, opens it (once) and replies.
async fn agent_replies(
    agent: &mut AgentClient,
    opened: &mut Option<ConversationId>,
    text: &str,
    reply: &str,
    client_id: &str,
) -> anyhow::Result<()> {
    let frame = agent
        .expect(
            &format!("a conversation whose preview is {text:?}"),
            |f| matches!(f, ToAgent::Conversation(c) if c.preview.as_deref() == Some(text)),
        )
        .await?;
    let ToAgent::Conversation(summary) = frame else {
        bail!("expected a conversation frame");
    };
    if opened.as_ref() != Some(&summary.id) {
        agent.open(&summary.id, None).await?;
        *opened = Some(summary.id.clone());
    }
    agent.send(&summary.id, client_id, reply).await?;
    agent.expect_ack(client_id).await?;
    Ok(())
}

/// The widget on a hostile page: launcher visible, on screen and clickable; panel opens; a
/// message goes to the agent and the reply comes back.
async fn hostile_page(
    relay: &TestRelay,
    client: &Client,
    agent: &mut AgentClient,
    opened: &mut Option<ConversationId>,
    page: &str,
) -> anyhow::Result<()> {
    client.goto(&relay.url(&format!("/{page}"))).await?;
    let widget = Widget::new(client);
    let l = widget.launcher().await?;
    assert!(
        l.width >= 24.0 && l.height >= 24.0,
        "{page}: launcher too small to use: {l:?}"
    );
    assert!(
        l.x >= 0.0 && l.y >= 0.0 && l.x + l.width <= l.vw && l.y + l.height <= l.vh,
        "{page}: launcher must be fully on screen: {l:?}"
    );
    assert!(
        l.on_top,
        "{page}: something covers the launcher's centre: {l:?}"
    );
    widget.open().await?;
    let text = format!("hi from {page}");
    widget.send(&text).await?;
    widget.wait_message("visitor", &text).await?;
    let reply = format!("reply on {page}");
    let cid = format!("r-{}", page.replace('.', "-"));
    agent_replies(agent, opened, &text, &reply, &cid).await?;
    widget.wait_message("agent", &reply).await?;
    Ok(())
}

#[tokio::test]
async fn widget_on_hostile_pages_unread_badge_and_korean() -> anyhow::Result<()> {
    require_dist()?;
    let relay = start_server().await?;
    let browser = Browser::start().await?;
    let client = browser.new_session().await?;
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    let mut opened = None;
    let mut failures = Vec::new();

    for page in ["hostile.html", "hostile-strict.html"] {
        part(
            &mut failures,
            page,
            hostile_page(&relay, &client, &mut agent, &mut opened, page),
        )
        .await;
    }

    part(&mut failures, "unread badge", async {
        client.goto(&relay.url("/")).await?;
        let widget = Widget::new(&client);
        widget.open().await?;
        widget.send("badge please").await?;
        widget.wait_message("visitor", "badge please").await?;
        // Close the panel with the launcher, then an agent message arrives.
        widget.find("button.parley-launcher").await?.click().await?;
        widget
            .wait(
                "the panel to close (launcher labelled Open chat, panel hidden)",
                "const l = root.querySelector('button.parley-launcher');
                 const p = root.querySelector('section.parley-panel');
                 return !!l && l.getAttribute('aria-label') === 'Open chat'
                   && (!p || p.hidden || p.getBoundingClientRect().height === 0);",
                vec![],
            )
            .await?;
        agent_replies(
            &mut agent,
            &mut opened,
            "badge please",
            "you have mail",
            "badge-1",
        )
        .await?;
        widget.wait_badge("1").await?;
        // The launcher's accessible name says it too (a screen reader does not see the badge).
        let label = widget.launcher().await?.label;
        anyhow::ensure!(label == "Open chat, 1 unread", "launcher name: {label:?}");
        widget.open().await?;
        widget.wait_message("agent", "you have mail").await?;
        widget
            .wait(
                "the badge to clear once the panel is open",
                "const b = root.querySelector('.parley-badge');
                 return !b || b.hidden || b.getBoundingClientRect().width === 0 || b.textContent.trim() === '' || b.textContent.trim() === '0';",
                vec![],
            )
            .await?;
        Ok(())
    })
    .await;

    part(&mut failures, "Korean (ko.html)", async {
        client.goto(&relay.url("/ko.html")).await?;
        let widget = Widget::new(&client);
        let l = widget.launcher().await?;
        if l.label != "채팅 열기" {
            bail!(
                "ko.html launcher aria-label is {:?}, expected \"채팅 열기\"",
                l.label
            );
        }
        widget.open().await?;
        widget
            .wait(
                "Korean labels in the open panel (채팅 닫기, 메시지, 보내기)",
                "const l = root.querySelector('button.parley-launcher');
                 return !!l && l.getAttribute('aria-label') === '채팅 닫기'
                   && !!root.querySelector('textarea[aria-label=\"메시지\"]')
                   && !!root.querySelector('button[aria-label=\"보내기\"]');",
                vec![],
            )
            .await?;
        Ok(())
    })
    .await;

    let _ = client.close().await;
    relay.shutdown().await;
    report(failures)
}

/// The text of the widget's queue line once it contains `needle`.
async fn wait_queue_line(widget: &Widget<'_>, needle: &str) -> anyhow::Result<String> {
    let v = widget
        .wait(
            &format!("the queue line (.parley-queue) to say {needle:?}"),
            "const [needle] = arguments;
             const q = root.querySelector('.parley-queue');
             return q && q.textContent.includes(needle) ? q.textContent : null;",
            vec![serde_json::json!(needle)],
        )
        .await?;
    Ok(v.as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn a_waiting_visitor_sees_their_place_in_line_move() -> anyhow::Result<()> {
    require_dist()?;
    let relay = start_server().await?;
    let browser = Browser::start().await?;
    let client = browser.new_session().await?;
    let result = queue_scenario(&relay, &client).await;
    let _ = client.close().await;
    relay.shutdown().await;
    result
}

async fn queue_scenario(relay: &TestRelay, client: &Client) -> anyhow::Result<()> {
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(relay, user, pass).await?;
    // One visitor taken after a short wait: the relay now has a wait to estimate from.
    let mut warm = parley_tests::VisitorClient::connect(relay, None).await?;
    warm.send("w1", "warm-up").await?;
    warm.expect_ack("w1").await?;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    agent
        .take(
            warm.conversation_id
                .as_ref()
                .context("warm-up conversation")?,
        )
        .await?;
    // A visitor ahead in line…
    let mut first = parley_tests::VisitorClient::connect(relay, None).await?;
    first.send("f1", "first in line").await?;
    first.expect_ack("f1").await?;

    // …and the browser's visitor second.
    client.goto(&relay.url("/")).await?;
    let widget = Widget::new(client);
    widget.open().await?;
    widget.wait_online().await?;
    widget.send("second in line").await?;
    widget.wait_message("visitor", "second in line").await?;
    let line = wait_queue_line(&widget, "#2 in line").await?;
    assert_eq!(line, "You are #2 in line · about 1 min");

    // The first is taken: the line moves up live.
    agent
        .take(
            first
                .conversation_id
                .as_ref()
                .context("first conversation")?,
        )
        .await?;
    let line = wait_queue_line(&widget, "#1 in line").await?;
    assert_eq!(line, "You are #1 in line · about 1 min");
    Ok(())
}

#[tokio::test]
async fn the_console_pages_older_closed_conversations() -> anyhow::Result<()> {
    require_dist()?;
    let relay = TestRelay::builder().unthrottled_sockets().start().await?;
    // 25 closed conversations: `welcome` lists the latest 20.
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    let mut v = parley_tests::VisitorClient::connect(&relay, None).await?;
    parley_tests::ws::closed_conversations(&mut agent, &mut v, 25, "old question").await?;
    let browser = Browser::start().await?;
    let client = browser.new_session().await?;
    let result = async {
        let console = Console::new(&client);
        console.login(&relay.base_url(), user, pass).await?;
        console.element("button[data-tab=all]").await?.click().await?;
        let count = || async {
            client
                .execute(
                    "return document.querySelectorAll('ul.conversations > li.conversation').length;",
                    vec![],
                )
                .await
                .map(|v| v.as_u64().unwrap_or(0))
        };
        console.element("button.load-older").await?;
        assert_eq!(count().await?, 20, "welcome's closed conversations");
        console.element("button.load-older").await?.click().await?;
        parley_tests::browser::wait_js(
            &client,
            "25 conversations listed and no more button",
            "return document.querySelectorAll('ul.conversations > li.conversation').length === 25
                 && !document.querySelector('button.load-older');",
            vec![],
        )
        .await?;
        console.wait_conversation("old question 0").await?;
        anyhow::Ok(())
    }
    .await;
    let _ = client.close().await;
    relay.shutdown().await;
    result
}

#[tokio::test]
async fn an_admin_adds_and_disables_an_agent_in_the_console() -> anyhow::Result<()> {
    require_dist()?;
    let relay = TestRelay::builder().admin("mina").start().await?;
    let (user, _, pass) = AGENTS[0];
    let browser = Browser::start().await?;
    let client = browser.new_session().await?;
    let login = |username: &'static str, password: &'static str| {
        let url = relay.url("/api/login");
        async move {
            anyhow::Ok(
                reqwest::Client::new()
                    .post(url)
                    .json(&serde_json::json!({"username": username, "password": password}))
                    .send()
                    .await?
                    .status()
                    .as_u16(),
            )
        }
    };
    let result = async {
        let console = Console::new(&client);
        console.login(&relay.base_url(), user, pass).await?;
        console.element("button.agents-open").await?.click().await?;
        // Joon comes from the config file: shown, but only disable/enable is offered.
        console
            .element(".agent-card[data-username=joon] .toggle-agent")
            .await?;
        let joon_locked = client
            .execute(
                "const c = document.querySelector('.agent-card[data-username=joon]');
                 return [!c.querySelector('.save-agent'), c.querySelector('.display-name').disabled];",
                vec![],
            )
            .await?;
        assert_eq!(joon_locked, serde_json::json!([true, true]));

        // A refused form says why, and adds nobody.
        let fill = |css: &'static str, text: &'static str| {
            let console = &console;
            async move {
                let input = console.element(css).await?;
                input.clear().await?;
                input.send_keys(text).await?;
                anyhow::Ok(())
            }
        };
        fill("form.add-agent .new-username", "sora").await?;
        fill("form.add-agent .new-display-name", "<b>Sora</b>").await?;
        fill("form.add-agent .new-password", "short").await?;
        console.element(".add-agent-submit").await?.click().await?;
        parley_tests::browser::wait_js(
            &client,
            "the refusal under the form",
            "const a = document.querySelector('form.add-agent [role=alert]');
             return a && a.textContent.includes('at least 12');",
            vec![],
        )
        .await?;
        assert_eq!(login("sora", "short").await?, 401);

        // Accepted: Sora's card appears, her name shown as text, and she can sign in.
        fill("form.add-agent .new-password", "sora's first pass").await?;
        console.element(".add-agent-submit").await?.click().await?;
        console.element(".agent-card[data-username=sora]").await?;
        let heading = client
            .execute(
                "const h = document.querySelector('.agent-card[data-username=sora] h2');
                 return [h.textContent, h.querySelectorAll('b').length];",
                vec![],
            )
            .await?;
        assert!(
            heading[0].as_str().unwrap_or_default().contains("<b>Sora</b>"),
            "{heading}"
        );
        assert_eq!(heading[1], 0, "untrusted text is rendered as text");
        assert_eq!(login("sora", "sora's first pass").await?, 200);
        screenshot(&client, "console-agents.png").await?;

        // Disabled from her card: the card says so and she can no longer sign in.
        console
            .element(".agent-card[data-username=sora] .toggle-agent")
            .await?
            .click()
            .await?;
        parley_tests::browser::wait_js(
            &client,
            "Sora shown disabled",
            "const c = document.querySelector('.agent-card[data-username=sora] .agent-state');
             return c && c.textContent === 'Disabled';",
            vec![],
        )
        .await?;
        assert_eq!(login("sora", "sora's first pass").await?, 401);
        anyhow::Ok(())
    }
    .await;
    let _ = client.close().await;
    relay.shutdown().await;
    result
}

#[tokio::test]
async fn a_visitor_saves_the_conversation_as_text() -> anyhow::Result<()> {
    require_dist()?;
    let relay = start_server().await?;
    let (user, _, pass) = AGENTS[0];
    let mut agent = AgentClient::login(&relay, user, pass).await?;
    let browser = Browser::start().await?;
    let client = browser.new_session().await?;
    let result = async {
        client.goto(&relay.url("/")).await?;
        let widget = Widget::new(&client);
        widget.open().await?;
        widget.send("Where is order <b>#12</b>?").await?;
        widget
            .wait_message("visitor", "Where is order <b>#12</b>?")
            .await?;
        let id = agent
            .expect("the new conversation", |f| {
                matches!(f, ToAgent::Conversation(_))
            })
            .await
            .map(|f| match f {
                ToAgent::Conversation(c) => c.id.clone(),
                _ => unreachable!(),
            })?;
        agent.take(&id).await?;
        agent.send(&id, "a-1", "It ships today.").await?;
        widget.wait_message("agent", "It ships today.").await?;
        // Every Blob URL the page makes is remembered, so the saved file can be read back.
        client
            .execute(
                "window.__saved = []; const make = URL.createObjectURL;
                 URL.createObjectURL = b => { window.__saved.push(b); return make.call(URL, b); };",
                vec![],
            )
            .await?;
        widget.find("button.parley-save").await?.click().await?;
        let saved = client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 const wait = () => window.__saved.length
                   ? window.__saved[0].text().then(t => done([window.__saved[0].type, t]))
                   : setTimeout(wait, 50);
                 wait();",
                vec![],
            )
            .await?;
        let kind = saved[0].as_str().unwrap_or_default();
        let text = saved[1].as_str().unwrap_or_default();
        assert!(kind.starts_with("text/plain"), "{kind}");
        let visitor_line = text.find("Where is order <b>#12</b>?");
        let agent_line = text.find("It ships today.");
        assert!(
            text.starts_with("Demo Shop") && visitor_line.is_some() && agent_line > visitor_line,
            "both lines, in order, as text: {text}"
        );
        anyhow::Ok(())
    }
    .await;
    let _ = client.close().await;
    relay.shutdown().await;
    result
}

//! The widget holds up where real pages and phones do odd things (issue #25), in real Chromium:
//! on a page whose `<html>` and `<body>` are transformed and zoomed the launcher and panel stay
//! on screen; on a 390×844 touch phone the panel fills the screen, its inputs do not make the
//! phone zoom (≥ 16 px), its tap targets are ≥ 44×44 px, a swipe at either end of the message
//! list leaves the page behind where it was, and when the visible area shrinks or the phone
//! turns, the panel fits and the list is scrolled to the newest message.
//!
//! What this cannot prove: headless Chromium has no on-screen keyboard, so the shrink is
//! emulated through DevTools (`Emulation.setDeviceMetricsOverride`), which shrinks the layout
//! viewport too; on a real phone only the visual viewport shrinks, which is what the panel's
//! `visualViewport` listener (`view::follow_visual_viewport`) handles.
//!
//! Needs the built bundles (`cargo xtask build`); without them it fails, never skips.

use fantoccini::Client;
use parley_tests::browser::{wait_js, Browser, Widget};
use parley_tests::{require_dist, start_server};
use serde_json::{json, Value};

/// The panel's box and the viewport: `[x, y, width, height, innerWidth, innerHeight]`.
const PANEL_BOX: &str = "const host = document.querySelector('parley-chat');
     const p = host && host.shadowRoot.querySelector('section.parley-panel');
     if (!p || p.hidden) return null;
     const r = p.getBoundingClientRect();
     return [r.x, r.y, r.width, r.height, innerWidth, innerHeight];";

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// Fails unless the box `[x, y, w, h, vw, vh]` lies inside the viewport (1 px of rounding).
fn on_screen(what: &str, b: &[f64]) -> anyhow::Result<()> {
    let [x, y, w, h, vw, vh] = b else {
        anyhow::bail!("{what}: no box: {b:?}");
    };
    anyhow::ensure!(
        *x >= -1.0 && *y >= -1.0 && x + w <= vw + 1.0 && y + h <= vh + 1.0 && *w > 40.0,
        "{what} is not fully on screen: {b:?}"
    );
    Ok(())
}

async fn desktop_on_a_transformed_zoomed_page(client: &Client, base: &str) -> anyhow::Result<()> {
    client.goto(&format!("{base}/transformed.html")).await?;
    let widget = Widget::new(client);
    let l = widget.launcher().await?;
    on_screen(
        "the launcher on a transformed page",
        &[l.x, l.y, l.width, l.height, l.vw, l.vh],
    )?;
    anyhow::ensure!(
        l.x > l.vw / 2.0 && l.y > l.vh / 2.0 && l.on_top,
        "the launcher is not at the bottom right, on top: {l:?}"
    );
    anyhow::ensure!(
        (50.0..=66.0).contains(&l.width),
        "the page's zoom reached the launcher: {l:?}"
    );
    client.execute("window.scrollTo(0, 600);", vec![]).await?;
    widget.open().await?;
    let b = wait_js(client, "the open panel's box", PANEL_BOX, vec![]).await?;
    on_screen(
        "the panel on a transformed, zoomed, scrolled page",
        &numbers(&b),
    )
}

async fn phone(browser: &Browser, client: &Client, base: &str) -> anyhow::Result<()> {
    client.goto(&format!("{base}/")).await?;
    let widget = Widget::new(client);
    let l = widget.launcher().await?;
    anyhow::ensure!(l.width >= 44.0 && l.height >= 44.0, "launcher {l:?}");
    // The page behind is scrolled a little: it must stay there.
    client.execute("window.scrollTo(0, 200);", vec![]).await?;
    widget.open().await?;
    let b = numbers(&wait_js(client, "the open panel's box", PANEL_BOX, vec![]).await?);
    anyhow::ensure!(
        b.len() == 6
            && b[0].abs() < 1.0
            && b[1].abs() < 1.0
            && (b[2] - 390.0).abs() < 1.0
            && (b[3] - b[5]).abs() < 1.0,
        "the panel does not fill the phone's screen: {b:?}"
    );
    // Messages long enough that the list scrolls.
    for i in 1..=5 {
        let text = format!(
            "Question {i}: my parcel left the warehouse on Monday and the tracking page has not \
             moved since; could you check where it is and when it will arrive?"
        );
        widget.send(&text).await?;
        widget.wait_message("visitor", &text).await?;
    }
    let sizes = wait_js(
        client,
        "the composer's font size and the tap targets' sizes",
        "const root = document.querySelector('parley-chat').shadowRoot;
         const t = root.querySelector('section.parley-panel textarea');
         const size = (css) => { const e = root.querySelector(css); if (!e) return null;
                                 const r = e.getBoundingClientRect(); return [css, r.width, r.height]; };
         return { font: parseFloat(getComputedStyle(t).fontSize),
                  targets: ['button.parley-send', 'button.parley-close', 'button.parley-save'].map(size),
                  overflow: root.querySelector('ol.parley-messages').scrollHeight >
                            root.querySelector('ol.parley-messages').clientHeight };",
        vec![],
    )
    .await?;
    anyhow::ensure!(
        sizes["font"].as_f64().unwrap_or(0.0) >= 16.0,
        "the composer would make a phone zoom: {sizes}"
    );
    for t in sizes["targets"].as_array().into_iter().flatten() {
        let (w, h) = (t[1].as_f64().unwrap_or(0.0), t[2].as_f64().unwrap_or(0.0));
        anyhow::ensure!(w >= 44.0 && h >= 44.0, "tap target too small: {t}");
    }
    anyhow::ensure!(
        sizes["overflow"] == json!(true),
        "the list does not scroll: {sizes}"
    );

    // Swipes past both ends of the list: the page behind does not move.
    let page_y = || async {
        client
            .execute("return window.scrollY;", vec![])
            .await
            .map(|v| v.as_f64().unwrap_or(-1.0))
    };
    let before = page_y().await?;
    for distance in [-2000, 4000, -4000] {
        browser
            .cdp(
                client,
                "Input.synthesizeScrollGesture",
                json!({"x": 195, "y": 420, "yDistance": distance, "gestureSourceType": "touch",
                       "speed": 4000}),
            )
            .await?;
        let after = page_y().await?;
        anyhow::ensure!(
            (after - before).abs() < 1.0,
            "a swipe of {distance} px on the list scrolled the page from {before} to {after}"
        );
    }

    // The visible area shrinks (a keyboard) and the phone turns: the panel fits what is visible
    // and the newest message is in view.
    for (w, h) in [(390, 480), (844, 390)] {
        browser
            .cdp(
                client,
                "Emulation.setDeviceMetricsOverride",
                json!({"width": w, "height": h, "deviceScaleFactor": 3, "mobile": true}),
            )
            .await?;
        wait_js(
            client,
            &format!("the panel inside a {w}×{h} viewport, scrolled to the newest message"),
            "const root = document.querySelector('parley-chat').shadowRoot;
             const p = root.querySelector('section.parley-panel').getBoundingClientRect();
             const list = root.querySelector('ol.parley-messages');
             return p.y >= -1 && p.bottom <= innerHeight + 1 && p.right <= innerWidth + 1
               && list.scrollTop + list.clientHeight >= list.scrollHeight - 2;",
            vec![],
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn the_widget_stays_on_screen_on_transformed_pages_and_phones() -> anyhow::Result<()> {
    require_dist()?;
    let relay = start_server().await?;
    let browser = Browser::start().await?;
    let desk = browser.new_session().await?;
    let handset = browser.new_phone_session(390, 844).await?;
    let base = relay.base_url();
    let result = async {
        desktop_on_a_transformed_zoomed_page(&desk, &base).await?;
        phone(&browser, &handset, &base).await
    }
    .await;
    let _ = desk.close().await;
    let _ = handset.close().await;
    relay.shutdown().await;
    result
}

//! Co-browse end to end in headless Chromium: the real widget on the demo checkout page (reached
//! through a recording proxy, so every WebSocket frame the page sends is captured) and the real
//! console, against a real relay and SQLite.
//!
//! One scenario, in parts that each report their own failure: consent denied then allowed; the
//! mirror appears; canaries typed into every kind of field (one inside a web component's open
//! shadow root, one inside a same-origin iframe, both mirrored) are found in no captured frame, no
//! relay log line, no stored byte and no node of the agent's mirror (while an unmasked field's
//! text *is* found, so the check can see a leak); an agent click highlights the right element on
//! the visitor's page (geometry); a visitor highlight appears in the mirror; navigation is
//! followed; stop works from both sides. It prints the co-browse figures for BENCHMARKS.md:
//! initial snapshot bytes, sustained bytes/s while the visitor scrolls and types, and agent
//! click → highlight visible latency (median, p95).
//!
//! Needs the built bundles (`cargo xtask build`); without them it fails, never skips.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use fantoccini::{Client, Locator};
use parley_tests::browser::{wait_js, wait_js_for, Browser, Console, Widget};
use parley_tests::capture::CaptureProxy;
use parley_tests::{require_dist, TestRelay, AGENTS};
use serde_json::{json, Value};

/// Typed into the fields of the checkout page; none may leave the page.
const CANARIES: [(&str, &str); 7] = [
    ("#name", "Zqxname Canary"),
    ("#email", "zqx.canary@example.com"),
    ("#card-number", "4929 1573 2468 0135"),
    ("#cvv", "8K3Q"),
    ("#password", "Pw-zqx7-secret"),
    ("#note", "Leave it with zqxneighbour"),
    ("#gift-message", "Happy zqxbirthday"),
];

/// Put into the gift-card field in `<gift-card-field>`'s open shadow root and into the door-code
/// field of the same-origin delivery frame (by script: WebDriver types into neither as such, and
/// the widget sees the same `input` events); neither may leave the page.
const HIDDEN_CANARIES: [(&str, &str); 2] = [
    (
        "const i = document.querySelector('gift-card-field').shadowRoot.getElementById('gift-card');",
        "GCZQX-7731-5520",
    ),
    (
        "const i = document.querySelector('.delivery-frame').contentDocument.getElementById('door-code');",
        "DoorZQX4417",
    ),
];

/// Text the page shows inside `data-parley-mask`: it must not leave the page either.
const MASKED_TEXT: &str = "Harbour Road";

/// Typed into the field the site marked `data-parley-unmask`: it must arrive (proves the
/// capture would see a leak).
const UNMASKED: (&str, &str) = ("#coupon", "SPRINGZQX");

/// Everything the relay logs while this test runs (every level of the relay's own crates).
fn relay_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let sink = Arc::new(Mutex::new(Vec::new()));
        let writer = sink.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,parley_relay=trace,relay_server=trace",
            ))
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        sink
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn part(
    failures: &mut Vec<String>,
    name: &str,
    f: impl std::future::Future<Output = anyhow::Result<()>>,
) {
    if let Err(e) = f.await {
        failures.push(format!("── {name} ──\n{e:#}"));
    }
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// A real pointer click (move, press, release) at viewport coordinates.
async fn click_at(client: &Client, x: f64, y: f64) -> anyhow::Result<()> {
    let mouse = MouseActions::new("mouse".into())
        .then(PointerAction::MoveTo {
            duration: None,
            x: x.round(),
            y: y.round(),
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    client.perform_actions(mouse).await?;
    client.release_actions().await?;
    Ok(())
}

/// Where, in the console window, the mirrored element `css` is drawn (its centre), once the
/// mirror holds it.
async fn mirror_point(agent: &Client, css: &str) -> anyhow::Result<(f64, f64)> {
    agent
        .execute(
            "const s = document.querySelector('.cobrowse-stage'); \
             if (s) s.scrollIntoView({block: 'center'});",
            vec![],
        )
        .await?;
    let v = wait_js(
        agent,
        &format!("`{css}` drawn in the mirror"),
        "const f = document.querySelector('.cobrowse-frame'); if (!f) return null;
         const d = f.contentDocument; const e = d && d.querySelector(arguments[0]); if (!e) return null;
         const r = e.getBoundingClientRect(); const fr = f.getBoundingClientRect();
         const s = fr.width / (f.offsetWidth || 1);
         if (!r.width || !s) return null;
         // Only once the mirror shows it (it follows the visitor's scroll a moment later).
         if (r.top < 0 || r.left < 0 || r.bottom > f.clientHeight || r.right > f.clientWidth) return null;
         return [fr.left + (r.left + r.width / 2) * s, fr.top + (r.top + r.height / 2) * s];",
        vec![json!(css)],
    )
    .await?;
    let x = v[0].as_f64().context("x")?;
    let y = v[1].as_f64().context("y")?;
    Ok((x, y))
}

/// What the co-browse stream consisted of (item kinds sent, frame types received), for the
/// report when something is off.
fn traffic_report(proxy: &CaptureProxy) -> String {
    let mut sent = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for f in proxy.websocket_frames_sent().0 {
        let Ok(v) = serde_json::from_slice::<Value>(&f) else {
            continue;
        };
        let kind = if v["type"] == "cobrowse" {
            let data = v["data"].as_str().unwrap_or("");
            let kind = data
                .split("\"kind\":\"")
                .nth(1)
                .and_then(|k| k.split('"').next())
                .unwrap_or("piece");
            format!("cobrowse/{kind}")
        } else {
            v["type"].as_str().unwrap_or("?").to_owned()
        };
        let e = sent.entry(kind).or_default();
        e.0 += 1;
        e.1 += f.len();
    }
    let mut received = std::collections::BTreeMap::<String, usize>::new();
    for f in proxy.websocket_frames_received() {
        let Ok(v) = serde_json::from_slice::<Value>(&f) else {
            continue;
        };
        let mut kind = v["type"].as_str().unwrap_or("?").to_owned();
        if kind == "error" {
            kind = format!("error/{}", v["code"].as_str().unwrap_or("?"));
        }
        *received.entry(kind).or_default() += 1;
    }
    format!("page sent (count, bytes): {sent:?}\npage received: {received:?}")
}

/// The cobrowse frames the page sent so far: (total bytes on the wire, the snapshot bytes of
/// the first page).
fn cobrowse_traffic(proxy: &CaptureProxy) -> (usize, usize) {
    let (frames, _) = proxy.websocket_frames_sent();
    let mut bytes = 0;
    let mut first_snapshot = 0;
    let mut snapshot_n = None;
    for f in frames {
        let Ok(v) = serde_json::from_slice::<Value>(&f) else {
            continue;
        };
        if v["type"] != "cobrowse" {
            continue;
        }
        bytes += f.len();
        let data = v["data"].as_str().unwrap_or("");
        if snapshot_n.is_none()
            && v["index"].as_u64().unwrap_or(0) == 0
            && data.contains("\"snapshot\"")
        {
            snapshot_n = v["n"].as_u64();
        }
        if snapshot_n.is_some() && v["n"].as_u64() == snapshot_n {
            first_snapshot += data.len();
        }
    }
    (bytes, first_snapshot)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::test]
async fn cobrowse_end_to_end_in_real_browsers() -> anyhow::Result<()> {
    require_dist()?;
    let logs = relay_logs();
    let mut proxy = CaptureProxy::bind().await?;
    let proxy_origin = proxy.base_url();
    let relay = TestRelay::builder()
        .config(move |c| {
            for site in &mut c.sites {
                site.allowed_origins.push(proxy_origin.clone());
            }
        })
        .start()
        .await?;
    proxy.forward_to(relay.addr());
    let browser = Browser::start().await?;
    let visitor = browser.new_session().await?;
    let agent = browser.new_session().await?;
    let widget = Widget::new(&visitor);
    let console = Console::new(&agent);
    let (user, name, pass) = AGENTS[0];
    let mut failures = Vec::new();

    // Setup: a conversation the agent has taken.
    visitor
        .goto(&format!("{}/checkout.html", proxy.base_url()))
        .await?;
    widget.open().await?;
    widget.send("I need help with checkout").await?;
    widget
        .wait_message("visitor", "I need help with checkout")
        .await?;
    console.login(&proxy.base_url(), user, pass).await?;
    agent.set_window_size(1400, 1700).await?;
    let id = console
        .wait_conversation("I need help with checkout")
        .await?;
    console.open_conversation(&id).await?;
    console.take(&id).await?;
    widget
        .wait_line_containing(&format!("{name} joined"))
        .await?;

    part(&mut failures, "consent denied", async {
        console.element(".cobrowse-request").await?.click().await?;
        widget
            .wait(
                "the consent card",
                "return root.querySelector('button[data-cb=deny]');",
                vec![],
            )
            .await?;
        widget.find("button[data-cb=deny]").await?.click().await?;
        console
            .element("[data-cobrowse=denied]")
            .await
            .context("the agent must be told the visitor declined")?;
        Ok(())
    })
    .await;

    part(
        &mut failures,
        "consent allowed → indicator and mirror",
        async {
            console.element(".cobrowse-request").await?.click().await?;
            widget
                .wait(
                    "a new consent card",
                    "return root.querySelector('button[data-cb=allow]');",
                    vec![],
                )
                .await?;
            widget.find("button[data-cb=allow]").await?.click().await?;
            let text = widget
                .wait(
                    "the sharing indicator",
                    "const i = root.querySelector('[data-parley-cobrowse=indicator]'); \
                 return i && i.getClientRects().length ? i.textContent : null;",
                    vec![],
                )
                .await?;
            if !text.as_str().unwrap_or("").contains(name) {
                bail!("the indicator must name the agent ({name}): {text}");
            }
            wait_js(
            &agent,
            "the mirror showing the checkout page",
            "const f = document.querySelector('.cobrowse-frame'); const d = f && f.contentDocument;
             return d && d.querySelector('#card-number') && d.title;",
            vec![],
        )
        .await?;
            Ok(())
        },
    )
    .await;

    part(&mut failures, "masking: canaries never leave the page", async {
        for (css, text) in CANARIES.iter().chain([&UNMASKED]) {
            let field = visitor.find(Locator::Css(css)).await?;
            field.click().await?;
            field.send_keys(text).await?;
        }
        for (find, text) in HIDDEN_CANARIES {
            visitor
                .execute(
                    &format!(
                        "{find} i.focus(); i.value = arguments[0];
                         i.dispatchEvent(new InputEvent('input', {{bubbles: true, composed: true}}));"
                    ),
                    vec![json!(text)],
                )
                .await?;
        }
        // Positive controls across both boundaries: the shadow root's and the frame's own text
        // reach the mirror, and their fields show as filled (8 mask characters), so input
        // inside them is streamed and masked.
        wait_js_for(
            &agent,
            "the shadow root and the frame in the mirror, their fields masked",
            "const f = document.querySelector('.cobrowse-frame'); const d = f && f.contentDocument;
             const host = d && d.querySelector('gift-card-field');
             const sr = host && host.shadowRoot;
             const box = d && d.querySelector('[data-parley-frame]');
             const fr = box && box.shadowRoot;
             if (!sr || !fr) return false;
             const gift = sr.querySelector('#gift-card'), door = fr.querySelector('#door-code');
             return sr.textContent.includes('taken off the total')
               && fr.textContent.includes('Delivery instructions')
               && gift && gift.value.length === 8 && door && door.value.length === 8;",
            vec![],
            Duration::from_secs(20),
        )
        .await?;
        // The unmasked field's text arrives in the mirror: input is being streamed.
        wait_js_for(
            &agent,
            "the unmasked coupon in the mirror",
            "const f = document.querySelector('.cobrowse-frame'); const d = f && f.contentDocument;
             const e = d && d.querySelector(arguments[0]); return e && e.value === arguments[1];",
            vec![json!(UNMASKED.0), json!(UNMASKED.1)],
            Duration::from_secs(20),
        )
        .await?;
        // ...and the card field shows a masked value of the fixed mask length, whatever the
        // card number's length (a length would tell a card from an email).
        wait_js(
            &agent,
            "a masked card number in the mirror",
            "const f = document.querySelector('.cobrowse-frame'); const d = f && f.contentDocument;
             const e = d && d.querySelector('#card-number');
             return e && e.value.length === arguments[0] && !/[0-9]/.test(e.value);",
            vec![json!(8)],
        )
        .await?;
        // Let the last batches flush.
        tokio::time::sleep(Duration::from_millis(800)).await;

        let mirror = agent
            .execute(
                "const f = document.querySelector('.cobrowse-frame'); const d = f.contentDocument;
                 const parts = [];
                 const walk = (root) => {
                   for (const e of root.querySelectorAll('*')) {
                     if (e.matches('input,textarea,select')) parts.push(e.value + ' ' + (e.checked ? 'on' : ''));
                     if (e.shadowRoot) { parts.push(e.shadowRoot.innerHTML); walk(e.shadowRoot); }
                   }
                 };
                 walk(d);
                 return d.documentElement.outerHTML + '\\n' + parts.join('\\n') + '\\n' + d.body.innerText;",
                vec![],
            )
            .await?;
        let mirror = mirror.as_str().unwrap_or_default().to_owned();
        let (frames, sockets) = proxy.websocket_frames_sent();
        if sockets == 0 || frames.is_empty() {
            bail!("the proxy captured no WebSocket frame: the check would prove nothing");
        }
        let sent: Vec<String> = frames
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        let all_sent = sent.join("\n");
        if !all_sent.contains(UNMASKED.1) {
            bail!("the unmasked coupon never reached the captured frames: the capture sees nothing");
        }
        if !all_sent.contains("I need help with checkout") {
            bail!("the chat message is not in the captured frames: the capture sees nothing");
        }
        let log_text = String::from_utf8_lossy(&logs.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
        if log_text.is_empty() {
            bail!("no relay log was captured: the check would prove nothing");
        }
        let mut stored = std::fs::read(relay.database_path())?;
        let wal = relay.database_path().with_extension("db-wal");
        if let Ok(more) = std::fs::read(&wal) {
            stored.extend(more);
        }
        let stored = String::from_utf8_lossy(&stored).into_owned();
        if !stored.contains("I need help with checkout") {
            bail!("the stored bytes do not hold the chat message: the check would prove nothing");
        }
        let mut leaks = Vec::new();
        let needles: Vec<String> = CANARIES
            .iter()
            .chain(HIDDEN_CANARIES.iter())
            .flat_map(|(_, t)| [t.to_string(), t.replace(' ', "")])
            .chain([MASKED_TEXT.to_owned()])
            .collect();
        for needle in &needles {
            for (place, text) in [
                ("a WebSocket frame", &all_sent),
                ("the relay logs", &log_text),
                ("the database", &stored),
                ("the agent's mirror", &mirror),
            ] {
                if text.contains(needle.as_str()) {
                    leaks.push(format!("{needle:?} found in {place}"));
                }
            }
        }
        if !leaks.is_empty() {
            bail!("masked data left the page:\n{}", leaks.join("\n"));
        }
        Ok(())
    })
    .await;

    let mut latencies = Vec::new();
    part(&mut failures, "agent highlight lands on the element (geometry)", async {
        // Two fields at the top of the page, so neither highlight scrolls the page.
        let targets = ["#name", "#email"];
        for round in 0..12 {
            let css = targets[round % targets.len()];
            visitor.execute("window.scrollTo(0, 0);", vec![]).await?;
            // The visitor's page records when the agent's highlight covers the target.
            visitor
                .execute(
                    "window.__hl = 0; const css = arguments[0];
                     const check = () => {
                       const host = document.querySelector('parley-chat');
                       const h = host && host.shadowRoot.querySelector('[data-parley-highlight=agent]');
                       const t = document.querySelector(css);
                       if (h && t && h.getClientRects().length) {
                         const a = h.getBoundingClientRect(), b = t.getBoundingClientRect();
                         const ca = [a.left + a.width / 2, a.top + a.height / 2], cb = [b.left + b.width / 2, b.top + b.height / 2];
                         if (Math.abs(ca[0] - cb[0]) <= 6 && Math.abs(ca[1] - cb[1]) <= 6
                             && a.width >= b.width - 2 && a.width <= b.width + 24) {
                           window.__hl = Date.now(); window.__hlRects = [a, b]; return;
                         }
                       }
                       requestAnimationFrame(check);
                     };
                     requestAnimationFrame(check);",
                    vec![json!(css)],
                )
                .await?;
            let (x, y) = mirror_point(&agent, css).await?;
            let t0 = now_ms();
            if let Err(e) = click_at(&agent, x, y).await {
                let size = agent
                    .execute("return [innerWidth, innerHeight, scrollY];", vec![])
                    .await?;
                bail!("clicking the mirror at ({x:.0}, {y:.0}) in a window of {size}: {e}");
            }
            let at = wait_js(
                &visitor,
                &format!("the agent's highlight over {css}"),
                "return window.__hl || null;",
                vec![],
            )
            .await?;
            latencies.push(at.as_f64().unwrap_or(f64::NAN) - t0);
        }
        Ok(())
    })
    .await;

    part(
        &mut failures,
        "visitor highlight appears in the mirror",
        async {
            widget
                .find("[data-parley-cobrowse=show]")
                .await?
                .click()
                .await?;
            widget
                .wait(
                    "the picker",
                    "return root.querySelector('[data-parley-cobrowse=picker]');",
                    vec![],
                )
                .await?;
            let r = visitor
                .execute(
                    "const r = document.querySelector('#email').getBoundingClientRect();
                 return [r.left + r.width / 2, r.top + r.height / 2];",
                    vec![],
                )
                .await?;
            click_at(
                &visitor,
                r[0].as_f64().context("x")?,
                r[1].as_f64().context("y")?,
            )
            .await?;
            let (mx, my) = mirror_point(&agent, "#email").await?;
            wait_js(
                &agent,
                "the visitor's highlight over the mirrored #email",
                "const h = document.querySelector('[data-parley-visitor-highlight]');
             if (!h || !h.getClientRects().length) return null;
             const a = h.getBoundingClientRect();
             return Math.abs(a.left + a.width / 2 - arguments[0]) <= 8
                 && Math.abs(a.top + a.height / 2 - arguments[1]) <= 8;",
                vec![json!(mx), json!(my)],
            )
            .await?;
            Ok(())
        },
    )
    .await;

    let mut sustained = None;
    part(
        &mut failures,
        "bandwidth while scrolling and typing",
        async {
            let (before, _) = cobrowse_traffic(&proxy);
            let started = Instant::now();
            let note = visitor.find(Locator::Css("#note")).await?;
            let window = Duration::from_secs(10);
            let mut step = 0;
            while started.elapsed() < window {
                let y = if step % 20 < 10 { 80 } else { -80 };
                visitor
                    .execute("window.scrollBy(0, arguments[0]);", vec![json!(y)])
                    .await?;
                note.send_keys("a").await?;
                step += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            tokio::time::sleep(Duration::from_millis(600)).await;
            let (after, _) = cobrowse_traffic(&proxy);
            let secs = started.elapsed().as_secs_f64();
            sustained = Some((after - before) as f64 / secs);
            Ok(())
        },
    )
    .await;

    part(&mut failures, "navigation is followed", async {
        visitor
            .goto(&format!("{}/product.html", proxy.base_url()))
            .await?;
        let title = visitor.title().await?;
        wait_js_for(
            &agent,
            "the mirror following to product.html",
            "const f = document.querySelector('.cobrowse-frame'); const d = f && f.contentDocument;
             return d && d.title === arguments[0];",
            vec![json!(title)],
            Duration::from_secs(25),
        )
        .await?;
        Ok(())
    })
    .await;

    part(&mut failures, "the visitor stops", async {
        widget
            .wait(
                "the indicator on the new page",
                "return root.querySelector('[data-parley-cobrowse=stop]');",
                vec![],
            )
            .await?;
        widget
            .find("[data-parley-cobrowse=stop]")
            .await?
            .click()
            .await?;
        console
            .element("[data-cobrowse=stopped]")
            .await
            .context("the agent must see the visitor stopped")?;
        wait_js(
            &agent,
            "the mirror gone",
            "return !document.querySelector('.cobrowse-frame');",
            vec![],
        )
        .await?;
        widget
            .wait(
                "the indicator gone",
                "return !root.querySelector('[data-parley-cobrowse=indicator]');",
                vec![],
            )
            .await?;
        Ok(())
    })
    .await;

    part(&mut failures, "the agent stops", async {
        console.element(".cobrowse-request").await?.click().await?;
        widget.open().await.ok();
        widget
            .wait(
                "a third consent card",
                "return root.querySelector('button[data-cb=allow]');",
                vec![],
            )
            .await?;
        widget.find("button[data-cb=allow]").await?.click().await?;
        widget
            .wait(
                "the indicator",
                "return root.querySelector('[data-parley-cobrowse=indicator]');",
                vec![],
            )
            .await?;
        console.element(".cobrowse-stop").await?.click().await?;
        widget
            .wait(
                "the indicator gone after the agent stopped",
                "return !root.querySelector('[data-parley-cobrowse=indicator]');",
                vec![],
            )
            .await?;
        Ok(())
    })
    .await;

    let (_, snapshot) = cobrowse_traffic(&proxy);
    latencies.retain(|l| l.is_finite());
    latencies.sort_by(f64::total_cmp);
    println!(
        "co-browse figures: checkout.html initial snapshot {snapshot} bytes; sustained {} B/s \
         while scrolling and typing; agent click → highlight visible: median {:.0} ms, p95 {:.0} ms \
         (n={})",
        sustained.map_or("?".into(), |s| format!("{s:.0}")),
        percentile(&latencies, 50.0),
        percentile(&latencies, 95.0),
        latencies.len()
    );
    println!("{}", traffic_report(&proxy));
    if std::env::var_os("PARLEY_COBROWSE_TRACE").is_some() {
        for (at, conn, up, payload) in proxy.timeline() {
            let text = String::from_utf8_lossy(&payload);
            if text.contains("cobrowse") {
                let short: String = text.chars().take(140).collect();
                println!(
                    "{at:9.1} ms  conn {conn} {}  {short}",
                    if up { "→" } else { "←" }
                );
            }
        }
    }
    if let Some(s) = sustained {
        // A regression guard well above the 6 KB/s target (BENCHMARKS.md has the measured figure).
        if s > 12_000.0 {
            failures.push(format!(
                "sustained co-browse traffic {s:.0} B/s is over 12 KB/s"
            ));
        }
    }
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

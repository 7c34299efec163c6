//! Headless Chromium driven through chromedriver (WebDriver, via fantoccini), plus helpers that
//! reach into the widget's open shadow root and the console's DOM.
//!
//! chromedriver runs in its own process group and the whole group (chromedriver and every
//! Chromium process it started) is killed when [`Browser`] is dropped, so a failing or panicking
//! test never leaves browsers behind.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::{repo_root, TIMEOUT};

/// A chromedriver process and the browser profiles of its sessions.
pub struct Browser {
    /// chromedriver; its pid is also the process group id.
    child: Child,
    /// Port chromedriver listens on.
    port: u16,
    /// One fresh profile (`--user-data-dir`) per session, removed when the browser goes.
    profiles: Mutex<Vec<tempfile::TempDir>>,
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Browser {
    /// Launches chromedriver (`$CHROMEDRIVER` or `/usr/bin/chromedriver`) in its own process
    /// group and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        let driver =
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let port = free_port()?;
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new(&driver)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting {driver}"))?
        };
        let browser = Self {
            child,
            port,
            profiles: Mutex::new(Vec::new()),
        };
        let status = format!("http://127.0.0.1:{port}/status");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Ok(r) = http.get(&status).send().await {
                if r.status().is_success() {
                    return Ok(browser);
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{driver} did not answer on port {port} within {TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new browser session (its own Chromium and profile, so its own localStorage).
    pub async fn new_session(&self) -> anyhow::Result<Client> {
        self.session_with(None).await
    }

    /// A session emulating a phone of `width` × `height` CSS pixels with a touch screen
    /// (chromedriver's `mobileEmulation`: device pixel ratio 3, a mobile user agent).
    pub async fn new_phone_session(&self, width: u32, height: u32) -> anyhow::Result<Client> {
        self.session_with(Some(json!({
            "deviceMetrics": {"width": width, "height": height, "pixelRatio": 3.0, "touch": true},
            "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 \
                          (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
        })))
        .await
    }

    /// Sends one Chrome DevTools Protocol command to `client`'s browser (through chromedriver's
    /// `goog/cdp/execute`): what WebDriver cannot do, such as a touch swipe or a viewport that
    /// shrinks as an on-screen keyboard would make it.
    pub async fn cdp(&self, client: &Client, cmd: &str, params: Value) -> anyhow::Result<Value> {
        let id = client
            .session_id()
            .await?
            .context("the WebDriver session has no id")?;
        let url = format!(
            "http://127.0.0.1:{}/session/{id}/goog/cdp/execute",
            self.port
        );
        let response = reqwest::Client::new()
            .post(&url)
            .json(&json!({"cmd": cmd, "params": params}))
            .send()
            .await
            .with_context(|| format!("CDP {cmd}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("CDP {cmd}: {status} {body}");
        }
        Ok(body["value"].clone())
    }

    async fn session_with(&self, mobile: Option<Value>) -> anyhow::Result<Client> {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let profile = tempfile::tempdir().context("profile dir")?;
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,800".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        let mut options = json!({ "binary": chromium, "args": args });
        if let Some(m) = mobile {
            options["mobileEmulation"] = m;
        }
        caps.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .map_err(|e| anyhow!("new WebDriver session with {chromium}: {e}"))?;
        if let Ok(mut profiles) = self.profiles.lock() {
            profiles.push(profile);
        }
        Ok(client)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (process_group(0)); `kill -KILL -- -PGID` reaches
        // every Chromium process it started. The external `kill` keeps this crate free of
        // `unsafe` (the workspace forbids it).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a PNG of the current window to `<repo>/docs/<name>` (e.g. `launcher.png`).
pub async fn screenshot(client: &Client, name: &str) -> anyhow::Result<PathBuf> {
    let png = client.screenshot().await.context("taking a screenshot")?;
    let dir = repo_root().join("docs");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The W3C WebDriver key of an element reference returned by a script.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Turns an element returned by `execute` into a WebDriver element handle.
fn element_from(client: &Client, v: &Value) -> anyhow::Result<Element> {
    let id = v
        .get(ELEMENT_KEY)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("script returned {v}, not an element"))?;
    Ok(Element::from_element_id(
        client.clone(),
        id.to_owned().into(),
    ))
}

/// Whether a script result means "ready".
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// Script describing what a person would see, for failure messages: URL, widget state inside the
/// shadow root, and the start of the page text.
const SNAPSHOT_JS: &str = r#"
const out = { url: location.href, title: document.title };
const host = document.querySelector('parley-chat');
out.host = !!host;
const root = host && host.shadowRoot;
if (root) {
  const l = root.querySelector('button.parley-launcher');
  if (l) { const r = l.getBoundingClientRect(); out.launcher = { label: l.getAttribute('aria-label'), rect: [r.x, r.y, r.width, r.height] }; }
  const p = root.querySelector('section.parley-panel');
  if (p) { const r = p.getBoundingClientRect(); out.panel = { hidden: p.hidden, rect: [r.x, r.y, r.width, r.height] }; }
  const c = root.querySelector('.parley-conn'); if (c) out.conn = c.getAttribute('data-state');
  const b = root.querySelector('.parley-badge'); if (b) out.badge = b.textContent;
  const n = root.querySelector('.parley-notice'); if (n) out.notice = n.textContent;
  out.messages = Array.from(root.querySelectorAll('li.parley-msg')).map(m => ({
    role: m.getAttribute('data-role'), seq: m.getAttribute('data-seq'), pending: m.classList.contains('parley-pending'),
    text: (m.querySelector('.parley-text') || m).textContent }));
}
out.body = (document.body ? document.body.innerText : '').slice(0, 1200);
return out;
"#;

/// A description of the page for failure messages.
pub async fn snapshot(client: &Client) -> String {
    match client.execute(SNAPSHOT_JS, vec![]).await {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string()),
        Err(e) => format!("(could not describe the page: {e})"),
    }
}

/// Polls `js` (a function body receiving `arguments`) every 100 ms until it returns something
/// truthy, and returns that. After [`TIMEOUT`] fails with `what`, the last result and a
/// description of the page.
pub async fn wait_js(
    client: &Client,
    what: &str,
    js: &str,
    args: Vec<Value>,
) -> anyhow::Result<Value> {
    wait_js_for(client, what, js, args, TIMEOUT).await
}

/// [`wait_js`] with an explicit timeout.
pub async fn wait_js_for(
    client: &Client,
    what: &str,
    js: &str,
    args: Vec<Value>,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Value;
    loop {
        match client.execute(js, args.clone()).await {
            Ok(v) if truthy(&v) => return Ok(v),
            Ok(v) => last = v,
            Err(e) => last = Value::String(format!("script error: {e}")),
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "timed out after {timeout:?} waiting for {what}\nlast result: {last}\npage: {}",
                snapshot(client).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prefix for scripts that work inside the widget: defines `root` (the shadow root or null).
const IN_WIDGET: &str = "const host = document.querySelector('parley-chat'); \
                         const root = host && host.shadowRoot; if (!root) return null;\n";

/// A message in the widget's list.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct WidgetMessage {
    /// `data-role`.
    pub role: String,
    /// `data-seq`, absent while pending.
    pub seq: Option<String>,
    /// `.parley-text`.
    pub text: String,
}

/// A bot message in the widget: its text, "read more" link and quick replies.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct BotReply {
    /// `data-seq`.
    pub seq: Option<String>,
    /// `.parley-text`.
    pub text: String,
    /// `a.parley-link`'s `href` attribute, as the relay sent it.
    pub link: Option<String>,
    /// Labels of the `button.parley-quick` quick replies.
    pub quick: Vec<String>,
}

/// A line of the console's transcript.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct TranscriptLine {
    /// `data-role`.
    pub role: String,
    /// `.text`.
    pub text: String,
    /// `data-mood` (visitor messages the relay scored).
    pub mood: Option<String>,
    /// Whether it is the bot's hand-over notice (`li.event.handoff`).
    pub handoff: bool,
}

/// Where the launcher is and what it says.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct LauncherInfo {
    /// `aria-label`.
    pub label: String,
    /// Left edge (CSS px, viewport).
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
    /// Viewport width.
    pub vw: f64,
    /// Viewport height.
    pub vh: f64,
    /// Whether the element at the launcher's centre (inside the shadow root) is the launcher.
    pub on_top: bool,
}

/// The chat widget on the current page of `client`.
pub struct Widget<'a> {
    /// The browser window showing the page.
    pub client: &'a Client,
}

impl<'a> Widget<'a> {
    /// The widget of `client`'s current page.
    pub fn new(client: &'a Client) -> Self {
        Self { client }
    }

    /// Runs `body` with `root` bound to the widget's shadow root.
    pub async fn wait(&self, what: &str, body: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        wait_js(self.client, what, &format!("{IN_WIDGET}{body}"), args).await
    }

    /// Finds an element inside the shadow root (a real WebDriver element: clicks and keys are
    /// real input events).
    pub async fn find(&self, css: &str) -> anyhow::Result<Element> {
        let host = self
            .client
            .find(Locator::Css("parley-chat"))
            .await
            .context("no <parley-chat> on the page")?;
        let root = host
            .shadow_root()
            .await
            .context("<parley-chat> has no shadow root")?;
        root.find(Locator::Css(css))
            .await
            .with_context(|| format!("no `{css}` in the widget's shadow root"))
    }

    /// Waits for the launcher to be drawn with a non-zero size and returns where it is.
    pub async fn launcher(&self) -> anyhow::Result<LauncherInfo> {
        let v = self
            .wait(
                "the launcher button (button.parley-launcher) with a non-zero size",
                "const l = root.querySelector('button.parley-launcher'); if (!l) return null;
                 const r = l.getBoundingClientRect(); if (r.width < 1 || r.height < 1) return null;
                 const s = getComputedStyle(l); if (s.visibility === 'hidden' || s.display === 'none' || s.opacity === '0') return null;
                 const at = root.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
                 return { label: l.getAttribute('aria-label') || '', x: r.x, y: r.y, width: r.width, height: r.height,
                          vw: innerWidth, vh: innerHeight, on_top: !!at && (at === l || l.contains(at)) };",
                vec![],
            )
            .await?;
        serde_json::from_value(v.clone()).map_err(|e| anyhow!("launcher info {v}: {e}"))
    }

    /// Clicks the launcher (a real click) and waits until the panel is visible with a composer.
    pub async fn open(&self) -> anyhow::Result<()> {
        self.launcher().await?;
        self.find("button.parley-launcher")
            .await?
            .click()
            .await
            .context("clicking the launcher (is something covering it?)")?;
        self.wait_panel_open().await
    }

    /// Waits until the panel is visible and its composer is there.
    pub async fn wait_panel_open(&self) -> anyhow::Result<()> {
        self.wait(
            "the chat panel (section.parley-panel) to be visible with its composer",
            "const p = root.querySelector('section.parley-panel'); if (!p || p.hidden) return null;
             const r = p.getBoundingClientRect(); if (r.width < 50 || r.height < 50) return null;
             const t = root.querySelector('section.parley-panel textarea'); if (!t) return null;
             const tr = t.getBoundingClientRect(); return tr.width > 0 && tr.height > 0;",
            vec![],
        )
        .await
        .map(|_| ())
    }

    /// Waits until the socket is online (`.parley-conn[data-state=online]`).
    pub async fn wait_online(&self) -> anyhow::Result<()> {
        self.wait(
            "the widget to be online (.parley-conn data-state=online)",
            "const c = root.querySelector('.parley-conn'); return !!c && c.getAttribute('data-state') === 'online';",
            vec![],
        )
        .await
        .map(|_| ())
    }

    /// Types `text` into the composer with real key presses and clicks Send.
    pub async fn send(&self, text: &str) -> anyhow::Result<()> {
        let textarea = self.find("section.parley-panel textarea").await?;
        textarea.click().await.context("focusing the composer")?;
        textarea
            .send_keys(text)
            .await
            .context("typing into the composer")?;
        let send = self
            .client
            .execute(
                &format!(
                    "{IN_WIDGET}const bs = Array.from(root.querySelectorAll('section.parley-panel button'));
                     return bs.find(b => ['Send', '보내기'].includes(b.getAttribute('aria-label'))) || null;"
                ),
                vec![],
            )
            .await?;
        if send.is_null() {
            bail!(
                "no Send button (aria-label Send/보내기) in the panel; page: {}",
                snapshot(self.client).await
            );
        }
        let send = element_from(self.client, &send)?;
        send.click().await.context("clicking Send")?;
        Ok(())
    }

    /// All messages currently listed.
    pub async fn messages(&self) -> anyhow::Result<Vec<WidgetMessage>> {
        let v = self
            .client
            .execute(
                &format!(
                    "{IN_WIDGET}return Array.from(root.querySelectorAll('ol.parley-messages > li.parley-msg')).map(m => ({{
                       role: m.getAttribute('data-role') || '', seq: m.getAttribute('data-seq'),
                       text: (m.querySelector('.parley-text') || {{ textContent: '' }}).textContent }}));"
                ),
                vec![],
            )
            .await?;
        if v.is_null() {
            return Ok(Vec::new());
        }
        serde_json::from_value(v.clone()).map_err(|e| anyhow!("messages {v}: {e}"))
    }

    /// Waits for a stored (seq-numbered) message by `role` with exactly `text`.
    pub async fn wait_message(&self, role: &str, text: &str) -> anyhow::Result<WidgetMessage> {
        let v = self
            .wait(
                &format!("a {role} message {text:?} with a data-seq"),
                "const [role, text] = arguments;
                 const m = Array.from(root.querySelectorAll('ol.parley-messages > li.parley-msg'))
                   .find(m => m.getAttribute('data-role') === role && m.hasAttribute('data-seq')
                         && (m.querySelector('.parley-text') || {}).textContent === text);
                 return m ? { role, seq: m.getAttribute('data-seq'), text } : null;",
                vec![json!(role), json!(text)],
            )
            .await?;
        serde_json::from_value(v.clone()).map_err(|e| anyhow!("message {v}: {e}"))
    }

    /// Waits for any listed line (any role) whose text contains `needle` (e.g. "Mina joined").
    pub async fn wait_line_containing(&self, needle: &str) -> anyhow::Result<String> {
        let v = self
            .wait(
                &format!("a line containing {needle:?} in the message list"),
                "const [needle] = arguments;
                 const m = Array.from(root.querySelectorAll('ol.parley-messages > li'))
                   .find(m => m.textContent.includes(needle));
                 return m ? m.textContent : null;",
                vec![json!(needle)],
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Waits until more than `after` bot messages are listed and returns the newest one.
    pub async fn wait_bot_reply(&self, after: usize) -> anyhow::Result<BotReply> {
        let v = self
            .wait(
                &format!("bot message number {} (li.parley-msg[data-role=bot] with a data-seq)", after + 1),
                "const [after] = arguments;
                 const bots = Array.from(root.querySelectorAll('ol.parley-messages > li.parley-msg[data-role=bot][data-seq]'));
                 if (bots.length <= after) return null;
                 const m = bots[bots.length - 1];
                 const a = m.querySelector('a.parley-link');
                 return { seq: m.getAttribute('data-seq'), text: (m.querySelector('.parley-text') || {}).textContent || '',
                          link: a ? a.getAttribute('href') : null,
                          quick: Array.from(m.querySelectorAll('button.parley-quick')).map(b => b.textContent) };",
                vec![json!(after)],
            )
            .await?;
        serde_json::from_value(v.clone()).map_err(|e| anyhow!("bot reply {v}: {e}"))
    }

    /// Clicks (a real click) the quick reply labelled `label` under the newest message.
    pub async fn click_quick(&self, label: &str) -> anyhow::Result<()> {
        let v = self
            .wait(
                &format!("a quick reply {label:?} (button.parley-quick)"),
                "const [label] = arguments;
                 return Array.from(root.querySelectorAll('button.parley-quick')).find(b => b.textContent === label) || null;",
                vec![json!(label)],
            )
            .await?;
        element_from(self.client, &v)?
            .click()
            .await
            .with_context(|| format!("clicking the quick reply {label:?}"))
    }

    /// Rates the closed conversation in the rating form (`form.parley-rate`): clicks the score
    /// radio (aria-label "N of 5"), types `comment`, clicks "Send rating" — real input.
    pub async fn rate(&self, score: u8, comment: &str) -> anyhow::Result<()> {
        self.wait(
            "the rating form (form.parley-rate) to be shown",
            "const f = root.querySelector('form.parley-rate');
             return !!f && !f.hidden && f.getBoundingClientRect().height > 0;",
            vec![],
        )
        .await?;
        self.find(&format!(
            "form.parley-rate input[type=radio][aria-label=\"{score} of 5\"]"
        ))
        .await?
        .click()
        .await
        .context("clicking the score")?;
        let text = self.find("form.parley-rate textarea").await?;
        text.click().await?;
        text.send_keys(comment).await?;
        self.find("form.parley-rate button.parley-send-rating")
            .await?
            .click()
            .await
            .context("clicking Send rating")?;
        Ok(())
    }

    /// Waits for the away notice (nobody can answer), then fills the email field and sends
    /// `text` with real key presses: the panel sends `leave_message`.
    pub async fn leave_message(&self, email: &str, text: &str) -> anyhow::Result<()> {
        self.wait(
            "the away notice (.parley-away) and a visible email field (input.parley-email)",
            "const n = root.querySelector('.parley-away'); const e = root.querySelector('input.parley-email');
             return !!n && !!e && !e.hidden && e.getBoundingClientRect().width > 0 ? n.textContent : null;",
            vec![],
        )
        .await?;
        let field = self.find("input.parley-email").await?;
        field.click().await.context("focusing the email field")?;
        field.send_keys(email).await.context("typing the email")?;
        self.send(text).await
    }

    /// Waits for the greeting bubble next to the launcher showing exactly `text`.
    pub async fn wait_bubble(&self, text: &str) -> anyhow::Result<()> {
        self.wait(
            &format!("a greeting bubble (.parley-bubble) saying {text:?}"),
            "const b = root.querySelector('.parley-bubble'); if (!b) return null;
             const r = b.getBoundingClientRect(); return r.width > 0 && b.textContent === arguments[0];",
            vec![json!(text)],
        )
        .await
        .map(|_| ())
    }

    /// How many greeting bubbles are on the page now.
    pub async fn bubbles(&self) -> anyhow::Result<u64> {
        let v = self
            .client
            .execute(
                &format!("{IN_WIDGET}return root.querySelectorAll('.parley-bubble').length;"),
                vec![],
            )
            .await?;
        Ok(v.as_u64().unwrap_or(0))
    }

    /// Waits until the unread badge shows `count`.
    pub async fn wait_badge(&self, count: &str) -> anyhow::Result<()> {
        self.wait(
            &format!("the unread badge (.parley-badge) to show {count:?}"),
            "const [count] = arguments; const b = root.querySelector('.parley-badge'); if (!b) return null;
             const r = b.getBoundingClientRect(); return b.textContent.trim() === count && r.width > 0 && r.height > 0 && !b.hidden;",
            vec![json!(count)],
        )
        .await
        .map(|_| ())
    }
}

/// The agents' console on the current page of `client`.
pub struct Console<'a> {
    /// The browser window showing `/console`.
    pub client: &'a Client,
}

impl<'a> Console<'a> {
    /// The console of `client`.
    pub fn new(client: &'a Client) -> Self {
        Self { client }
    }

    /// Waits for a CSS selector to match a rendered element, returning it.
    pub async fn element(&self, css: &str) -> anyhow::Result<Element> {
        wait_js(
            self.client,
            &format!("`{css}` in the console"),
            "const e = document.querySelector(arguments[0]); return e && e.getClientRects().length ? e : null;",
            vec![json!(css)],
        )
        .await
        .and_then(|v| element_from(self.client, &v))
    }

    /// Opens `base/console` and logs in through the form.
    pub async fn login(&self, base_url: &str, user: &str, pass: &str) -> anyhow::Result<()> {
        self.client.goto(&format!("{base_url}/console")).await?;
        let username = self.element("form.login input[name=username]").await?;
        username.send_keys(user).await?;
        self.element("form.login input[name=password]")
            .await?
            .send_keys(pass)
            .await?;
        self.element("form.login button[type=submit]")
            .await?
            .click()
            .await?;
        self.element("ul.conversations").await?;
        Ok(())
    }

    /// Waits for a conversation in the list whose preview contains `text`; returns its id.
    pub async fn wait_conversation(&self, text: &str) -> anyhow::Result<String> {
        let v = wait_js(
            self.client,
            &format!("a conversation with preview containing {text:?} in ul.conversations"),
            "const li = Array.from(document.querySelectorAll('ul.conversations > li.conversation'))
               .find(li => (li.querySelector('.preview') || li).textContent.includes(arguments[0]));
             return li ? li.getAttribute('data-id') : null;",
            vec![json!(text)],
        )
        .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Clicks the conversation `id` in the list.
    pub async fn open_conversation(&self, id: &str) -> anyhow::Result<()> {
        self.element(&format!(
            "ul.conversations > li.conversation[data-id=\"{id}\"]"
        ))
        .await?
        .click()
        .await
        .context("clicking the conversation")
    }

    /// Waits for a transcript entry with exactly `text` (role `role`).
    pub async fn wait_transcript(&self, role: &str, text: &str) -> anyhow::Result<()> {
        wait_js(
            self.client,
            &format!("a {role} entry {text:?} in ol.transcript"),
            "const [role, text] = arguments;
             return Array.from(document.querySelectorAll('ol.transcript > li.event'))
               .some(e => e.getAttribute('data-role') === role && (e.querySelector('.text') || {}).textContent === text);",
            vec![json!(role), json!(text)],
        )
        .await
        .map(|_| ())
    }

    /// Clicks "take", switches to the "mine" tab and waits for the conversation to be listed
    /// there as assigned.
    pub async fn take(&self, id: &str) -> anyhow::Result<()> {
        self.element("button.take").await?.click().await?;
        self.element("button[data-tab=mine]").await?.click().await?;
        wait_js(
            self.client,
            "the conversation to be listed under Mine as assigned after clicking take",
            "const li = document.querySelector(`ul.conversations > li.conversation[data-id=\"${arguments[0]}\"]`);
             return !!li && li.getAttribute('data-status') === 'assigned';",
            vec![json!(id)],
        )
        .await
        .map(|_| ())
    }

    /// Every line of the shown transcript, in order.
    pub async fn transcript(&self) -> anyhow::Result<Vec<TranscriptLine>> {
        let v = self
            .client
            .execute(
                "return Array.from(document.querySelectorAll('ol.transcript > li.event')).map(e => ({
                   role: e.getAttribute('data-role') || '', text: (e.querySelector('.text') || {}).textContent || '',
                   mood: e.getAttribute('data-mood'), handoff: e.classList.contains('handoff') }));",
                vec![],
            )
            .await?;
        serde_json::from_value(v.clone()).map_err(|e| anyhow!("transcript {v}: {e}"))
    }

    /// Opens the "Knowledge gaps" page from the sidebar and waits for its report to load.
    pub async fn open_gaps(&self) -> anyhow::Result<()> {
        self.element("button.gaps-toggle").await?.click().await?;
        wait_js(
            self.client,
            "the knowledge-gaps report (main.gaps-page with its sections, not loading)",
            "const p = document.querySelector('main.gaps-page');
             if (!p) return null;
             const err = p.querySelector('.gaps-error'); if (err) return 'error: ' + err.textContent;
             return p.querySelector('section.gap-questions') ? 'ok' : null;",
            vec![],
        )
        .await
        .and_then(|v| match v.as_str() {
            Some("ok") => Ok(()),
            _ => bail!("the knowledge-gaps page failed: {v}"),
        })
    }

    /// Waits for a group of unanswered questions listing `question`; returns its count.
    pub async fn wait_gap_question(&self, question: &str) -> anyhow::Result<u64> {
        let v = wait_js(
            self.client,
            &format!("a knowledge-gap group listing {question:?} (li.gap-group)"),
            "const [q] = arguments;
             const g = Array.from(document.querySelectorAll('ol.gap-groups > li.gap-group')).find(g =>
               Array.from(g.querySelectorAll('.gap-question, ul.gap-examples > li')).some(e => e.textContent === q));
             return g ? Number(g.getAttribute('data-count')) : null;",
            vec![json!(question)],
        )
        .await?;
        v.as_u64().ok_or_else(|| anyhow!("data-count {v}"))
    }

    /// Waits for the entry `entry_id` among the answers followed by a hand-off; returns its
    /// count and the questions listed under it.
    pub async fn wait_gap_entry(&self, entry_id: &str) -> anyhow::Result<(u64, Vec<String>)> {
        let v = wait_js(
            self.client,
            &format!("the entry {entry_id:?} among answers followed by a hand-off (li.gap-entry)"),
            "const [id] = arguments;
             const e = document.querySelector(`ol.gap-entry-list > li.gap-entry[data-entry='${id}']`);
             return e ? [Number(e.getAttribute('data-count')),
                         Array.from(e.querySelectorAll('ul.gap-examples > li')).map(l => l.textContent)] : null;",
            vec![json!(entry_id)],
        )
        .await?;
        let (count, questions): (u64, Vec<String>) =
            serde_json::from_value(v.clone()).map_err(|e| anyhow!("gap entry {v}: {e}"))?;
        Ok((count, questions))
    }

    /// Clicks "Close" on the open conversation.
    pub async fn close_conversation(&self) -> anyhow::Result<()> {
        self.element("button.close-conversation")
            .await?
            .click()
            .await
            .context("clicking Close")
    }

    /// Types a reply and clicks send.
    pub async fn reply(&self, text: &str) -> anyhow::Result<()> {
        let composer = self.element("textarea[aria-label=\"Reply\"]").await?;
        composer.click().await?;
        composer.send_keys(text).await?;
        self.element("button.send").await?.click().await?;
        Ok(())
    }

    /// Switches the composer to "Internal note", writes `text`, adds it, switches back, and
    /// waits for the stored note (`li.event.note` with a `data-seq`).
    pub async fn note(&self, text: &str) -> anyhow::Result<()> {
        self.element("button.mode-note").await?.click().await?;
        let composer = self
            .element("textarea[aria-label=\"Internal note\"]")
            .await?;
        composer.click().await?;
        composer.send_keys(text).await?;
        self.element("button.send").await?.click().await?;
        wait_js(
            self.client,
            &format!("the stored note {text:?}"),
            "return Array.from(document.querySelectorAll('li.event.note[data-seq] .text'))
               .some(t => t.textContent === arguments[0]);",
            vec![json!(text)],
        )
        .await?;
        self.element(".composer-mode button.mode:not(.mode-note)")
            .await?
            .click()
            .await?;
        Ok(())
    }
}

//! Canned replies over `/api/canned` (issue #21), against the real relay on loopback (SQLite):
//! admins write shared ones (for one site or every site), every agent their own; an agent sees
//! the shared ones of the sites they serve and their own, never a colleague's own; only admins
//! change shared ones; bad input is a typed error.

use parley_tests::ws::HttpAgent;
use parley_tests::{TestRelay, AGENTS};
use serde_json::{json, Value};

/// An agent's calls to `/api/canned`.
struct Agent(HttpAgent);

impl std::ops::Deref for Agent {
    type Target = HttpAgent;
    fn deref(&self) -> &HttpAgent {
        &self.0
    }
}

impl Agent {
    async fn login(relay: &TestRelay, user: &str, pass: &str) -> anyhow::Result<Self> {
        Ok(Self(HttpAgent::login(relay, user, pass).await?))
    }

    async fn post(&self, body: Value) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::POST, "/api/canned", Some(body))
            .await
    }

    async fn shortcuts(&self) -> anyhow::Result<Vec<String>> {
        let (status, body) = self.call(reqwest::Method::GET, "/api/canned", None).await?;
        anyhow::ensure!(status == 200, "{status} {body}");
        Ok(body["replies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                format!(
                    "{}{}@{}",
                    if r["shared"] == true {
                        "shared:"
                    } else {
                        "own:"
                    },
                    r["shortcut"].as_str().unwrap_or(""),
                    r["site"].as_str().unwrap_or("*")
                )
            })
            .collect())
    }
}

#[tokio::test]
async fn canned_replies_are_shared_by_admins_and_kept_by_each_agent() -> anyhow::Result<()> {
    let relay = TestRelay::builder()
        .admin("mina")
        .config(|c| {
            let mut bank = c.sites[0].clone();
            bank.key = "bank".into();
            bank.name = "Bank".into();
            c.sites.push(bank);
            for a in &mut c.agents {
                if a.username == "joon" {
                    a.sites = Some(vec!["demo".into()]);
                }
            }
        })
        .start()
        .await?;
    let (m, _, mp) = AGENTS[0];
    let (j, _, jp) = AGENTS[1];
    let mina = Agent::login(&relay, m, mp).await?;
    let joon = Agent::login(&relay, j, jp).await?;
    for body in [
        json!({"shortcut": "returns", "text": "Returns are free within 30 days.", "shared": true}),
        json!({"shortcut": "loan", "text": "Our loan desk opens at 9.", "site": "bank", "shared": true}),
        json!({"shortcut": "hi", "text": "Hi {visitor.name}, I'm {agent.name}."}),
    ] {
        let (status, created) = mina.post(body).await?;
        assert_eq!(status, 201, "{created}");
    }
    let (status, own) = joon
        .post(json!({"shortcut": "Thanks", "text": "Thanks for waiting!"}))
        .await?;
    assert_eq!(status, 201, "{own}");
    assert_eq!(own["shortcut"], "thanks", "shortcuts are lower case");
    // Joon serves only `demo`: the bank's shared reply and Mina's own are not his.
    assert_eq!(
        joon.shortcuts().await?,
        vec!["shared:returns@*", "own:thanks@*"]
    );
    assert_eq!(
        mina.shortcuts().await?,
        vec!["shared:loan@bank", "shared:returns@*", "own:hi@*"]
    );
    // Only admins write shared replies; nobody touches a colleague's own.
    let (status, body) = joon
        .post(json!({"shortcut": "x", "text": "y", "shared": true}))
        .await?;
    assert_eq!((status, body["error"].clone()), (403, json!("forbidden")));
    let (_, list) = mina.call(reqwest::Method::GET, "/api/canned", None).await?;
    let shared_id = list["replies"][1]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, _) = joon
        .call(
            reqwest::Method::DELETE,
            &format!("/api/canned/{shared_id}"),
            None,
        )
        .await?;
    assert_eq!(status, 403);
    let own_id = own["id"].as_str().unwrap_or_default();
    let (status, _) = mina
        .call(
            reqwest::Method::DELETE,
            &format!("/api/canned/{own_id}"),
            None,
        )
        .await?;
    assert_eq!(
        status, 404,
        "a colleague's own reply is none of Mina's business"
    );
    // Edits and deletes by the owner.
    let (status, edited) = joon
        .call(
            reqwest::Method::PUT,
            &format!("/api/canned/{own_id}"),
            Some(json!({"shortcut": "thanks", "text": "Thank you for your patience!"})),
        )
        .await?;
    assert_eq!(
        (status, edited["text"].clone()),
        (200, json!("Thank you for your patience!"))
    );
    // Bad input: typed errors.
    for (body, code) in [
        (
            json!({"shortcut": "two words", "text": "x"}),
            ("invalid", 400),
        ),
        (json!({"shortcut": "ok", "text": "   "}), ("invalid", 400)),
        (
            json!({"shortcut": "ok", "text": "x", "site": "nowhere"}),
            ("invalid", 400),
        ),
        (
            json!({"shortcut": "ok", "text": "x", "colour": "red"}),
            ("invalid", 400),
        ),
        (
            json!({"shortcut": "thanks", "text": "again"}),
            ("shortcut_taken", 409),
        ),
    ] {
        let (status, answer) = joon.post(body.clone()).await?;
        assert_eq!(
            (answer["error"].as_str(), status),
            (Some(code.0), code.1),
            "{body}"
        );
    }
    let (status, _) = joon
        .call(
            reqwest::Method::DELETE,
            &format!("/api/canned/{own_id}"),
            None,
        )
        .await?;
    assert_eq!(status, 204);
    assert_eq!(joon.shortcuts().await?, vec!["shared:returns@*"]);
    relay.shutdown().await;
    Ok(())
}

//! Throw-away PostgreSQL databases for tests: [`TestDatabase::create`] makes a fresh database on
//! the server named by `PARLEY_TEST_PG_URL` (default [`DEFAULT_ADMIN_URL`]) and
//! [`TestDatabase::drop_now`] removes it.
//!
//! One database per test, not one schema: the store under test then sees an ordinary
//! `postgres://.../DB` URL exactly as in production (no `search_path` tricks), runs its own
//! migrations from scratch, and tests running in parallel cannot see each other's rows or
//! migration table. `CREATE DATABASE` costs a few tens of milliseconds, which is fine here.
//!
//! An unreachable server is an error, never a skip: a green run must mean PostgreSQL was tested.

use anyhow::{anyhow, Context as _};
use sqlx::{Connection as _, Executor as _, PgConnection};

/// The server the tests use unless `PARLEY_TEST_PG_URL` names another. Any existing database
/// works: it is only used to create and drop the per-test ones.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The admin URL: `$PARLEY_TEST_PG_URL` or [`DEFAULT_ADMIN_URL`].
pub fn admin_url() -> String {
    std::env::var("PARLEY_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// A database created for one test.
pub struct TestDatabase {
    /// Where it was created from (and is dropped through).
    admin_url: String,
    /// `parley_t_<random>`: the prefix marks leftovers of killed runs as safe to drop.
    name: String,
    /// The URL of the new database, for the store or the relay.
    url: String,
}

impl TestDatabase {
    /// Creates a fresh, empty database, or fails saying PostgreSQL is not reachable.
    pub async fn create() -> anyhow::Result<Self> {
        let admin_url = admin_url();
        let mut admin = PgConnection::connect(&admin_url).await.map_err(|e| {
            anyhow!(
                "PostgreSQL not reachable at {admin_url} ({e}): start it or set PARLEY_TEST_PG_URL"
            )
        })?;
        let suffix: String = relay_server::store::new_id()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let name = format!("parley_t_{suffix}");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .with_context(|| format!("CREATE DATABASE {name} on {admin_url}"))?;
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name)?;
        Ok(Self {
            admin_url,
            name,
            url,
        })
    }

    /// `postgres://.../parley_t_...`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database, best effort: a failure is printed, not raised, so it never hides
    /// the test's own result. Close every pool on it first (`WITH (FORCE)` ends stragglers).
    pub async fn drop_now(self) {
        let result = async {
            let mut admin = PgConnection::connect(&self.admin_url).await?;
            admin
                .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
                .await?;
            admin.close().await
        }
        .await;
        if let Err(e) = result {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// `url` with its database (path) replaced by `name`, keeping user, host, port and query.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (scheme, rest) = base
        .split_once("://")
        .with_context(|| format!("not a URL: {url}"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let mut out = format!("{scheme}://{authority}/{name}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_only_the_database() -> anyhow::Result<()> {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x")?,
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "x")?,
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x")?, "postgres://h/x");
        Ok(())
    }
}

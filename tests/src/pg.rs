//! Throw-away PostgreSQL databases for tests: [`TestDatabase::create`] makes a fresh database on
//! the server named by `PARLEY_TEST_PG_URL` (default [`DEFAULT_ADMIN_URL`]); the guard drops it
//! when it goes out of scope, however the test ends (returned error, failed `assert!`, panic),
//! so a red run leaves no `parley_t_*` database behind. [`TestDatabase::drop_now`] does the same
//! from async code, for a caller that wants it gone at a precise point.
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

/// A database created for one test; dropped with the guard (see the module doc).
pub struct TestDatabase {
    /// Where it was created from (and is dropped through).
    admin_url: String,
    /// `parley_t_<random>`: the prefix marks leftovers of killed runs as safe to drop.
    name: String,
    /// The URL of the new database, for the store or the relay.
    url: String,
    /// Set once the database has been dropped, so the guard's `Drop` does not do it twice.
    dropped: bool,
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
            dropped: false,
        })
    }

    /// `postgres://.../parley_t_...`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name (`parley_t_...`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database now, best effort: a failure is printed, not raised, so it never hides
    /// the test's own result. Open pools on it need not be closed first: `WITH (FORCE)` ends
    /// their connections. The guard's own `Drop` then has nothing left to do.
    pub async fn drop_now(mut self) {
        self.dropped = true;
        if let Err(e) = drop_database(&self.admin_url, &self.name).await {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// Drops the database unless [`TestDatabase::drop_now`] already did, also while a panic unwinds.
///
/// `Drop` cannot `.await`, and blocking on the test's own runtime from inside it would panic or
/// deadlock (a current-thread runtime has no other thread to run the query), so the drop runs on
/// a short-lived std thread with its own runtime, and the guard waits for it: the test process
/// may exit right after the last test, and a drop still in flight would then be lost.
impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        self.dropped = true;
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropper = std::thread::Builder::new()
            .name(format!("drop {name}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(drop_database(&admin_url, &name))
            });
        let result = match dropper {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the dropping thread panicked"))),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            eprintln!("could not drop test database {}: {e:#}", self.name);
        }
    }
}

/// `DROP DATABASE IF EXISTS name WITH (FORCE)` through a fresh admin connection: `IF EXISTS`
/// makes a second drop harmless, `FORCE` (PostgreSQL 13+) ends connections still open on it.
async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("connecting to {admin_url}"))?;
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .with_context(|| format!("DROP DATABASE {name}"))?;
    admin.close().await?;
    Ok(())
}

/// Whether a database of this name exists on the admin server (for checking that guards clean
/// up after themselves).
pub async fn database_exists(name: &str) -> anyhow::Result<bool> {
    let admin_url = admin_url();
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .with_context(|| format!("connecting to {admin_url}"))?;
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await?;
    admin.close().await?;
    Ok(found.is_some())
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

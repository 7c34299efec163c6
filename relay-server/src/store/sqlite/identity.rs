//! The SQLite side of visitors' tokens and identities (see [`crate::store::Identified`]): one
//! token row per browser, one visitor per user id and site, an anonymous browser's history
//! merged into the user's in one transaction.

use sqlx::Row;

use super::{conversation_from_row, SqliteStore, CONVERSATION_COLUMNS};
use crate::identity::Verified;
use crate::store::{
    new_id, now_ms, Identified, StoreError, StoreResult, VisitorProfile, VisitorRecord,
    PROFILE_CONVERSATIONS,
};

/// A visitor row's identity columns read back (see [`crate::store::identity_from_db`]).
pub(super) fn identity_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<Option<Verified>> {
    crate::store::identity_from_db(
        row.try_get("user_id")?,
        row.try_get("name")?,
        row.try_get("email")?,
        row.try_get("attributes")?,
    )
}

impl SqliteStore {
    pub(super) async fn create_visitor_impl(
        &self,
        site: &str,
        token_hash: &str,
    ) -> StoreResult<VisitorRecord> {
        let id = new_id();
        let now = now_ms();
        let mut held = self.write.acquire().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *held, "BEGIN IMMEDIATE").await?;
        insert_visitor(&mut tx, &id, site, token_hash, now).await?;
        insert_token(&mut tx, token_hash, &id, site, now).await?;
        tx.commit().await?;
        Ok(VisitorRecord {
            id,
            site: site.to_owned(),
            user_id: None,
            token_seen_at: now,
        })
    }

    pub(super) async fn visitor_by_token_impl(
        &self,
        site: &str,
        token_hash: &str,
    ) -> StoreResult<Option<VisitorRecord>> {
        let row = sqlx::query(
            "SELECT v.id, v.site, v.user_id, t.last_seen_at FROM visitor_tokens t
             JOIN visitors v ON v.id = t.visitor_id WHERE t.token_hash = ? AND t.site = ?",
        )
        .bind(token_hash)
        .bind(site)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok(VisitorRecord {
                id: r.try_get("id")?,
                site: r.try_get("site")?,
                user_id: r.try_get("user_id")?,
                token_seen_at: r.try_get("last_seen_at")?,
            })
        })
        .transpose()
    }

    pub(super) async fn touch_visitor_token_impl(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("UPDATE visitor_tokens SET last_seen_at = ? WHERE token_hash = ?")
            .bind(now_ms())
            .bind(token_hash)
            .execute(&mut *self.write.acquire().await?)
            .await?;
        Ok(())
    }

    pub(super) async fn identify_visitor_impl(
        &self,
        site: &str,
        visitor_id: Option<&str>,
        token_hash: &str,
        identity: &Verified,
    ) -> StoreResult<(VisitorRecord, Identified)> {
        let attributes = serde_json::to_string(&identity.attributes)
            .map_err(|e| StoreError::Corrupt(format!("visitor attributes: {e}")))?;
        let now = now_ms();
        let mut held = self.write.acquire().await?;
        // The write lock from the first statement: nothing changes between the reads and writes.
        let mut tx = sqlx::Connection::begin_with(&mut *held, "BEGIN IMMEDIATE").await?;
        // The browser's visitor and who it is signed in as; None for a browser never seen.
        let device = match visitor_id {
            Some(id) => {
                let Some(user) = sqlx::query_scalar::<_, Option<String>>(
                    "SELECT user_id FROM visitors WHERE id = ? AND site = ?",
                )
                .bind(id)
                .bind(site)
                .fetch_optional(&mut *tx)
                .await?
                else {
                    tx.rollback().await?;
                    return Err(StoreError::NotFound);
                };
                Some((id, user))
            }
            None => None,
        };
        let owner = sqlx::query_scalar::<_, String>(
            "SELECT id FROM visitors WHERE site = ? AND user_id = ?",
        )
        .bind(site)
        .bind(&identity.user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let (target, how) = match (owner, device) {
            (Some(o), Some((d, _))) if o == d => (o, Identified::Same),
            (None, None) => {
                // A person first seen, on a browser first seen.
                let id = new_id();
                insert_visitor(&mut tx, &id, site, token_hash, now).await?;
                insert_token(&mut tx, token_hash, &id, site, now).await?;
                (id, Identified::Claimed)
            }
            (Some(o), None) => {
                insert_token(&mut tx, token_hash, &o, site, now).await?;
                (o, Identified::Added)
            }
            (None, Some((d, None))) => (d.to_owned(), Identified::Claimed),
            (None, Some((_, Some(_)))) => {
                // A shared browser: the user gets a visitor of their own, only this token moves.
                let id = new_id();
                insert_visitor(&mut tx, &id, site, &format!("identity:{id}"), now).await?;
                move_token(&mut tx, token_hash, &id).await?;
                (id, Identified::Switched)
            }
            (Some(o), Some((_, Some(_)))) => {
                move_token(&mut tx, token_hash, &o).await?;
                (o, Identified::Switched)
            }
            (Some(o), Some((d, None))) => {
                // The anonymous history joins the user's: rows move, nothing is copied.
                for sql in [
                    "UPDATE conversations SET visitor_id = ?1 WHERE visitor_id = ?2",
                    "UPDATE visitor_tokens SET visitor_id = ?1 WHERE visitor_id = ?2",
                ] {
                    sqlx::query(sql).bind(&o).bind(d).execute(&mut *tx).await?;
                }
                sqlx::query("DELETE FROM visitors WHERE id = ?")
                    .bind(d)
                    .execute(&mut *tx)
                    .await?;
                (o, Identified::Merged)
            }
        };
        sqlx::query(
            "UPDATE visitors SET user_id = ?, name = ?, email = ?, attributes = ?, verified_at = ?
             WHERE id = ?",
        )
        .bind(&identity.user_id)
        .bind(&identity.name)
        .bind(&identity.email)
        .bind(&attributes)
        .bind(now)
        .bind(&target)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE visitor_tokens SET last_seen_at = ? WHERE token_hash = ?")
            .bind(now)
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((
            VisitorRecord {
                id: target,
                site: site.to_owned(),
                user_id: Some(identity.user_id.clone()),
                token_seen_at: now,
            },
            how,
        ))
    }

    pub(super) async fn visitor_profile_impl(
        &self,
        visitor_id: &str,
    ) -> StoreResult<Option<VisitorProfile>> {
        let Some(row) = sqlx::query(
            "SELECT id, site, created_at, user_id, name, email, attributes, verified_at
             FROM visitors WHERE id = ?",
        )
        .bind(visitor_id)
        .fetch_optional(&self.read)
        .await?
        else {
            return Ok(None);
        };
        let conversations = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE visitor_id = ?
             ORDER BY created_at DESC, id DESC LIMIT ?"
        ))
        .bind(visitor_id)
        .bind(PROFILE_CONVERSATIONS)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(conversation_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(VisitorProfile {
            id: row.try_get("id")?,
            site: row.try_get("site")?,
            created_at: row.try_get("created_at")?,
            identity: identity_from_row(&row)?,
            verified_at: row.try_get("verified_at")?,
            conversations,
        }))
    }
}

/// Points one browser's token at visitor `to`.
async fn move_token(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    token_hash: &str,
    to: &str,
) -> StoreResult<()> {
    sqlx::query("UPDATE visitor_tokens SET visitor_id = ? WHERE token_hash = ?")
        .bind(to)
        .bind(token_hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A visitor row; `token_hash` is the legacy `visitors.token_hash` (the first browser's, or a
/// placeholder: `visitor_tokens` is what is read).
async fn insert_visitor(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: &str,
    site: &str,
    token_hash: &str,
    now: i64,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO visitors (id, site, token_hash, created_at) VALUES (?, ?, ?, ?)")
        .bind(id)
        .bind(site)
        .bind(token_hash)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// One browser's token leading to `visitor_id`, used now.
async fn insert_token(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    token_hash: &str,
    visitor_id: &str,
    site: &str,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO visitor_tokens (token_hash, visitor_id, site, created_at, last_seen_at)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(token_hash)
    .bind(visitor_id)
    .bind(site)
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

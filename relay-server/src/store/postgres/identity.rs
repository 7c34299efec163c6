//! The PostgreSQL side of visitors' tokens and identities (see [`crate::store::Identified`]).
//!
//! Several nodes share the database: identifying locks the browser's visitor row first, then
//! the user's row when it exists. Two browsers proving the same new user at once both find no
//! user row; the unique index `visitors_user` lets one claim it and fails the other, which
//! then runs again and merges into the winner.

use sqlx::{Postgres, Row, Transaction};

use super::{conversation_from_row, PgStore, CONVERSATION_COLUMNS};
use crate::identity::Verified;
use crate::store::{
    new_id, now_ms, Identified, StoreError, StoreResult, VisitorProfile, VisitorRecord,
    PROFILE_CONVERSATIONS,
};

/// A visitor row's identity columns read back (see [`crate::store::identity_from_db`]).
pub(super) fn identity_from_row(row: &sqlx::postgres::PgRow) -> StoreResult<Option<Verified>> {
    crate::store::identity_from_db(
        row.try_get("user_id")?,
        row.try_get("name")?,
        row.try_get("email")?,
        row.try_get("attributes")?,
    )
}

impl PgStore {
    pub(super) async fn create_visitor_impl(
        &self,
        site: &str,
        token_hash: &str,
    ) -> StoreResult<VisitorRecord> {
        let id = new_id();
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
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
             JOIN visitors v ON v.id = t.visitor_id WHERE t.token_hash = $1 AND t.site = $2",
        )
        .bind(token_hash)
        .bind(site)
        .fetch_optional(&self.pool)
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
        sqlx::query("UPDATE visitor_tokens SET last_seen_at = $1 WHERE token_hash = $2")
            .bind(now_ms())
            .bind(token_hash)
            .execute(&self.pool)
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
        match self
            .identify_once(site, visitor_id, token_hash, identity)
            .await
        {
            // Another node claimed the same new user a moment ago: now there is a user row.
            Err(StoreError::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                self.identify_once(site, visitor_id, token_hash, identity)
                    .await
            }
            other => other,
        }
    }

    async fn identify_once(
        &self,
        site: &str,
        visitor_id: Option<&str>,
        token_hash: &str,
        identity: &Verified,
    ) -> StoreResult<(VisitorRecord, Identified)> {
        let attributes = serde_json::to_string(&identity.attributes)
            .map_err(|e| StoreError::Corrupt(format!("visitor attributes: {e}")))?;
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        // The browser's visitor and who it is signed in as; None for a browser never seen.
        let device = match visitor_id {
            Some(id) => {
                let Some(user) = sqlx::query_scalar::<_, Option<String>>(
                    "SELECT user_id FROM visitors WHERE id = $1 AND site = $2 FOR UPDATE",
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
            "SELECT id FROM visitors WHERE site = $1 AND user_id = $2 FOR UPDATE",
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
                    "UPDATE conversations SET visitor_id = $1 WHERE visitor_id = $2",
                    "UPDATE visitor_tokens SET visitor_id = $1 WHERE visitor_id = $2",
                ] {
                    sqlx::query(sql).bind(&o).bind(d).execute(&mut *tx).await?;
                }
                sqlx::query("DELETE FROM visitors WHERE id = $1")
                    .bind(d)
                    .execute(&mut *tx)
                    .await?;
                (o, Identified::Merged)
            }
        };
        sqlx::query(
            "UPDATE visitors SET user_id = $1, name = $2, email = $3, attributes = $4,
                 verified_at = $5 WHERE id = $6",
        )
        .bind(&identity.user_id)
        .bind(&identity.name)
        .bind(&identity.email)
        .bind(&attributes)
        .bind(now)
        .bind(&target)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE visitor_tokens SET last_seen_at = $1 WHERE token_hash = $2")
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
             FROM visitors WHERE id = $1",
        )
        .bind(visitor_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let conversations = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE visitor_id = $1
             ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(visitor_id)
        .bind(PROFILE_CONVERSATIONS)
        .fetch_all(&self.pool)
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
    tx: &mut Transaction<'_, Postgres>,
    token_hash: &str,
    to: &str,
) -> StoreResult<()> {
    sqlx::query("UPDATE visitor_tokens SET visitor_id = $1 WHERE token_hash = $2")
        .bind(to)
        .bind(token_hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A visitor row; `token_hash` is the legacy `visitors.token_hash` (the first browser's, or a
/// placeholder: `visitor_tokens` is what is read).
async fn insert_visitor(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    site: &str,
    token_hash: &str,
    now: i64,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO visitors (id, site, token_hash, created_at) VALUES ($1, $2, $3, $4)")
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
    tx: &mut Transaction<'_, Postgres>,
    token_hash: &str,
    visitor_id: &str,
    site: &str,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO visitor_tokens (token_hash, visitor_id, site, created_at, last_seen_at)
         VALUES ($1, $2, $3, $4, $5)",
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

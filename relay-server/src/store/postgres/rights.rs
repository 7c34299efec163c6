//! The PostgreSQL side of the visitor's data rights (see [`crate::store::rights`]): export,
//! erase, retention and the audit log.
//!
//! Several nodes share the database, so an erasure is one transaction that first locks the
//! visitor's row and their conversations (in id order, the order appends lock them): appends
//! racing it either committed before (and are erased with the rest) or wait and then find no
//! conversation. After it, no node can read the visitor's rows: no node caches them.
//!
//! On disk, a deleted row stays in its heap page until `VACUUM` marks the space reusable and a
//! later write overwrites it (and in the WAL segments until they are recycled); `VACUUM FULL`
//! rewrites the table. The relay does not run either: autovacuum reclaims the space in time,
//! and an operator who must prove on-disk removal runs `VACUUM FULL` (see ARCHITECTURE.md).

use sqlx::{Postgres, Row, Transaction};

use super::{conversation_from_row, gap_from_row, PgStore, CONVERSATION_COLUMNS};
use crate::store::rights::{detail, ERASE_VISITOR, RETENTION};
use crate::store::{
    new_id, now_ms, AuditRecord, ConversationData, Erased, Store, StoreResult, VisitorData,
};

/// The conversations a retention pass takes (see the SQLite twin): locked, so an append or a
/// rating racing the pass waits for it and then finds nothing; `SKIP LOCKED` so two nodes'
/// passes take different ones instead of waiting for each other.
const EXPIRING: &str = "SELECT id FROM conversations WHERE site = $1 AND status = 'closed'
     AND updated_at < $2 ORDER BY updated_at, id LIMIT $3 FOR UPDATE SKIP LOCKED";

impl PgStore {
    pub(super) async fn visitor_data_impl(
        &self,
        visitor_id: &str,
    ) -> StoreResult<Option<VisitorData>> {
        let Some(visitor) = sqlx::query(
            "SELECT id, site, created_at, user_id, name, email, attributes,
                 (SELECT COUNT(*) FROM visitor_tokens t WHERE t.visitor_id = visitors.id) AS browsers
             FROM visitors WHERE id = $1",
        )
            .bind(visitor_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS}, rating_comment, rated_at FROM conversations
             WHERE visitor_id = $1 ORDER BY created_at, id"
        ))
        .bind(visitor_id)
        .fetch_all(&self.pool)
        .await?;
        let mut conversations = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = conversation_from_row(row)?;
            let events = self.events_after(&record.id, 0, i64::MAX).await?;
            let gaps = sqlx::query(
                "SELECT site, conversation_id, seq, kind, question, entry_id, entry_title, page_url, at
                 FROM knowledge_gaps WHERE conversation_id = $1 ORDER BY seq, kind",
            )
            .bind(&record.id.0)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(gap_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
            conversations.push(ConversationData {
                rating_comment: row.try_get("rating_comment")?,
                rated_at: row.try_get("rated_at")?,
                record,
                events,
                gaps,
            });
        }
        Ok(Some(VisitorData {
            id: visitor.try_get("id")?,
            site: visitor.try_get("site")?,
            created_at: visitor.try_get("created_at")?,
            identity: super::identity::identity_from_row(&visitor)?,
            browsers: visitor.try_get("browsers")?,
            conversations,
        }))
    }

    pub(super) async fn erase_visitor_impl(
        &self,
        visitor_id: &str,
        actor: &str,
    ) -> StoreResult<Option<Erased>> {
        let mut tx = self.pool.begin().await?;
        let Some(site) =
            sqlx::query_scalar::<_, String>("SELECT site FROM visitors WHERE id = $1 FOR UPDATE")
                .bind(visitor_id)
                .fetch_optional(&mut *tx)
                .await?
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM conversations WHERE visitor_id = $1 ORDER BY id FOR UPDATE",
        )
        .bind(visitor_id)
        .fetch_all(&mut *tx)
        .await?;
        let gaps = sqlx::query("DELETE FROM knowledge_gaps WHERE conversation_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM queue_waits WHERE conversation_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let events = sqlx::query("DELETE FROM events WHERE conversation_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let conversations = sqlx::query("DELETE FROM conversations WHERE visitor_id = $1")
            .bind(visitor_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM visitor_tokens WHERE visitor_id = $1")
            .bind(visitor_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM visitors WHERE id = $1")
            .bind(visitor_id)
            .execute(&mut *tx)
            .await?;
        let erased = Erased {
            site,
            conversations,
            events,
            gaps,
        };
        insert_audit(&mut tx, actor, ERASE_VISITOR, visitor_id, &erased).await?;
        tx.commit().await?;
        Ok(Some(erased))
    }

    pub(super) async fn expire_closed_impl(
        &self,
        site: &str,
        closed_before: i64,
        limit: i64,
    ) -> StoreResult<Erased> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(EXPIRING)
            .bind(site)
            .bind(closed_before)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        let mut erased = Erased {
            site: site.to_owned(),
            ..Erased::default()
        };
        if ids.is_empty() {
            tx.rollback().await?;
            return Ok(erased);
        }
        erased.gaps = sqlx::query("DELETE FROM knowledge_gaps WHERE conversation_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM queue_waits WHERE conversation_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        erased.events = sqlx::query("DELETE FROM events WHERE conversation_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        erased.conversations = sqlx::query("DELETE FROM conversations WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        insert_audit(&mut tx, RETENTION, RETENTION, site, &erased).await?;
        tx.commit().await?;
        Ok(erased)
    }

    pub(super) async fn audit_log_impl(&self, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        sqlx::query(
            "SELECT at, actor, action, subject, detail FROM audit_log
             ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(AuditRecord {
                at: r.try_get("at")?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                subject: r.try_get("subject")?,
                detail: r.try_get("detail")?,
            })
        })
        .collect()
    }
}

async fn insert_audit(
    tx: &mut Transaction<'_, Postgres>,
    actor: &str,
    action: &str,
    subject: &str,
    erased: &Erased,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, action, subject, detail)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_id())
    .bind(now_ms())
    .bind(actor)
    .bind(action)
    .bind(subject)
    .bind(detail(erased))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

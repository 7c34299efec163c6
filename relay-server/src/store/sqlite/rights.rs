//! The SQLite side of the visitor's data rights (see [`crate::store::rights`]): export, erase,
//! retention and the audit log.
//!
//! Erasing must also leave nothing in the files: SQLite keeps deleted rows in free space and
//! free pages, and older page images in the WAL. Every writing connection runs with
//! `secure_delete = ON` (set in [`super::SqliteStore::connect`] and [`super::writer::open`]), so
//! freed cells and pages are zeroed when freed, and an erasure ends with a `TRUNCATE`
//! checkpoint that copies the zeroed pages into the database file and empties the WAL.

use sqlx::Row;

use super::{conversation_from_row, gap_from_row, SqliteStore, CONVERSATION_COLUMNS};
use crate::store::rights::{detail, ERASE_VISITOR, RETENTION};
use crate::store::{
    new_id, now_ms, AuditRecord, ConversationData, Erased, Store, StoreResult, VisitorData,
};

/// The conversations a retention pass takes: one site's closed ones last changed before a time,
/// oldest first, at most a limit. Every statement of the pass uses it, so all of them delete
/// the same conversations' rows (the transaction holds the write lock: nothing changes between).
const EXPIRING: &str = "SELECT id FROM conversations WHERE site = ?1 AND status = 'closed'
     AND updated_at < ?2 ORDER BY updated_at, id LIMIT ?3";

impl SqliteStore {
    pub(super) async fn visitor_data_impl(
        &self,
        visitor_id: &str,
    ) -> StoreResult<Option<VisitorData>> {
        let Some(visitor) = sqlx::query(
            "SELECT id, site, created_at, user_id, name, email, attributes,
                 (SELECT COUNT(*) FROM visitor_tokens t WHERE t.visitor_id = visitors.id) AS browsers
             FROM visitors WHERE id = ?",
        )
        .bind(visitor_id)
        .fetch_optional(&self.read)
        .await?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS}, rating_comment, rated_at FROM conversations
             WHERE visitor_id = ? ORDER BY created_at, id"
        ))
        .bind(visitor_id)
        .fetch_all(&self.read)
        .await?;
        let mut conversations = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = conversation_from_row(row)?;
            let events = self.events_after(&record.id, 0, i64::MAX).await?;
            let gaps = sqlx::query(
                "SELECT site, conversation_id, seq, kind, question, entry_id, entry_title, page_url, at
                 FROM knowledge_gaps WHERE conversation_id = ? ORDER BY seq, kind",
            )
            .bind(&record.id.0)
            .fetch_all(&self.read)
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
        let mut held = self.write.acquire().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *held, "BEGIN IMMEDIATE").await?;
        let Some(site) = sqlx::query_scalar::<_, String>("SELECT site FROM visitors WHERE id = ?")
            .bind(visitor_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        const THEIRS: &str = "SELECT id FROM conversations WHERE visitor_id = ?1";
        let gaps = sqlx::query(&format!(
            "DELETE FROM knowledge_gaps WHERE conversation_id IN ({THEIRS})"
        ))
        .bind(visitor_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(&format!(
            "DELETE FROM queue_waits WHERE conversation_id IN ({THEIRS})"
        ))
        .bind(visitor_id)
        .execute(&mut *tx)
        .await?;
        let events = sqlx::query(&format!(
            "DELETE FROM events WHERE conversation_id IN ({THEIRS})"
        ))
        .bind(visitor_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let conversations = sqlx::query("DELETE FROM conversations WHERE visitor_id = ?")
            .bind(visitor_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM visitor_tokens WHERE visitor_id = ?")
            .bind(visitor_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM visitors WHERE id = ?")
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
        // The zeroed pages into the file, and the WAL (which still holds the old page images)
        // emptied. Busy (a reader's snapshot, the checkpointer's own pass) leaves the old frames
        // until the next checkpoint overwrites them: said in the log, not an error.
        // It waits for readers on older snapshots while holding the write turn, so under a short
        // busy timeout (appends wait behind it), then the connection's usual one again.
        sqlx::query("PRAGMA busy_timeout = 1000")
            .execute(&mut *held)
            .await?;
        let checkpoint: Result<(i64, i64, i64), sqlx::Error> =
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&mut *held)
                .await;
        sqlx::query("PRAGMA busy_timeout = 10000")
            .execute(&mut *held)
            .await?;
        match checkpoint {
            Ok((0, _, _)) => {}
            Ok(_) => tracing::warn!("erasure: the WAL could not be emptied now (busy)"),
            Err(e) => tracing::warn!(error = %e, "erasure: the WAL could not be emptied now"),
        }
        Ok(Some(erased))
    }

    pub(super) async fn expire_closed_impl(
        &self,
        site: &str,
        closed_before: i64,
        limit: i64,
    ) -> StoreResult<Erased> {
        let mut held = self.write.acquire().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *held, "BEGIN IMMEDIATE").await?;
        let mut erased = Erased {
            site: site.to_owned(),
            ..Erased::default()
        };
        for (table, count) in [
            ("knowledge_gaps", Some(&mut erased.gaps)),
            ("queue_waits", None),
            ("events", Some(&mut erased.events)),
        ] {
            let n = sqlx::query(&format!(
                "DELETE FROM {table} WHERE conversation_id IN ({EXPIRING})"
            ))
            .bind(site)
            .bind(closed_before)
            .bind(limit)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if let Some(count) = count {
                *count = n;
            }
        }
        erased.conversations = sqlx::query(&format!(
            "DELETE FROM conversations WHERE id IN ({EXPIRING})"
        ))
        .bind(site)
        .bind(closed_before)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if erased.conversations > 0 {
            insert_audit(&mut tx, RETENTION, RETENTION, site, &erased).await?;
        }
        tx.commit().await?;
        Ok(erased)
    }

    pub(super) async fn audit_log_impl(&self, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        sqlx::query(
            "SELECT at, actor, action, subject, detail FROM audit_log
             ORDER BY at DESC, id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.read)
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
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    actor: &str,
    action: &str,
    subject: &str,
    erased: &Erased,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?, ?)",
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

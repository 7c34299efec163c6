//! The PostgreSQL side of agents managed from the console: create, change (with the last-admin
//! rule and the audit line in the same transaction).

use super::{agent_from_row, PgStore};
use crate::store::{
    new_id, now_ms, sites_to_db, AgentAudit, AgentChange, AgentRecord, NewAgent, StoreError,
    StoreResult, AGENT_COLUMNS,
};

impl PgStore {
    pub(super) async fn create_agent_impl(
        &self,
        new: &NewAgent,
        audit: &AgentAudit,
    ) -> StoreResult<AgentRecord> {
        let mut tx = self.pool.begin().await?;
        let taken: Option<i32> = sqlx::query_scalar("SELECT 1 FROM agents WHERE username = $1")
            .bind(&new.username)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            tx.rollback().await?;
            return Err(StoreError::UsernameTaken);
        }
        let row = sqlx::query(&format!(
            "INSERT INTO agents (id, username, display_name, password_hash, created_at, admin,
                 managed_by, sites, max_chats)
             VALUES ($1, $2, $3, $4, $5, $6, 'console', $7, $8)
             RETURNING {AGENT_COLUMNS}"
        ))
        .bind(new_id())
        .bind(&new.username)
        .bind(&new.display_name)
        .bind(&new.password_hash)
        .bind(now_ms())
        .bind(new.admin)
        .bind(sites_to_db(&new.sites))
        .bind(new.max_chats.map(i64::from))
        .fetch_one(&mut *tx)
        .await?;
        let record = agent_from_row(&row)?;
        insert_audit(&mut tx, audit, &record.id).await?;
        tx.commit().await?;
        Ok(record)
    }

    pub(super) async fn update_agent_impl(
        &self,
        agent_id: &str,
        change: &AgentChange,
        audit: Option<&AgentAudit>,
    ) -> StoreResult<(AgentRecord, bool)> {
        let mut tx = self.pool.begin().await?;
        // Two admins demoting each other at once on two nodes: the enabled admins' rows are
        // locked first, so the second waits and then counts the first one's change.
        sqlx::query("SELECT id FROM agents WHERE admin AND NOT disabled ORDER BY id FOR UPDATE")
            .fetch_all(&mut *tx)
            .await?;
        let Some(before) = sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1 FOR UPDATE"
        ))
        .bind(agent_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            tx.rollback().await?;
            return Err(StoreError::NoSuchAgent);
        };
        let before = agent_from_row(&before)?;
        let disabled = change.disabled.unwrap_or(before.disabled);
        let disabled_by = match change.disabled {
            Some(true) if !before.disabled => audit.map(|a| a.actor.clone()),
            Some(false) => None,
            _ => before.disabled_by.clone(),
        };
        let sites = change.sites.clone().unwrap_or(before.sites.clone());
        let max_chats = change.max_chats.unwrap_or(before.max_chats);
        let row = sqlx::query(&format!(
            "UPDATE agents SET display_name = $1, password_hash = $2, admin = $3, disabled = $4,
                 disabled_by = $5, sites = $6, max_chats = $7
             WHERE id = $8 RETURNING {AGENT_COLUMNS}"
        ))
        .bind(change.display_name.as_ref().unwrap_or(&before.display_name))
        .bind(
            change
                .password_hash
                .as_ref()
                .unwrap_or(&before.password_hash),
        )
        .bind(change.admin.unwrap_or(before.admin))
        .bind(disabled)
        .bind(disabled_by)
        .bind(sites_to_db(&sites))
        .bind(max_chats.map(i64::from))
        .bind(agent_id)
        .fetch_one(&mut *tx)
        .await?;
        let after = agent_from_row(&row)?;
        if before.admin && !before.disabled && (!after.admin || after.disabled) {
            let admins: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE admin AND NOT disabled")
                    .fetch_one(&mut *tx)
                    .await?;
            if admins == 0 {
                tx.rollback().await?;
                return Err(StoreError::LastAdmin);
            }
        }
        let mut ended = false;
        if (after.disabled && !before.disabled) || change.password_hash.is_some() {
            ended = sqlx::query("DELETE FROM sessions WHERE agent_id = $1")
                .bind(agent_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
        }
        if let Some(audit) = audit {
            insert_audit(&mut tx, audit, agent_id).await?;
        }
        tx.commit().await?;
        Ok((after, ended))
    }
}

async fn insert_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    audit: &AgentAudit,
    subject: &str,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_id())
    .bind(now_ms())
    .bind(&audit.actor)
    .bind(audit.action)
    .bind(subject)
    .bind(&audit.detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

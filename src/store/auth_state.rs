//! Authorization-server state in the database (table `auth_state`), so that
//! any instance behind a load balancer can finish a flow another began.
//!
//! Rows are `(kind, key) → value` with an expiry, an optional family (refresh
//! token chains) and a small state: 0 live, 1 used, 2 revoked.

use sqlx::Row;

use super::changes::Topic;
use super::write::with_tx;
use super::{Db, Store, StoreResult};
use crate::fhir::instant::{now_ms, Millis};

/// A row's lifecycle state.
pub const LIVE: i64 = 0;
pub const USED: i64 = 1;
pub const REVOKED: i64 = 2;

/// One stored record.
#[derive(Debug, Clone)]
pub struct AuthRecord {
    pub value: String,
    pub family: Option<String>,
    pub state: i64,
    pub expires_ms: Millis,
}

/// Runs `$body` with `$c` bound to the pool that takes writes.
macro_rules! with_writer {
    ($db:expr, $c:ident => $body:expr) => {
        match $db {
            Db::Sqlite { write, .. } => {
                let $c = write;
                $body
            }
            Db::Postgres(pool) => {
                let $c = pool;
                $body
            }
        }
    };
}

impl Store {
    /// Inserts a record; `false` when `(kind, key)` exists already (replay).
    pub async fn auth_insert(
        &self,
        kind: &str,
        key: &str,
        value: &str,
        family: Option<&str>,
        expires_ms: Millis,
    ) -> StoreResult<bool> {
        let sql = "INSERT INTO auth_state (kind, key, value, family, state, expires_ms) \
                   VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (kind, key) DO NOTHING";
        let n = with_writer!(&self.db, pool => {
            sqlx::query(sql)
                .bind(kind)
                .bind(key)
                .bind(value)
                .bind(family)
                .bind(expires_ms)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Records a revoked access token (`kind`, its `jti`) and bumps the
    /// revocation counter in the same transaction, so that every instance's
    /// cache of checked tokens learns of it.
    pub async fn auth_revoke_token(
        &self,
        kind: &str,
        jti: &str,
        expires_ms: Millis,
    ) -> StoreResult<()> {
        let sql = "INSERT INTO auth_state (kind, key, value, family, state, expires_ms) \
                   VALUES ($1, $2, '', NULL, 0, $3) ON CONFLICT (kind, key) DO NOTHING";
        let mut tx = self.begin().await?;
        with_tx!(tx, c, pg => {
            sqlx::query(sql)
                .bind(kind)
                .bind(jti)
                .bind(expires_ms)
                .execute(&mut *c)
                .await?;
        });
        tx.touch(Topic::Revocation);
        tx.commit().await
    }

    /// Whether a record exists, read through the read pool: a new read sees
    /// every commit made before it starts (WAL), so a revocation is seen by
    /// the next request, and the per-request check does not queue behind
    /// the single writer connection (where audit records are committed).
    pub async fn auth_exists(&self, kind: &str, key: &str) -> StoreResult<bool> {
        let sql = "SELECT 1 FROM auth_state WHERE kind = $1 AND key = $2";
        let found = super::with_db!(&self.db, pool => {
            sqlx::query(sql)
                .bind(kind)
                .bind(key)
                .fetch_optional(pool)
                .await?
                .is_some()
        });
        Ok(found)
    }

    /// Reads a record (expired ones included; callers check `expires_ms`).
    pub async fn auth_get(&self, kind: &str, key: &str) -> StoreResult<Option<AuthRecord>> {
        let sql =
            "SELECT value, family, state, expires_ms FROM auth_state WHERE kind = $1 AND key = $2";
        // Writes go through the writer so that a read right after sees them.
        let rec = with_writer!(&self.db, pool => {
            sqlx::query(sql)
                .bind(kind)
                .bind(key)
                .fetch_optional(pool)
                .await?
                .map(|r| -> Result<AuthRecord, sqlx::Error> {
                    Ok(AuthRecord {
                        value: r.try_get(0)?,
                        family: r.try_get(1)?,
                        state: r.try_get(2)?,
                        expires_ms: r.try_get(3)?,
                    })
                })
                .transpose()?
        });
        Ok(rec)
    }

    /// Moves a live, unexpired record to `state` atomically; `false` when it
    /// was not live (a second use of a code or refresh token).
    pub async fn auth_take(&self, kind: &str, key: &str, state: i64) -> StoreResult<bool> {
        let sql = "UPDATE auth_state SET state = $3 WHERE kind = $1 AND key = $2 AND state = 0 AND expires_ms > $4";
        let n = with_writer!(&self.db, pool => {
            sqlx::query(sql)
                .bind(kind)
                .bind(key)
                .bind(state)
                .bind(now_ms())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Replaces a record's value (a pending authorization after login).
    pub async fn auth_set_value(&self, kind: &str, key: &str, value: &str) -> StoreResult<bool> {
        let sql = "UPDATE auth_state SET value = $3 WHERE kind = $1 AND key = $2 AND state = 0";
        let n = with_writer!(&self.db, pool => {
            sqlx::query(sql).bind(kind).bind(key).bind(value).execute(pool).await?.rows_affected()
        });
        Ok(n == 1)
    }

    /// Revokes every record of a family (a refresh-token chain).
    pub async fn auth_revoke_family(&self, family: &str) -> StoreResult<u64> {
        let sql = "UPDATE auth_state SET state = 2 WHERE family = $1";
        let n = with_writer!(&self.db, pool => {
            sqlx::query(sql).bind(family).execute(pool).await?.rows_affected()
        });
        Ok(n)
    }

    /// Revokes a family (as [`Store::auth_revoke_family`]) and every access
    /// token recorded under it (rows of `access_kind`, keyed by `jti`), by
    /// adding a `revoked_kind` row per `jti` and bumping the revocation
    /// counter in the same transaction. Returns the access tokens revoked.
    pub async fn auth_revoke_family_tokens(
        &self,
        family: &str,
        access_kind: &str,
        revoked_kind: &str,
    ) -> StoreResult<u64> {
        let insert = "INSERT INTO auth_state (kind, key, value, family, state, expires_ms) \
                      SELECT $1, key, '', NULL, 0, expires_ms FROM auth_state \
                      WHERE kind = $2 AND family = $3 ON CONFLICT (kind, key) DO NOTHING";
        let update = "UPDATE auth_state SET state = 2 WHERE family = $1";
        let mut tx = self.begin().await?;
        let n = with_tx!(tx, c, pg => {
            let n = sqlx::query(insert)
                .bind(revoked_kind)
                .bind(access_kind)
                .bind(family)
                .execute(&mut *c)
                .await?
                .rows_affected();
            sqlx::query(update).bind(family).execute(&mut *c).await?;
            n
        });
        tx.touch(Topic::Revocation);
        tx.commit().await?;
        Ok(n)
    }

    /// Deletes records that expired before `before_ms`.
    pub async fn auth_purge(&self, before_ms: Millis) -> StoreResult<u64> {
        let sql = "DELETE FROM auth_state WHERE expires_ms < $1";
        let n = with_writer!(&self.db, pool => {
            sqlx::query(sql).bind(before_ms).execute(pool).await?.rows_affected()
        });
        Ok(n)
    }
}

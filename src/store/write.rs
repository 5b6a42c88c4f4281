//! Write transactions: read-for-update of the current version, then a new
//! version row, the pointer update and the index rows, committed together.

use sqlx::{AssertSqlSafe, Row};

use super::index_rows::{Cell, IndexRows, INDEX_TABLES};
use super::{Current, Db, StoreError, StoreResult};
use crate::fhir::instant::Millis;

/// Bound parameters per multi-row insert, under SQLite's and PostgreSQL's limits.
const MAX_BINDS_PER_INSERT: usize = 8_000;

/// An open write transaction. Dropping it without [`WriteTx::commit`] rolls back.
pub enum WriteTx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` with `$c` bound to the transaction's connection and `$pg`
/// telling whether it is PostgreSQL.
macro_rules! with_tx {
    ($tx:expr, $c:ident, $pg:ident => $body:expr) => {
        match $tx {
            WriteTx::Sqlite(t) => {
                let $c = &mut **t;
                #[allow(unused_variables)]
                let $pg = false;
                $body
            }
            WriteTx::Postgres(t) => {
                let $c = &mut **t;
                #[allow(unused_variables)]
                let $pg = true;
                $body
            }
        }
    };
}
pub(crate) use with_tx;

/// A version to store. The caller has decided the version number from
/// [`WriteTx::current`] within the same transaction.
#[derive(Debug)]
pub struct NewVersion<'a> {
    pub res_type: &'a str,
    pub res_id: &'a str,
    /// `Some` when the logical resource already has a row (from `current`).
    pub rid: Option<i64>,
    pub version: i64,
    pub last_updated: Millis,
    /// POST, PUT, PATCH or DELETE.
    pub method: &'a str,
    /// The resource JSON; `None` stores a delete tombstone.
    pub content: Option<&'a str>,
    pub index: &'a IndexRows,
}

/// Locks the resource row. (Joining the version table here would make
/// PostgreSQL re-check a stale joined row after waiting for the lock and
/// return nothing.)
const LOCK_SQLITE: &str = "SELECT rid, version, last_updated, deleted FROM resources \
     WHERE res_type = $1 AND res_id = $2";
const LOCK_PG: &str = "SELECT rid, version, last_updated, deleted FROM resources \
     WHERE res_type = $1 AND res_id = $2 FOR UPDATE";
const CONTENT: &str = "SELECT content FROM resource_versions WHERE rid = $1 AND version = $2";

impl WriteTx {
    pub(super) async fn begin(db: &Db) -> StoreResult<WriteTx> {
        Ok(match db {
            // IMMEDIATE takes the write lock now, so a read-then-write in this
            // transaction never fails on a snapshot another process moved.
            Db::Sqlite { write, .. } => WriteTx::Sqlite(write.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => WriteTx::Postgres(pool.begin().await?),
        })
    }

    pub async fn commit(self) -> StoreResult<()> {
        match self {
            WriteTx::Sqlite(t) => t.commit().await?,
            WriteTx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    /// The current version of `res_type/res_id`, locked against concurrent
    /// writers until this transaction ends.
    pub async fn current(&mut self, res_type: &str, res_id: &str) -> StoreResult<Option<Current>> {
        let row = with_tx!(self, c, pg => {
            sqlx::query(if pg { LOCK_PG } else { LOCK_SQLITE })
                .bind(res_type)
                .bind(res_id)
                .fetch_optional(&mut *c)
                .await?
                .map(|row| -> Result<Current, sqlx::Error> {
                    Ok(Current {
                        rid: row.try_get(0)?,
                        version: row.try_get(1)?,
                        last_updated: row.try_get(2)?,
                        deleted: row.try_get::<i64, _>(3)? != 0,
                        content: None,
                    })
                })
                .transpose()?
        });
        let Some(mut current) = row else {
            return Ok(None);
        };
        current.content = with_tx!(self, c, pg => {
            sqlx::query(CONTENT)
                .bind(current.rid)
                .bind(current.version)
                .fetch_one(&mut *c)
                .await?
                .try_get::<Option<String>, _>(0)?
        });
        Ok(Some(current))
    }

    /// Stores a new version and replaces the resource's index rows.
    pub async fn save(&mut self, v: NewVersion<'_>) -> StoreResult<()> {
        let deleted = i64::from(v.content.is_none());
        let rid: i64 = match v.rid {
            Some(rid) => {
                with_tx!(self, c, pg => {
                    sqlx::query("UPDATE resources SET version = $1, last_updated = $2, deleted = $3 WHERE rid = $4")
                        .bind(v.version)
                        .bind(v.last_updated)
                        .bind(deleted)
                        .bind(rid)
                        .execute(&mut *c)
                        .await?;
                    for table in INDEX_TABLES {
                        sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE rid = $1")))
                            .bind(rid)
                            .execute(&mut *c)
                            .await?;
                    }
                });
                rid
            }
            None => with_tx!(self, c, pg => {
                sqlx::query(
                    "INSERT INTO resources (res_type, res_id, version, last_updated, deleted) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING rid",
                )
                .bind(v.res_type)
                .bind(v.res_id)
                .bind(v.version)
                .bind(v.last_updated)
                .bind(deleted)
                .fetch_one(c)
                .await
                .map_err(StoreError::from_write)?
                .try_get(0)?
            }),
        };
        with_tx!(self, c, pg => {
            sqlx::query(
                "INSERT INTO resource_versions (rid, res_type, res_id, version, last_updated, method, content) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(rid)
            .bind(v.res_type)
            .bind(v.res_id)
            .bind(v.version)
            .bind(v.last_updated)
            .bind(v.method)
            .bind(v.content)
            .execute(c)
            .await
            .map_err(StoreError::from_write)?;
        });
        if v.content.is_some() {
            self.insert_index(rid, v.res_type, v.index).await?;
        }
        Ok(())
    }

    /// Replaces the index rows of resource `rid` (reindexing).
    pub async fn replace_index(
        &mut self,
        rid: i64,
        res_type: &str,
        index: &IndexRows,
    ) -> StoreResult<()> {
        with_tx!(self, c, pg => {
            for table in INDEX_TABLES {
                sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE rid = $1")))
                    .bind(rid)
                    .execute(&mut *c)
                    .await?;
            }
        });
        self.insert_index(rid, res_type, index).await
    }

    async fn insert_index(
        &mut self,
        rid: i64,
        res_type: &str,
        index: &IndexRows,
    ) -> StoreResult<()> {
        for table in index.tables() {
            if table.rows.is_empty() {
                continue;
            }
            let width = table.columns.len() + 2;
            let rows_per_insert = (MAX_BINDS_PER_INSERT / width).max(1);
            for chunk in table.rows.chunks(rows_per_insert) {
                let sql = insert_sql(table.name, table.columns, chunk.len());
                with_tx!(self, c, pg => {
                    let mut q = sqlx::query(AssertSqlSafe(sql));
                    for row in chunk {
                        q = q.bind(rid).bind(res_type);
                        for cell in row {
                            q = match cell {
                                Cell::Text(s) => q.bind(*s),
                                Cell::Int(i) => q.bind(*i),
                                Cell::Real(f) => q.bind(*f),
                                Cell::OptReal(f) => q.bind(*f),
                            };
                        }
                    }
                    q.execute(c).await?;
                });
            }
        }
        Ok(())
    }
}

/// `INSERT INTO table (rid, res_type, cols…) VALUES ($1, …), …` for `rows` rows.
/// Built from table and column names and counts only; every value is bound.
fn insert_sql(table: &str, columns: &[&str], rows: usize) -> String {
    let width = columns.len() + 2;
    let mut sql = format!(
        "INSERT INTO {table} (rid, res_type, {}) VALUES ",
        columns.join(", ")
    );
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..width {
            if col > 0 {
                sql.push_str(", ");
            }
            n += 1;
            sql.push('$');
            sql.push_str(&n.to_string());
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    #[test]
    fn insert_sql_numbers_every_placeholder() {
        assert_eq!(
            super::insert_sql("idx_uri", &["param", "value"], 2),
            "INSERT INTO idx_uri (rid, res_type, param, value) VALUES ($1, $2, $3, $4), ($5, $6, $7, $8)"
        );
    }
}

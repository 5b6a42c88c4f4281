//! Write transactions: read-for-update of the current version, then a new
//! version row, the pointer update and the index rows, committed together.

use std::collections::HashMap;

use sqlx::{AssertSqlSafe, Row};

use super::changes::{Topic, BUMP};
use super::index_rows::{Cell, IndexRows, Table, INDEX_TABLES};
use super::{Current, Db, Store, StoreError, StoreResult};
use crate::fhir::instant::Millis;

/// Bound parameters per multi-row insert, under SQLite's and PostgreSQL's limits.
pub(super) const MAX_BINDS_PER_INSERT: usize = 8_000;
/// Ids looked up (or rids deleted) per statement in the batch calls.
const MAX_IDS_PER_LOOKUP: usize = 1_000;

/// An open write transaction. Dropping it without [`WriteTx::commit`] rolls back.
pub struct WriteTx {
    pub(super) conn: TxConn,
    /// Counters to bump when this transaction commits.
    touched: Vec<Topic>,
    /// Resource versions saved in this transaction.
    saved: i64,
    /// The store it belongs to (its counters and statistics tracker).
    store: Store,
}

/// The backend's transaction.
pub(super) enum TxConn {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` with `$c` bound to the transaction's connection and `$pg`
/// telling whether it is PostgreSQL.
macro_rules! with_tx {
    ($tx:expr, $c:ident, $pg:ident => $body:expr) => {
        match &mut $tx.conn {
            $crate::store::write::TxConn::Sqlite(t) => {
                let $c = &mut **t;
                #[allow(unused_variables)]
                let $pg = false;
                $body
            }
            $crate::store::write::TxConn::Postgres(t) => {
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
    pub(super) fn is_pg(&self) -> bool {
        matches!(self.conn, TxConn::Postgres(_))
    }

    pub(super) async fn begin(store: &Store) -> StoreResult<WriteTx> {
        let conn = match &store.db {
            // IMMEDIATE takes the write lock now, so a read-then-write in this
            // transaction never fails on a snapshot another process moved.
            Db::Sqlite { write, .. } => TxConn::Sqlite(write.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => TxConn::Postgres(pool.begin().await?),
        };
        Ok(WriteTx {
            conn,
            touched: Vec::new(),
            saved: 0,
            store: store.clone(),
        })
    }

    /// Marks `topic` as changed by this transaction: its counter is bumped
    /// when it commits.
    pub(super) fn touch(&mut self, topic: Topic) {
        if !self.touched.contains(&topic) {
            self.touched.push(topic);
        }
    }

    /// Commits. The counters of the topics this transaction changed are
    /// bumped last, just before the commit, so their row locks (PostgreSQL)
    /// are the last taken and cannot close a cycle with resource locks.
    pub async fn commit(mut self) -> StoreResult<()> {
        let mut bumped = Vec::with_capacity(self.touched.len());
        for topic in std::mem::take(&mut self.touched) {
            let value: i64 = with_tx!(self, c, pg => {
                sqlx::query(BUMP)
                    .bind(topic.as_str())
                    .fetch_one(&mut *c)
                    .await?
                    .try_get(0)?
            });
            bumped.push((topic, value));
        }
        match self.conn {
            TxConn::Sqlite(t) => t.commit().await?,
            TxConn::Postgres(t) => t.commit().await?,
        }
        for (topic, value) in bumped {
            self.store.changes.observe(topic, value);
        }
        if let Db::Postgres(pool) = &self.store.db {
            if self.saved > 0 && self.store.stats.note(self.saved) {
                let rows = super::stats::analyze(pool).await;
                self.store.stats.done(rows);
            }
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

    /// The current versions of many resources of one type, locked like
    /// [`WriteTx::current`]; ids that do not exist are absent from the map.
    pub async fn current_many(
        &mut self,
        res_type: &str,
        ids: &[&str],
    ) -> StoreResult<HashMap<String, Current>> {
        let mut found: HashMap<String, Current> = HashMap::with_capacity(ids.len());
        for part in shaped_chunks(ids, MAX_IDS_PER_LOOKUP) {
            let rows = with_tx!(self, c, pg => {
                let sql = format!(
                    "SELECT rid, version, last_updated, deleted, res_id FROM resources \
                     WHERE res_type = {} AND res_id IN ({}){}",
                    placeholders(1, 1, pg),
                    placeholders(2, part.len(), pg),
                    if pg { " FOR UPDATE" } else { "" }
                );
                let mut q = sqlx::query(AssertSqlSafe(sql)).bind(res_type);
                for id in part {
                    q = q.bind(*id);
                }
                q.fetch_all(&mut *c)
                    .await?
                    .into_iter()
                    .map(|row| -> Result<(String, Current), sqlx::Error> {
                        Ok((
                            row.try_get(4)?,
                            Current {
                                rid: row.try_get(0)?,
                                version: row.try_get(1)?,
                                last_updated: row.try_get(2)?,
                                deleted: row.try_get::<i64, _>(3)? != 0,
                                content: None,
                            },
                        ))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            });
            if rows.is_empty() {
                continue;
            }
            let mut by_rid: HashMap<i64, String> = HashMap::with_capacity(rows.len());
            for (id, current) in rows {
                by_rid.insert(current.rid, id.clone());
                found.insert(id, current);
            }
            let rids: Vec<i64> = by_rid.keys().copied().collect();
            let contents = with_tx!(self, c, pg => {
                let sql = format!(
                    "SELECT v.rid, v.content FROM resource_versions v \
                     JOIN resources r ON r.rid = v.rid AND r.version = v.version \
                     WHERE r.rid IN ({})",
                    placeholders(1, rids.len(), pg)
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for rid in &rids {
                    q = q.bind(*rid);
                }
                q.fetch_all(&mut *c)
                    .await?
                    .into_iter()
                    .map(|row| -> Result<(i64, Option<String>), sqlx::Error> {
                        Ok((row.try_get(0)?, row.try_get(1)?))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            });
            for (rid, content) in contents {
                if let Some(current) = by_rid.get(&rid).and_then(|id| found.get_mut(id)) {
                    current.content = content;
                }
            }
        }
        Ok(found)
    }

    /// Stores a new version and replaces the resource's index rows.
    pub async fn save(&mut self, v: NewVersion<'_>) -> StoreResult<()> {
        self.save_many(std::slice::from_ref(&v)).await
    }

    /// Stores new versions of distinct resources and replaces their index
    /// rows, with a few multi-row statements for the whole batch (bulk
    /// import). Two versions of the same resource must not share a batch.
    pub async fn save_many(&mut self, versions: &[NewVersion<'_>]) -> StoreResult<()> {
        if versions.iter().any(|v| v.res_type == "Consent") {
            self.touch(Topic::Consent);
        }
        self.saved += versions.len() as i64;
        // New logical resources get their row (and rid) first.
        let fresh: Vec<&NewVersion> = versions.iter().filter(|v| v.rid.is_none()).collect();
        let mut new_rids: HashMap<(&str, &str), i64> = HashMap::with_capacity(fresh.len());
        for part in shaped_chunks(&fresh, MAX_BINDS_PER_INSERT / 6) {
            for (rid, v) in self.insert_resource_rows(part).await? {
                new_rids.insert((v.res_type, v.res_id), rid);
            }
        }
        let rid_of = |v: &NewVersion| -> StoreResult<i64> {
            v.rid
                .or_else(|| new_rids.get(&(v.res_type, v.res_id)).copied())
                .ok_or_else(|| StoreError::Setup("a new resource row returned no rid".into()))
        };
        // Existing resources: move the pointer, drop their old index rows.
        let existing: Vec<(i64, &NewVersion)> = versions
            .iter()
            .filter_map(|v| v.rid.map(|rid| (rid, v)))
            .collect();
        for (rid, v) in &existing {
            with_tx!(self, c, pg => {
                sqlx::query("UPDATE resources SET version = $1, last_updated = $2, deleted = $3 WHERE rid = $4")
                    .bind(v.version)
                    .bind(v.last_updated)
                    .bind(i64::from(v.content.is_none()))
                    .bind(*rid)
                    .execute(&mut *c)
                    .await?;
            });
        }
        let old: Vec<i64> = existing.iter().map(|(rid, _)| *rid).collect();
        self.delete_index(&old).await?;
        // The versions.
        for part in shaped_chunks(versions, MAX_BINDS_PER_INSERT / 7) {
            let sql = format!(
                "INSERT INTO resource_versions (rid, res_type, res_id, version, last_updated, method, content) \
                 VALUES {}",
                value_rows(7, part.len(), self.is_pg())
            );
            let rids = part
                .iter()
                .map(&rid_of)
                .collect::<StoreResult<Vec<i64>>>()?;
            with_tx!(self, c, pg => {
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for (v, rid) in part.iter().zip(&rids) {
                    q = q
                        .bind(*rid)
                        .bind(v.res_type)
                        .bind(v.res_id)
                        .bind(v.version)
                        .bind(v.last_updated)
                        .bind(v.method)
                        .bind(v.content);
                }
                q.execute(&mut *c).await.map_err(StoreError::from_write)?;
            });
        }
        let mut live = Vec::with_capacity(versions.len());
        for v in versions.iter().filter(|v| v.content.is_some()) {
            live.push((rid_of(v)?, v.res_type, v.index));
        }
        self.insert_index(&live).await
    }

    /// Inserts the `resources` rows of new logical resources and returns
    /// each one's rid. On SQLite the rids are assigned here, under the
    /// transaction's write lock, because its driver hands `RETURNING` rows
    /// over one by one between threads; PostgreSQL's identity column assigns
    /// them and `RETURNING` reports them (in no promised order, so they are
    /// matched by key).
    async fn insert_resource_rows<'v>(
        &mut self,
        part: &[&'v NewVersion<'v>],
    ) -> StoreResult<Vec<(i64, &'v NewVersion<'v>)>> {
        match &mut self.conn {
            TxConn::Sqlite(t) => {
                let last: i64 = sqlx::query_scalar(
                    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'resources'), 0), \
                            COALESCE((SELECT MAX(rid) FROM resources), 0))",
                )
                .fetch_one(&mut **t)
                .await?;
                let sql = format!(
                    "INSERT INTO resources (rid, res_type, res_id, version, last_updated, deleted) VALUES {}",
                    value_rows(6, part.len(), false)
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                let mut assigned = Vec::with_capacity(part.len());
                for (n, v) in part.iter().enumerate() {
                    let rid = last + 1 + n as i64;
                    assigned.push((rid, *v));
                    q = q
                        .bind(rid)
                        .bind(v.res_type)
                        .bind(v.res_id)
                        .bind(v.version)
                        .bind(v.last_updated)
                        .bind(i64::from(v.content.is_none()));
                }
                q.execute(&mut **t).await.map_err(StoreError::from_write)?;
                Ok(assigned)
            }
            TxConn::Postgres(t) => {
                let sql = format!(
                    "INSERT INTO resources (res_type, res_id, version, last_updated, deleted) \
                     VALUES {} RETURNING rid, res_type, res_id",
                    value_rows(5, part.len(), true)
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for v in part {
                    q = q
                        .bind(v.res_type)
                        .bind(v.res_id)
                        .bind(v.version)
                        .bind(v.last_updated)
                        .bind(i64::from(v.content.is_none()));
                }
                let rows = q
                    .fetch_all(&mut **t)
                    .await
                    .map_err(StoreError::from_write)?;
                let position: HashMap<(&str, &str), usize> = part
                    .iter()
                    .enumerate()
                    .map(|(i, v)| ((v.res_type, v.res_id), i))
                    .collect();
                let mut assigned = Vec::with_capacity(part.len());
                for row in rows {
                    let (rid, t, id): (i64, String, String) =
                        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                    if let Some(&i) = position.get(&(t.as_str(), id.as_str())) {
                        assigned.push((rid, part[i]));
                    }
                }
                Ok(assigned)
            }
        }
    }

    /// Replaces the index rows of resource `rid` (reindexing).
    pub async fn replace_index(
        &mut self,
        rid: i64,
        res_type: &str,
        index: &IndexRows,
    ) -> StoreResult<()> {
        self.delete_index(&[rid]).await?;
        self.insert_index(&[(rid, res_type, index)]).await
    }

    /// Deletes every index row of the resources `rids`.
    async fn delete_index(&mut self, rids: &[i64]) -> StoreResult<()> {
        for part in shaped_chunks(rids, MAX_IDS_PER_LOOKUP) {
            for table in INDEX_TABLES {
                let sql = format!(
                    "DELETE FROM {table} WHERE rid IN ({})",
                    placeholders(1, part.len(), self.is_pg())
                );
                with_tx!(self, c, pg => {
                    let mut q = sqlx::query(AssertSqlSafe(sql));
                    for rid in part {
                        q = q.bind(*rid);
                    }
                    q.execute(&mut *c).await?;
                });
            }
        }
        Ok(())
    }

    /// Inserts the index rows of several resources, table by table, in
    /// multi-row statements that span resources.
    async fn insert_index(&mut self, resources: &[(i64, &str, &IndexRows)]) -> StoreResult<()> {
        let tables: Vec<(i64, &str, Vec<Table>)> = resources
            .iter()
            .map(|(rid, t, index)| (*rid, *t, index.tables()))
            .collect();
        for n in 0..INDEX_TABLES.len() {
            let Some((name, columns)) = tables.first().map(|(_, _, t)| (t[n].name, t[n].columns))
            else {
                return Ok(());
            };
            // (rid, res_type, row) for every resource's rows of this table.
            let rows: Vec<(i64, &str, &Vec<Cell>)> = tables
                .iter()
                .flat_map(|(rid, t, tabs)| tabs[n].rows.iter().map(move |row| (*rid, *t, row)))
                .collect();
            let width = columns.len() + 2;
            let rows_per_insert = (MAX_BINDS_PER_INSERT / width).max(1);
            for chunk in shaped_chunks(&rows, rows_per_insert) {
                let sql = insert_sql(name, columns, chunk.len(), self.is_pg());
                with_tx!(self, c, pg => {
                    let mut q = sqlx::query(AssertSqlSafe(sql));
                    for (rid, res_type, row) in chunk {
                        q = q.bind(*rid).bind(*res_type);
                        for cell in row.iter() {
                            q = match cell {
                                Cell::Text(s) => q.bind(*s),
                                Cell::Int(i) => q.bind(*i),
                                Cell::Real(f) => q.bind(*f),
                                Cell::OptReal(f) => q.bind(*f),
                            };
                        }
                    }
                    q.execute(&mut *c).await?;
                });
            }
        }
        Ok(())
    }
}

/// Splits `items` into parts of `max` items, and the rest into parts of
/// 256, 64, 16, 4 and 1 items, so that a statement built per part has few
/// distinct shapes: each shape is prepared once and cached, where a part of
/// any length would be a new statement to parse and plan almost every time
/// (the group-committed audit batches vary in size from call to call).
pub(super) fn shaped_chunks<T>(items: &[T], max: usize) -> Vec<&[T]> {
    let max = max.max(1);
    let mut parts = Vec::new();
    let mut rest = items;
    while !rest.is_empty() {
        let n = if rest.len() >= max {
            max
        } else {
            [256, 64, 16, 4, 1]
                .into_iter()
                .find(|&size| size <= rest.len())
                .unwrap_or(1)
        };
        let (part, tail) = rest.split_at(n);
        parts.push(part);
        rest = tail;
    }
    parts
}

/// `$first, $first+1, …` for `n` values on PostgreSQL; `?, ?, …` on
/// SQLite, whose driver looks up every numbered parameter by name (a scan
/// of all the statement's names, so quadratic in a multi-row insert) but
/// binds anonymous ones by position.
fn placeholders(first: usize, n: usize, pg: bool) -> String {
    let mut s = String::with_capacity(n * 6);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        if pg {
            s.push('$');
            s.push_str(&(first + i).to_string());
        } else {
            s.push('?');
        }
    }
    s
}

/// `($1, …, $width), ($width+1, …), …` for `rows` rows (see [`placeholders`]).
pub(super) fn value_rows(width: usize, rows: usize, pg: bool) -> String {
    let mut s = String::with_capacity(rows * width * 5);
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        s.push_str(&placeholders(1 + r * width, width, pg));
        s.push(')');
    }
    s
}

/// `INSERT INTO table (rid, res_type, cols…) VALUES ($1, …), …` for `rows` rows.
/// Built from table and column names and counts only; every value is bound.
fn insert_sql(table: &str, columns: &[&str], rows: usize, pg: bool) -> String {
    format!(
        "INSERT INTO {table} (rid, res_type, {}) VALUES {}",
        columns.join(", "),
        value_rows(columns.len() + 2, rows, pg)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn shaped_chunks_cover_everything_in_few_shapes() {
        let items: Vec<u32> = (0..1_000).collect();
        for n in [0, 1, 5, 17, 300, 999, 1_000] {
            let parts = super::shaped_chunks(&items[..n], 400);
            let flat: Vec<u32> = parts.iter().flat_map(|p| p.iter().copied()).collect();
            assert_eq!(flat, items[..n].to_vec());
            assert!(parts
                .iter()
                .all(|p| [400, 256, 64, 16, 4, 1].contains(&p.len())));
        }
    }

    #[test]
    fn index_tables_list_every_table_in_order() {
        let rows = super::IndexRows::default();
        let names: Vec<&str> = rows.tables().iter().map(|t| t.name).collect();
        assert_eq!(names, super::INDEX_TABLES);
    }

    #[test]
    fn insert_sql_numbers_every_placeholder() {
        assert_eq!(
            super::insert_sql("idx_uri", &["param", "value"], 2, true),
            "INSERT INTO idx_uri (rid, res_type, param, value) VALUES ($1, $2, $3, $4), ($5, $6, $7, $8)"
        );
        assert_eq!(
            super::insert_sql("idx_uri", &["param", "value"], 2, false),
            "INSERT INTO idx_uri (rid, res_type, param, value) VALUES (?, ?, ?, ?), (?, ?, ?, ?)"
        );
    }
}

//! Running search SQL built by `search::sql`: pages of resources and counts.

use sqlx::{AssertSqlSafe, Row};

use super::{with_db, Db, Store, StoreResult};

/// A value bound into a search query.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    Int(i64),
    Real(f64),
}

/// One resource found by a search, with its sort-key values (as text) for the cursor.
#[derive(Debug, Clone)]
pub struct SearchRow {
    pub rid: i64,
    pub res_type: String,
    pub res_id: String,
    pub content: String,
    pub keys: Vec<Option<String>>,
}

/// Runs `$body` with `$q` bound to `sqlx::query($sql)` carrying every bind.
macro_rules! bound {
    ($sql:expr, $binds:expr) => {{
        let mut q = sqlx::query(AssertSqlSafe($sql));
        for b in $binds {
            q = match b {
                Bind::Text(s) => q.bind(s.as_str()),
                Bind::Int(i) => q.bind(*i),
                Bind::Real(f) => q.bind(*f),
            };
        }
        q
    }};
}
pub(crate) use bound;

impl Store {
    /// Runs a query selecting `rid, res_type, res_id, content` and then
    /// `key_count` sort keys (as text).
    pub async fn search_rows(
        &self,
        sql: String,
        binds: &[Bind],
        key_count: usize,
    ) -> StoreResult<Vec<SearchRow>> {
        let rows = with_db!(&self.db, pool => {
            bound!(sql, binds)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|row| -> Result<SearchRow, sqlx::Error> {
                    let mut keys = Vec::with_capacity(key_count);
                    for i in 0..key_count {
                        keys.push(row.try_get::<Option<String>, _>(4 + i)?);
                    }
                    Ok(SearchRow {
                        rid: row.try_get(0)?,
                        res_type: row.try_get(1)?,
                        res_id: row.try_get(2)?,
                        content: row.try_get(3)?,
                        keys,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// The database's plan for a query (SQLite `EXPLAIN QUERY PLAN`, PostgreSQL `EXPLAIN`).
    pub async fn explain(&self, sql: String, binds: &[Bind]) -> StoreResult<Vec<String>> {
        let lines = match &self.db {
            Db::Sqlite { read, .. } => bound!(format!("EXPLAIN QUERY PLAN {sql}"), binds)
                .fetch_all(read)
                .await?
                .into_iter()
                .map(|row| -> Result<String, sqlx::Error> {
                    let (id, parent): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
                    let detail: String = row.try_get(3)?;
                    Ok(format!("{id:>3} {parent:>3}  {detail}"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Db::Postgres(pool) => bound!(format!("EXPLAIN {sql}"), binds)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|row| row.try_get::<String, _>(0))
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(lines)
    }

    /// Runs a query selecting one integer (a count).
    pub async fn count(&self, sql: String, binds: &[Bind]) -> StoreResult<i64> {
        let n = with_db!(&self.db, pool => {
            bound!(sql, binds).fetch_one(pool).await?.try_get::<i64, _>(0)?
        });
        Ok(n)
    }
}

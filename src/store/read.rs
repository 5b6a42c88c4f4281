//! Reads: current version, a given version, history pages, and plain listings.

use rusqlite::OptionalExtension;
use sqlx::{AssertSqlSafe, Row};

use super::{with_db, Current, Db, Store, StoreResult, Version};
use crate::fhir::instant::Millis;

/// Which resources a history request covers.
#[derive(Debug, Clone, Copy)]
pub enum HistoryScope<'a> {
    System,
    Type(&'a str),
    Instance(&'a str, &'a str),
}

/// One version in a history page, newest first.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// Position in the global version sequence; the paging cursor.
    pub vid: i64,
    pub res_type: String,
    pub res_id: String,
    pub version: i64,
    pub last_updated: Millis,
    pub method: String,
    pub content: Option<String>,
}

// SQLite numbers `$N` parameters in order of appearance, so these bind
// positionally on rusqlite as on sqlx.
const READ_CURRENT: &str = "SELECT r.rid, r.version, r.last_updated, r.deleted, v.content \
     FROM resources r JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version \
     WHERE r.res_type = $1 AND r.res_id = $2";

const READ_VERSION: &str = "SELECT v.version, v.last_updated, v.method, v.content \
     FROM resources r JOIN resource_versions v ON v.rid = r.rid \
     WHERE r.res_type = $1 AND r.res_id = $2 AND v.version = $3";

/// A [`Current`] from a `READ_CURRENT` row, with the driver's column getter
/// (`get` on rusqlite, `try_get` on sqlx).
macro_rules! current_row {
    ($row:ident . $get:ident) => {{
        let deleted: i64 = $row.$get(3)?;
        Current {
            rid: $row.$get(0)?,
            version: $row.$get(1)?,
            last_updated: $row.$get(2)?,
            deleted: deleted != 0,
            content: $row.$get(4)?,
        }
    }};
}

impl Store {
    /// The current version of a resource, tombstone included.
    pub async fn read(&self, res_type: &str, res_id: &str) -> StoreResult<Option<Current>> {
        if let Db::Sqlite {
            direct: Some(direct),
            ..
        } = &self.db
        {
            return direct.with(|c| {
                c.prepare_cached(READ_CURRENT)?
                    .query_row([res_type, res_id], |row| Ok(current_row!(row.get)))
                    .optional()
            });
        }
        let row = with_db!(&self.db, pool => {
            sqlx::query(READ_CURRENT)
                .bind(res_type)
                .bind(res_id)
                .fetch_optional(pool)
                .await?
                .map(|row| -> Result<Current, sqlx::Error> { Ok(current_row!(row.try_get)) })
                .transpose()?
        });
        Ok(row)
    }

    /// One version of a resource.
    pub async fn read_version(
        &self,
        res_type: &str,
        res_id: &str,
        version: i64,
    ) -> StoreResult<Option<Version>> {
        if let Db::Sqlite {
            direct: Some(direct),
            ..
        } = &self.db
        {
            return direct.with(|c| {
                c.prepare_cached(READ_VERSION)?
                    .query_row(rusqlite::params![res_type, res_id, version], |row| {
                        Ok(Version {
                            version: row.get(0)?,
                            last_updated: row.get(1)?,
                            method: row.get(2)?,
                            content: row.get(3)?,
                        })
                    })
                    .optional()
            });
        }
        let row = with_db!(&self.db, pool => {
            sqlx::query(READ_VERSION)
                .bind(res_type)
                .bind(res_id)
                .bind(version)
                .fetch_optional(pool)
                .await?
                .map(|row| -> Result<Version, sqlx::Error> {
                    Ok(Version {
                        version: row.try_get(0)?,
                        last_updated: row.try_get(1)?,
                        method: row.try_get(2)?,
                        content: row.try_get(3)?,
                    })
                })
                .transpose()?
        });
        Ok(row)
    }

    /// Versions in `scope`, newest first: those changed at or after `since`,
    /// strictly older than the cursor `before_vid`, at most `limit`.
    pub async fn history(
        &self,
        scope: HistoryScope<'_>,
        since: Option<Millis>,
        before_vid: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<HistoryEntry>> {
        // Filters are chosen from a fixed set; values are always bound.
        let mut sql = String::from(
            "SELECT v.vid, v.res_type, v.res_id, v.version, v.last_updated, v.method, v.content \
             FROM resource_versions v WHERE 1 = 1",
        );
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        match scope {
            HistoryScope::System => {}
            HistoryScope::Type(_) => sql.push_str(&format!(" AND v.res_type = {}", next())),
            HistoryScope::Instance(_, _) => {
                let (a, b) = (next(), next());
                sql.push_str(&format!(" AND v.res_type = {a} AND v.res_id = {b}"))
            }
        }
        if since.is_some() {
            sql.push_str(&format!(" AND v.last_updated >= {}", next()));
        }
        if before_vid.is_some() {
            sql.push_str(&format!(" AND v.vid < {}", next()));
        }
        // A literal LIMIT: a bound one makes SQLite re-plan on every execution.
        sql.push_str(&format!(" ORDER BY v.vid DESC LIMIT {}", limit.max(0)));
        let rows = with_db!(&self.db, pool => {
            let mut q = sqlx::query(AssertSqlSafe(sql));
            match scope {
                HistoryScope::System => {}
                HistoryScope::Type(t) => q = q.bind(t),
                HistoryScope::Instance(t, id) => q = q.bind(t).bind(id),
            }
            if let Some(s) = since {
                q = q.bind(s);
            }
            if let Some(b) = before_vid {
                q = q.bind(b);
            }
            q.fetch_all(pool)
                .await?
                .into_iter()
                .map(|row| -> Result<HistoryEntry, sqlx::Error> {
                    Ok(HistoryEntry {
                        vid: row.try_get(0)?,
                        res_type: row.try_get(1)?,
                        res_id: row.try_get(2)?,
                        version: row.try_get(3)?,
                        last_updated: row.try_get(4)?,
                        method: row.try_get(5)?,
                        content: row.try_get(6)?,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Live resources after `after_rid` in row order, at most `limit`, as
    /// `(rid, type, content)`; with `res_type`, only that type.
    pub async fn scan(
        &self,
        res_type: Option<&str>,
        after_rid: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, String, String)>> {
        let sql = if res_type.is_some() {
            "SELECT r.rid, r.res_type, v.content FROM resources r \
             JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version \
             WHERE r.deleted = 0 AND r.rid > $1 AND r.res_type = $3 ORDER BY r.rid LIMIT $2"
        } else {
            "SELECT r.rid, r.res_type, v.content FROM resources r \
             JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version \
             WHERE r.deleted = 0 AND r.rid > $1 ORDER BY r.rid LIMIT $2"
        };
        let rows = with_db!(&self.db, pool => {
            let mut q = sqlx::query(sql).bind(after_rid).bind(limit);
            if let Some(t) = res_type {
                q = q.bind(t);
            }
            q.fetch_all(pool)
                .await?
                .into_iter()
                .map(|row| -> Result<(i64, String, String), sqlx::Error> { Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)) })
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }
}

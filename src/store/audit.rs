//! The audit trail's tables: appending AuditEvents to the hash chain (inside
//! a write transaction, or on their own), reading, searching and walking them.
//!
//! The chain's last link lives in the one-row `audit_head`; an append locks
//! it (`FOR UPDATE` on PostgreSQL, the single writer on SQLite), so links are
//! assigned in commit order even with several instances.

use sqlx::{AssertSqlSafe, Row};

use super::search::{bound, Bind};
use super::write::{shaped_chunks, value_rows, with_tx, WriteTx, MAX_BINDS_PER_INSERT};
use super::{with_db, Db, Store, StoreResult};
use crate::fhir::instant::Millis;

/// One AuditEvent ready to append: its JSON and the columns searched.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: String,
    pub recorded_ms: Millis,
    /// `system|code` of `AuditEvent.type`.
    pub type_code: String,
    /// `system|code` of the first `AuditEvent.subtype`.
    pub subtype: String,
    pub action: String,
    pub outcome: String,
    pub content: String,
    /// `(kind, value)` search keys: `patient`, `agent`, `entity` (type and
    /// subtype are searched in their own columns).
    pub refs: Vec<(&'static str, String)>,
}

/// One stored link of the chain, as verification reads it.
#[derive(Debug, Clone)]
pub struct AuditLink {
    pub seq: i64,
    pub id: String,
    pub recorded_ms: Millis,
    pub type_code: String,
    pub subtype: String,
    pub action: String,
    pub outcome: String,
    pub content: String,
    pub prev_hash: String,
    pub hash: String,
}

/// What an AuditEvent search asks for; every value is bound.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub id: Vec<String>,
    /// `(kind, alternatives)`: kinds `patient`, `agent`, `entity`. Each
    /// inner list is one parameter's alternatives (OR); lists are ANDed.
    pub refs: Vec<(&'static str, Vec<String>)>,
    /// `system|code` alternatives of `AuditEvent.type`, per parameter (ANDed).
    pub type_code: Vec<Vec<String>>,
    /// `system|code` alternatives of the first `AuditEvent.subtype`.
    pub subtype: Vec<Vec<String>>,
    pub action: Vec<String>,
    pub outcome: Vec<String>,
    /// Inclusive `[low, high]` bounds on `recorded_ms`, ANDed.
    pub recorded: Vec<(Option<Millis>, Option<Millis>)>,
    /// Oldest first when true (`_sort=date`); newest first otherwise.
    pub ascending: bool,
    /// Keyset cursor: continue after this `seq`.
    pub after_seq: Option<i64>,
}

/// Ids looked up in one statement by [`Store::audit_ids_stored`].
const MAX_IDS_PER_LOOKUP: usize = 500;

const HEAD_SQLITE: &str = "SELECT seq, hash FROM audit_head WHERE one = 1";
const HEAD_PG: &str = "SELECT seq, hash FROM audit_head WHERE one = 1 FOR UPDATE";
const SET_HEAD: &str = "UPDATE audit_head SET seq = $1, hash = $2 WHERE one = 1";
const LINK_COLUMNS: &str =
    "seq, id, recorded_ms, type_code, subtype, action, outcome, content, prev_hash, hash";

/// One record placed in the chain: `(seq, record, previous hash, hash)`.
type Linked<'a> = (i64, &'a AuditRow, String, String);

/// Places `rows` after the link `(seq, hash)`; also returns the new head.
fn link(rows: &[AuditRow], mut seq: i64, mut hash: String) -> (Vec<Linked<'_>>, i64, String) {
    let mut linked = Vec::with_capacity(rows.len());
    for r in rows {
        seq += 1;
        let prev = std::mem::take(&mut hash);
        hash = crate::audit::chain::link_hash(&prev, seq, &r.fields());
        linked.push((seq, r, prev, hash.clone()));
    }
    (linked, seq, hash)
}

/// The `audit_ref` keys of `linked` in index order and each once, so the
/// inserts walk the index forwards and never conflict.
fn ref_keys<'a>(linked: &[Linked<'a>]) -> Vec<(&'static str, &'a str, i64)> {
    let mut refs: Vec<(&'static str, &'a str, i64)> = linked
        .iter()
        .flat_map(|(seq, r, _, _)| r.refs.iter().map(move |(k, v)| (*k, v.as_str(), *seq)))
        .collect();
    refs.sort_unstable();
    refs.dedup();
    refs
}

/// SQLite: appends `rows` in a transaction of their own on the writer
/// connection, with prepared statements run on the calling thread.
fn append_sqlite(db: &mut rusqlite::Connection, rows: &[AuditRow]) -> rusqlite::Result<()> {
    let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (seq, hash): (i64, String) =
        tx.query_row(HEAD_SQLITE, [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (linked, seq, hash) = link(rows, seq, hash);
    {
        let mut insert = tx.prepare(&format!(
            "INSERT INTO audit_log ({LINK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))?;
        for (seq, r, prev, hash) in &linked {
            insert.execute(rusqlite::params![
                seq,
                r.id,
                r.recorded_ms,
                r.type_code,
                r.subtype,
                r.action,
                r.outcome,
                r.content,
                prev,
                hash
            ])?;
        }
        let mut insert_ref = tx.prepare(
            "INSERT INTO audit_ref (kind, value, seq) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )?;
        for (kind, value, seq) in ref_keys(&linked) {
            insert_ref.execute(rusqlite::params![kind, value, seq])?;
        }
    }
    tx.execute(SET_HEAD, rusqlite::params![seq, hash])?;
    tx.commit()
}

/// Runs `f` on `db` at `synchronous=NORMAL` when `relaxed` (commits without
/// their own fsync), then puts `FULL` back, also when `f` panics. Resource
/// writes share the connection and keep their fsync; if `FULL` cannot be
/// put back the error closes the connection (see `on_writer`).
fn without_fsync<T>(
    db: &mut rusqlite::Connection,
    relaxed: bool,
    f: impl FnOnce(&mut rusqlite::Connection) -> T,
) -> rusqlite::Result<T> {
    if !relaxed {
        return Ok(f(db));
    }
    db.pragma_update(None, "synchronous", "NORMAL")?;
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(db)));
    db.pragma_update(None, "synchronous", "FULL")?;
    Ok(out.unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
}

impl WriteTx {
    /// Appends `rows` to the chain in this transaction; they commit with it.
    pub async fn append_audit(&mut self, rows: &[AuditRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let (seq, hash): (i64, String) = with_tx!(self, c, pg => {
            let row = sqlx::query(if pg { HEAD_PG } else { HEAD_SQLITE })
                .fetch_one(&mut *c)
                .await?;
            (row.try_get(0)?, row.try_get(1)?)
        });
        // Link every record first, then store them with multi-row inserts
        // (one statement per table and batch, not one per record and reference).
        let (linked, seq, hash) = link(rows, seq, hash);
        let pg = self.is_pg();
        for part in shaped_chunks(&linked, MAX_BINDS_PER_INSERT / 10) {
            let sql = format!(
                "INSERT INTO audit_log ({LINK_COLUMNS}) VALUES {}",
                value_rows(10, part.len(), pg)
            );
            with_tx!(self, c, pg => {
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for (seq, r, prev, hash) in part {
                    q = q
                        .bind(*seq)
                        .bind(&r.id)
                        .bind(r.recorded_ms)
                        .bind(&r.type_code)
                        .bind(&r.subtype)
                        .bind(&r.action)
                        .bind(&r.outcome)
                        .bind(&r.content)
                        .bind(prev)
                        .bind(hash);
                }
                q.execute(&mut *c).await?;
            });
        }
        let refs = ref_keys(&linked);
        for part in shaped_chunks(&refs, MAX_BINDS_PER_INSERT / 3) {
            let sql = format!(
                "INSERT INTO audit_ref (kind, value, seq) VALUES {} ON CONFLICT DO NOTHING",
                value_rows(3, part.len(), pg)
            );
            with_tx!(self, c, pg => {
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for (kind, value, seq) in part {
                    q = q.bind(*kind).bind(*value).bind(*seq);
                }
                q.execute(&mut *c).await?;
            });
        }
        with_tx!(self, c, pg => {
            sqlx::query(SET_HEAD).bind(seq).bind(&hash).execute(&mut *c).await?;
        });
        Ok(())
    }
}

/// `(seq, content)` rows from a search page.
pub type AuditPage = Vec<(i64, String)>;

impl Store {
    /// Appends `rows` in a transaction of their own (the group-commit
    /// writer on PostgreSQL; on SQLite it uses [`Store::audit_session`]).
    pub async fn append_audit(&self, rows: &[AuditRow]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        tx.append_audit(rows).await?;
        tx.commit().await
    }

    /// SQLite only (`None` on PostgreSQL): runs `session` on a blocking
    /// thread with the writer connection held, giving it a function that
    /// appends one batch in a transaction of its own, and one that tells
    /// when the WAL checkpointer waits for the writer. Consecutive batches
    /// then cost one hand-over of the writer instead of one each; `session`
    /// decides when to let other writers in.
    pub async fn audit_session<T, F>(&self, session: F) -> Option<StoreResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn FnMut(&[AuditRow]) -> StoreResult<()>, &dyn Fn() -> bool) -> T
            + Send
            + 'static,
    {
        let Db::Sqlite {
            write,
            checkpointer,
            relaxed_audit,
            ..
        } = &self.db
        else {
            return None;
        };
        let wanted = checkpointer.as_ref().map(|c| c.wants_writer());
        // Without their own fsync only while the checkpointer runs: its
        // passes are what sync them.
        let relaxed = *relaxed_audit && checkpointer.as_ref().is_some_and(|c| c.running());
        Some(
            super::sqlite_direct::on_writer(write, move |db| {
                without_fsync(db, relaxed, |db| {
                    let mut append =
                        |rows: &[AuditRow]| -> StoreResult<()> { Ok(append_sqlite(db, rows)?) };
                    let writer_wanted = || {
                        wanted
                            .as_ref()
                            .is_some_and(|w| w.load(std::sync::atomic::Ordering::Acquire))
                    };
                    session(&mut append, &writer_wanted)
                })
            })
            .await,
        )
    }

    /// The folder of the audit journal (SQLite with the background
    /// checkpointer, unless `sqlite_audit_sync_full`); `None` elsewhere.
    pub fn audit_journal_dir(&self) -> Option<&std::path::Path> {
        match &self.db {
            Db::Sqlite { audit_journal, .. } => audit_journal.as_deref(),
            Db::Postgres(_) => None,
        }
    }

    /// Which of `ids` are AuditEvents already in the trail.
    pub async fn audit_ids_stored(
        &self,
        ids: &[String],
    ) -> StoreResult<std::collections::HashSet<String>> {
        let mut found = std::collections::HashSet::new();
        for part in ids.chunks(MAX_IDS_PER_LOOKUP) {
            let mut binds = Vec::new();
            let sql = format!(
                "SELECT id FROM audit_log WHERE id IN ({})",
                placeholders(part, &mut binds)
            );
            let rows = with_db!(&self.db, c => {
                bound!(sql, &binds)
                    .fetch_all(c)
                    .await?
                    .into_iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<Vec<String>, sqlx::Error>>()?
            });
            found.extend(rows);
        }
        Ok(found)
    }

    /// `(recorded_ms, JSON)` of the AuditEvent with this id.
    pub async fn audit_read(&self, id: &str) -> StoreResult<Option<(Millis, String)>> {
        let found: Option<(Millis, String)> = with_db!(&self.db, c => {
            match sqlx::query("SELECT recorded_ms, content FROM audit_log WHERE id = $1")
                .bind(id)
                .fetch_optional(c)
                .await?
            {
                Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
                None => None,
            }
        });
        Ok(found)
    }

    /// One page of matches (`limit` rows) and, when `count` is asked, the total.
    pub async fn audit_search(
        &self,
        q: &AuditQuery,
        limit: i64,
        count: bool,
    ) -> StoreResult<(AuditPage, Option<i64>)> {
        let (where_sql, binds) = audit_where(q);
        let (order, cmp) = if q.ascending {
            ("ASC", ">")
        } else {
            ("DESC", "<")
        };
        let mut page_where = where_sql.clone();
        let mut page_binds = binds.clone();
        if let Some(after) = q.after_seq {
            page_binds.push(Bind::Int(after));
            page_where.push(format!("l.seq {cmp} ${}", page_binds.len()));
        }
        page_binds.push(Bind::Int(limit));
        let page_sql = format!(
            "SELECT l.seq, l.content FROM audit_log l{} ORDER BY l.seq {order} LIMIT ${}",
            where_clause(&page_where),
            page_binds.len()
        );
        let rows = with_db!(&self.db, c => {
            bound!(page_sql, &page_binds)
                .fetch_all(c)
                .await?
                .into_iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<(i64, String)>, sqlx::Error>>()?
        });
        let total = if count {
            let count_sql = format!(
                "SELECT COUNT(*) FROM audit_log l{}",
                where_clause(&where_sql)
            );
            let n = self.count(count_sql, &binds).await?;
            Some(n)
        } else {
            None
        };
        Ok((rows, total))
    }

    /// Up to `limit` links after `after_seq`, in chain order.
    pub async fn audit_links(&self, after_seq: i64, limit: i64) -> StoreResult<Vec<AuditLink>> {
        let sql =
            format!("SELECT {LINK_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2");
        let links = with_db!(&self.db, c => {
            sqlx::query(AssertSqlSafe(sql))
                .bind(after_seq)
                .bind(limit)
                .fetch_all(c)
                .await?
                .into_iter()
                .map(|r| {
                    Ok(AuditLink {
                        seq: r.try_get(0)?,
                        id: r.try_get(1)?,
                        recorded_ms: r.try_get(2)?,
                        type_code: r.try_get(3)?,
                        subtype: r.try_get(4)?,
                        action: r.try_get(5)?,
                        outcome: r.try_get(6)?,
                        content: r.try_get(7)?,
                        prev_hash: r.try_get(8)?,
                        hash: r.try_get(9)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        Ok(links)
    }

    /// The chain's last link as `audit_head` records it: `(seq, hash)`.
    pub async fn audit_head(&self) -> StoreResult<(i64, String)> {
        let head: (i64, String) = with_db!(&self.db, c => {
            let r = sqlx::query(HEAD_SQLITE).fetch_one(c).await?;
            (r.try_get(0)?, r.try_get(1)?)
        });
        Ok(head)
    }
}

fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

/// Placeholders `$a, $b, …` for `values`, pushed onto `binds`.
fn placeholders(values: &[String], binds: &mut Vec<Bind>) -> String {
    values
        .iter()
        .map(|v| {
            binds.push(Bind::Text(v.clone()));
            format!("${}", binds.len())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The conditions of `q` (without the cursor) and their bound values.
fn audit_where(q: &AuditQuery) -> (Vec<String>, Vec<Bind>) {
    let mut conds = Vec::new();
    let mut binds = Vec::new();
    let mut columns: Vec<(&str, &Vec<String>)> = vec![
        ("id", &q.id),
        ("action", &q.action),
        ("outcome", &q.outcome),
    ];
    columns.extend(q.type_code.iter().map(|v| ("type_code", v)));
    columns.extend(q.subtype.iter().map(|v| ("subtype", v)));
    for (column, values) in columns {
        if !values.is_empty() {
            let ph = placeholders(values, &mut binds);
            conds.push(format!("l.{column} IN ({ph})"));
        }
    }
    for (kind, values) in &q.refs {
        binds.push(Bind::Text((*kind).to_string()));
        let kind_ph = binds.len();
        let ph = placeholders(values, &mut binds);
        conds.push(format!(
            "EXISTS (SELECT 1 FROM audit_ref r WHERE r.seq = l.seq AND r.kind = ${kind_ph} AND r.value IN ({ph}))"
        ));
    }
    for (low, high) in &q.recorded {
        if let Some(low) = low {
            binds.push(Bind::Int(*low));
            conds.push(format!("l.recorded_ms >= ${}", binds.len()));
        }
        if let Some(high) = high {
            binds.push(Bind::Int(*high));
            conds.push(format!("l.recorded_ms <= ${}", binds.len()));
        }
    }
    (conds, binds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(db: &rusqlite::Connection) -> i64 {
        db.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("pragma")
    }

    #[test]
    fn without_fsync_relaxes_only_inside_and_restores_full() {
        let mut db = rusqlite::Connection::open_in_memory().expect("open");
        db.pragma_update(None, "synchronous", "FULL").expect("full");
        let inside = without_fsync(&mut db, true, |db| synchronous(db)).expect("run");
        assert_eq!((inside, synchronous(&db)), (1, 2));
        let inside = without_fsync(&mut db, false, |db| synchronous(db)).expect("run");
        assert_eq!((inside, synchronous(&db)), (2, 2));
        // A panic inside still puts FULL back before it goes on unwinding.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            without_fsync(&mut db, true, |_| panic!("inside"))
        }));
        assert!(caught.is_err());
        assert_eq!(synchronous(&db), 2);
    }

    #[tokio::test]
    async fn audit_sessions_leave_the_writer_at_full() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&crate::store::StoreOptions {
            database_url: None,
            data_dir: dir.path().to_path_buf(),
            max_connections: 2,
            acquire_timeout_ms: 5_000,
            sqlite_sync_full: true,
            sqlite_audit_sync_full: false,
            sqlite_writer_cache_kib: 1_024,
            sqlite_background_checkpoint: true,
        })
        .await
        .expect("open");
        let Db::Sqlite {
            relaxed_audit,
            write,
            ..
        } = &store.db
        else {
            panic!("not SQLite");
        };
        assert!(*relaxed_audit);
        let row = AuditRow {
            id: "a1".into(),
            recorded_ms: 1,
            type_code: "t".into(),
            subtype: "s".into(),
            action: "R".into(),
            outcome: "0".into(),
            content: "{}".into(),
            refs: vec![("patient", "Patient/p1".into())],
        };
        let appended = store
            .audit_session(move |append, _| append(&[row]).is_ok())
            .await;
        assert!(matches!(appended, Some(Ok(true))));
        let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(write)
            .await
            .expect("pragma");
        assert_eq!(level, 2, "the writer went back to FULL");
        assert_eq!(store.audit_head().await.expect("head").0, 1);
        store.close().await;
    }
}

//! The audit journal: AuditEvents appended to local files (one JSON line
//! each) before the request is answered, then moved into the database in
//! batches, so that on SQLite a read never waits for the writer.
//!
//! A record is written (`write(2)`, into the page cache) before its caller is
//! answered, so a killed server loses none: the next [`Journal::open`] hands
//! the files left behind to the ingester, which skips records already stored.
//! Files rotate at [`SEGMENT_BYTES`] and are deleted once every record in them
//! is committed; the current one is emptied whenever the ingester catches up.
//! One process at a time owns a journal directory (an exclusive file lock).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::store::AuditRow;

/// A journal file is closed and a new one started past this size.
pub const SEGMENT_BYTES: u64 = 8 << 20;

/// The current file is emptied once every record in it is stored and it
/// holds at least this much: emptying it after every batch would cost a
/// truncation per commit.
pub const EMPTY_AT_BYTES: u64 = 1 << 20;

/// Longest line read back from a journal file; a longer one is skipped as
/// damaged (records are AuditEvents this server built: a few KiB).
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// Extension of journal files; their stems are increasing numbers.
const EXT: &str = "ndjson";

/// One record as a journal line.
#[derive(Serialize, Deserialize)]
struct Line<'a> {
    id: std::borrow::Cow<'a, str>,
    recorded_ms: i64,
    type_code: std::borrow::Cow<'a, str>,
    subtype: std::borrow::Cow<'a, str>,
    action: std::borrow::Cow<'a, str>,
    outcome: std::borrow::Cow<'a, str>,
    content: std::borrow::Cow<'a, str>,
    refs: Vec<(std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
}

/// `kind` of an `AuditRow` reference as the static name the row keeps.
fn ref_kind(kind: &str) -> Option<&'static str> {
    ["patient", "agent", "entity"]
        .into_iter()
        .find(|k| *k == kind)
}

fn to_line(row: &AuditRow) -> serde_json::Result<Vec<u8>> {
    let line = Line {
        id: row.id.as_str().into(),
        recorded_ms: row.recorded_ms,
        type_code: row.type_code.as_str().into(),
        subtype: row.subtype.as_str().into(),
        action: row.action.as_str().into(),
        outcome: row.outcome.as_str().into(),
        content: row.content.as_str().into(),
        refs: row
            .refs
            .iter()
            .map(|(k, v)| ((*k).into(), v.as_str().into()))
            .collect(),
    };
    let mut bytes = serde_json::to_vec(&line)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The record on one journal line; `None` when the line is damaged (a
/// write cut short by a crash) or names an unknown reference kind.
fn from_line(bytes: &[u8]) -> Option<AuditRow> {
    if bytes.len() > MAX_LINE_BYTES {
        return None;
    }
    let line: Line<'_> = serde_json::from_slice(bytes).ok()?;
    let refs = line
        .refs
        .into_iter()
        .map(|(k, v)| Some((ref_kind(&k)?, v.into_owned())))
        .collect::<Option<Vec<_>>>()?;
    Some(AuditRow {
        id: line.id.into_owned(),
        recorded_ms: line.recorded_ms,
        type_code: line.type_code.into_owned(),
        subtype: line.subtype.into_owned(),
        action: line.action.into_owned(),
        outcome: line.outcome.into_owned(),
        content: line.content.into_owned(),
        refs,
    })
}

/// The records in a journal file left by an earlier process, in order, and
/// how many lines were skipped as damaged.
pub fn read_file(path: &Path) -> std::io::Result<(Vec<AuditRow>, usize)> {
    let bytes = std::fs::read(path)?;
    let mut rows = Vec::new();
    let mut skipped = 0;
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match from_line(line) {
            Some(row) => rows.push(row),
            None => skipped += 1,
        }
    }
    Ok((rows, skipped))
}

/// An open journal, owned by this process until dropped.
pub struct Journal {
    dir: PathBuf,
    /// Holds the directory's lock.
    _lock: File,
    state: Mutex<State>,
}

struct State {
    /// The file appended to, and its number and size.
    file: File,
    number: u64,
    bytes: u64,
    /// A write failed part-way: start a new file before the next record, so
    /// that a torn line never runs into a good one.
    torn: bool,
    /// Tickets are numbered from 1 in append order.
    next_ticket: u64,
    /// Appended and not yet taken by the ingester.
    pending: VecDeque<AuditRow>,
    /// Earlier files of this process: `(number, last ticket in it)`.
    closed: Vec<(u64, u64)>,
}

fn file_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.{EXT}"))
}

fn create(dir: &Path, number: u64) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(file_path(dir, number))
}

impl Journal {
    /// Opens the journal in `dir` (created if missing): `None` when another
    /// process holds it. Also returns the files earlier processes left, oldest
    /// first; the caller stores their records, then deletes the files.
    pub fn open(dir: &Path) -> std::io::Result<Option<(Journal, Vec<PathBuf>)>> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let mut left: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some(EXT) {
                continue;
            }
            if let Some(n) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
            {
                left.push((n, path));
            }
        }
        left.sort();
        let number = left.last().map_or(1, |(n, _)| n + 1);
        let file = create(dir, number)?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            _lock: lock,
            state: Mutex::new(State {
                file,
                number,
                bytes: 0,
                torn: false,
                next_ticket: 1,
                pending: VecDeque::new(),
                closed: Vec::new(),
            }),
        };
        Ok(Some((journal, left.into_iter().map(|(_, p)| p).collect())))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `row` to the journal and queues it for the ingester; its
    /// ticket once written. An error means the record is not in the journal.
    pub fn append(&self, row: AuditRow) -> std::io::Result<u64> {
        let line = to_line(&row)?;
        let mut s = self.state();
        if s.torn || (s.bytes > 0 && s.bytes + line.len() as u64 > SEGMENT_BYTES) {
            let number = s.number + 1;
            let file = create(&self.dir, number)?;
            let last = s.next_ticket - 1;
            let old = s.number;
            s.closed.push((old, last));
            s.file = file;
            s.number = number;
            s.bytes = 0;
            s.torn = false;
        }
        if let Err(e) = s.file.write_all(&line) {
            s.torn = true;
            return Err(e);
        }
        s.bytes += line.len() as u64;
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        s.pending.push_back(row);
        Ok(ticket)
    }

    /// The ticket of the last record appended (0 before the first).
    pub fn last_ticket(&self) -> u64 {
        self.state().next_ticket - 1
    }

    /// Up to `max` records in append order, and the ticket of the last one.
    pub fn take(&self, max: usize) -> (Vec<AuditRow>, u64) {
        let mut s = self.state();
        let n = max.min(s.pending.len());
        let rows: Vec<AuditRow> = s.pending.drain(..n).collect();
        let last = s.next_ticket - 1 - s.pending.len() as u64;
        (rows, last)
    }

    /// Every record up to `ticket` is in the database: deletes the files
    /// that held only such records, and empties the current one when it
    /// holds nothing else and [`EMPTY_AT_BYTES`] or more (any size when
    /// `finish`: the last batch before a clean stop).
    pub fn committed(&self, ticket: u64, finish: bool) {
        let mut done = Vec::new();
        {
            let mut s = self.state();
            s.closed.retain(|(number, last)| {
                let finished = *last <= ticket;
                if finished {
                    done.push(*number);
                }
                !finished
            });
            let big_enough = s.bytes >= EMPTY_AT_BYTES || (finish && s.bytes > 0);
            if ticket == s.next_ticket - 1 && s.closed.is_empty() && big_enough && !s.torn {
                match s.file.set_len(0) {
                    Ok(()) => s.bytes = 0,
                    Err(e) => {
                        tracing::warn!(error_kind = "audit", "audit journal truncate failed: {e}")
                    }
                }
            }
        }
        for number in done {
            remove(&file_path(&self.dir, number));
        }
    }
}

/// Deletes a journal file whose records are all stored.
pub fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(error_kind = "audit", "audit journal file not removed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> AuditRow {
        AuditRow {
            id: id.into(),
            recorded_ms: 1_700_000_000_000,
            type_code: "http://dicom.nema.org/resources/ontology/DCM|110110".into(),
            subtype: "http://hl7.org/fhir/restful-interaction|read".into(),
            action: "R".into(),
            outcome: "0".into(),
            content: format!(r#"{{"resourceType":"AuditEvent","id":"{id}","x":"a\nb"}}"#),
            refs: vec![("patient", "Patient/p1".into()), ("agent", "app".into())],
        }
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == EXT))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn records_left_behind_are_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (j, left) = Journal::open(dir.path()).unwrap().unwrap();
        assert!(left.is_empty());
        for i in 0..3 {
            assert_eq!(j.append(row(&format!("a{i}"))).unwrap(), i + 1);
        }
        drop(j);
        let (j2, left) = Journal::open(dir.path()).unwrap().unwrap();
        assert_eq!(left.len(), 1);
        let (rows, skipped) = read_file(&left[0]).unwrap();
        assert_eq!(skipped, 0);
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a0", "a1", "a2"]);
        assert_eq!(rows[0].refs, row("a0").refs);
        assert_eq!(rows[0].content, row("a0").content);
        // The new process writes to a file of its own, numbered after it.
        assert_eq!(files(dir.path()).len(), 2);
        assert!(files(dir.path())[1] > left[0]);
        drop(j2);
    }

    #[test]
    fn a_second_process_is_refused_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let held = Journal::open(dir.path()).unwrap().unwrap();
        assert!(Journal::open(dir.path()).unwrap().is_none());
        drop(held);
        assert!(Journal::open(dir.path()).unwrap().is_some());
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path()).unwrap().unwrap();
        j.append(row("ok")).unwrap();
        drop(j);
        let path = files(dir.path()).remove(0);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"id":"cut","recorded_ms":1"#).unwrap();
        let (rows, skipped) = read_file(&path).unwrap();
        assert_eq!((rows.len(), skipped), (1, 1));
        assert_eq!(rows[0].id, "ok");
        // An unknown reference kind is damage too.
        f.write_all(b"\n").unwrap();
        let mut bad = String::from_utf8(to_line(&row("k")).unwrap()).unwrap();
        bad = bad.replace("\"patient\"", "\"nobody\"");
        f.write_all(bad.as_bytes()).unwrap();
        assert_eq!(read_file(&path).unwrap().1, 2);
    }

    #[test]
    fn committed_records_leave_no_files_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path()).unwrap().unwrap();
        let big = "x".repeat(SEGMENT_BYTES as usize / 3);
        let mut r = row("big");
        r.content = big;
        for _ in 0..7 {
            j.append(r.clone()).unwrap();
        }
        // Three per file at most: 7 records span at least three files.
        assert!(files(dir.path()).len() >= 3);
        let (rows, last) = j.take(4);
        assert_eq!((rows.len(), last), (4, 4));
        j.committed(last, false);
        let (rows, last) = j.take(100);
        assert_eq!((rows.len(), last), (3, 7));
        let (rows, none_left) = j.take(100);
        assert!(rows.is_empty());
        assert_eq!(none_left, 7);
        j.committed(last, false);
        let left = files(dir.path());
        assert_eq!(left.len(), 1, "only the current file stays");
        assert_eq!(
            std::fs::metadata(&left[0]).unwrap().len(),
            0,
            "and it is empty"
        );
        // Appends go on in the emptied file; a small one is emptied only
        // by the last batch before a stop.
        j.append(row("after")).unwrap();
        assert_eq!(j.last_ticket(), 8);
        assert_eq!(read_file(&left[0]).unwrap().0[0].id, "after");
        let (_, last) = j.take(100);
        j.committed(last, false);
        assert!(std::fs::metadata(&left[0]).unwrap().len() > 0);
        j.committed(last, true);
        assert_eq!(std::fs::metadata(&left[0]).unwrap().len(), 0);
    }
}

//! Export of the audit trail as NDJSON (one AuditEvent per line, in chain
//! order) for retention outside the database.

use std::io::Write;

use crate::store::{Store, StoreResult};

/// Links read per database round trip while exporting.
const EXPORT_BATCH: i64 = 1_000;

/// Writes every AuditEvent after chain position `after_seq` to `out`;
/// returns how many were written and the last position. `progress` is called
/// with the running count after each batch (at most [`EXPORT_BATCH`] events apart).
pub async fn export_ndjson(
    store: &Store,
    after_seq: i64,
    out: &mut impl Write,
    progress: &dyn Fn(u64),
) -> StoreResult<(u64, i64)> {
    let mut last = after_seq;
    let mut written = 0u64;
    loop {
        let links = store.audit_links(last, EXPORT_BATCH).await?;
        if links.is_empty() {
            break;
        }
        for l in links {
            out.write_all(l.content.as_bytes())
                .and_then(|_| out.write_all(b"\n"))
                .map_err(|e| crate::store::StoreError::Setup(format!("writing the export: {e}")))?;
            written += 1;
            last = l.seq;
        }
        progress(written);
    }
    Ok((written, last))
}

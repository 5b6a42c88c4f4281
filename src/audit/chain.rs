//! The hash chain over the audit trail: each link's hash covers the previous
//! link's hash, its position and every stored column, so that a direct change,
//! deletion or reordering of rows in the database breaks the chain at the
//! first link touched, and [`verify`] names it.

use sha2::{Digest, Sha256};

use crate::store::{AuditLink, AuditRow, Store, StoreResult};

/// The `prev_hash` of the first link.
pub const GENESIS: &str = "genesis";

/// Links read per database round trip while verifying.
const VERIFY_BATCH: i64 = 1_000;

/// The stored columns a link's hash covers (besides position and predecessor).
#[derive(Debug, Clone, Copy)]
pub struct LinkFields<'a> {
    pub id: &'a str,
    pub recorded_ms: i64,
    pub type_code: &'a str,
    pub subtype: &'a str,
    pub action: &'a str,
    pub outcome: &'a str,
    pub content: &'a str,
}

impl AuditLink {
    /// The columns its hash covers.
    pub fn fields(&self) -> LinkFields<'_> {
        LinkFields {
            id: &self.id,
            recorded_ms: self.recorded_ms,
            type_code: &self.type_code,
            subtype: &self.subtype,
            action: &self.action,
            outcome: &self.outcome,
            content: &self.content,
        }
    }
}

impl AuditRow {
    /// The columns its hash will cover.
    pub fn fields(&self) -> LinkFields<'_> {
        LinkFields {
            id: &self.id,
            recorded_ms: self.recorded_ms,
            type_code: &self.type_code,
            subtype: &self.subtype,
            action: &self.action,
            outcome: &self.outcome,
            content: &self.content,
        }
    }
}

/// SHA-256 (hex) of the previous hash, the position and the fields, each
/// length-prefixed so that no two different rows hash the same input.
pub fn link_hash(prev_hash: &str, seq: i64, f: &LinkFields<'_>) -> String {
    let mut h = Sha256::new();
    let seq_text = seq.to_string();
    let recorded_text = f.recorded_ms.to_string();
    for part in [
        prev_hash,
        &seq_text,
        f.id,
        &recorded_text,
        f.type_code,
        f.subtype,
        f.action,
        f.outcome,
        f.content,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Links checked.
    pub checked: i64,
    /// The first broken link, if any: its position and what is wrong.
    pub broken: Option<(i64, String)>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }
}

fn check_link(prev_seq: i64, prev_hash: &str, l: &AuditLink) -> Option<String> {
    if l.seq != prev_seq + 1 {
        return Some(format!(
            "links {} to {} are missing (deleted or renumbered)",
            prev_seq + 1,
            l.seq - 1
        ));
    }
    if l.prev_hash != prev_hash {
        return Some("its predecessor is not the link it was chained to (a row was changed, deleted or moved)".into());
    }
    if link_hash(prev_hash, l.seq, &l.fields()) != l.hash {
        return Some("its content does not match its hash (the row was changed)".into());
    }
    None
}

/// Walks the whole chain and reports the first broken link.
pub async fn verify(store: &Store) -> StoreResult<VerifyReport> {
    let mut prev_seq = 0;
    let mut prev_hash = GENESIS.to_string();
    let mut checked = 0;
    loop {
        let links = store.audit_links(prev_seq, VERIFY_BATCH).await?;
        if links.is_empty() {
            break;
        }
        for l in links {
            if let Some(why) = check_link(prev_seq, &prev_hash, &l) {
                // A gap is reported at its first missing position.
                let at = if l.seq != prev_seq + 1 {
                    prev_seq + 1
                } else {
                    l.seq
                };
                return Ok(VerifyReport {
                    checked,
                    broken: Some((at, why)),
                });
            }
            checked += 1;
            prev_seq = l.seq;
            prev_hash = l.hash;
        }
    }
    let (head_seq, head_hash) = store.audit_head().await?;
    if head_seq != prev_seq || head_hash != prev_hash {
        return Ok(VerifyReport {
            checked,
            broken: Some((
                prev_seq + 1,
                format!("the chain ends at {prev_seq} but its head records {head_seq} (trailing links were deleted)"),
            )),
        });
    }
    Ok(VerifyReport {
        checked,
        broken: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(seq: i64, prev: &str, content: &str) -> AuditLink {
        let mut l = AuditLink {
            seq,
            id: format!("a{seq}"),
            recorded_ms: 1_000 + seq,
            type_code: "t".into(),
            subtype: "s".into(),
            action: "R".into(),
            outcome: "0".into(),
            content: content.into(),
            prev_hash: prev.into(),
            hash: String::new(),
        };
        l.hash = link_hash(prev, seq, &l.fields());
        l
    }

    #[test]
    fn a_changed_field_or_predecessor_breaks_the_link() {
        let a = link(1, GENESIS, "{}");
        assert_eq!(check_link(0, GENESIS, &a), None);
        let b = link(2, &a.hash, "{\"x\":1}");
        assert_eq!(check_link(1, &a.hash, &b), None);
        let mut changed = b.clone();
        changed.content = "{\"x\":2}".into();
        assert!(check_link(1, &a.hash, &changed).is_some());
        let mut outcome = b.clone();
        outcome.outcome = "4".into();
        assert!(check_link(1, &a.hash, &outcome).is_some());
        // b after a deleted a: wrong position.
        assert!(check_link(0, GENESIS, &b).is_some());
    }

    #[test]
    fn length_prefixes_keep_fields_apart() {
        let f = |id: &'static str, t: &'static str| LinkFields {
            id,
            recorded_ms: 1,
            type_code: t,
            subtype: "",
            action: "",
            outcome: "",
            content: "",
        };
        assert_ne!(
            link_hash("p", 1, &f("ab", "c")),
            link_hash("p", 1, &f("a", "bc"))
        );
    }
}

//! Patients' privacy Consents remembered between requests. Every entry is
//! tagged with the store's Consent change counter it was read under and is
//! used only while the counter has not moved (any Consent write, on any
//! instance, moves it), so a read needs no Consent query in the common case.

use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Most patients whose Consents are remembered; the least used go first.
pub const MAX_CACHED_PATIENTS: usize = 10_000;

#[derive(Clone)]
struct Entry {
    counter: i64,
    /// The patient's active privacy Consents (in force or not: the period
    /// is checked when they are used).
    consents: Arc<Vec<Value>>,
}

/// The cache; shared by every clone of the service.
pub(super) struct ConsentCache {
    by_patient: quick_cache::sync::Cache<String, Entry>,
    /// Whether any active privacy Consent exists, under a counter value.
    any: Mutex<Option<(i64, bool)>>,
}

impl Default for ConsentCache {
    fn default() -> Self {
        ConsentCache {
            by_patient: quick_cache::sync::Cache::new(MAX_CACHED_PATIENTS),
            any: Mutex::new(None),
        }
    }
}

impl ConsentCache {
    /// `patient`'s Consents if they were read under `counter`.
    pub(super) fn patient(&self, patient: &str, counter: i64) -> Option<Arc<Vec<Value>>> {
        self.by_patient
            .get(patient)
            .filter(|e| e.counter == counter)
            .map(|e| e.consents)
    }

    /// Remembers `patient`'s Consents, read under `counter` (the value
    /// taken before the query, so a write committed meanwhile invalidates
    /// the entry at once).
    pub(super) fn remember_patient(&self, patient: &str, counter: i64, consents: Arc<Vec<Value>>) {
        self.by_patient
            .insert(patient.to_string(), Entry { counter, consents });
    }

    /// Whether any active privacy Consent exists, if known under `counter`.
    pub(super) fn any(&self, counter: i64) -> Option<bool> {
        let any = self.any.lock().ok()?;
        any.filter(|(c, _)| *c == counter).map(|(_, a)| a)
    }

    /// Remembers whether any active privacy Consent exists under `counter`.
    pub(super) fn remember_any(&self, counter: i64, any: bool) {
        if let Ok(mut slot) = self.any.lock() {
            *slot = Some((counter, any));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_hold_only_under_their_counter() {
        let c = ConsentCache::default();
        assert!(c.patient("p1", 3).is_none());
        c.remember_patient("p1", 3, Arc::new(vec![serde_json::json!({"id": "c1"})]));
        assert_eq!(c.patient("p1", 3).map(|v| v.len()), Some(1));
        assert!(c.patient("p1", 4).is_none(), "a Consent changed since");
        assert!(c.patient("p2", 3).is_none());
        assert_eq!(c.any(3), None);
        c.remember_any(3, false);
        assert_eq!(c.any(3), Some(false));
        assert_eq!(c.any(4), None);
    }
}

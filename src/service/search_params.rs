//! The search parameters the server implements (read by the CapabilityStatement too).

/// Parameters search understands; others are ignored and reported.
pub const SUPPORTED_PARAMS: &[&str] = &["_id", "_count", "_total", "_cursor"];

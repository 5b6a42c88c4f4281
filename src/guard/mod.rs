//! The guards around every door: request rate limits per user and client,
//! CORS for SMART browser apps, security headers, limits on the request
//! line and headers, and native TLS.
//! See `docs/SECURITY.md` (Guards) and `docs/CONFIGURATION.md`.

pub mod cors;
pub mod headers;
pub mod rate_limit;
pub mod request_limits;
pub mod tls;

pub use rate_limit::{RateLimitSettings, RateLimiter, RetryAfterSecs};

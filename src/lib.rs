//! Vesta: a SMART-on-FHIR R4 server.
//!
//! Doors (`rest`, `mcp`) parse requests into typed interactions and call
//! the `service` layer, which validates, enforces limits and versioning, and
//! uses the `store` (SQLite or PostgreSQL). See `docs/ARCHITECTURE.md`.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod fhir;
pub mod fhirpath;
pub mod guard;
pub mod mcp;
pub mod metrics;
pub mod policy;
pub mod private_file;
pub mod rest;
pub mod search;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;

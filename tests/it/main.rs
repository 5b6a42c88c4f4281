//! The integration suite: each test starts the real server on port 0 (with a
//! fresh SQLite folder or PostgreSQL database) and talks HTTP to it.

mod helpers;

mod access_matrix;
mod audit;
mod audit_every_request;
mod bundles;
mod cli;
mod concurrency;
mod conditional;
mod consent;
mod corpus;
mod crud;
mod errors;
mod guards;
mod history;
mod hostile_input;
mod mcp;
mod openapi;
mod search_cases;
mod smart;
mod smart_attacks;
mod smart_fhirclient;
mod validation;

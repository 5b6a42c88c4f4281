//! The schema migrations, embedded in the binary, one folder per backend.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::SqlSafeStr;

use super::Backend;

fn migration(version: i64, description: &'static str, sql: &'static str) -> Migration {
    Migration::new(
        version,
        Cow::Borrowed(description),
        MigrationType::Simple,
        sql.into_sql_str(),
        false,
    )
}

/// The migrator for `backend`, with every migration of its folder.
pub fn migrator(backend: Backend) -> Migrator {
    let migrations = match backend {
        Backend::Sqlite => vec![
            migration(
                1,
                "resources",
                include_str!("../../migrations/sqlite/0001_resources.sql"),
            ),
            migration(
                2,
                "composite columns",
                include_str!("../../migrations/sqlite/0002_composite_columns.sql"),
            ),
            migration(
                3,
                "fulltext",
                include_str!("../../migrations/sqlite/0003_fulltext.sql"),
            ),
            migration(
                4,
                "covering indexes",
                include_str!("../../migrations/sqlite/0004_covering_indexes.sql"),
            ),
            migration(
                5,
                "type rid index",
                include_str!("../../migrations/sqlite/0005_type_rid_index.sql"),
            ),
            migration(
                6,
                "date end index",
                include_str!("../../migrations/sqlite/0006_date_end_index.sql"),
            ),
            migration(
                7,
                "auth state",
                include_str!("../../migrations/sqlite/0007_auth.sql"),
            ),
            migration(
                8,
                "audit trail",
                include_str!("../../migrations/sqlite/0008_audit.sql"),
            ),
            migration(
                9,
                "composite codes",
                include_str!("../../migrations/sqlite/0009_composite_codes.sql"),
            ),
            migration(
                10,
                "change counters",
                include_str!("../../migrations/sqlite/0010_change_counters.sql"),
            ),
        ],
        Backend::Postgres => vec![
            migration(
                1,
                "resources",
                include_str!("../../migrations/postgres/0001_resources.sql"),
            ),
            migration(
                2,
                "search collation",
                include_str!("../../migrations/postgres/0002_search_collation.sql"),
            ),
            migration(
                3,
                "composite columns",
                include_str!("../../migrations/postgres/0003_composite_columns.sql"),
            ),
            migration(
                4,
                "fulltext",
                include_str!("../../migrations/postgres/0004_fulltext.sql"),
            ),
            migration(
                5,
                "covering indexes",
                include_str!("../../migrations/postgres/0005_covering_indexes.sql"),
            ),
            migration(
                6,
                "type rid index",
                include_str!("../../migrations/postgres/0006_type_rid_index.sql"),
            ),
            migration(
                7,
                "date end index",
                include_str!("../../migrations/postgres/0007_date_end_index.sql"),
            ),
            migration(
                8,
                "auth state",
                include_str!("../../migrations/postgres/0008_auth.sql"),
            ),
            migration(
                9,
                "audit trail",
                include_str!("../../migrations/postgres/0009_audit.sql"),
            ),
            migration(
                10,
                "composite codes",
                include_str!("../../migrations/postgres/0010_composite_codes.sql"),
            ),
            migration(
                11,
                "change counters",
                include_str!("../../migrations/postgres/0011_change_counters.sql"),
            ),
        ],
    };
    Migrator::with_migrations(migrations)
}

//! `optout-milter store migrate`: copying a whole store to another (SQLite to PostgreSQL
//! when a second MTA arrives, and back), with every table as it is: current state, the
//! history with its ids and times, the token subjects with their ids, so that every
//! token minted so far still resolves, and the ids of the inbound messages already
//! applied, so that a provider's retry after the move is still recognised.
//!
//! Safe to re-run: rows are copied by id (history, subjects) or key (current state), and a
//! row already there is left alone, so an interrupted copy continues where it stopped.
//! At the end both stores are compared table by table (row count and a SHA-256 over the
//! rows in a fixed order); any difference, such as a target that already held other data,
//! is an error and nothing is claimed copied. Stop the daemons writing to the source
//! first: what they write during the copy may be missed (the comparison then fails).

use super::{Create, StoreError, redact};
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row, any::AnyRow};

/// Rows read and written per transaction.
const PAGE: i64 = 5000;

/// One table's figures on one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    pub table: &'static str,
    pub rows: i64,
    pub sha256: String,
}

/// A copy that could not be made or does not match.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot copy {table}")]
    Query {
        table: &'static str,
        #[source]
        source: super::error::Backend,
    },
    #[error(
        "after the copy, {table} differs: {from_rows} rows (sha256 {from_sum}) in the source, {to_rows} (sha256 {to_sum}) in the target; was the target empty, and the source idle?"
    )]
    Differs {
        table: &'static str,
        from_rows: i64,
        from_sum: String,
        to_rows: i64,
        to_sum: String,
    },
}

/// A table: its name, its columns in copy order, and the columns that identify a row.
struct Table {
    name: &'static str,
    columns: &'static [&'static str],
    key: &'static [&'static str],
    /// Whether the key is a generated numeric id (PostgreSQL must be told to take ours).
    identity: bool,
}

const TABLES: [Table; 4] = [
    Table {
        name: "token_subject",
        columns: &["id", "address", "scope", "created_at"],
        key: &["id"],
        identity: true,
    },
    Table {
        name: "consent_history",
        columns: &[
            "id",
            "address",
            "channel",
            "scope",
            "value",
            "source",
            "recorded_at",
            "evidence",
        ],
        key: &["id"],
        identity: true,
    },
    Table {
        name: "consent",
        columns: &[
            "address",
            "channel",
            "scope",
            "value",
            "source",
            "updated_at",
            "evidence",
        ],
        key: &["address", "channel", "scope"],
        identity: false,
    },
    // Text ids in byte order on both sides (PostgreSQL's column is COLLATE "C").
    Table {
        name: "applied_message",
        columns: &["id", "applied_at"],
        key: &["id"],
        identity: false,
    },
];

/// Copies the store at `from` (which must exist) into `to` (created if missing), then
/// compares them. Returns the figures of each table, equal on both sides.
pub async fn copy(from: &str, to: &str) -> Result<Vec<Tally>, CopyError> {
    // Opening checks (and migrates) both schemas exactly as the daemon does.
    drop(super::open_with(from, Create::Never).await?);
    drop(super::open_with(to, Create::IfMissing).await?);
    sqlx::any::install_default_drivers();
    let source = connect(from).await?;
    let target = connect(to).await?;
    let postgres = is_postgres(to);
    for table in &TABLES {
        copy_table(&source, &target, table, postgres)
            .await
            .map_err(|source| CopyError::Query {
                table: table.name,
                source: source.into(),
            })?;
    }
    let mut tallies = Vec::new();
    for table in &TABLES {
        let query = |source: sqlx::Error| CopyError::Query {
            table: table.name,
            source: source.into(),
        };
        let (a, b) = (
            tally(&source, table).await.map_err(query)?,
            tally(&target, table).await.map_err(query)?,
        );
        if a != b {
            return Err(CopyError::Differs {
                table: table.name,
                from_rows: a.rows,
                from_sum: a.sha256,
                to_rows: b.rows,
                to_sum: b.sha256,
            });
        }
        tallies.push(a);
    }
    Ok(tallies)
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

async fn connect(url: &str) -> Result<AnyPool, StoreError> {
    sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .map_err(|source| StoreError::Open {
            url: redact(url),
            source: source.into(),
        })
}

/// The rows of `table` after `after` (a key), in key order.
async fn page(pool: &AnyPool, table: &Table, after: &[String]) -> Result<Vec<AnyRow>, sqlx::Error> {
    let columns = table.columns.join(", ");
    let key = table.key.join(", ");
    let placeholders: Vec<String> = (1..=table.key.len()).map(|i| format!("${i}")).collect();
    let condition = match after.is_empty() {
        true => "1 = 1".to_owned(),
        false => format!("({key}) > ({})", placeholders.join(", ")),
    };
    let sql = format!(
        "SELECT {columns} FROM {} WHERE {condition} ORDER BY {key} LIMIT {PAGE}",
        table.name
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (value, column) in after.iter().zip(table.key) {
        query = match (*column, table.identity) {
            ("id", true) => query.bind(value.parse::<i64>().unwrap_or(i64::MAX)),
            _ => query.bind(value.clone()),
        };
    }
    query.fetch_all(pool).await
}

/// A column's value as text, whatever its type.
fn text(row: &AnyRow, column: &str) -> Result<String, sqlx::Error> {
    match row.try_get::<i64, _>(column) {
        Ok(n) => Ok(n.to_string()),
        Err(_) => row.try_get::<String, _>(column),
    }
}

async fn copy_table(
    source: &AnyPool,
    target: &AnyPool,
    table: &Table,
    postgres: bool,
) -> Result<(), sqlx::Error> {
    let columns = table.columns.join(", ");
    let placeholders: Vec<String> = (1..=table.columns.len()).map(|i| format!("${i}")).collect();
    let overriding = match (postgres, table.identity) {
        (true, true) => " OVERRIDING SYSTEM VALUE",
        _ => "",
    };
    let sql = format!(
        "INSERT INTO {} ({columns}){overriding} VALUES ({}) ON CONFLICT ({}) DO NOTHING",
        table.name,
        placeholders.join(", "),
        table.key.join(", ")
    );
    let mut after: Vec<String> = Vec::new();
    loop {
        let rows = page(source, table, &after).await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = table
            .key
            .iter()
            .map(|c| text(last, c))
            .collect::<Result<_, _>>()?;
        let mut tx = target.begin().await?;
        for row in &rows {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for column in table.columns {
                query = match row.try_get::<i64, _>(*column) {
                    Ok(n) => query.bind(n),
                    Err(_) => query.bind(row.try_get::<String, _>(*column)?),
                };
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    if postgres && table.identity {
        // New rows must not take ids that were copied.
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence('{0}', 'id'), \
             GREATEST((SELECT max(id) FROM {0}), 1))",
            table.name
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(target)
            .await?;
    }
    Ok(())
}

/// The row count and SHA-256 of `table`, its rows in key order, fields as text.
async fn tally(pool: &AnyPool, table: &Table) -> Result<Tally, sqlx::Error> {
    let mut hash = Sha256::new();
    let mut rows_seen = 0i64;
    let mut after: Vec<String> = Vec::new();
    loop {
        let rows = page(pool, table, &after).await?;
        let Some(last) = rows.last() else {
            break;
        };
        for row in &rows {
            for column in table.columns {
                hash.update(text(row, column)?.as_bytes());
                hash.update([0x1f]);
            }
            hash.update([0x1e]);
        }
        rows_seen += rows.len() as i64;
        after = table
            .key
            .iter()
            .map(|c| text(last, c))
            .collect::<Result<_, _>>()?;
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    let sha256 = hash
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    Ok(Tally {
        table: table.name,
        rows: rows_seen,
        sha256,
    })
}

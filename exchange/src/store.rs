//! SQLite storage (WAL): the exchange id, the command log the core is rebuilt from, and
//! the module blobs (stored once by hash).
//!
//! Only accepted, state-changing commands are logged, each with the `now_ms` the core
//! applied it at; deadlines are consequences of time and are recomputed on replay.
//! Rule changes (other flags after a restart) are logged as well, at the point they
//! took effect, so replay sees the same rules as the live exchange did.

use std::path::Path;

use bitwrk_protocol::Hash32;
use rusqlite::{Connection, OptionalExtension, params};

use crate::core::{Command, Rules};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("log row {seq} does not decode: {why}")]
    Corrupt { seq: i64, why: String },
}

/// One row of the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum LogEntry {
    Rules { rules: Rules },
    Command { command: Command },
}

/// The writer's connection. Exactly one exists per database (the writer task owns it).
pub struct Store {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, now_ms INTEGER NOT NULL, entry TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS modules (sha256 TEXT PRIMARY KEY, bytes BLOB NOT NULL);
";

impl Store {
    /// Open (creating if needed) in WAL mode with full fsync on commit: an acknowledged
    /// request survives `kill -9` and power loss.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        tracing::info!(db = %shown.display(), "database opened");
        Ok(Store { conn })
    }

    /// The exchange's id, drawn once when the database is created.
    pub fn exchange_id(&mut self) -> Result<String, StoreError> {
        let found: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'exchange_id'", [], |r| r.get(0))
            .optional()?;
        if let Some(id) = found {
            return Ok(id);
        }
        let id = bitwrk_protocol::Id::random("x").to_string();
        self.conn
            .execute("INSERT INTO meta (key, value) VALUES ('exchange_id', ?1)", params![id])?;
        Ok(id)
    }

    /// Every log row in order: (now_ms, entry).
    pub fn load(&self, mut each: impl FnMut(u64, LogEntry)) -> Result<u64, StoreError> {
        let mut stmt = self.conn.prepare("SELECT seq, now_ms, entry FROM log ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let now_ms: i64 = row.get(1)?;
            let text: String = row.get(2)?;
            let entry: LogEntry = serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt { seq, why: e.to_string() })?;
            each(now_ms as u64, entry);
            n += 1;
        }
        Ok(n)
    }

    /// Append rows and modules in one transaction (one fsync for the whole group).
    pub fn append(
        &mut self,
        rows: &[(u64, LogEntry)],
        modules: &[(Hash32, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut ins = tx.prepare_cached("INSERT INTO log (now_ms, entry) VALUES (?1, ?2)")?;
            for (now_ms, entry) in rows {
                let text = serde_json::to_string(entry).expect("log entries always serialise");
                ins.execute(params![*now_ms as i64, text])?;
            }
            let mut put =
                tx.prepare_cached("INSERT OR IGNORE INTO modules (sha256, bytes) VALUES (?1, ?2)")?;
            for (hash, bytes) in modules {
                put.execute(params![hash.to_hex(), bytes])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// A reader connection for module downloads (WAL lets it read while the writer writes).
pub struct Reader {
    conn: Connection,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(Reader { conn })
    }

    pub fn module(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT bytes FROM modules WHERE sha256 = ?1", params![hash.to_hex()], |r| {
                r.get(0)
            })
            .optional()?)
    }
}

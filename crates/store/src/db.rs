//! The SQLite index (`cas/db.sqlite`, WAL): images, remotes, signatures.
//!
//! The index only describes blobs that are already in place: a row is
//! written after its blob has been renamed into `cas/blobs` and synced, so a
//! crash can leave a blob without a row (gc removes it), never a row without
//! a blob.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use skiff_spec::ImageId;

use crate::StoreError;

/// 2: remotes and signatures are also kept as files (`records`), so the
/// index can be rebuilt; opening a version 1 index writes them.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    manifest BLOB NOT NULL,
    blob_size INTEGER NOT NULL,
    size INTEGER NOT NULL,
    compression TEXT NOT NULL,
    import_time INTEGER NOT NULL,
    last_used INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS images_by_name ON images(name);
CREATE TABLE IF NOT EXISTS remotes (
    url TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    etag TEXT,
    max_age INTEGER NOT NULL DEFAULT 0,
    download_time INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS signatures (
    image_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (image_id, fingerprint)
);
";

/// One image as the index knows it.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRecord {
    pub id: ImageId,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    #[serde(skip)]
    pub manifest: Vec<u8>,
    /// Bytes on disk (the blob as imported).
    pub blob_size: u64,
    /// Bytes of the uncompressed tar.
    pub size: u64,
    pub compression: String,
    /// Seconds since the epoch.
    pub import_time: i64,
    pub last_used: i64,
}

/// A cached remote: what a URL last resolved to.
#[derive(Debug, Clone)]
pub struct RemoteRecord {
    pub url: String,
    pub image_id: ImageId,
    pub etag: Option<String>,
    /// Seconds the answer may be reused without asking (Cache-Control max-age).
    pub max_age: i64,
    pub download_time: i64,
}

/// How often a use of an image is recorded at most, in seconds
/// ([`Index::touch`]).
pub const USE_RECORDED_EVERY: i64 = 60;

/// When an image whose use was last recorded at `last_used` may have been
/// used last: a use is recorded at most every [`USE_RECORDED_EVERY`].
pub fn used_by(last_used: i64) -> i64 {
    last_used.saturating_add(USE_RECORDED_EVERY)
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64
}

pub struct Index {
    conn: Connection,
    /// The schema version the file had when opened (0: new).
    opened_at: i64,
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Index(e.to_string())
}

impl Index {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let unreadable = |e: rusqlite::Error| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
                ) =>
            {
                StoreError::IndexUnreadable {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                }
            }
            e => db_err(e),
        };
        let conn = Connection::open(path).map_err(unreadable)?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(unreadable)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unreadable)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(unreadable)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(unreadable)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Index(format!(
                "the index at {} has schema version {version}, newer than this skiff knows ({SCHEMA_VERSION}): upgrade skiff",
                path.display()
            )));
        }
        if version == 0 {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(unreadable)?;
        }
        // Version 1 becomes 2 once the store has written its records
        // ([`Index::mark_migrated`]): a crash before leaves it 1, and the
        // next open writes them again.
        Ok(Index {
            conn,
            opened_at: version,
        })
    }

    /// Records the schema as current (after a migration's work is done).
    pub(crate) fn mark_migrated(&self) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(db_err)
    }

    /// The schema version the index had before this process opened it
    /// (0 for a new index).
    pub fn opened_at_version(&self) -> i64 {
        self.opened_at
    }

    /// SQLite's own check of the file (`PRAGMA quick_check`): `None` if
    /// sound, else what it found.
    pub fn check(&self) -> Result<Option<String>, StoreError> {
        let mut stmt = self.conn.prepare("PRAGMA quick_check").map_err(db_err)?;
        let lines = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(db_err)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(db_err)?;
        Ok(if lines.len() == 1 && lines[0] == "ok" {
            None
        } else {
            Some(lines.join("; "))
        })
    }

    /// Every remote row.
    pub fn remotes(&self) -> Result<Vec<RemoteRecord>, StoreError> {
        self.remotes_where("?1 IS NOT NULL ORDER BY url", "")
    }

    /// Every signature row: (image, fingerprint, bytes).
    pub fn signatures(&self) -> Result<Vec<(ImageId, String, Vec<u8>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT image_id, fingerprint, signature FROM signatures ORDER BY image_id, fingerprint")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        rows.into_iter()
            .map(|(id, fp, sig)| Ok((ImageId::parse(&id).map_err(StoreError::Index)?, fp, sig)))
            .collect()
    }

    /// The images stored with exactly `signature` (the query compares,
    /// nothing else is read out).
    pub fn signed_with(&self, signature: &[u8]) -> Result<Vec<ImageId>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT DISTINCT image_id FROM signatures WHERE signature = ?1 ORDER BY image_id",
            )
            .map_err(db_err)?;
        let ids = stmt
            .query_map([signature], |r| r.get::<_, String>(0))
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        ids.iter()
            .map(|id| ImageId::parse(id).map_err(StoreError::Index))
            .collect()
    }

    pub(crate) fn remove_remote(&self, url: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM remotes WHERE url = ?1", [url])
            .map_err(db_err)?;
        Ok(())
    }

    pub(crate) fn remove_signature(
        &self,
        id: &ImageId,
        fingerprint: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM signatures WHERE image_id = ?1 AND fingerprint = ?2",
                params![id.as_str(), fingerprint],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// Adds an image; returns false if it was already there.
    pub(crate) fn insert_image(&self, rec: &ImageRecord) -> Result<bool, StoreError> {
        let labels = serde_json::to_string(&rec.labels).unwrap_or_else(|_| "{}".into());
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO images
                 (id, name, labels, manifest, blob_size, size, compression, import_time, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    rec.id.as_str(),
                    rec.name,
                    labels,
                    rec.manifest,
                    rec.blob_size as i64,
                    rec.size as i64,
                    rec.compression,
                    rec.import_time,
                    rec.last_used
                ],
            )
            .map_err(db_err)?;
        Ok(n == 1)
    }

    fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, ImageRecordParts)> {
        Ok((
            row.get::<_, String>(0)?,
            ImageRecordParts {
                name: row.get(1)?,
                labels: row.get(2)?,
                manifest: row.get(3)?,
                blob_size: row.get(4)?,
                size: row.get(5)?,
                compression: row.get(6)?,
                import_time: row.get(7)?,
                last_used: row.get(8)?,
            },
        ))
    }

    fn query_images(
        &self,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<ImageRecord>, StoreError> {
        let mut stmt = self.conn.prepare(sql).map_err(db_err)?;
        let rows = stmt
            .query_map(args, Self::row_to_record)
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        rows.into_iter()
            .map(|(id, parts)| parts.into_record(&id))
            .collect()
    }

    const COLUMNS: &'static str =
        "id, name, labels, manifest, blob_size, size, compression, import_time, last_used";

    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        self.query_images(
            &format!(
                "SELECT {} FROM images ORDER BY import_time, id",
                Self::COLUMNS
            ),
            &[],
        )
    }

    pub fn image(&self, id: &ImageId) -> Result<Option<ImageRecord>, StoreError> {
        Ok(self
            .query_images(
                &format!("SELECT {} FROM images WHERE id = ?1", Self::COLUMNS),
                &[&id.as_str()],
            )?
            .into_iter()
            .next())
    }

    /// Images whose ID starts with `prefix`.
    pub fn images_with_id_prefix(&self, prefix: &str) -> Result<Vec<ImageRecord>, StoreError> {
        let escaped = prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        self.query_images(
            &format!(
                "SELECT {} FROM images WHERE id LIKE ?1 ESCAPE '\\' ORDER BY id",
                Self::COLUMNS
            ),
            &[&format!("{escaped}%")],
        )
    }

    pub fn images_named(&self, name: &str) -> Result<Vec<ImageRecord>, StoreError> {
        self.query_images(
            &format!(
                "SELECT {} FROM images WHERE name = ?1 ORDER BY import_time DESC, id",
                Self::COLUMNS
            ),
            &[&name],
        )
    }

    pub(crate) fn remove_image(&self, id: &ImageId) -> Result<bool, StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(db_err)?;
        let n = tx
            .execute("DELETE FROM images WHERE id = ?1", [id.as_str()])
            .map_err(db_err)?;
        tx.execute("DELETE FROM remotes WHERE image_id = ?1", [id.as_str()])
            .map_err(db_err)?;
        tx.execute("DELETE FROM signatures WHERE image_id = ?1", [id.as_str()])
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(n == 1)
    }

    /// Sets the recorded last use of `id` (tests of what depends on it).
    #[cfg(test)]
    pub(crate) fn set_last_used(&self, id: &ImageId, at: i64) {
        self.conn
            .execute(
                "UPDATE images SET last_used = ?1 WHERE id = ?2",
                params![at, id.as_str()],
            )
            .expect("set last_used");
    }

    /// Changes this connection made to the index so far.
    #[cfg(test)]
    pub(crate) fn changes(&self) -> u64 {
        self.conn.total_changes()
    }

    /// Records a use of `id` now, unless one was recorded less than
    /// [`USE_RECORDED_EVERY`] ago: then the index is only read. A write
    /// makes SQLite start a write-ahead log and, when this process closes
    /// the index, check it back in: four fsyncs on every `skiff run` of a
    /// stored image (~1 ms on this machine's disk, more on slower ones;
    /// docs/performance.md). So `last_used` is at most that much older than
    /// the last use, and gc counts an image as used that much later
    /// ([`used_by`]).
    pub fn touch(&self, id: &ImageId) -> Result<(), StoreError> {
        let now = now();
        let recorded: Option<i64> = self
            .conn
            .query_row(
                "SELECT last_used FROM images WHERE id = ?1",
                [id.as_str()],
                |row| row.get(0),
            )
            .optional()
            .map_err(db_err)?;
        if recorded.is_some_and(|at| at <= now && now < used_by(at)) {
            return Ok(());
        }
        self.conn
            .execute(
                "UPDATE images SET last_used = ?1 WHERE id = ?2",
                params![now, id.as_str()],
            )
            .map_err(db_err)?;
        Ok(())
    }

    pub fn remote(&self, url: &str) -> Result<Option<RemoteRecord>, StoreError> {
        Ok(self.remotes_where("url = ?1", url)?.into_iter().next())
    }

    /// Where the image `id` was fetched from, newest first.
    pub fn remotes_of(&self, id: &ImageId) -> Result<Vec<RemoteRecord>, StoreError> {
        self.remotes_where("image_id = ?1 ORDER BY download_time DESC", id.as_str())
    }

    fn remotes_where(&self, condition: &str, value: &str) -> Result<Vec<RemoteRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT url, image_id, etag, max_age, download_time FROM remotes WHERE {condition}"
            ))
            .map_err(db_err)?;
        let rows = stmt
            .query_map([value], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (url, id, etag, max_age, download_time) = row.map_err(db_err)?;
            out.push(RemoteRecord {
                url,
                image_id: ImageId::parse(&id).map_err(StoreError::Index)?,
                etag,
                max_age,
                download_time,
            });
        }
        Ok(out)
    }

    /// The row only: [`crate::Store::set_remote`] writes the record first.
    pub(crate) fn set_remote(&self, rec: &RemoteRecord) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO remotes (url, image_id, etag, max_age, download_time)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    rec.url,
                    rec.image_id.as_str(),
                    rec.etag,
                    rec.max_age,
                    rec.download_time
                ],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// The row only: [`crate::Store::add_signature`] writes the record first.
    pub(crate) fn add_signature(
        &self,
        id: &ImageId,
        fingerprint: &str,
        signature: &[u8],
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO signatures (image_id, fingerprint, signature) VALUES (?1, ?2, ?3)",
                params![id.as_str(), fingerprint, signature],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// Fingerprints of the keys whose signatures were verified for `id`.
    pub fn signers(&self, id: &ImageId) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT fingerprint FROM signatures WHERE image_id = ?1 ORDER BY fingerprint")
            .map_err(db_err)?;
        stmt.query_map([id.as_str()], |r| r.get(0))
            .map_err(db_err)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(db_err)
    }
}

struct ImageRecordParts {
    name: String,
    labels: String,
    manifest: Vec<u8>,
    blob_size: i64,
    size: i64,
    compression: String,
    import_time: i64,
    last_used: i64,
}

impl ImageRecordParts {
    fn into_record(self, id: &str) -> Result<ImageRecord, StoreError> {
        Ok(ImageRecord {
            id: ImageId::parse(id).map_err(StoreError::Index)?,
            name: self.name,
            labels: serde_json::from_str(&self.labels).unwrap_or_default(),
            manifest: self.manifest,
            blob_size: self.blob_size.max(0) as u64,
            size: self.size.max(0) as u64,
            compression: self.compression,
            import_time: self.import_time,
            last_used: self.last_used,
        })
    }
}

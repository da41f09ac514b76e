//! The content store: immutable objects (input chunks, whole outputs) on disk under
//! `data_dir/store`, each named by its SHA256, with a size bound and oldest-first eviction
//! by mtime. Both sides use it: the seller keeps chunks across trades (so repeated inputs
//! cost only new chunks), the buyer keeps its inputs' chunks and the outputs it serves at
//! `/file/{sha256}`. Blocking file IO: call from `spawn_blocking` for bulk work.
//!
//! [`Store::put_soon`] is the write-behind path for objects a trade needs at once (a
//! seller's received chunks, a buyer's outputs): the object is readable from memory
//! immediately and written to disk on the blocking pool, off the trade's critical path.
//! The memory it may take is bounded ([`STORE_PENDING_BYTES_MAX`]); past that, writes wait.
//!
//! Objects of at most 16 KiB (whole small inputs and outputs) are packed (see
//! [`crate::pack`]) instead of getting a file each; the packs take at most a quarter of the
//! size bound, the files the rest.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bitwrk_protocol::Hash32;
use bytes::Bytes;

use crate::limits::{
    STORE_LOW_WATER_PERMILLE, STORE_PACK_GENERATION_BYTES_MAX, STORE_PENDING_BYTES_MAX,
    STORE_PIN_GRACE,
};
use crate::pack::{Found, PACK_OBJECT_BYTES_MAX, Pack};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("content store IO at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("object {0} is not in the store")]
    Missing(Hash32),
    #[error("object {0} on disk does not match its name (corrupt); it was removed")]
    Corrupt(Hash32),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// A content-addressed store with a size bound.
pub struct Store {
    dir: PathBuf,
    /// Bound of the one-file objects (the store's bound less the packs' share).
    max_bytes: u64,
    /// Bytes of the one-file objects.
    used_bytes: AtomicU64,
    pack: Pack,
    /// Held while evicting, so only one eviction runs at a time.
    evicting: Mutex<()>,
    tmp_seq: AtomicU64,
    /// Objects taken by [`Store::put_soon`] and not yet on disk, with their total size.
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    objects: HashMap<Hash32, Bytes>,
    bytes: u64,
}

impl Store {
    /// Open (or create) the store in `dir`, counting what is already there.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Store, StoreError> {
        let objects = dir.join("objects");
        fs::create_dir_all(&objects).map_err(io(&objects))?;
        let tmp = dir.join("tmp");
        // Leftovers of writes interrupted by a crash.
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        // Two pack generations, at most an eighth of the bound each.
        let generation_max = (max_bytes / 8).min(STORE_PACK_GENERATION_BYTES_MAX);
        let pack = Pack::open(dir, generation_max).map_err(io(dir))?;
        let store = Store {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes - 2 * generation_max,
            pack,
            used_bytes: AtomicU64::new(0),
            evicting: Mutex::new(()),
            tmp_seq: AtomicU64::new(0),
            pending: Mutex::new(Pending::default()),
        };
        let used: u64 = store.scan()?.iter().map(|e| e.size).sum();
        store.used_bytes.store(used, Ordering::Relaxed);
        tracing::info!(dir = %dir.display(), used_bytes = used, max_bytes, "content store opened");
        Ok(store)
    }

    fn path(&self, h: &Hash32) -> PathBuf {
        let hex = h.to_hex();
        self.dir.join("objects").join(&hex[..2]).join(hex)
    }

    /// Bytes the store holds now (files and packs).
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Relaxed) + self.pack.bytes()
    }

    /// Whether the object is there; marks it as recently used (so it is not evicted
    /// before the trade that asked for it is over).
    pub fn has(&self, h: &Hash32) -> bool {
        self.pending_get(h).is_some() || self.pack.has(h) || touch(&self.path(h))
    }

    /// Whether reading the object costs no file open: it is in memory or packed.
    pub fn is_cheap(&self, h: &Hash32) -> bool {
        self.pending_get(h).is_some() || self.pack.contains(h)
    }

    /// An object still waiting for its write-behind, if it is one.
    pub fn pending_get(&self, h: &Hash32) -> Option<Bytes> {
        self.pending.lock().expect("pending lock").objects.get(h).cloned()
    }

    /// Store `data` (whose SHA256 is `h`, computed by the caller) without waiting for the
    /// disk: it is readable at once ([`Store::get`], [`Store::has`]) and written on the
    /// blocking pool. When the objects waiting already hold [`STORE_PENDING_BYTES_MAX`],
    /// this one is written before returning instead. A failed write-behind is logged and
    /// the object dropped: the store is a cache, and a seller asks for a chunk it lacks.
    pub async fn put_soon(self: &Arc<Self>, h: Hash32, data: Bytes) -> Result<(), StoreError> {
        if data.len() <= PACK_OBJECT_BYTES_MAX {
            // One append to the page cache: cheaper than handing it to another thread.
            return self.put_hashed(&h, &data);
        }
        let queued = {
            let mut p = self.pending.lock().expect("pending lock");
            if p.objects.contains_key(&h) {
                return Ok(());
            }
            if p.bytes + data.len() as u64 <= STORE_PENDING_BYTES_MAX {
                p.bytes += data.len() as u64;
                p.objects.insert(h, data.clone());
                true
            } else {
                false
            }
        };
        let me = self.clone();
        let write = tokio::task::spawn_blocking(move || {
            let r = me.put_hashed(&h, &data);
            if queued {
                if let Err(e) = &r {
                    tracing::error!(object = %h, error = %e, "write-behind failed");
                }
                let mut p = me.pending.lock().expect("pending lock");
                if p.objects.remove(&h).is_some() {
                    p.bytes -= data.len() as u64;
                }
            }
            r
        });
        if queued {
            // Detached: the write finishes (or logs its failure) on the blocking pool.
            return Ok(());
        }
        write.await.map_err(|e| StoreError::Io {
            path: self.dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
    }

    /// Store `data` under its SHA256, which the caller computed (and the caller is
    /// trusted to have computed it right: every entry point hashes what it receives).
    pub fn put_hashed(&self, h: &Hash32, data: &[u8]) -> Result<(), StoreError> {
        if data.len() <= PACK_OBJECT_BYTES_MAX {
            self.pack.put(h, data).map_err(io(&self.dir))?;
            return Ok(());
        }
        let path = self.path(h);
        if touch(&path) {
            return Ok(());
        }
        let parent = path.parent().expect("objects/xx");
        fs::create_dir_all(parent).map_err(io(parent))?;
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join("tmp").join(format!("{}-{seq}", std::process::id()));
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        drop(f);
        // Rename is atomic: readers see the whole object or none.
        fs::rename(&tmp, &path).map_err(io(&path))?;
        let used =
            self.used_bytes.fetch_add(data.len() as u64, Ordering::Relaxed) + data.len() as u64;
        if used > self.max_bytes {
            self.evict()?;
        }
        Ok(())
    }

    /// Hash and store; returns the name.
    pub fn put(&self, data: &[u8]) -> Result<Hash32, StoreError> {
        let h = Hash32::of(data);
        self.put_hashed(&h, data)?;
        Ok(h)
    }

    /// Read an object and check it against its name.
    pub fn get(&self, h: &Hash32) -> Result<Vec<u8>, StoreError> {
        if let Some(d) = self.pending_get(h) {
            return Ok(d.to_vec());
        }
        match self.pack.get(h) {
            Found::Data(d) => return Ok(d),
            Found::Corrupt => return Err(StoreError::Corrupt(*h)),
            Found::Missing => {}
        }
        let path = self.path(h);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing(*h));
            }
            Err(e) => return Err(io(&path)(e)),
        };
        if Hash32::of(&data) != *h {
            let _ = fs::remove_file(&path);
            self.used_bytes.fetch_sub(data.len() as u64, Ordering::Relaxed);
            return Err(StoreError::Corrupt(*h));
        }
        touch(&path);
        Ok(data)
    }

    fn scan(&self) -> Result<Vec<Entry>, StoreError> {
        let objects = self.dir.join("objects");
        let mut out = Vec::new();
        for sub in fs::read_dir(&objects).map_err(io(&objects))? {
            let sub = sub.map_err(io(&objects))?.path();
            let Ok(files) = fs::read_dir(&sub) else { continue };
            for f in files.flatten() {
                if let Ok(md) = f.metadata() {
                    let mtime = md.modified().unwrap_or(UNIX_EPOCH);
                    out.push(Entry { path: f.path(), size: md.len(), mtime });
                }
            }
        }
        Ok(out)
    }

    /// Remove the least recently used objects until the store is below its low-water
    /// mark, sparing objects used within [`STORE_PIN_GRACE`].
    pub fn evict(&self) -> Result<(), StoreError> {
        let Ok(_guard) = self.evicting.try_lock() else { return Ok(()) };
        let mut entries = self.scan()?;
        let mut used: u64 = entries.iter().map(|e| e.size).sum();
        let target = self.max_bytes / 1000 * STORE_LOW_WATER_PERMILLE;
        entries.sort_by_key(|e| e.mtime);
        let pinned_after = SystemTime::now() - STORE_PIN_GRACE;
        let mut removed = 0u64;
        for e in entries {
            if used <= target || e.mtime >= pinned_after {
                break;
            }
            if fs::remove_file(&e.path).is_ok() {
                used -= e.size;
                removed += 1;
            }
        }
        self.used_bytes.store(used, Ordering::Relaxed);
        tracing::info!(
            removed,
            used_bytes = used,
            max_bytes = self.max_bytes,
            "content store evicted"
        );
        Ok(())
    }
}

struct Entry {
    path: PathBuf,
    size: u64,
    mtime: SystemTime,
}

/// Set the mtime to now; false if the file is not there.
fn touch(path: &Path) -> bool {
    match fs::File::options().append(true).open(path) {
        Ok(f) => {
            let _ = f.set_modified(SystemTime::now());
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_has() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let h = s.put(b"hello").unwrap();
        assert!(s.has(&h));
        assert_eq!(s.get(&h).unwrap(), b"hello");
        assert!(matches!(s.get(&Hash32::of(b"x")), Err(StoreError::Missing(_))));
        // Idempotent: the same object twice counts once (packed: a 36-byte header).
        s.put(b"hello").unwrap();
        assert_eq!(s.used_bytes(), 36 + 5);
        let big = vec![7u8; PACK_OBJECT_BYTES_MAX + 1];
        let hb = s.put(&big).unwrap();
        s.put(&big).unwrap();
        assert_eq!(s.used_bytes(), 36 + 5 + big.len() as u64);
        // Reopening counts what is there.
        drop(s);
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.used_bytes(), 36 + 5 + big.len() as u64);
        assert_eq!(s.get(&h).unwrap(), b"hello");
        assert_eq!(s.get(&hb).unwrap(), big);
    }

    #[tokio::test]
    async fn put_soon_is_readable_at_once_and_lands_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(dir.path(), 1 << 20).unwrap());
        let data = Bytes::from(vec![b'w'; PACK_OBJECT_BYTES_MAX + 1]);
        let h = Hash32::of(&data);
        s.put_soon(h, data.clone()).await.unwrap();
        assert!(s.has(&h));
        assert_eq!(s.get(&h).unwrap(), data);
        // The write-behind finishes on the blocking pool; then it is a file like any other.
        while s.pending_get(&h).is_some() {
            tokio::task::yield_now().await;
        }
        assert_eq!(fs::read(s.path(&h)).unwrap(), data);
        assert_eq!(s.pending.lock().unwrap().bytes, 0);
        assert_eq!(s.used_bytes(), data.len() as u64);
    }

    #[tokio::test]
    async fn put_soon_past_its_memory_bound_writes_before_returning() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(dir.path(), 1 << 30).unwrap());
        // Fill the pending bytes to the bound by hand, then one more object must go
        // straight to disk.
        s.pending.lock().unwrap().bytes = STORE_PENDING_BYTES_MAX;
        let data = Bytes::from(vec![b'o'; PACK_OBJECT_BYTES_MAX + 1]);
        let h = Hash32::of(&data);
        s.put_soon(h, data.clone()).await.unwrap();
        assert!(s.pending_get(&h).is_none());
        assert_eq!(fs::read(s.path(&h)).unwrap(), data);
    }

    #[test]
    fn corrupt_objects_are_detected_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let h = s.put(&[b'h'; PACK_OBJECT_BYTES_MAX + 1]).unwrap();
        fs::write(s.path(&h), b"jello").unwrap();
        assert!(matches!(s.get(&h), Err(StoreError::Corrupt(_))));
        assert!(!s.has(&h));
    }

    #[test]
    fn eviction_removes_oldest_unpinned_first() {
        let dir = tempfile::tempdir().unwrap();
        // 80 000 bytes: 2 x 10 000 for the packs, 60 000 for files.
        let s = Store::open(dir.path(), 80_000).unwrap();
        let old: Vec<Hash32> = (0..3u8).map(|i| s.put(&[i; 20_000]).unwrap()).collect();
        // Age the first two past the pin grace, oldest first.
        for (i, h) in old.iter().take(2).enumerate() {
            let f = fs::File::options().append(true).open(s.path(h)).unwrap();
            let age = STORE_PIN_GRACE + std::time::Duration::from_secs(100 - i as u64);
            f.set_modified(SystemTime::now() - age).unwrap();
        }
        // Over the bound: evicts down to 54 000 bytes, the oldest first, never the pinned.
        let new = s.put(&[9u8; 20_000]).unwrap();
        assert!(!s.has(&old[0]));
        assert!(!s.has(&old[1]));
        assert!(s.has(&old[2]));
        assert!(s.has(&new));
        assert_eq!(s.used_bytes(), 40_000);
    }
}

//! Small objects of the content store, packed: instead of one file (one new inode) per
//! object, objects of at most [`PACK_OBJECT_BYTES_MAX`] are appended to a pack file and
//! found through an in-memory index. Most trades carry small inputs and outputs, and on
//! ext4 creating a file per object cost a fifth of a busy host's CPU (inode allocation).
//!
//! Layout: `store/small-<generation>.pack`, a sequence of records
//! `sha256 (32 bytes) | len (u32, big-endian) | data`. There are at most two generations:
//! when the current one would pass its size bound, the older one is deleted and a new one
//! started (a generational cache; an object that is used again — read or `has` — while
//! it sits in the older generation is copied into the current one, so it survives the
//! next rotation, which gives the recently-used objects of the one-file store).
//!
//! Nothing is fsynced: the store is a cache. On open, each pack is scanned; a torn record
//! at the end (a crash mid-append) is cut off. Reads check the object against its name;
//! a corrupt one is dropped from the index.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bitwrk_protocol::Hash32;

/// Objects up to this size go into the pack: below FastCDC's minimum chunk (16 KiB), so
/// whole small inputs and outputs; chunks of large inputs keep one file each.
pub const PACK_OBJECT_BYTES_MAX: usize = 16 * 1024;
const HEADER: u64 = 36;

struct Generation {
    number: u64,
    path: PathBuf,
    file: Arc<File>,
    len: u64,
    index: HashMap<Hash32, (u64, u32)>,
}

impl Generation {
    fn create(dir: &Path, number: u64) -> std::io::Result<Generation> {
        let path = dir.join(format!("small-{number}.pack"));
        let file =
            File::options().read(true).write(true).create(true).truncate(true).open(&path)?;
        Ok(Generation { number, path, file: Arc::new(file), len: 0, index: HashMap::new() })
    }

    /// Open an existing pack and index it; a torn last record is cut off.
    fn open(path: PathBuf, number: u64) -> std::io::Result<Generation> {
        let file = File::options().read(true).write(true).open(&path)?;
        let size = file.metadata()?.len();
        let mut index = HashMap::new();
        let mut off = 0u64;
        let mut head = [0u8; HEADER as usize];
        while off + HEADER <= size {
            file.read_exact_at(&mut head, off)?;
            let len = u32::from_be_bytes(head[32..36].try_into().expect("4 bytes"));
            if len as usize > PACK_OBJECT_BYTES_MAX || off + HEADER + len as u64 > size {
                break;
            }
            let h = Hash32(head[..32].try_into().expect("32 bytes"));
            index.insert(h, (off + HEADER, len));
            off += HEADER + len as u64;
        }
        if off < size {
            tracing::warn!(pack = %path.display(), kept = off, size, "cutting a torn end off a pack");
            file.set_len(off)?;
        }
        Ok(Generation { number, path, file: Arc::new(file), len: off, index })
    }

    fn append(&mut self, h: &Hash32, data: &[u8]) -> std::io::Result<()> {
        let mut rec = Vec::with_capacity(HEADER as usize + data.len());
        rec.extend_from_slice(&h.0);
        rec.extend_from_slice(&(data.len() as u32).to_be_bytes());
        rec.extend_from_slice(data);
        self.file.write_all_at(&rec, self.len)?;
        self.index.insert(*h, (self.len + HEADER, data.len() as u32));
        self.len += rec.len() as u64;
        Ok(())
    }
}

struct Inner {
    current: Generation,
    older: Option<Generation>,
}

/// The packed small objects of one store.
pub struct Pack {
    dir: PathBuf,
    generation_max: u64,
    inner: Mutex<Inner>,
}

/// What a read found.
pub enum Found {
    Data(Vec<u8>),
    Missing,
    Corrupt,
}

impl Pack {
    /// Open the packs in `dir` (keeping the newest two generations); each generation
    /// holds at most `generation_max` bytes.
    pub fn open(dir: &Path, generation_max: u64) -> std::io::Result<Pack> {
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_prefix("small-").and_then(|s| s.strip_suffix(".pack"))
                && let Ok(n) = n.parse::<u64>()
            {
                found.push((n, e.path()));
            }
        }
        found.sort();
        while found.len() > 2 {
            let (_, p) = found.remove(0);
            fs::remove_file(&p)?;
        }
        let mut gens = found
            .into_iter()
            .map(|(n, p)| Generation::open(p, n))
            .collect::<std::io::Result<Vec<_>>>()?;
        let current = match gens.pop() {
            Some(g) => g,
            None => Generation::create(dir, 0)?,
        };
        let older = gens.pop();
        Ok(Pack {
            dir: dir.to_path_buf(),
            generation_max: generation_max.max(2 * PACK_OBJECT_BYTES_MAX as u64),
            inner: Mutex::new(Inner { current, older }),
        })
    }

    /// Bytes in the packs.
    pub fn bytes(&self) -> u64 {
        let i = self.inner.lock().expect("pack lock");
        i.current.len + i.older.as_ref().map_or(0, |g| g.len)
    }

    /// Whether the index knows the object (no read, no carrying forward).
    pub fn contains(&self, h: &Hash32) -> bool {
        let i = self.inner.lock().expect("pack lock");
        i.current.index.contains_key(h) || i.older.as_ref().is_some_and(|g| g.index.contains_key(h))
    }

    /// Whether the object is here; one in the older generation is carried forward.
    pub fn has(&self, h: &Hash32) -> bool {
        if self.inner.lock().expect("pack lock").current.index.contains_key(h) {
            return true;
        }
        matches!(self.get(h), Found::Data(_))
    }

    /// Read an object and check it against its name.
    pub fn get(&self, h: &Hash32) -> Found {
        let (loc, older) = {
            let i = self.inner.lock().expect("pack lock");
            if let Some(l) = i.current.index.get(h) {
                ((i.current.file.clone(), *l), false)
            } else if let Some(l) =
                i.older.as_ref().and_then(|g| g.index.get(h).map(|l| (g.file.clone(), *l)))
            {
                (l, true)
            } else {
                return Found::Missing;
            }
        };
        self.read_at(h, loc, older)
    }

    fn read_at(
        &self,
        h: &Hash32,
        (file, (off, len)): (Arc<File>, (u64, u32)),
        carry: bool,
    ) -> Found {
        let mut data = vec![0u8; len as usize];
        if file.read_exact_at(&mut data, off).is_err() || Hash32::of(&data) != *h {
            let mut i = self.inner.lock().expect("pack lock");
            i.current.index.remove(h);
            if let Some(g) = i.older.as_mut() {
                g.index.remove(h);
            }
            tracing::warn!(object = %h, "a packed object is corrupt; dropped");
            return Found::Corrupt;
        }
        if carry && let Err(e) = self.put(h, &data) {
            tracing::warn!(object = %h, error = %e, "carrying a packed object forward failed");
        }
        Found::Data(data)
    }

    /// Append an object (at most [`PACK_OBJECT_BYTES_MAX`] bytes), unless the current
    /// generation has it. Returns whether it was appended.
    pub fn put(&self, h: &Hash32, data: &[u8]) -> std::io::Result<bool> {
        assert!(data.len() <= PACK_OBJECT_BYTES_MAX, "object too large for the pack");
        let mut i = self.inner.lock().expect("pack lock");
        if i.current.index.contains_key(h) {
            return Ok(false);
        }
        if i.current.len + HEADER + data.len() as u64 > self.generation_max {
            let next = Generation::create(&self.dir, i.current.number + 1)?;
            let old = std::mem::replace(&mut i.current, next);
            if let Some(dropped) = i.older.replace(old) {
                // Readers holding its file keep reading the unlinked inode.
                fs::remove_file(&dropped.path)?;
                tracing::info!(pack = %dropped.path.display(), objects = dropped.index.len(), "older pack generation dropped");
            }
        }
        i.current.append(h, data)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(i: u32, len: usize) -> (Hash32, Vec<u8>) {
        let d: Vec<u8> = (0..len).map(|k| (k as u32 ^ i.wrapping_mul(2654435761)) as u8).collect();
        (Hash32::of(&d), d)
    }

    fn data(f: Found) -> Option<Vec<u8>> {
        match f {
            Found::Data(d) => Some(d),
            _ => None,
        }
    }

    #[test]
    fn put_get_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pack::open(dir.path(), 1 << 20).unwrap();
        let objs: Vec<_> = (0..50).map(|i| obj(i, 100 + i as usize * 7)).collect();
        for (h, d) in &objs {
            assert!(p.put(h, d).unwrap());
            assert!(!p.put(h, d).unwrap(), "the same object twice is stored once");
        }
        drop(p);
        let p = Pack::open(dir.path(), 1 << 20).unwrap();
        for (h, d) in &objs {
            assert!(p.has(h));
            assert_eq!(data(p.get(h)).as_ref(), Some(d));
        }
        assert!(matches!(p.get(&Hash32::of(b"nope")), Found::Missing));
    }

    #[test]
    fn a_torn_end_is_cut_off_and_corruption_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pack::open(dir.path(), 1 << 20).unwrap();
        let (h1, d1) = obj(1, 1000);
        let (h2, d2) = obj(2, 1000);
        p.put(&h1, &d1).unwrap();
        p.put(&h2, &d2).unwrap();
        drop(p);
        let path = dir.path().join("small-0.pack");
        let f = File::options().write(true).open(&path).unwrap();
        // A crash mid-append: the second record loses its tail.
        f.set_len(HEADER * 2 + 1000 + 500).unwrap();
        // And a flipped byte in the first record's data.
        f.write_all_at(b"X", HEADER + 10).unwrap();
        drop(f);
        let p = Pack::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), HEADER + 1000);
        assert!(matches!(p.get(&h2), Found::Missing));
        assert!(matches!(p.get(&h1), Found::Corrupt));
        assert!(!p.has(&h1), "a corrupt object is dropped");
    }

    #[test]
    fn rotation_keeps_two_generations_and_carries_used_objects_forward() {
        let dir = tempfile::tempdir().unwrap();
        // Each generation holds about three 10 000-byte objects.
        let p = Pack::open(dir.path(), 32 * 1024).unwrap();
        let objs: Vec<_> = (0..9).map(|i| obj(i, 10_000)).collect();
        for (h, d) in &objs[..3] {
            p.put(h, d).unwrap();
        }
        for (h, d) in &objs[3..6] {
            p.put(h, d).unwrap();
        }
        // objs[0] is in the older generation now; using it carries it forward.
        assert!(p.has(&objs[0].0));
        for (h, d) in &objs[6..9] {
            p.put(h, d).unwrap();
        }
        // Two rotations later the first generation is gone, except what was used.
        assert!(p.has(&objs[0].0));
        assert!(!p.has(&objs[1].0));
        assert!(!p.has(&objs[2].0));
        assert!(p.has(&objs[8].0));
        assert!(p.bytes() <= 2 * 32 * 1024);
        let packs = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(packs, 2);
        assert_eq!(data(p.get(&objs[0].0)), Some(objs[0].1.clone()));
    }
}

//! One conformance suite for every [`Storage`] backend: the same tests run against
//! [`MemoryStorage`], [`DirStorage`] and [`SqliteStorage`] (feature `sqlite`), each through
//! `conformance!`, plus the tests only the durable backends can pass (files, modes, reopening).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;

/// A fresh, private directory, removed when dropped.
pub(super) struct Scratch(PathBuf);

impl Scratch {
    pub(super) fn new(label: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "wormhole-storage-{label}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How the suite makes and reopens one backend.
pub(super) trait Backend {
    type S: Storage;
    /// A new, empty storage (keeping its files in `scratch`).
    fn open(scratch: &Scratch) -> Self::S;
    /// Whether what was stored is still there after [`Backend::open`] on the same scratch.
    const DURABLE: bool;
}

pub(super) struct Memory;
impl Backend for Memory {
    type S = MemoryStorage;
    fn open(_: &Scratch) -> MemoryStorage {
        MemoryStorage::new()
    }
    const DURABLE: bool = false;
}

pub(super) struct Dir;
impl Backend for Dir {
    type S = DirStorage;
    fn open(scratch: &Scratch) -> DirStorage {
        DirStorage::open(scratch.path().join("store")).expect("open dir storage")
    }
    const DURABLE: bool = true;
}

#[cfg(feature = "sqlite")]
pub(super) struct Sqlite;
#[cfg(feature = "sqlite")]
impl Backend for Sqlite {
    type S = SqliteStorage;
    fn open(scratch: &Scratch) -> SqliteStorage {
        SqliteStorage::open(scratch.path().join("store.sqlite")).expect("open sqlite storage")
    }
    const DURABLE: bool = true;
}

fn get(s: &dyn Storage, key: &str) -> Option<Vec<u8>> {
    s.get(key).expect("get")
}

pub(super) fn missing_keys_are_none<B: Backend>() {
    let scratch = Scratch::new("missing");
    let s = B::open(&scratch);
    assert_eq!(get(&s, "nothing"), None);
    assert_eq!(get(&s, "a/b/c"), None);
    assert_eq!(s.list("").expect("list"), Vec::<String>::new());
}

pub(super) fn put_replaces_and_get_returns_exact_bytes<B: Backend>() {
    let scratch = Scratch::new("bytes");
    let s = B::open(&scratch);
    let all_bytes: Vec<u8> = (0..=255).collect();
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    for (key, value) in [
        ("empty", &b""[..]),
        ("bytes", &all_bytes[..]),
        ("big", &big[..]),
        ("nested/deeper/key.json", &b"{}"[..]),
    ] {
        s.put(key, value).expect("put");
        assert_eq!(get(&s, key).as_deref(), Some(value), "{key}");
    }
    s.put("bytes", b"shorter").expect("replace");
    assert_eq!(get(&s, "bytes").as_deref(), Some(&b"shorter"[..]));
    s.put("big", b"").expect("replace with empty");
    assert_eq!(get(&s, "big").as_deref(), Some(&b""[..]));
}

pub(super) fn delete_removes_and_is_idempotent<B: Backend>() {
    let scratch = Scratch::new("delete");
    let s = B::open(&scratch);
    s.put("a/one", b"1").expect("put");
    s.put("a/two", b"2").expect("put");
    s.delete("a/one").expect("delete");
    s.delete("a/one").expect("delete again");
    s.delete("never/was").expect("delete missing");
    assert_eq!(get(&s, "a/one"), None);
    assert_eq!(get(&s, "a/two").as_deref(), Some(&b"2"[..]));
    assert_eq!(s.list("").expect("list"), ["a/two"]);
}

pub(super) fn list_is_sorted_and_by_literal_prefix<B: Backend>() {
    let scratch = Scratch::new("list");
    let s = B::open(&scratch);
    for key in [
        "b", "a/two", "a/one", "ab", "a_b", "axb", "a.b", "a-1/x", "c/d/e",
    ] {
        s.put(key, key.as_bytes()).expect("put");
    }
    assert_eq!(
        s.list("").expect("list"),
        ["a-1/x", "a.b", "a/one", "a/two", "a_b", "ab", "axb", "b", "c/d/e"]
    );
    assert_eq!(s.list("a/").expect("list"), ["a/one", "a/two"]);
    assert_eq!(s.list("a").expect("list").len(), 7);
    // `_` and `.` are plain characters, not patterns.
    assert_eq!(s.list("a_").expect("list"), ["a_b"]);
    assert_eq!(s.list("a.").expect("list"), ["a.b"]);
    assert_eq!(s.list("c/d/").expect("list"), ["c/d/e"]);
    assert_eq!(s.list("zzz").expect("list"), Vec::<String>::new());
}

pub(super) fn bad_keys_are_refused_and_store_nothing<B: Backend>() {
    let scratch = Scratch::new("badkeys");
    let s = B::open(&scratch);
    for bad in [
        "",
        "../x",
        "a//b",
        "/abs",
        "a/./b",
        "a/..",
        "x.tmp",
        "a/x.tmp/b",
        "sp ace",
        "tab\t",
        "naïve",
        "semi;colon",
        "a\\b",
        "trailing/",
    ] {
        assert!(
            matches!(s.put(bad, b"x"), Err(StorageError::BadKey(_))),
            "put {bad:?}"
        );
        assert!(
            matches!(s.get(bad), Err(StorageError::BadKey(_))),
            "get {bad:?}"
        );
        assert!(
            matches!(s.delete(bad), Err(StorageError::BadKey(_))),
            "delete {bad:?}"
        );
    }
    assert_eq!(s.list("").expect("list"), Vec::<String>::new());
}

pub(super) fn concurrent_writers_never_mix_values<B: Backend>()
where
    B::S: 'static,
{
    let scratch = Scratch::new("concurrent");
    let s: Arc<dyn Storage> = Arc::new(B::open(&scratch));
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for round in 0..15u8 {
                    // Each value is one byte repeated: a mix of two writes would show.
                    let value = vec![t * 16 + round % 16; 64 * 1024];
                    s.put("shared", &value).expect("put shared");
                    // Keys that differ only after their last dot (a temporary name made by
                    // replacing the extension would be shared by all four).
                    s.put(&format!("own/v.{t}"), &value).expect("put own");
                    if let Some(seen) = s.get("shared").expect("get") {
                        assert_eq!(seen.len(), 64 * 1024, "a whole value");
                        assert!(seen.iter().all(|&b| b == seen[0]), "never a mix");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread");
    }
    assert_eq!(s.list("own/").expect("list").len(), 4);
    for t in 0..4u8 {
        let own = get(&*s, &format!("own/v.{t}")).expect("own value");
        assert_eq!(
            own,
            vec![t * 16 + 14; 64 * 1024],
            "the last write of thread {t}"
        );
    }
}

pub(super) fn debug_shows_no_values<B: Backend>() {
    let scratch = Scratch::new("debug");
    let s = B::open(&scratch);
    s.put("journal", b"SECRET-CODE-7-guitarist-revenge")
        .expect("put");
    let shown = format!("{s:?}");
    assert!(!shown.contains("SECRET"), "{shown}");
}

pub(super) fn durable_backends_keep_values_across_reopen<B: Backend>() {
    let scratch = Scratch::new("reopen");
    {
        let s = B::open(&scratch);
        s.put("a/kept", b"kept").expect("put");
        s.put("a/deleted", b"gone").expect("put");
        s.delete("a/deleted").expect("delete");
    }
    let s = B::open(&scratch);
    if B::DURABLE {
        assert_eq!(get(&s, "a/kept").as_deref(), Some(&b"kept"[..]));
        assert_eq!(s.list("").expect("list"), ["a/kept"]);
    } else {
        assert_eq!(s.list("").expect("list"), Vec::<String>::new());
    }
}

macro_rules! conformance {
    ($name:ident, $backend:ty) => {
        mod $name {
            use super::*;
            #[test]
            fn missing_keys_are_none() {
                super::missing_keys_are_none::<$backend>();
            }
            #[test]
            fn put_replaces_and_get_returns_exact_bytes() {
                super::put_replaces_and_get_returns_exact_bytes::<$backend>();
            }
            #[test]
            fn delete_removes_and_is_idempotent() {
                super::delete_removes_and_is_idempotent::<$backend>();
            }
            #[test]
            fn list_is_sorted_and_by_literal_prefix() {
                super::list_is_sorted_and_by_literal_prefix::<$backend>();
            }
            #[test]
            fn bad_keys_are_refused_and_store_nothing() {
                super::bad_keys_are_refused_and_store_nothing::<$backend>();
            }
            #[test]
            fn concurrent_writers_never_mix_values() {
                super::concurrent_writers_never_mix_values::<$backend>();
            }
            #[test]
            fn debug_shows_no_values() {
                super::debug_shows_no_values::<$backend>();
            }
            #[test]
            fn durable_backends_keep_values_across_reopen() {
                super::durable_backends_keep_values_across_reopen::<$backend>();
            }
        }
    };
}

conformance!(memory, Memory);
conformance!(dir, Dir);
#[cfg(feature = "sqlite")]
conformance!(sqlite, Sqlite);

// ----- what only the file backends do -------------------------------------------------------

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[test]
fn dir_storage_files_are_private_and_leftovers_are_ignored() {
    let scratch = Scratch::new("dirmodes");
    let root = scratch.path().join("store");
    let s = DirStorage::open(&root).expect("open");
    s.put("sub/dir/journal", b"secret").expect("put");
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("sub")), 0o700);
    assert_eq!(mode(&root.join("sub/dir")), 0o700);
    assert_eq!(mode(&root.join("sub/dir/journal")), 0o600);
    // A crash between writing the temporary file and the rename leaves it behind: it is
    // neither listed nor read, and the next put goes through.
    std::fs::write(root.join("sub/dir/journal.4242.0.tmp"), b"half a val").expect("leftover");
    assert_eq!(s.list("").expect("list"), ["sub/dir/journal"]);
    assert_eq!(
        s.get("sub/dir/journal").expect("get").as_deref(),
        Some(&b"secret"[..])
    );
    s.put("sub/dir/journal", b"newer")
        .expect("put over a leftover");
    assert_eq!(
        s.get("sub/dir/journal").expect("get").as_deref(),
        Some(&b"newer"[..])
    );
    // No temporary file of ours stays behind.
    let left: Vec<_> = std::fs::read_dir(root.join("sub/dir"))
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left.len(),
        2,
        "the value and the foreign leftover: {left:?}"
    );
}

#[cfg(all(unix, feature = "sqlite"))]
#[test]
fn sqlite_storage_files_are_private_and_foreign_files_are_refused() {
    let scratch = Scratch::new("sqlitemodes");
    let path = scratch.path().join("store.sqlite");
    let s = SqliteStorage::open(&path).expect("open");
    s.put("journal", b"secret").expect("put");
    assert_eq!(mode(&path), 0o600);
    let wal = scratch.path().join("store.sqlite-wal");
    assert!(wal.exists(), "WAL mode");
    assert_eq!(mode(&wal), 0o600, "the WAL holds the values too");
    drop(s);
    // A file someone made world-readable is restricted when opened.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let s = SqliteStorage::open(&path).expect("reopen");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(
        s.get("journal").expect("get").as_deref(),
        Some(&b"secret"[..])
    );
    // Another program's database, and something that is not a database, are refused.
    let other = scratch.path().join("other.sqlite");
    rusqlite::Connection::open(&other)
        .and_then(|c| c.execute_batch("CREATE TABLE t (x)"))
        .expect("another program's file");
    let err = SqliteStorage::open(&other).expect_err("foreign");
    assert!(
        std::error::Error::source(&err).is_some_and(|e| e.to_string().contains("another program")),
        "{err:?}"
    );
    let junk = scratch.path().join("junk");
    std::fs::write(&junk, vec![b'x'; 4096]).expect("junk");
    assert!(SqliteStorage::open(&junk).is_err());
}

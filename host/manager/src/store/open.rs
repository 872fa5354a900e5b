//! Opening the store file without guessing. A missing file becomes a new store; an existing file
//! must be a whole redb file. An empty, truncated or otherwise damaged file is an error naming the
//! file and what to do — never a panic, and never a fresh empty store in its place.
//!
//! redb itself asserts (panics) on a file shorter than its header describes, or with a damaged
//! page size, so the header is checked here first (redb file format v3: a 9-byte magic number, a
//! flags byte, then page size and region layout as little-endian u32s). A panic that still comes
//! out of redb is caught and reported like any other damage.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, StorageError};

use super::{COMMANDS, EVENTS, RUNS, RunRecord, decode};
use crate::error::ManagerError;

type Result<T> = std::result::Result<T, ManagerError>;

const MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
/// The part of the header read here: magic, flags, padding, five u32 layout fields.
const HEADER_PREFIX: usize = 32;
/// The page size redb uses unless told otherwise (the store never tells it otherwise).
const PAGE_SIZE: u64 = 4096;

/// Why a file's header does not describe a whole store.
enum HeaderProblem {
    /// The file is shorter than the layout its header describes: its end is missing.
    Truncated { len: u64, expected_len: u64 },
    /// Anything else; redb cannot repair it.
    Damaged(String),
}

impl std::fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderProblem::Truncated { len, expected_len } => write!(
                f,
                "it is {len} bytes but its header describes {expected_len} bytes (the file was \
                 truncated; its end is missing)"
            ),
            HeaderProblem::Damaged(what) => f.write_str(what),
        }
    }
}

fn u32_at(bytes: &[u8], offset: usize) -> u64 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[offset..offset + 4]);
    u64::from(u32::from_le_bytes(b))
}

fn damaged(path: &Path, what: impl std::fmt::Display) -> ManagerError {
    ManagerError::Storage(format!(
        "the store file {} is damaged: {what}. Nothing was changed. Restore it from a backup, \
         or try `aac-host manager --db {} --repair` (it keeps the damaged file beside the \
         repaired one)",
        path.display(),
        path.display()
    ))
}

fn unrepairable(path: &Path, what: impl std::fmt::Display) -> ManagerError {
    ManagerError::Storage(format!(
        "the store file {} cannot be repaired: {what}. It was not changed; restore it from a \
         backup",
        path.display()
    ))
}

fn io_error(path: &Path, doing: &str, e: std::io::Error) -> ManagerError {
    ManagerError::Storage(format!(
        "could not {doing} the store file {}: {e}",
        path.display()
    ))
}

/// Reads and checks the header of an existing file of `len` bytes; the length its layout needs.
fn read_header(path: &Path, len: u64) -> std::result::Result<u64, HeaderProblem> {
    use HeaderProblem::Damaged;
    if len == 0 {
        return Err(Damaged("it is empty (0 bytes)".into()));
    }
    let mut prefix = [0u8; HEADER_PREFIX];
    let mut file = File::open(path).map_err(|e| Damaged(format!("it cannot be read: {e}")))?;
    let mut read = 0;
    while read < HEADER_PREFIX {
        match file.read(&mut prefix[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(Damaged(format!("it cannot be read: {e}"))),
        }
    }
    if read < MAGIC.len() || prefix[..MAGIC.len()] != MAGIC {
        return Err(Damaged(
            "it does not start with redb's header (it is not a store file, or its header was \
             overwritten)"
                .into(),
        ));
    }
    if read < HEADER_PREFIX {
        return Err(Damaged(format!(
            "it is {len} bytes, shorter than redb's header (truncated)"
        )));
    }
    let page_size = u32_at(&prefix, 12);
    let (region_header_pages, region_data_pages) = (u32_at(&prefix, 16), u32_at(&prefix, 20));
    let (full_regions, trailing_pages) = (u32_at(&prefix, 24), u32_at(&prefix, 28));
    if page_size != PAGE_SIZE {
        return Err(Damaged(format!(
            "its header gives a page size of {page_size} bytes (a store has {PAGE_SIZE}): the \
             header is damaged"
        )));
    }
    if region_data_pages == 0 || (full_regions == 0 && trailing_pages == 0) {
        return Err(Damaged(
            "its header describes no data regions: the header is damaged".into(),
        ));
    }
    // Saturating: a damaged header with huge counts reads as a truncated file, not an overflow.
    let trailing = if trailing_pages > 0 {
        region_header_pages + trailing_pages
    } else {
        0
    };
    let expected_len = full_regions
        .saturating_mul(region_header_pages + region_data_pages)
        .saturating_add(1 + trailing)
        .saturating_mul(page_size);
    if len < expected_len {
        return Err(HeaderProblem::Truncated { len, expected_len });
    }
    Ok(expected_len)
}

/// Runs a redb call; a panic inside redb comes back as `Err` with its message.
fn guarded<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "no message".into());
        format!("redb stopped reading it ({msg})")
    })
}

fn describe(e: DatabaseError) -> String {
    match e {
        DatabaseError::DatabaseAlreadyOpen => "it is open in another process".into(),
        DatabaseError::UpgradeRequired(v) => {
            format!("it is in redb's old file format v{v}, which this version does not read")
        }
        DatabaseError::RepairAborted => "redb's repair of it was aborted".into(),
        DatabaseError::Storage(StorageError::Corrupted(msg)) => msg,
        other => other.to_string(),
    }
}

/// Memory redb may use for its page cache and its write buffer together. Its default is 1 GiB:
/// a manager storing a flood of events (a 50 MB turn's output) grew by twice the events' size, and
/// an `aac-host run` with its embedded manager with it. The store's hot pages (queued runs, the
/// newest events) fit in far less; older pages are read from the OS's page cache.
const CACHE_BYTES: usize = 16 << 20;

fn builder() -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    builder.set_repair_callback(|session| {
        tracing::warn!(
            progress = session.progress(),
            "the store was not closed cleanly; redb is checking and repairing it"
        );
    });
    builder
}

/// Opens the store at `path`, creating it only when no file is there.
pub(super) fn open_database(path: &Path) -> Result<Database> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return create_new(path),
        Err(e) => return Err(io_error(path, "inspect", e)),
    };
    if meta.is_dir() {
        return Err(ManagerError::Storage(format!(
            "the store file {} is a directory; give --db a file path",
            path.display()
        )));
    }
    if meta.len() == 0 {
        return Err(ManagerError::Storage(format!(
            "the store file {} is empty (0 bytes): it holds no store, so it is not opened as \
             one (that would hide every run it should have held). If it held runs, restore it \
             from a backup; if you meant to start a new store, remove the empty file or give \
             --db a new path",
            path.display()
        )));
    }
    read_header(path, meta.len()).map_err(|what| damaged(path, what))?;
    match guarded(|| builder().open(path)).map_err(|what| damaged(path, what))? {
        Ok(db) => Ok(db),
        Err(DatabaseError::DatabaseAlreadyOpen) => Err(ManagerError::Storage(format!(
            "the store file {} is open in another process (another manager?)",
            path.display()
        ))),
        Err(e) => Err(damaged(path, describe(e))),
    }
}

/// A new store file; fails rather than touch a file that appeared meanwhile.
fn create_new(path: &Path) -> Result<Database> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_error(path, "create", e))?;
    // No repair callback: there is nothing to repair in a file made just now, and its first
    // open is not the unclean shutdown the callback warns about.
    let mut builder = Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    builder.create_file(file).map_err(|e| {
        ManagerError::Storage(format!(
            "could not create the store file {}: {}",
            path.display(),
            describe(e)
        ))
    })
}

/// What `--repair` did.
#[derive(Debug)]
pub struct RepairReport {
    /// The repaired store file.
    pub path: PathBuf,
    /// Where the file as it was before the repair is kept.
    pub kept: PathBuf,
    pub runs: u64,
    pub commands: u64,
    pub events: u64,
}

impl std::fmt::Display for RepairReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "repaired {}: {} runs, {} commands and {} events are readable; the file as it was \
             is kept as {}",
            self.path.display(),
            self.runs,
            self.commands,
            self.events,
            self.kept.display()
        )
    }
}

impl super::Store {
    /// Repairs the store file at `path` with redb's recovery, on a copy: only a copy that redb
    /// recovered and whose every record reads back replaces the file, and the file as it was is
    /// kept beside it. A file redb cannot recover is left exactly as it was.
    pub fn repair(path: impl AsRef<Path>) -> Result<RepairReport> {
        repair(path.as_ref())
    }
}

fn repair(path: &Path) -> Result<RepairReport> {
    let len = std::fs::metadata(path)
        .map_err(|e| io_error(path, "inspect", e))?
        .len();
    // A truncated file is recovered from the pages it still has; any other damage to the
    // header is beyond redb's recovery.
    let expected_len = match read_header(path, len) {
        Ok(expected_len) | Err(HeaderProblem::Truncated { expected_len, .. }) => expected_len,
        Err(problem) => return Err(unrepairable(path, problem)),
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let sibling = |suffix: &str| {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        path.with_file_name(name)
    };
    let copy = sibling(".repairing");
    let kept = sibling(&format!(".damaged-{stamp}"));
    let _ = std::fs::remove_file(&copy);
    std::fs::copy(path, &copy).map_err(|e| io_error(path, "copy", e))?;
    // A file longer than its layout makes redb run its full recovery, which walks every tree
    // and checks every page's checksum.
    let result = OpenOptions::new()
        .write(true)
        .open(&copy)
        .and_then(|f| f.set_len(expected_len.max(len) + PAGE_SIZE))
        .map_err(|e| io_error(&copy, "extend", e))
        .and_then(|()| {
            guarded(|| recover(&copy))
                .and_then(|r| r)
                .map_err(|what| unrepairable(path, what))
        });
    let (runs, commands, events) = match result {
        Ok(counts) => counts,
        Err(e) => {
            let _ = std::fs::remove_file(&copy);
            return Err(e);
        }
    };
    std::fs::rename(path, &kept).map_err(|e| io_error(path, "set aside", e))?;
    std::fs::rename(&copy, path).map_err(|e| io_error(&copy, "move into place", e))?;
    Ok(RepairReport {
        path: path.to_owned(),
        kept,
        runs,
        commands,
        events,
    })
}

/// Opens (recovering) `copy`, checks redb's integrity and decodes every stored record.
fn recover(copy: &Path) -> std::result::Result<(u64, u64, u64), String> {
    let mut db = builder().open(copy).map_err(describe)?;
    if !db.check_integrity().map_err(describe)? {
        return Err("redb's integrity check failed after recovery".into());
    }
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    let mut counts = (0, 0, 0);
    let runs = tx.open_table(RUNS).map_err(|e| e.to_string())?;
    for entry in runs.iter().map_err(|e| e.to_string())? {
        let (_, v) = entry.map_err(|e| e.to_string())?;
        decode::<RunRecord>(v.value()).map_err(|e| format!("a run does not decode: {e}"))?;
        counts.0 += 1;
    }
    let commands = tx.open_table(COMMANDS).map_err(|e| e.to_string())?;
    for entry in commands.iter().map_err(|e| e.to_string())? {
        entry.map_err(|e| e.to_string())?;
        counts.1 += 1;
    }
    let events = tx.open_table(EVENTS).map_err(|e| e.to_string())?;
    for entry in events.iter().map_err(|e| e.to_string())? {
        entry.map_err(|e| e.to_string())?;
        counts.2 += 1;
    }
    Ok(counts)
}

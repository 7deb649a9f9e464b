//! Writing metadata so that a crash never leaves half of a file, and two
//! engines running at once never lose each other's changes.
//!
//! Two classic tools:
//! * **write, fsync, rename**: write the new content to a temporary file in
//!   the same directory, flush it to disk, then `rename` it over the old
//!   name. `rename` is atomic: a reader (or a crash) sees the old file or
//!   the new one, never a mix.
//! * **a lock file** (`flock`): a read-modify-write of a shared file (such
//!   as the store's `index.json`) is done while holding an exclusive lock,
//!   so two `pull`s finishing together both get their image recorded.

use crate::error::{IoContext, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

// ANCHOR: write_atomically
/// Replaces `path` with `bytes` atomically (temp file + fsync + rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with_mode(path, bytes, 0o644)
}

/// The same, for a file that must be created with a given mode (a
/// credentials file is 0600 from its first byte, never readable by others).
pub fn write_atomically_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    replace(path, bytes, mode, Flush::ToDisk)
}
// ANCHOR_END: write_atomically

// ANCHOR: write_runtime_state
/// Replaces `path` with `bytes` atomically but without waiting for the
/// disk: for state that means nothing after a reboot, such as the PID of
/// a running container (runc keeps such state in /run, a tmpfs, for the
/// same reason). Readers still never see half a file; a power cut may
/// lose the change, which is harmless since the processes are gone too.
/// An fsync costs about a millisecond here: a container start writes its
/// state several times.
pub fn write_runtime_state(path: &Path, bytes: &[u8]) -> Result<()> {
    replace(path, bytes, 0o644, Flush::Later)
}
// ANCHOR_END: write_runtime_state

/// Whether a write waits for the disk ([`write_atomically`]) or leaves
/// it to the kernel's write-back ([`write_runtime_state`]), for code that
/// decides at run time (a `--rm` container is not meant to outlive its run).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Flush {
    ToDisk,
    Later,
}

/// [`write_atomically`] or [`write_runtime_state`], as `flush` says.
pub fn write_flushing(path: &Path, bytes: &[u8], flush: Flush) -> Result<()> {
    replace(path, bytes, 0o644, flush)
}

fn replace(path: &Path, bytes: &[u8], mode: u32, flush: Flush) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = temp_path_beside(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        if flush == Flush::ToDisk {
            file.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if flush == Flush::ToDisk {
            // The rename itself lives in the directory: flush that too.
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.context("writing", path)
}

/// A temporary name next to `path`, unique to this process and call.
pub fn temp_path_beside(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// An exclusive lock held until dropped.
pub struct Lock {
    _file: nix::fcntl::Flock<File>,
}

/// Takes the exclusive lock on `path` (created if missing), waiting for
/// another process that holds it.
pub fn lock(path: &Path) -> Result<Lock> {
    take_lock(path, nix::fcntl::FlockArg::LockExclusive)
}

/// Takes a shared lock: many holders at once, but none while someone holds
/// the exclusive one (pulls share; garbage collection excludes them).
pub fn lock_shared(path: &Path) -> Result<Lock> {
    take_lock(path, nix::fcntl::FlockArg::LockShared)
}

fn take_lock(path: &Path, kind: nix::fcntl::FlockArg) -> Result<Lock> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .context("opening lock file", path)?;
    let file = nix::fcntl::Flock::lock(file, kind)
        .map_err(|(_, errno)| std::io::Error::from(errno))
        .context("locking", path)?;
    Ok(Lock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("crabbox-durable-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("index.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}

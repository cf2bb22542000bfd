//! The pool's lock file: an exclusive flock held while the pool is open,
//! with the holder's pid written inside for error messages.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::PoolError;

/// Name of the lock file inside the pool directory.
pub const LOCK_FILE: &str = "lock";

/// A held pool lock; released on drop.
#[derive(Debug)]
pub struct PoolLock {
    _flock: Flock<File>,
}

impl PoolLock {
    /// Takes the lock of `dir` without blocking. Fails with
    /// [`PoolErrorKind::Locked`] naming the holder's pid. Writes our pid only
    /// when `write_pid` (callers write it once the open succeeded).
    pub fn acquire(dir: &Path) -> Result<PoolLock, PoolError> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| PoolError::io(format!("opening {}", path.display()), e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => Ok(PoolLock { _flock: flock }),
            Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let mut s = String::new();
                let _ = file.read_to_string(&mut s);
                Err(PoolError::locked(
                    dir.to_path_buf(),
                    s.trim().parse().unwrap_or(0),
                ))
            }
            Err((_, errno)) => Err(PoolError::io(
                format!("locking {}", path.display()),
                errno.into(),
            )),
        }
    }

    /// Records this process as the holder.
    pub fn write_pid(&mut self) -> Result<(), PoolError> {
        let f: &mut File = &mut self._flock;
        let pid = std::process::id();
        f.set_len(0)
            .and_then(|()| f.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(f, "{pid}"))
            .map_err(|e| PoolError::io("writing the lock file", e))
    }
}

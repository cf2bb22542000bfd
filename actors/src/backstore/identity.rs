//! The identity of a `file//` image (its LUN's VPD 80h/83h): 16 random bytes
//! in the file's extended attribute `user.tcmud.id`, created at the first
//! open. Where the file system refuses user xattrs (and for block devices,
//! whose device node is no place to keep them), the identity is derived from
//! the file's device and inode numbers and `/etc/machine-id`: stable while
//! the file stays where it is, but changed by a copy or restore.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{fgetxattr, fsetxattr, XattrFlags};
use rustix::io::Errno;
use tcmud_core::scsi::LunIdentity;

use super::BackstoreError;

/// The extended attribute holding an image's identity.
pub const IDENTITY_XATTR: &str = "user.tcmud.id";

const LEN: usize = 16;

/// The identity of the image open as `file` (see the module doc).
pub(super) fn file_identity(
    file: &File,
    path: &Path,
    block_device: bool,
) -> Result<LunIdentity, BackstoreError> {
    let io = |what: &str, e: std::io::Error| BackstoreError::Io {
        what: format!("{what} {IDENTITY_XATTR} of {}", path.display()),
        source: e,
    };
    let meta = file.metadata().map_err(|e| io("stat for", e))?;
    if block_device {
        return Ok(derived(meta.dev(), meta.rdev()));
    }
    let mut buf = [0u8; LEN + 1];
    // Two rounds: a concurrent creator may win the CREATE.
    for _ in 0..2 {
        match fgetxattr(file, IDENTITY_XATTR, &mut buf[..]) {
            Ok(LEN) => {
                let mut id = [0u8; LEN];
                id.copy_from_slice(&buf[..LEN]);
                return Ok(LunIdentity(id));
            }
            Ok(n) => {
                return Err(io(
                    "read",
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{n} bytes, expected {LEN}; remove the attribute to get a new identity"
                        ),
                    ),
                ))
            }
            Err(Errno::NODATA) => {}
            Err(Errno::NOTSUP | Errno::PERM | Errno::ACCESS) => {
                return Ok(fallback(path, &meta));
            }
            Err(Errno::RANGE) => {
                return Err(io(
                    "read",
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "longer than 16 bytes"),
                ))
            }
            Err(e) => return Err(io("read", e.into())),
        }
        let mut id = [0u8; LEN];
        getrandom_id(&mut id).map_err(|e| io("draw a random value for", e))?;
        match fsetxattr(file, IDENTITY_XATTR, &id, XattrFlags::CREATE) {
            Ok(()) => {
                file.sync_all().map_err(|e| io("sync", e))?;
                tracing::info!(path = %path.display(), "image had no identity; stored a new one");
                return Ok(LunIdentity(id));
            }
            Err(Errno::EXIST) => continue,
            Err(Errno::NOTSUP | Errno::PERM | Errno::ACCESS | Errno::NOSPC | Errno::DQUOT) => {
                return Ok(fallback(path, &meta));
            }
            Err(e) => return Err(io("write", e.into())),
        }
    }
    Err(io(
        "read",
        std::io::Error::other("it changed while being created"),
    ))
}

fn getrandom_id(id: &mut [u8; LEN]) -> std::io::Result<()> {
    tcmud_core::pool::random_bytes(id)
}

fn fallback(path: &Path, meta: &std::fs::Metadata) -> LunIdentity {
    tracing::warn!(path = %path.display(),
        "the file system keeps no user xattr: the LUN identity is derived from the \
         file's device, inode and /etc/machine-id (a copied or restored image gets another)");
    derived(meta.dev(), meta.ino())
}

/// FNV-1a (128-bit) over the machine id and the two numbers: fixed forever,
/// unlike std's hasher.
fn derived(dev: u64, ino: u64) -> LunIdentity {
    let machine = std::fs::read("/etc/machine-id").unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read /etc/machine-id for the LUN identity");
        Vec::new()
    });
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    let prime: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013B;
    let bytes = machine
        .iter()
        .copied()
        .chain(dev.to_be_bytes())
        .chain(ino.to_be_bytes());
    for b in bytes {
        h = (h ^ u128::from(b)).wrapping_mul(prime);
    }
    LunIdentity(h.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_keeps_its_identity_in_its_xattr() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        let f = File::create(&p).unwrap();
        let Ok(a) = file_identity(&f, &p, false) else {
            panic!("identity")
        };
        let mut buf = [0u8; 32];
        match fgetxattr(&f, IDENTITY_XATTR, &mut buf[..]) {
            Ok(n) => {
                assert_eq!(&buf[..n], &a.0, "stored in the xattr");
            }
            Err(Errno::NOTSUP) => {
                eprintln!("tmp refuses user xattrs: only the fallback was tested");
            }
            Err(e) => panic!("{e}"),
        }
        drop(f);
        let f = File::options().read(true).write(true).open(&p).unwrap();
        assert_eq!(
            file_identity(&f, &p, false).unwrap(),
            a,
            "same after reopen"
        );
        let q = dir.path().join("other");
        let g = File::create(&q).unwrap();
        assert_ne!(
            file_identity(&g, &q, false).unwrap(),
            a,
            "two images differ"
        );
    }

    #[test]
    fn a_bad_xattr_is_a_clear_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        let f = File::create(&p).unwrap();
        if fsetxattr(&f, IDENTITY_XATTR, b"short", XattrFlags::CREATE).is_err() {
            return; // no user xattrs here
        }
        let e = file_identity(&f, &p, false).unwrap_err().to_string();
        assert!(e.contains("5 bytes, expected 16"), "{e}");
    }
}

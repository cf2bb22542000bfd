//! Opening a `file//<path>` image safely: only under a configured root
//! (`file_roots`), never through a symlink (`openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`, or a component-by-component `O_NOFOLLOW` walk where the
//! kernel has no `openat2`), and only a regular file or a block device.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use super::BackstoreError;

/// Mode of an image file tcmud creates.
const IMAGE_MODE: u32 = 0o600;

/// What was opened.
#[derive(Debug)]
pub(super) struct Image {
    /// The open image, read-write.
    pub file: File,
    /// True for a block device (served at its own size), false for a regular file.
    pub block_device: bool,
    /// True when this call created the (regular) file.
    pub created: bool,
}

/// The configured root `path` lies under and the path relative to it.
fn beneath<'a>(
    path: &'a Path,
    roots: &'a [PathBuf],
) -> Result<(&'a Path, &'a Path), BackstoreError> {
    if roots.is_empty() {
        return Err(BackstoreError::FileOff {
            path: path.to_owned(),
        });
    }
    roots
        .iter()
        .find_map(|r| {
            let rest = path.strip_prefix(r).ok()?;
            let plain = rest.components().all(|c| matches!(c, Component::Normal(_)));
            (plain && rest.components().next().is_some()).then_some((r.as_path(), rest))
        })
        .ok_or_else(|| BackstoreError::FileOutsideRoots {
            path: path.to_owned(),
            roots: roots.to_vec(),
        })
}

/// Opens `rest` beneath `root`, following no symlink on the way.
fn open_beneath(root: &OwnedFd, rest: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    // openat2 refuses a mode without O_CREAT.
    let mode = if flags.contains(OFlag::O_CREAT) {
        Mode::from_bits_truncate(IMAGE_MODE)
    } else {
        Mode::empty()
    };
    let how = OpenHow::new().flags(flags).mode(mode).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    match openat2(root.as_fd(), rest, how) {
        Err(Errno::ENOSYS) => {}
        r => return r,
    }
    walk_nofollow(root, rest, flags, mode)
}

/// Without openat2 (Linux < 5.6): each directory on the way opened with
/// `O_NOFOLLOW`, the last component too. (`..` never reaches here: `beneath` only
/// passes plain components.)
fn walk_nofollow(root: &OwnedFd, rest: &Path, flags: OFlag, mode: Mode) -> Result<OwnedFd, Errno> {
    let mut dir: Option<OwnedFd> = None;
    let mut comps = rest.components().peekable();
    while let Some(c) = comps.next() {
        let at = dir.as_ref().unwrap_or(root).as_fd();
        if comps.peek().is_none() {
            return openat(at, c.as_os_str(), flags | OFlag::O_NOFOLLOW, mode);
        }
        let d = openat(
            at,
            c.as_os_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        dir = Some(d);
    }
    Err(Errno::ENOENT)
}

/// Opens (and with `create`, creates 0600) the image at `path` under one of `roots`.
pub(super) fn open_image(
    path: &Path,
    roots: &[PathBuf],
    create: bool,
) -> Result<Image, BackstoreError> {
    let (root, rest) = beneath(path, roots)?;
    let io = |what: String| {
        move |e: Errno| BackstoreError::Io {
            what,
            source: std::io::Error::from(e),
        }
    };
    let root_fd = open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io(format!("open file root {}", root.display())))?;
    let base = OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    // O_NOATIME where the kernel allows it (see tcmud_core's open_noatime).
    let open_flags = |flags: OFlag| match open_beneath(&root_fd, rest, flags | OFlag::O_NOATIME) {
        Err(Errno::EPERM) => open_beneath(&root_fd, rest, flags),
        r => r,
    };
    let what = || format!("open {}", path.display());
    let (fd, created) = match open_flags(base) {
        Ok(fd) => (fd, false),
        Err(Errno::ENOENT) if create => (
            open_flags(base | OFlag::O_CREAT | OFlag::O_EXCL).map_err(io(what()))?,
            true,
        ),
        Err(Errno::ENOENT) => {
            return Err(BackstoreError::ImageMissing {
                path: path.to_owned(),
            })
        }
        Err(Errno::ELOOP) => {
            return Err(BackstoreError::Io {
                what: format!("open {} (symlinks are not followed)", path.display()),
                source: std::io::Error::from(Errno::ELOOP),
            })
        }
        Err(Errno::EXDEV) => {
            return Err(BackstoreError::FileOutsideRoots {
                path: path.to_owned(),
                roots: roots.to_vec(),
            })
        }
        Err(e) => return Err(io(what())(e)),
    };
    let file = File::from(fd);
    let ft = file
        .metadata()
        .map_err(|source| BackstoreError::Io {
            what: format!("stat {}", path.display()),
            source,
        })?
        .file_type();
    let block_device = ft.is_block_device();
    if !ft.is_file() && !block_device {
        return Err(BackstoreError::FileType {
            path: path.to_owned(),
        });
    }
    Ok(Image {
        file,
        block_device,
        created,
    })
}

/// What a `file/` image path names, found without opening it for I/O or
/// creating anything (`CheckConfig` on D-Bus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageProbe {
    /// A regular file of this many bytes.
    Regular(u64),
    /// A block device (served at its own size).
    BlockDevice,
    /// Nothing there yet: a new device creates it, if its directory exists.
    Missing {
        /// The directory it would be created in exists (under the root, no
        /// symlink on the way).
        dir_exists: bool,
    },
}

/// Looks at the image `path` under one of `roots` the way [`open_image`]
/// would reach it (beneath the root, no symlink), and says what is there.
pub fn probe_image(path: &Path, roots: &[PathBuf]) -> Result<ImageProbe, BackstoreError> {
    let (root, rest) = beneath(path, roots)?;
    let root_fd = open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| BackstoreError::Io {
        what: format!("open file root {}", root.display()),
        source: std::io::Error::from(e),
    })?;
    let look = OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    match open_beneath(&root_fd, rest, look) {
        Ok(fd) => {
            let st = nix::sys::stat::fstat(&fd).map_err(|e| BackstoreError::Io {
                what: format!("stat {}", path.display()),
                source: std::io::Error::from(e),
            })?;
            let kind = nix::sys::stat::SFlag::from_bits_truncate(st.st_mode)
                & nix::sys::stat::SFlag::S_IFMT;
            if kind == nix::sys::stat::SFlag::S_IFREG {
                Ok(ImageProbe::Regular(u64::try_from(st.st_size).unwrap_or(0)))
            } else if kind == nix::sys::stat::SFlag::S_IFBLK {
                Ok(ImageProbe::BlockDevice)
            } else if kind == nix::sys::stat::SFlag::S_IFLNK {
                Err(BackstoreError::Io {
                    what: format!("open {} (symlinks are not followed)", path.display()),
                    source: std::io::Error::from(Errno::ELOOP),
                })
            } else {
                Err(BackstoreError::FileType {
                    path: path.to_owned(),
                })
            }
        }
        Err(Errno::ENOENT) => {
            let dir_exists = match rest.parent().filter(|p| !p.as_os_str().is_empty()) {
                None => true,
                Some(dir) => open_beneath(&root_fd, dir, look | OFlag::O_DIRECTORY).is_ok(),
            };
            Ok(ImageProbe::Missing { dir_exists })
        }
        Err(Errno::ELOOP) => Err(BackstoreError::Io {
            what: format!("open {} (symlinks are not followed)", path.display()),
            source: std::io::Error::from(Errno::ELOOP),
        }),
        Err(Errno::EXDEV) => Err(BackstoreError::FileOutsideRoots {
            path: path.to_owned(),
            roots: roots.to_vec(),
        }),
        Err(e) => Err(BackstoreError::Io {
            what: format!("open {}", path.display()),
            source: std::io::Error::from(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_walk_follows_no_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(dir.path().join("secret"), b"x").unwrap();
        std::fs::write(root.join("sub/img"), b"y").unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("sub/link")).unwrap();
        let rfd = open(&root, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        let rw = OFlag::O_RDWR | OFlag::O_CLOEXEC;
        assert!(walk_nofollow(&rfd, Path::new("sub/img"), rw, Mode::empty()).is_ok());
        assert!(walk_nofollow(&rfd, Path::new("up/secret"), rw, Mode::empty()).is_err());
        assert_eq!(
            walk_nofollow(&rfd, Path::new("sub/link"), rw, Mode::empty()).err(),
            Some(Errno::ELOOP)
        );
    }
}

//! `tcmud volume snapshot|clone` on an RBD image the daemon serves, named
//! by the pool "directory" `rbd:<pool>`: run through the image's backstore
//! actor (librbd's own snapshot and clone), as for an open thin volume.
//!
//! ```text
//! tcmud volume snapshot rbd:<pool> <image> <snapshot>
//! tcmud volume clone rbd:<pool> <image>@<snapshot> <new-image>
//! tcmud volume resize rbd:<pool> <image> --size <size>
//! ```
//!
//! The clone is made from a snapshot the daemon serves (`rbd/<pool>/
//! <image>@<snapshot>`), as a thin clone is made from an open snapshot.
//! A served image grows through its LUNs as a served thin volume does
//! (configfs `dev_size`, RECONFIG → `rbd_resize`; `DaemonControl`'s
//! resize). Other volume commands on RBD images are the `rbd` CLI's.

use std::path::Path;

use actix::Addr;

use super::daemon::{clone_via, snapshot_via};
use super::protocol::{ErrorKind, Reply, Response};
use crate::backstore::actor::BackstoreActor;
use crate::backstore::{BackstoreError, Backstores, DevConfig};
use crate::offline::VolumeCommand;

/// The RBD pool named by a volume command's directory (`rbd:<pool>`, made
/// absolute by the client: its last component counts).
pub(super) fn rbd_pool(dir: &Path) -> Option<String> {
    let last = dir.file_name()?.to_str()?;
    let pool = last.strip_prefix("rbd:")?;
    (!pool.is_empty()).then(|| pool.to_owned())
}

/// The backstore actor of `pool/image` (at `snap`) when this daemon
/// serves it.
pub(super) fn served_image(
    backstores: &Backstores,
    pool: &str,
    image: &str,
    snap: Option<&str>,
) -> Option<Addr<BackstoreActor>> {
    backstores.open_keys().into_iter().find_map(|k| match &k {
        DevConfig::Rbd(s) if s.pool == pool && s.image == image && s.snap.as_deref() == snap => {
            backstores.get(&k)
        }
        _ => None,
    })
}

/// Runs `cmd` on RBD pool `pool` (all but resize: `DaemonControl`'s).
pub(super) fn run(
    id: Option<u64>,
    backstores: &Backstores,
    pool: &str,
    cmd: &VolumeCommand,
) -> Response {
    let find = |image: &str, snap: Option<&str>| served_image(backstores, pool, image, snap);
    let not_served = |what: &str| {
        Response::error(
            id,
            ErrorKind::Pool,
            format!("rbd {what} is not served by this daemon: use the rbd CLI"),
        )
    };
    let (r, output) = match cmd {
        VolumeCommand::Snapshot {
            volume, snapshot, ..
        } => {
            let Some(addr) = find(volume, None) else {
                return not_served(&format!("image {pool}/{volume}"));
            };
            snapshot_via(&addr, volume, snapshot)
        }
        VolumeCommand::Clone {
            snapshot,
            new_volume,
            ..
        } => {
            let Some((image, snap)) = snapshot.split_once('@') else {
                return Response::error(
                    id,
                    ErrorKind::InvalidArgument,
                    format!("{snapshot:?}: name the snapshot as <image>@<snapshot>"),
                );
            };
            let Some(addr) = find(image, Some(snap)) else {
                return not_served(&format!("snapshot {pool}/{snapshot}"));
            };
            clone_via(&addr, snapshot, new_volume)
        }
        _ => {
            return Response::error(
                id,
                ErrorKind::InvalidArgument,
                "on rbd images tcmud runs snapshot, clone and resize; use the rbd CLI for the \
                 rest"
                    .to_owned(),
            )
        }
    };
    match r {
        Ok(Ok(())) => Response::ok(
            id,
            Reply::Command {
                output,
                problems: false,
            },
        ),
        Ok(Err(e @ BackstoreError::Unsupported(_))) => {
            Response::error(id, ErrorKind::InvalidArgument, e.to_string())
        }
        Ok(Err(e)) => Response::error(id, ErrorKind::Pool, e.to_string()),
        Err(e) => Response::error(
            id,
            ErrorKind::Unavailable,
            format!("the image's backstore actor did not answer: {e}"),
        ),
    }
}

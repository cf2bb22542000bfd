//! Forward-only metadata format migrations.
//!
//! Each format change is one numbered step in `migrations/NNNN_name.rs`
//! (repository root), included here. A step turns the keys of format `from`
//! into changes that produce format `from + 1`; [`upgrade`] commits each step
//! together with the new version number, atomically, so a crash leaves the
//! pool at one format or the next, never between.

use super::store::{Change, MetaStore};
use super::PoolError;

/// A migration step: every key and value of the old format -> the changes.
pub type MigrationFn = fn(&[(Vec<u8>, Vec<u8>)]) -> Result<Vec<Change>, PoolError>;

/// One format change.
pub struct Migration {
    /// Format this step reads; it writes `from + 1`.
    pub from: u32,
    /// Short description.
    pub name: &'static str,
    /// Computes the changes from every key and value of the old format.
    pub run: MigrationFn,
}

#[path = "../../migrations/0002_volume_origin.rs"]
mod m0002;
#[path = "../../migrations/0003_page_tree.rs"]
pub(crate) mod m0003;

/// Every step, in order.
pub fn migrations() -> &'static [Migration] {
    &[
        Migration {
            from: 1,
            name: "0002_volume_origin: catalog records gain an origin id",
            run: m0002::run,
        },
        Migration {
            from: 2,
            name: "0003_page_tree: mappings and reference counts into page trees and space maps",
            run: m0003::run,
        },
    ]
}

/// Upgrades the store from format `found` to the current one.
pub fn upgrade(store: &dyn MetaStore, found: u32) -> Result<(), PoolError> {
    let mut at = found;
    while at < super::format::CURRENT_FORMAT {
        let step = migrations()
            .iter()
            .find(|m| m.from == at)
            .ok_or_else(|| PoolError::corrupt(format!("no migration from format {at}")))?;
        let kvs = store.load_all()?;
        let mut changes = (step.run)(&kvs)?;
        changes.push((
            super::format::KEY_FORMAT.to_vec(),
            Some((at + 1).to_be_bytes().to_vec()),
        ));
        store.commit(changes)?;
        tracing::info!(
            from = at,
            to = at + 1,
            step = step.name,
            "migrated pool metadata"
        );
        at += 1;
    }
    Ok(())
}

//! `tcmud pool check` (read-only) and `tcmud pool repair` (explicit, opens
//! the pool normally).

use std::io::Write;
use std::path::Path;

use tcmud_core::pool::inspect::inspect;
use tcmud_core::pool::Pool;

use super::progress::Progress;
use super::{json_out, report, OfflineError, Outcome};

/// `pool check DIR [--json]`: 0 clean, 1 problems, error (2) when the pool
/// cannot be read at all.
pub fn check(dir: &Path, json: bool, out: &mut dyn Write) -> Result<Outcome, OfflineError> {
    let bar = Progress::new("checking");
    let r = inspect(dir, &mut |d, t| bar.update(d, t));
    bar.finish();
    let insp = r?;
    if json {
        json_out(out, &report::check_json(&insp.report))?;
    } else {
        report::check_text(out, &insp.report)?;
        if !insp.report.is_clean() {
            writeln!(
                out,
                "nothing was changed; `tcmud pool repair` rebuilds reference counts and free \
                 space from the mappings; `tcmud pool dump` / `restore` rescue by hand"
            )?;
        }
    }
    Ok(if insp.report.is_clean() {
        Outcome::Ok
    } else {
        Outcome::Problems
    })
}

/// `pool repair DIR`.
pub fn repair(dir: &Path, out: &mut dyn Write) -> Result<Outcome, OfflineError> {
    // Not refused after an unclean shutdown with inconsistencies: this is
    // how they are repaired.
    let pool = Pool::open_for_repair(dir)?;
    let r = pool.repair()?;
    if r.before.is_clean() {
        report::check_text(out, &r.before)?;
        writeln!(out, "nothing to repair")?;
        return Ok(Outcome::Ok);
    }
    writeln!(out, "before repair:")?;
    report::check_text(out, &r.before)?;
    writeln!(out, "{} change(s):", r.changes.len())?;
    for c in &r.changes {
        writeln!(out, "  {c}")?;
    }
    let after = pool.check()?;
    if after.is_clean() {
        writeln!(out, "repaired; the pool is now clean")?;
        return Ok(Outcome::Ok);
    }
    writeln!(out, "after repair:")?;
    report::check_text(out, &after)?;
    Ok(Outcome::Problems)
}

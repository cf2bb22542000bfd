//! Text and JSON renderings of pool usage, volume lists and check reports.

use std::io::{self, Write};

use serde_json::{json, Value};
use tcmud_core::pool::{CheckReport, PoolUsage, VolumeInfo, VolumeKind};

use super::size::human;

fn kind(k: VolumeKind) -> &'static str {
    match k {
        VolumeKind::Volume => "volume",
        VolumeKind::Snapshot => "snapshot",
    }
}

/// One volume as JSON.
pub fn volume_json(v: &VolumeInfo) -> Value {
    json!({
        "name": v.name,
        "kind": kind(v.kind),
        "size_bytes": v.size_bytes,
        "block_size": v.block_size,
        "allocated_bytes": v.allocated_bytes,
        "origin": v.origin,
        "identity": v.identity.map(|id| id.iter().map(|b| format!("{b:02x}")).collect::<String>()),
    })
}

/// `pool info --json`.
pub fn usage_json(u: &PoolUsage) -> Value {
    json!({
        "chunk_size": u.chunk_size,
        "capacity_chunks": u.capacity_chunks,
        "allocated_chunks": u.allocated_chunks,
        "free_chunks": u.free_chunks,
        "low_water_pct": u.low_water_pct,
        "volumes": u.volumes.iter().map(volume_json).collect::<Vec<_>>(),
    })
}

/// A table of volumes.
pub fn volumes_text(out: &mut dyn Write, vols: &[VolumeInfo]) -> io::Result<()> {
    if vols.is_empty() {
        return writeln!(out, "no volumes");
    }
    writeln!(
        out,
        "{:<24} {:<8} {:>12} {:>6} {:>12}  ORIGIN",
        "NAME", "KIND", "SIZE", "BLOCK", "ALLOCATED"
    )?;
    for v in vols {
        writeln!(
            out,
            "{:<24} {:<8} {:>12} {:>6} {:>12}  {}",
            v.name,
            kind(v.kind),
            human(v.size_bytes),
            v.block_size,
            human(v.allocated_bytes),
            v.origin.as_deref().unwrap_or("-")
        )?;
    }
    Ok(())
}

/// `pool info` as text.
pub fn usage_text(out: &mut dyn Write, dir: &str, u: &PoolUsage) -> io::Result<()> {
    let cs = u64::from(u.chunk_size);
    writeln!(out, "pool {dir}")?;
    writeln!(out, "  chunk size      {}", human(cs))?;
    writeln!(
        out,
        "  capacity        {} chunks ({})",
        u.capacity_chunks,
        human(u.capacity_chunks * cs)
    )?;
    writeln!(
        out,
        "  allocated       {} chunks ({})",
        u.allocated_chunks,
        human(u.allocated_chunks * cs)
    )?;
    writeln!(
        out,
        "  free            {} chunks ({})",
        u.free_chunks,
        human(u.free_chunks * cs)
    )?;
    writeln!(out, "  low-water mark  {}%", u.low_water_pct)?;
    volumes_text(out, &u.volumes)
}

/// A check report as text: problems, then notes.
pub fn check_text(out: &mut dyn Write, r: &CheckReport) -> io::Result<()> {
    if r.is_clean() {
        writeln!(
            out,
            "clean: {} volumes, {} mappings, {} chunks checked",
            r.volumes, r.mappings, r.chunks
        )?;
    } else {
        writeln!(out, "{} problem(s) found:", r.problems.len())?;
        for p in &r.problems {
            writeln!(out, "  {p}")?;
        }
    }
    for n in &r.notes {
        writeln!(out, "  note: {n}")?;
    }
    Ok(())
}

/// `pool check --json`.
pub fn check_json(r: &CheckReport) -> Value {
    json!({
        "clean": r.is_clean(),
        "volumes": r.volumes,
        "mappings": r.mappings,
        "chunks": r.chunks,
        "problems": r.problems.iter().map(|p| json!({
            "kind": p.kind(),
            "message": p.to_string(),
        })).collect::<Vec<_>>(),
        "notes": r.notes,
    })
}

//! `tcmud pool dump` and `tcmud pool restore`: the whole metadata as a JSON
//! document (`docs/pool-format.md`) and back.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use tcmud_core::pool::dump::{restore as restore_pool, PoolDump, RestoreOptions};
use tcmud_core::pool::inspect::inspect;

use super::progress::Progress;
use super::{report, OfflineError, Outcome};

/// `pool dump DIR [-o FILE]`: the document goes to FILE or `out`; a summary
/// of problems to stderr.
pub fn dump(
    dir: &Path,
    output: Option<&Path>,
    out: &mut dyn Write,
) -> Result<Outcome, OfflineError> {
    let bar = Progress::new("reading");
    let r = inspect(dir, &mut |d, t| bar.update(d, t));
    bar.finish();
    let insp = r?;
    let doc = PoolDump::from_inspection(&insp);
    let text = render(&doc)?;
    match output {
        Some(p) => fs::write(p, text)?,
        None => out.write_all(&text)?,
    }
    if insp.report.is_clean() {
        return Ok(Outcome::Ok);
    }
    let mut err = io::stderr().lock();
    writeln!(
        err,
        "tcmud: dumped a pool with {} problem(s) (`tcmud pool check` lists them); {} undecoded \
         record(s) listed in the document",
        insp.report.problems.len(),
        doc.undecoded.len()
    )?;
    Ok(Outcome::Problems)
}

/// Indented JSON, except that an array inside an array (a mapping run, a
/// free run) stays on one line, so that a dump stays readable and editable
/// by hand.
#[derive(Default)]
struct DumpFormatter {
    /// Open containers: (is an array, has a value yet).
    open: Vec<(bool, bool)>,
    /// Arrays written inline are open (depth of them).
    inline: usize,
}

impl DumpFormatter {
    fn filled(&mut self) {
        if let Some(c) = self.open.last_mut() {
            c.1 = true;
        }
    }

    fn newline<W: ?Sized + Write>(&self, w: &mut W) -> io::Result<()> {
        w.write_all(b"\n")?;
        for _ in 0..self.open.len() {
            w.write_all(b"  ")?;
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for DumpFormatter {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.inline > 0 || self.open.last().is_some_and(|c| c.0) {
            self.inline += 1;
        }
        self.open.push((true, false));
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        let (_, filled) = self.open.pop().unwrap_or_default();
        if self.inline > 0 {
            self.inline -= 1;
        } else if filled {
            self.newline(w)?;
        }
        w.write_all(b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.filled();
        if self.inline > 0 {
            return w.write_all(if first { b"" } else { b", " });
        }
        if !first {
            w.write_all(b",")?;
        }
        self.newline(w)
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open.push((false, false));
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        let (_, filled) = self.open.pop().unwrap_or_default();
        if filled {
            self.newline(w)?;
        }
        w.write_all(b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.filled();
        if !first {
            w.write_all(b",")?;
        }
        self.newline(w)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

/// The document as text.
fn render(doc: &PoolDump) -> Result<Vec<u8>, OfflineError> {
    use serde::Serialize;
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, DumpFormatter::default());
    doc.serialize(&mut ser)
        .map_err(|e| OfflineError::Output(e.into()))?;
    buf.push(b'\n');
    Ok(buf)
}

/// `pool restore DIR FILE [--data FILE] [--force]`.
pub fn restore(
    dir: &Path,
    file: &Path,
    data: Option<&Path>,
    force: bool,
    out: &mut dyn Write,
) -> Result<Outcome, OfflineError> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        io::stdin().read_to_string(&mut s)?;
        s
    } else {
        fs::read_to_string(file)
            .map_err(|e| OfflineError::Usage(format!("reading {}: {e}", file.display())))?
    };
    let doc: PoolDump = serde_json::from_str(&text).map_err(|e| {
        OfflineError::Usage(format!("{}: not a pool dump document: {e}", file.display()))
    })?;
    let opts = RestoreOptions {
        force,
        data: data.map(Path::to_path_buf),
    };
    let r = restore_pool(dir, &doc, &opts)?;
    writeln!(
        out,
        "restored {} volume(s), {} mapping(s), {} chunk(s) into {}",
        r.volumes,
        r.mappings,
        r.chunks,
        dir.display()
    )?;
    for n in &r.notes {
        writeln!(out, "  {n}")?;
    }
    write!(out, "check of the restored pool: ")?;
    report::check_text(out, &r.check)?;
    Ok(if r.check.is_clean() {
        Outcome::Ok
    } else {
        Outcome::Problems
    })
}

//! Byte sizes on the command line: parsed by the config's [`parse_size`]
//! (`4096`, `512B`, `64KiB`, `16GiB`, `1T`), printed by [`human`].

pub use crate::config::parse_size;

/// Formats bytes with a binary unit, e.g. `64 KiB`, `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 || v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(64 << 10), "64 KiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
    }
}

//! Netlink attributes (`struct nlattr`): a bounded, panic-free walk and emit.
//!
//! Layout: `nla_len: u16` (header + payload, unpadded), `nla_type: u16`
//! (low 14 bits = type, 0x8000 nested, 0x4000 network byte order), payload,
//! padding to a multiple of 4.

use super::NlError;

/// Attribute header length.
pub const NLA_HDR_LEN: usize = 4;
/// Mask of the type bits in `nla_type`.
pub const NLA_TYPE_MASK: u16 = 0x3fff;

/// One attribute seen in a payload (borrowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttr<'a> {
    /// Attribute type with the flag bits removed.
    pub kind: u16,
    /// Payload bytes (without padding).
    pub payload: &'a [u8],
}

/// Iterator over the attributes of a byte slice; stops after the first error.
#[derive(Debug, Clone)]
pub struct AttrIter<'a> {
    buf: &'a [u8],
    off: usize,
    failed: bool,
}

impl<'a> AttrIter<'a> {
    /// Walks the attributes in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        AttrIter {
            buf,
            off: 0,
            failed: false,
        }
    }
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = Result<RawAttr<'a>, NlError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.buf.get(self.off..)?;
        if rest.is_empty() {
            return None;
        }
        let offset = self.off;
        let fail = |me: &mut Self, why| {
            me.failed = true;
            Some(Err(NlError::BadAttr { offset, why }))
        };
        let (Some(&[l0, l1]), Some(&[t0, t1])) = (rest.get(0..2), rest.get(2..4)) else {
            return fail(self, "truncated header");
        };
        let len = usize::from(u16::from_ne_bytes([l0, l1]));
        if len < NLA_HDR_LEN {
            return fail(self, "length below header size");
        }
        let Some(payload) = rest.get(NLA_HDR_LEN..len) else {
            return fail(self, "length beyond payload");
        };
        // The last attribute may omit its padding.
        self.off = offset.saturating_add(align4(len)).min(self.buf.len());
        let kind = u16::from_ne_bytes([t0, t1]) & NLA_TYPE_MASK;
        Some(Ok(RawAttr { kind, payload }))
    }
}

/// Appends one attribute (header, payload, padding) to `out`.
pub(crate) fn push_attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) -> Result<(), NlError> {
    let len = payload
        .len()
        .checked_add(NLA_HDR_LEN)
        .and_then(|l| u16::try_from(l).ok())
        .ok_or(NlError::TooLong(payload.len()))?;
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(align4(out.len()), 0);
    Ok(())
}

/// Reads a fixed-size attribute payload.
pub(crate) fn fixed<const N: usize>(
    a: &RawAttr<'_>,
    name: &'static str,
) -> Result<[u8; N], NlError> {
    <[u8; N]>::try_from(a.payload).map_err(|_| NlError::Invalid {
        name,
        why: "wrong payload size",
    })
}

/// Reads a string attribute: trailing NULs dropped, must be UTF-8.
pub(crate) fn string(a: &RawAttr<'_>, name: &'static str) -> Result<String, NlError> {
    let end = a
        .payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(a.payload.len());
    let bytes = a.payload.get(..end).unwrap_or_default();
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| NlError::Invalid {
            name,
            why: "not UTF-8",
        })
}

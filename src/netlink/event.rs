//! Kernel events: `ADDED_DEVICE`, `REMOVED_DEVICE`, `RECONFIG_DEVICE`.

use super::attr::{fixed, string, AttrIter};
use super::{attr_type as at, cmd, NlError, GENL_HDR_LEN};

/// Which event the kernel sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NlCmd {
    /// `ADDED_DEVICE` (1).
    Added,
    /// `REMOVED_DEVICE` (2).
    Removed,
    /// `RECONFIG_DEVICE` (3).
    Reconfig,
}

impl NlCmd {
    /// The genl command number of the event.
    pub fn event_cmd(self) -> u8 {
        match self {
            NlCmd::Added => cmd::ADDED_DEVICE,
            NlCmd::Removed => cmd::REMOVED_DEVICE,
            NlCmd::Reconfig => cmd::RECONFIG_DEVICE,
        }
    }

    /// The genl command number of the daemon's reply (`*_DONE`).
    pub fn done_cmd(self) -> u8 {
        match self {
            NlCmd::Added => cmd::ADDED_DEVICE_DONE,
            NlCmd::Removed => cmd::REMOVED_DEVICE_DONE,
            NlCmd::Reconfig => cmd::RECONFIG_DEVICE_DONE,
        }
    }

    fn from_u8(c: u8) -> Result<Self, NlError> {
        match c {
            cmd::ADDED_DEVICE => Ok(NlCmd::Added),
            cmd::REMOVED_DEVICE => Ok(NlCmd::Removed),
            cmd::RECONFIG_DEVICE => Ok(NlCmd::Reconfig),
            other => Err(NlError::UnknownCmd(other)),
        }
    }
}

/// What a `RECONFIG_DEVICE` event changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconfig {
    /// New dev_config string.
    DevCfg(String),
    /// New size in bytes.
    DevSize(u64),
    /// New write-cache setting.
    WriteCache(bool),
}

/// One parsed kernel event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlEvent {
    /// The event kind.
    pub cmd: NlCmd,
    /// The uio name, `tcm-user/<hba>/<dev>/<dev_config>`.
    pub device: String,
    /// The uio minor (`/dev/uio<minor>`).
    pub minor: u32,
    /// The kernel's device index, echoed in `*_DONE` replies (absent on old kernels).
    pub device_id: Option<u32>,
    /// For `Reconfig`: what changed.
    pub reconfig: Option<Reconfig>,
    /// Types of attributes this codec does not know (kept for logging).
    pub unknown_attrs: Vec<u16>,
}

/// Parses a generic-netlink payload (genl header + attributes) into an event.
pub fn parse_event(payload: &[u8]) -> Result<NlEvent, NlError> {
    let (&[c, _version, _, _], attrs) = (
        payload
            .first_chunk::<GENL_HDR_LEN>()
            .ok_or(NlError::ShortHeader(payload.len()))?,
        payload.get(GENL_HDR_LEN..).unwrap_or_default(),
    );
    let cmd = NlCmd::from_u8(c)?;
    let mut device = None;
    let mut minor = None;
    let mut device_id = None;
    let mut reconfig = None;
    let mut unknown_attrs = Vec::new();
    for a in AttrIter::new(attrs) {
        let a = a?;
        match a.kind {
            at::DEVICE => device = Some(string(&a, "DEVICE")?),
            at::MINOR => minor = Some(u32::from_ne_bytes(fixed(&a, "MINOR")?)),
            at::DEVICE_ID => device_id = Some(u32::from_ne_bytes(fixed(&a, "DEVICE_ID")?)),
            at::DEV_CFG => {
                let s = string(&a, "DEV_CFG")?;
                reconfig.get_or_insert(Reconfig::DevCfg(s));
            }
            at::DEV_SIZE => {
                let n = u64::from_ne_bytes(fixed(&a, "DEV_SIZE")?);
                reconfig.get_or_insert(Reconfig::DevSize(n));
            }
            at::WRITECACHE => {
                let [b] = fixed(&a, "WRITECACHE")?;
                reconfig.get_or_insert(Reconfig::WriteCache(b != 0));
            }
            at::PAD => {}
            other => unknown_attrs.push(other),
        }
    }
    let device = device.ok_or(NlError::Missing("DEVICE"))?;
    let minor = minor.ok_or(NlError::Missing("MINOR"))?;
    if cmd == NlCmd::Reconfig && reconfig.is_none() {
        return Err(NlError::EmptyReconfig);
    }
    if cmd != NlCmd::Reconfig {
        reconfig = None;
    }
    Ok(NlEvent {
        cmd,
        device,
        minor,
        device_id,
        reconfig,
        unknown_attrs,
    })
}

//! Messages the daemon sends: `*_DONE` replies and `SET_FEATURES`.

use super::attr::push_attr;
use super::{attr_type as at, cmd, NlCmd, NlError, FAMILY_VERSION};

/// A reply to one kernel event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoneReply {
    /// The event answered (selects `ADDED_/REMOVED_/RECONFIG_DEVICE_DONE`).
    pub cmd: NlCmd,
    /// 0 on success, a negative errno on failure.
    pub status: i32,
    /// The event's `DEVICE_ID`.
    pub device_id: u32,
}

fn header(c: u8) -> Vec<u8> {
    vec![c, FAMILY_VERSION, 0, 0]
}

/// Builds the genl payload of a `*_DONE` reply (CMD_STATUS s32 + DEVICE_ID u32).
pub fn emit_done(r: &DoneReply) -> Vec<u8> {
    let mut out = header(r.cmd.done_cmd());
    // Fixed 4-byte payloads cannot exceed the attribute length limit.
    let _ = push_attr(&mut out, at::CMD_STATUS, &r.status.to_ne_bytes());
    let _ = push_attr(&mut out, at::DEVICE_ID, &r.device_id.to_ne_bytes());
    out
}

/// Builds the genl payload of `SET_FEATURES(SUPP_KERN_CMD_REPLY = on)`.
pub fn emit_set_features(on: bool) -> Vec<u8> {
    let mut out = header(cmd::SET_FEATURES);
    let _ = push_attr(&mut out, at::SUPP_KERN_CMD_REPLY, &[u8::from(on)]);
    out
}

/// Builds an event payload as the kernel would (tests, simulators, fuzz seeds).
pub fn emit_event(ev: &super::NlEvent) -> Result<Vec<u8>, NlError> {
    let mut out = header(ev.cmd.event_cmd());
    let mut name = ev.device.as_bytes().to_vec();
    name.push(0);
    push_attr(&mut out, at::DEVICE, &name)?;
    push_attr(&mut out, at::MINOR, &ev.minor.to_ne_bytes())?;
    if let Some(id) = ev.device_id {
        push_attr(&mut out, at::DEVICE_ID, &id.to_ne_bytes())?;
    }
    match &ev.reconfig {
        Some(super::Reconfig::DevCfg(s)) => {
            let mut b = s.as_bytes().to_vec();
            b.push(0);
            push_attr(&mut out, at::DEV_CFG, &b)?;
        }
        Some(super::Reconfig::DevSize(n)) => push_attr(&mut out, at::DEV_SIZE, &n.to_ne_bytes())?,
        Some(super::Reconfig::WriteCache(on)) => {
            push_attr(&mut out, at::WRITECACHE, &[u8::from(*on)])?
        }
        None => {}
    }
    Ok(out)
}

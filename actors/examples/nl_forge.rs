//! Test tool: multicasts a forged TCM-USER event to the `config` group, as any
//! process with CAP_NET_ADMIN could. The VM scenario 10 uses it to check that tcmud
//! ignores events that do not come from the kernel.
//!
//! ```text
//! nl_forge added   MINOR DEVICE [DEVICE_ID]   # e.g. 0 tcm-user/1/d0/file//tmp/forged
//! nl_forge removed MINOR DEVICE [DEVICE_ID]
//! ```
//!
//! The message header claims port id 0 (the kernel); only the socket address the
//! receiver gets from `recvfrom` tells the truth. Prints what was sent and exits 0
//! when the kernel let the multicast through, 3 when the send was refused.

use neli::consts::nl::NlmF;
use neli::consts::socket::NlFamily;
use neli::nl::{NlPayload, Nlmsghdr, NlmsghdrBuilder};
use neli::router::asynchronous::NlRouter;
use neli::socket::NlSocket;
use neli::types::Buffer;
use neli::utils::Groups;
use neli::ToBytes;
use nix::sys::socket::{sendto, MsgFlags, NetlinkAddr};
use std::io::Cursor;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use tcmud_core::netlink::{emit_event, NlCmd, NlEvent, FAMILY_NAME, MCAST_GROUP};

fn usage() -> ExitCode {
    eprintln!("usage: nl_forge added|removed MINOR DEVICE [DEVICE_ID]");
    ExitCode::from(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match args.first().map(String::as_str) {
        Some("added") => NlCmd::Added,
        Some("removed") => NlCmd::Removed,
        _ => return usage(),
    };
    let (Some(minor), Some(device)) =
        (args.get(1).and_then(|m| m.parse::<u32>().ok()), args.get(2))
    else {
        return usage();
    };
    let device_id = args.get(3).and_then(|d| d.parse::<u32>().ok()).or(Some(1));
    match forge(cmd, minor, device, device_id).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nl_forge: {e}");
            ExitCode::from(3)
        }
    }
}

async fn forge(cmd: NlCmd, minor: u32, device: &str, device_id: Option<u32>) -> Result<(), String> {
    let (router, _mcast) = NlRouter::connect(NlFamily::Generic, None, Groups::empty())
        .await
        .map_err(|e| format!("netlink socket: {e}"))?;
    let family = router
        .resolve_genl_family(FAMILY_NAME)
        .await
        .map_err(|e| format!("resolve {FAMILY_NAME}: {e}"))?;
    let group = router
        .resolve_nl_mcast_group(FAMILY_NAME, MCAST_GROUP)
        .await
        .map_err(|e| format!("resolve {FAMILY_NAME}/{MCAST_GROUP}: {e}"))?;
    // sockaddr_nl.nl_groups is a 32-bit mask: only groups 1..=32 can be addressed.
    let mask = group
        .checked_sub(1)
        .and_then(|b| 1u32.checked_shl(b))
        .ok_or_else(|| format!("group id {group} cannot be addressed by sendto"))?;
    let payload = emit_event(&NlEvent {
        cmd,
        device: device.to_owned(),
        minor,
        device_id,
        reconfig: None,
        unknown_attrs: vec![],
    })
    .map_err(|e| e.to_string())?;
    let msg: Nlmsghdr<u16, Buffer> = NlmsghdrBuilder::default()
        .nl_type(family)
        .nl_flags(NlmF::empty())
        .nl_pid(0) // claims to be the kernel
        .nl_payload(NlPayload::Payload(Buffer::from(payload)))
        .build()
        .map_err(|e| e.to_string())?;
    let mut bytes = Cursor::new(Vec::new());
    msg.to_bytes(&mut bytes).map_err(|e| e.to_string())?;
    let sock = NlSocket::connect(NlFamily::Generic, None, Groups::empty())
        .map_err(|e| format!("netlink socket: {e}"))?;
    let to = NetlinkAddr::new(0, mask);
    println!(
        "nl_forge: {cmd:?} minor={minor} device={device} -> family {family} group {group} (port id {})",
        nix::sys::socket::getsockname::<NetlinkAddr>(sock.as_raw_fd())
            .map(|a| a.pid())
            .unwrap_or(0)
    );
    // The kernel multicasts first, then hands the message to the family itself, which
    // has no handler for an event command: an error here can follow a delivered
    // multicast, so it is reported, not fatal.
    match sendto(sock.as_raw_fd(), bytes.get_ref(), &to, MsgFlags::empty()) {
        Ok(n) => println!("nl_forge: sent {n} bytes"),
        Err(nix::errno::Errno::EPERM) => {
            return Err("the kernel refused the multicast (EPERM)".into())
        }
        Err(e) => println!("nl_forge: sendto returned {e} (the multicast may still have gone out)"),
    }
    Ok(())
}

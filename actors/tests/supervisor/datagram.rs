//! The kernel-event socket: only datagrams from the kernel (source port id 0) become
//! events, whatever the message header claims; ENOBUFS means "rescan", not the end.

use futures::future::LocalBoxFuture;
use neli::consts::nl::NlmF;
use neli::consts::socket::NlFamily;
use neli::nl::{NlPayload, Nlmsghdr, NlmsghdrBuilder};
use neli::types::Buffer;
use neli::ToBytes;
use nix::sys::socket::{sendto, MsgFlags, NetlinkAddr};
use std::collections::VecDeque;
use std::io::Cursor;
use std::os::fd::AsRawFd;
use tcmud::supervisor::datagram::{kernel_payloads, pump, DatagramRecv, Dropped};
use tcmud::supervisor::{McastSocket, SourceEvent, RECEIVE_BUFFER};
use tokio::sync::mpsc;

const FAMILY: u16 = 30;

/// One netlink message as neli frames it, with `header_pid` in `nlmsg_pid`.
fn nlmsg(nl_type: u16, header_pid: u32, payload: &[u8]) -> Vec<u8> {
    let msg: Nlmsghdr<u16, Buffer> = NlmsghdrBuilder::default()
        .nl_type(nl_type)
        .nl_flags(NlmF::empty())
        .nl_pid(header_pid)
        .nl_payload(NlPayload::Payload(Buffer::from(payload.to_vec())))
        .build()
        .unwrap();
    let mut c = Cursor::new(Vec::new());
    msg.to_bytes(&mut c).unwrap();
    c.into_inner()
}

#[test]
fn only_the_kernel_port_id_is_trusted_not_the_header() {
    // (genl payloads are 4-byte aligned, as the kernel sends them)
    let dg = [
        nlmsg(FAMILY, 0, &[1, 2, 0, 0, 9, 9, 9, 9]),
        nlmsg(FAMILY, 0, &[3, 2, 0, 0]),
    ]
    .concat();
    assert_eq!(
        kernel_payloads(Some(0), FAMILY, &dg).unwrap(),
        vec![vec![1, 2, 0, 0, 9, 9, 9, 9], vec![3, 2, 0, 0]]
    );
    // A process that writes 0 in nlmsg_pid is still a process.
    assert_eq!(
        kernel_payloads(Some(4242), FAMILY, &dg),
        Err(Dropped::NotKernel(4242))
    );
    assert_eq!(kernel_payloads(None, FAMILY, &dg), Err(Dropped::NoAddress));
    // Other families' messages are skipped.
    let other = [nlmsg(31, 0, &[7; 4]), nlmsg(FAMILY, 0, &[8; 4])].concat();
    assert_eq!(
        kernel_payloads(Some(0), FAMILY, &other).unwrap(),
        vec![vec![8; 4]]
    );
    // A short datagram is an error, not a panic.
    assert!(matches!(
        kernel_payloads(Some(0), FAMILY, &[1, 2, 3]),
        Err(Dropped::Malformed(_))
    ));
}

/// A real netlink socket pair (NETLINK_USERSOCK needs no privilege): a datagram a
/// process sends arrives with the sender's port id, and is refused for it even though
/// its header says port id 0.
#[actix::test]
async fn a_datagram_sent_by_a_process_carries_its_port_id_and_is_refused() {
    let mut rx = McastSocket::open(NlFamily::Usersock, &[]).unwrap();
    let to = NetlinkAddr::new(rx.port_id().unwrap(), 0);
    let sender = McastSocket::open(NlFamily::Usersock, &[]).unwrap();
    let sender_port = sender.port_id().unwrap();
    assert_ne!(sender_port, 0);
    let forged = nlmsg(FAMILY, 0, &[1, 2, 0, 0]);
    sendto(sender.as_raw_fd(), &forged, &to, MsgFlags::empty()).unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, from) = rx.recv(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], &forged[..]);
    assert_eq!(from, Some(sender_port));
    assert_eq!(
        kernel_payloads(from, FAMILY, &buf[..n]),
        Err(Dropped::NotKernel(sender_port))
    );
}

/// The event socket holds a burst: its receive buffer is grown to
/// `RECEIVE_BUFFER` (the kernel accounts twice that), past `rmem_max` when
/// the process may (CAP_NET_ADMIN, as the daemon and CI run), else to
/// `rmem_max` at least.
#[actix::test]
async fn the_event_socket_has_room_for_a_burst_of_events() {
    let s = McastSocket::open(NlFamily::Usersock, &[]).unwrap();
    let have = s.receive_buffer().unwrap();
    let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let want = match nix::unistd::geteuid().is_root() {
        true => 2 * RECEIVE_BUFFER,
        false => (2 * rmem_max).min(2 * RECEIVE_BUFFER),
    };
    assert!(have >= want, "receive buffer {have} bytes, want {want}");
}

/// Scripted receive results.
struct Script(VecDeque<std::io::Result<(Vec<u8>, Option<u32>)>>);

impl DatagramRecv for Script {
    fn recv<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> LocalBoxFuture<'a, std::io::Result<(usize, Option<u32>)>> {
        let next = self.0.pop_front();
        Box::pin(async move {
            match next {
                Some(Ok((bytes, sender))) => {
                    buf[..bytes.len()].copy_from_slice(&bytes);
                    Ok((bytes.len(), sender))
                }
                Some(Err(e)) => Err(e),
                None => Err(std::io::Error::from_raw_os_error(libc::EBADF)),
            }
        })
    }
}

#[actix::test]
async fn enobufs_becomes_an_overrun_and_reading_goes_on() {
    let script = Script(VecDeque::from([
        Ok((nlmsg(FAMILY, 0, &[1, 2, 0, 0]), Some(0))),
        Err(std::io::Error::from_raw_os_error(libc::ENOBUFS)),
        Ok((nlmsg(FAMILY, 0, &[2, 2, 0, 0]), Some(99))), // forged: dropped
        Ok((nlmsg(FAMILY, 0, &[3, 2, 0, 0]), Some(0))),
    ]));
    let (tx, mut events) = mpsc::channel(16);
    let end = pump(script, FAMILY, tx).await;
    assert_eq!(end.and_then(|e| e.raw_os_error()), Some(libc::EBADF));
    let mut got = Vec::new();
    while let Ok(e) = events.try_recv() {
        got.push(e);
    }
    assert_eq!(
        got,
        vec![
            SourceEvent::Event(vec![1, 2, 0, 0]),
            SourceEvent::Overrun,
            SourceEvent::Event(vec![3, 2, 0, 0]),
        ]
    );
}

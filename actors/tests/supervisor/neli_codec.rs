//! The core netlink codec against neli's own generic-netlink (de)serialisers:
//! events built by neli parse with `parse_event`, replies we emit parse with neli.

use neli::genl::{AttrTypeBuilder, Genlmsghdr, GenlmsghdrBuilder, NlattrBuilder, NoUserHeader};
use neli::types::{Buffer, GenlBuffer};
use neli::{FromBytesWithInput, ToBytes};
use std::io::Cursor;
use tcmud_core::netlink::{
    attr_type, cmd, emit_done, emit_set_features, parse_event, DoneReply, NlCmd, Reconfig,
};

type Attrs = GenlBuffer<u16, Buffer>;

fn attr<P: neli::Size + ToBytes>(kind: u16, payload: P) -> neli::genl::Nlattr<u16, Buffer> {
    NlattrBuilder::default()
        .nla_type(AttrTypeBuilder::default().nla_type(kind).build().unwrap())
        .nla_payload(payload)
        .build()
        .unwrap()
}

fn to_bytes(c: u8, attrs: Attrs) -> Vec<u8> {
    let msg: Genlmsghdr<u8, u16, NoUserHeader> = GenlmsghdrBuilder::default()
        .cmd(c)
        .version(2)
        .attrs(attrs)
        .build()
        .unwrap();
    let mut cur = Cursor::new(Vec::new());
    msg.to_bytes(&mut cur).unwrap();
    cur.into_inner()
}

fn from_bytes(b: &[u8]) -> Genlmsghdr<u8, u16> {
    Genlmsghdr::from_bytes_with_input(&mut Cursor::new(b), b.len()).unwrap()
}

#[test]
fn neli_built_events_parse() {
    let attrs: Attrs = [
        attr(attr_type::DEVICE, "tcm-user/3/disk/thin/p/v"),
        attr(attr_type::MINOR, 9u32),
        attr(attr_type::DEVICE_ID, 77u32),
        attr(attr_type::DEV_SIZE, 1u64 << 33),
        attr(42, 5u8), // unknown
    ]
    .into_iter()
    .collect();
    let ev = parse_event(&to_bytes(cmd::RECONFIG_DEVICE, attrs)).unwrap();
    assert_eq!(ev.cmd, NlCmd::Reconfig);
    assert_eq!(ev.device, "tcm-user/3/disk/thin/p/v");
    assert_eq!((ev.minor, ev.device_id), (9, Some(77)));
    assert_eq!(ev.reconfig, Some(Reconfig::DevSize(1 << 33)));
    assert_eq!(ev.unknown_attrs, vec![42]);
}

#[test]
fn our_replies_parse_with_neli() {
    let b = emit_done(&DoneReply {
        cmd: NlCmd::Added,
        status: -libc::ENOSPC,
        device_id: 12,
    });
    let m = from_bytes(&b);
    assert_eq!((*m.cmd(), *m.version()), (cmd::ADDED_DEVICE_DONE, 2));
    let h = m.attrs().get_attr_handle();
    assert_eq!(
        h.get_attr_payload_as::<i32>(attr_type::CMD_STATUS).unwrap(),
        -libc::ENOSPC
    );
    assert_eq!(
        h.get_attr_payload_as::<u32>(attr_type::DEVICE_ID).unwrap(),
        12
    );

    let m = from_bytes(&emit_set_features(true));
    assert_eq!(*m.cmd(), cmd::SET_FEATURES);
    let h = m.attrs().get_attr_handle();
    assert_eq!(
        h.get_attr_payload_as::<u8>(attr_type::SUPP_KERN_CMD_REPLY)
            .unwrap(),
        1
    );
}

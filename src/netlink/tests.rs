//! Codec tests on static byte arrays (little-endian hosts, like the kernel's native order there).

use super::*;

/// ADDED_DEVICE for `tcm-user/1/d/x`, minor 3, device id 7, as the kernel builds it.
#[cfg(target_endian = "little")]
const ADDED: &[u8] = &[
    1, 2, 0, 0, // genl: cmd ADDED_DEVICE, version 2
    19, 0, 1, 0, // DEVICE, len 19
    b't', b'c', b'm', b'-', b'u', b's', b'e', b'r', b'/', b'1', b'/', b'd', b'/', b'x', 0,
    0, // + pad
    8, 0, 2, 0, 3, 0, 0, 0, // MINOR 3
    8, 0, 8, 0, 7, 0, 0, 0, // DEVICE_ID 7
];

fn ev(cmd: NlCmd, reconfig: Option<Reconfig>) -> NlEvent {
    NlEvent {
        cmd,
        device: "tcm-user/1/d/x".into(),
        minor: 3,
        device_id: Some(7),
        reconfig,
        unknown_attrs: vec![],
    }
}

#[test]
#[cfg(target_endian = "little")]
fn parses_kernel_added_bytes() {
    let e = parse_event(ADDED).unwrap();
    assert_eq!(e, ev(NlCmd::Added, None));
    assert_eq!(emit_event(&e).unwrap(), ADDED);
}

#[test]
#[cfg(target_endian = "little")]
fn done_reply_bytes() {
    let b = emit_done(&DoneReply {
        cmd: NlCmd::Removed,
        status: -5,
        device_id: 7,
    });
    assert_eq!(
        b,
        [5, 2, 0, 0, 8, 0, 7, 0, 0xfb, 0xff, 0xff, 0xff, 8, 0, 8, 0, 7, 0, 0, 0]
    );
    assert_eq!(
        emit_set_features(true),
        [7, 2, 0, 0, 5, 0, 9, 0, 1, 0, 0, 0]
    );
}

#[test]
#[cfg(target_endian = "little")]
fn reconfig_dev_size_with_pad_attr() {
    let bytes: &[u8] = &[
        3, 2, 0, 0, //
        19, 0, 1, 0, b't', b'c', b'm', b'-', b'u', b's', b'e', b'r', b'/', b'1', b'/', b'd', b'/',
        b'x', 0, 0, //
        8, 0, 2, 0, 3, 0, 0, 0, //
        4, 0, 3, 0, // PAD (empty)
        12, 0, 5, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, // DEV_SIZE 1 GiB
        8, 0, 8, 0, 7, 0, 0, 0,
    ];
    let e = parse_event(bytes).unwrap();
    assert_eq!(e, ev(NlCmd::Reconfig, Some(Reconfig::DevSize(1 << 30))));
}

#[test]
fn round_trips_every_reconfig() {
    for r in [
        Reconfig::DevCfg("thin/p/v".into()),
        Reconfig::DevSize(123_456_789),
        Reconfig::WriteCache(true),
        Reconfig::WriteCache(false),
    ] {
        let e = ev(NlCmd::Reconfig, Some(r));
        assert_eq!(parse_event(&emit_event(&e).unwrap()).unwrap(), e);
    }
    let mut e = ev(NlCmd::Removed, None);
    e.device_id = None;
    assert_eq!(parse_event(&emit_event(&e).unwrap()).unwrap(), e);
}

#[test]
fn unknown_attributes_are_kept_by_type() {
    let mut b = emit_event(&ev(NlCmd::Added, None)).unwrap();
    b.extend_from_slice(&[5, 0, 42, 0, 9, 0, 0, 0]);
    let e = parse_event(&b).unwrap();
    assert_eq!(e.unknown_attrs, vec![42]);
    assert_eq!(e.device, "tcm-user/1/d/x");
}

#[test]
fn missing_and_malformed_are_typed_errors() {
    assert_eq!(parse_event(&[1, 2]), Err(NlError::ShortHeader(2)));
    assert_eq!(parse_event(&[9, 2, 0, 0]), Err(NlError::UnknownCmd(9)));
    assert_eq!(parse_event(&[1, 2, 0, 0]), Err(NlError::Missing("DEVICE")));
    let mut no_minor = vec![2, 2, 0, 0];
    no_minor.extend_from_slice(&[6, 0, 1, 0, b'a', 0, 0, 0]);
    assert_eq!(parse_event(&no_minor), Err(NlError::Missing("MINOR")));
    let mut bad_len = no_minor.clone();
    bad_len.extend_from_slice(&[200, 0, 2, 0, 1]);
    assert!(matches!(
        parse_event(&bad_len),
        Err(NlError::BadAttr { offset: 8, .. })
    ));
    let mut short_minor = no_minor.clone();
    short_minor.extend_from_slice(&[6, 0, 2, 0, 1, 0, 0, 0]);
    assert!(matches!(
        parse_event(&short_minor),
        Err(NlError::Invalid { name: "MINOR", .. })
    ));
    let e = ev(NlCmd::Reconfig, None);
    assert_eq!(
        parse_event(&emit_event(&e).unwrap()),
        Err(NlError::EmptyReconfig)
    );
}

#[test]
fn uio_names() {
    let n = UioName::parse("tcm-user/1/dev0/file//tmp/img\n").unwrap();
    assert_eq!(
        (n.hba, n.dev.as_str(), n.dev_config.as_str()),
        (1, "dev0", "file//tmp/img")
    );
    assert_eq!((n.hba_dir().as_str(), n.subtype()), ("user_1", "file"));
    let empty = UioName::parse("tcm-user/2/d/").unwrap();
    assert_eq!(empty.dev_config, "");
    for bad in [
        "uio0",
        "tcm-user/x/d/c",
        "tcm-user/1/d",
        "tcm-user/1//c",
        "",
    ] {
        assert!(UioName::parse(bad).is_err(), "{bad}");
    }
}

proptest::proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
        let _ = parse_event(&bytes);
    }
}

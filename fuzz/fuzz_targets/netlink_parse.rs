//! Fuzz the TCM-USER event parser and uio-name splitter: never panic, and an
//! accepted event re-emits to bytes that parse to the same event.
#![no_main]
#![warn(clippy::cast_possible_truncation)]

use libfuzzer_sys::fuzz_target;
use tcmud_core::netlink::{emit_event, parse_event, UioName};

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = parse_event(data) {
        let _ = UioName::parse(&ev.device);
        if let Ok(bytes) = emit_event(&ev) {
            let mut again = parse_event(&bytes).expect("re-emitted event parses");
            again.unknown_attrs = ev.unknown_attrs.clone();
            assert_eq!(again, ev);
        }
    }
});

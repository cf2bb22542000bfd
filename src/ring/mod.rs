//! The kernel's shared command ring (TCMU ABI version 2), seen from
//! userspace.
//!
//! A [`Ring`] maps the region of one device (`/dev/uioN`, or a file made by
//! the [`crate::sim`] simulator), validates the mailbox once, then:
//!
//! - [`Ring::fetch`] walks from the fetch cursor to `cmd_head` and copies
//!   each entry out into an owned [`Entry`] (CDB and iov list copied, every
//!   offset checked); malformed entries come out as [`RingError::BadEntry`],
//!   carrying the `cmd_id` when the command must still be completed;
//! - [`Ring::read_data_out`] / [`Ring::write_data_in`] move data through
//!   opaque [`DataSpans`], and [`Ring::data`] hands a command's buffers
//!   to a backend as a [`RingData`] sink/source (zero-copy: the backend
//!   fills or drains the data area itself);
//! - [`Ring::complete`] consumes a [`Completion`] with the command's
//!   [`DataIn`] (its data-in buffers and how much of them it wrote), zeroes
//!   what was not written (the kernel may copy the whole buffer to the
//!   initiator), writes the response into the right slot (out-of-order slot
//!   reuse with `CAP_OOOC`) and stores `cmd_tail` with Release;
//!   [`Ring::kick`] then tells the kernel.
//!
//! All shared-memory access goes through `mapping.rs`, the only `unsafe`
//! code of the project: volatile/atomic accessors, bounds fixed at
//! construction, no reference into the region.
//!
//! ```no_run
//! use tcmud_core::ring::{Completion, DataIn, Entry, Ring};
//! # fn run(ring: &mut Ring) -> Result<(), tcmud_core::ring::RingError> {
//! ring.drain_events()?;
//! let mut done = Vec::new();
//! for e in ring.fetch() {
//!     match e {
//!         // Nothing written: the command's data-in buffer (if any) is zeroed.
//!         Ok(Entry::Cmd(cmd)) => done.push((Completion::good(cmd.cmd_id), cmd.data)),
//!         Ok(Entry::Tmr(_)) => {}
//!         Err(err) => match err.completable_cmd_id() {
//!             Some(id) => done.push((
//!                 Completion::check_condition(id, &[0x70, 0, 0x05]),
//!                 Default::default(),
//!             )),
//!             None if err.is_fatal() => return Err(err),
//!             None => {}
//!         },
//!     }
//! }
//! for (c, data) in done {
//!     ring.complete(c, DataIn::new(&data, 0))?;
//! }
//! ring.kick()?;
//! # Ok(()) }
//! ```

mod complete;
mod data;
mod data_io;
mod device;
mod entry;
mod error;
mod fetch;
pub mod layout;
mod mailbox;
#[allow(unsafe_code)] // the one module that maps and touches the shared ring
pub(crate) mod mapping;
mod track;

pub use complete::{Completion, DataIn, STATUS_CHECK_CONDITION, STATUS_GOOD};
pub use data::DataSpans;
pub use data_io::{RingData, SharedData};
pub use device::{HeadProbe, Ring};
pub use entry::{Cdb, CmdRequest, Entry, TmrRequest, TmrType};
pub use error::{Fault, RingError};
pub use fetch::Fetch;
pub use mailbox::Caps;

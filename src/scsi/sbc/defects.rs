//! READ DEFECT DATA (10) and (12) (SBC-4 5.17, 5.18): a virtual disk has no
//! defects, so both lists are empty, in the format asked for.

use crate::scsi::cdb::{ReadDefectData10, ReadDefectData12};
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;

/// DEFECT LIST FORMAT 111b is reserved; 000b-110b (short block, extended
/// bytes from index, extended physical sector, long block, bytes from
/// index, physical sector, vendor specific) are answered with an empty
/// list in that format.
const RESERVED_FORMAT: u8 = 0x07;

/// READ DEFECT DATA(10): a 4-byte header with PLISTV/GLISTV as requested
/// (the lists are valid, and empty), the requested format and DEFECT LIST
/// LENGTH 0.
pub(crate) fn read_defect_data10(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = ReadDefectData10::parse(ctx.cdb)?;
    if cdb.byte2_reserved() != 0 {
        return Err(ScsiError::cdb(2, 7));
    }
    if cdb.request() & 0x07 == RESERVED_FORMAT {
        return Err(ScsiError::cdb(2, 2));
    }
    Ok(Reply::Data(vec![0, cdb.request(), 0, 0]))
}

/// READ DEFECT DATA(12): an 8-byte header (GENERATION CODE 0, DEFECT LIST
/// LENGTH 0) whatever the ADDRESS DESCRIPTOR INDEX.
pub(crate) fn read_defect_data12(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = ReadDefectData12::parse(ctx.cdb)?;
    if cdb.byte1_reserved() != 0 {
        return Err(ScsiError::cdb(1, 7));
    }
    if cdb.request() & 0x07 == RESERVED_FORMAT {
        return Err(ScsiError::cdb(1, 2));
    }
    Ok(Reply::Data(vec![0, cdb.request(), 0, 0, 0, 0, 0, 0]))
}

//! Sense data: keys, additional sense codes and the fixed (70h) and
//! descriptor (72h) formats.

use super::fixed_len::u8_len;

/// SCSI status bytes (SAM-5).
pub mod status {
    /// GOOD.
    pub const GOOD: u8 = 0x00;
    /// CHECK CONDITION: sense data describes the error.
    pub const CHECK_CONDITION: u8 = 0x02;
    /// CONDITION MET (PRE-FETCH).
    pub const CONDITION_MET: u8 = 0x04;
    /// BUSY: the initiator should retry.
    pub const BUSY: u8 = 0x08;
    /// TASK SET FULL.
    pub const TASK_SET_FULL: u8 = 0x28;
}

/// Sense keys (SPC-4 table 48).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SenseKey {
    /// No sense.
    NoSense = 0x0,
    /// Recovered error.
    RecoveredError = 0x1,
    /// Not ready.
    NotReady = 0x2,
    /// Medium error.
    MediumError = 0x3,
    /// Hardware error.
    HardwareError = 0x4,
    /// Illegal request.
    IllegalRequest = 0x5,
    /// Unit attention.
    UnitAttention = 0x6,
    /// Data protect.
    DataProtect = 0x7,
    /// Copy aborted (EXTENDED COPY).
    CopyAborted = 0xA,
    /// Aborted command.
    AbortedCommand = 0xB,
    /// Miscompare.
    Miscompare = 0xE,
}

/// The sense key of fixed (70h/71h) or descriptor (72h/73h) sense data, as
/// [`Sense::to_fixed`] and [`Sense::to_descriptor`] write them; `None` for
/// anything else.
pub fn sense_key_of(sense: &[u8]) -> Option<u8> {
    match sense.first().map(|b| b & 0x7f) {
        Some(0x70 | 0x71) => sense.get(2).map(|b| b & 0x0f),
        Some(0x72 | 0x73) => sense.get(1).map(|b| b & 0x0f),
        _ => None,
    }
}

/// A sense key's name in lower snake case (SPC-5 table 51; every value of
/// the 4-bit field has one), e.g. a metric label value.
pub fn sense_key_name(key: u8) -> &'static str {
    const NAMES: [&str; 16] = [
        "no_sense",
        "recovered_error",
        "not_ready",
        "medium_error",
        "hardware_error",
        "illegal_request",
        "unit_attention",
        "data_protect",
        "blank_check",
        "vendor_specific",
        "copy_aborted",
        "aborted_command",
        "reserved_c",
        "volume_overflow",
        "miscompare",
        "reserved_f",
    ];
    NAMES
        .get(usize::from(key & 0x0f))
        .copied()
        .unwrap_or("reserved")
}

/// An additional sense code and qualifier (ASC/ASCQ) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asc {
    /// ADDITIONAL SENSE CODE.
    pub asc: u8,
    /// ADDITIONAL SENSE CODE QUALIFIER.
    pub ascq: u8,
}

impl Asc {
    const fn new(asc: u8, ascq: u8) -> Asc {
        Asc { asc, ascq }
    }
    /// 00/00 NO ADDITIONAL SENSE INFORMATION.
    pub const NO_ADDITIONAL: Asc = Asc::new(0x00, 0x00);
    /// 08/00 LOGICAL UNIT COMMUNICATION FAILURE.
    pub const LOGICAL_UNIT_COMMUNICATION_FAILURE: Asc = Asc::new(0x08, 0x00);
    /// 00/16 OPERATION IN PROGRESS.
    pub const OPERATION_IN_PROGRESS: Asc = Asc::new(0x00, 0x16);
    /// 0D/02 COPY TARGET DEVICE NOT REACHABLE.
    pub const COPY_TARGET_DEVICE_NOT_REACHABLE: Asc = Asc::new(0x0D, 0x02);
    /// 0D/03 INCORRECT COPY TARGET DEVICE TYPE.
    pub const INCORRECT_COPY_TARGET_DEVICE_TYPE: Asc = Asc::new(0x0D, 0x03);
    /// 26/06 TOO MANY TARGET DESCRIPTORS.
    pub const TOO_MANY_TARGET_DESCRIPTORS: Asc = Asc::new(0x26, 0x06);
    /// 26/07 UNSUPPORTED TARGET DESCRIPTOR TYPE CODE.
    pub const UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE: Asc = Asc::new(0x26, 0x07);
    /// 26/08 TOO MANY SEGMENT DESCRIPTORS.
    pub const TOO_MANY_SEGMENT_DESCRIPTORS: Asc = Asc::new(0x26, 0x08);
    /// 26/09 UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE.
    pub const UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE: Asc = Asc::new(0x26, 0x09);
    /// 55/03 INSUFFICIENT RESOURCES.
    pub const INSUFFICIENT_RESOURCES: Asc = Asc::new(0x55, 0x03);
    /// 0C/00 WRITE ERROR.
    pub const WRITE_ERROR: Asc = Asc::new(0x0C, 0x00);
    /// 04/0B LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE.
    pub const TARGET_PORT_IN_STANDBY_STATE: Asc = Asc::new(0x04, 0x0B);
    /// 04/0C LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE.
    pub const TARGET_PORT_IN_UNAVAILABLE_STATE: Asc = Asc::new(0x04, 0x0C);
    /// LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS.
    pub const SANITIZE_IN_PROGRESS: Asc = Asc::new(0x04, 0x1B);
    /// SANITIZE COMMAND FAILED.
    pub const SANITIZE_COMMAND_FAILED: Asc = Asc::new(0x31, 0x03);
    /// 0E/03 INVALID FIELD IN COMMAND INFORMATION UNIT.
    pub const INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT: Asc = Asc::new(0x0E, 0x03);
    /// 11/00 UNRECOVERED READ ERROR.
    pub const UNRECOVERED_READ_ERROR: Asc = Asc::new(0x11, 0x00);
    /// 1A/00 PARAMETER LIST LENGTH ERROR.
    pub const PARAMETER_LIST_LENGTH_ERROR: Asc = Asc::new(0x1A, 0x00);
    /// 1D/00 MISCOMPARE DURING VERIFY OPERATION.
    pub const MISCOMPARE_DURING_VERIFY: Asc = Asc::new(0x1D, 0x00);
    /// 20/00 INVALID COMMAND OPERATION CODE.
    pub const INVALID_COMMAND_OPERATION_CODE: Asc = Asc::new(0x20, 0x00);
    /// 21/00 LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const LBA_OUT_OF_RANGE: Asc = Asc::new(0x21, 0x00);
    /// 24/00 INVALID FIELD IN CDB.
    pub const INVALID_FIELD_IN_CDB: Asc = Asc::new(0x24, 0x00);
    /// 26/00 INVALID FIELD IN PARAMETER LIST.
    pub const INVALID_FIELD_IN_PARAMETER_LIST: Asc = Asc::new(0x26, 0x00);
    /// 27/00 WRITE PROTECTED.
    pub const WRITE_PROTECTED: Asc = Asc::new(0x27, 0x00);
    /// 27/07 SPACE ALLOCATION FAILED WRITE PROTECT.
    pub const SPACE_ALLOCATION_FAILED_WRITE_PROTECT: Asc = Asc::new(0x27, 0x07);
    /// 29/00 POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    pub const POWER_ON_RESET: Asc = Asc::new(0x29, 0x00);
    /// 2E/01 COMMAND TIMEOUT BEFORE PROCESSING.
    pub const COMMAND_TIMEOUT_BEFORE_PROCESSING: Asc = Asc::new(0x2E, 0x01);
    /// 2A/01 MODE PARAMETERS CHANGED.
    pub const MODE_PARAMETERS_CHANGED: Asc = Asc::new(0x2A, 0x01);
    /// 2A/06 ASYMMETRIC ACCESS STATE CHANGED.
    pub const ASYMMETRIC_ACCESS_STATE_CHANGED: Asc = Asc::new(0x2A, 0x06);
    /// 2A/09 CAPACITY DATA HAS CHANGED.
    pub const CAPACITY_DATA_HAS_CHANGED: Asc = Asc::new(0x2A, 0x09);
    /// 38/07 THIN PROVISIONING SOFT THRESHOLD REACHED.
    pub const THIN_PROVISIONING_SOFT_THRESHOLD_REACHED: Asc = Asc::new(0x38, 0x07);
    /// 39/00 SAVING PARAMETERS NOT SUPPORTED.
    pub const SAVING_PARAMETERS_NOT_SUPPORTED: Asc = Asc::new(0x39, 0x00);
    /// 44/00 INTERNAL TARGET FAILURE.
    pub const INTERNAL_TARGET_FAILURE: Asc = Asc::new(0x44, 0x00);
    /// SET TARGET PORT GROUPS COMMAND FAILED.
    pub const SET_TARGET_PORT_GROUPS_COMMAND_FAILED: Asc = Asc::new(0x67, 0x0A);
}

/// The SENSE-KEY SPECIFIC field pointer (SKSV=1): which CDB or parameter
/// list byte (and optionally bit) was invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    /// C/D: true when the field is in the CDB, false for the parameter list.
    pub in_cdb: bool,
    /// Bit number (0..=7) of the invalid field's most significant bit, if known.
    pub bit: Option<u8>,
    /// Byte offset of the invalid field.
    pub byte: u16,
}

impl FieldPointer {
    fn bytes(&self) -> [u8; 3] {
        let mut b0 = 0x80; // SKSV
        if self.in_cdb {
            b0 |= 0x40;
        }
        if let Some(bit) = self.bit {
            b0 |= 0x08 | (bit & 0x07); // BPV + BIT POINTER
        }
        let [hi, lo] = self.byte.to_be_bytes();
        [b0, hi, lo]
    }
}

/// Sense data of one CHECK CONDITION.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    /// SENSE KEY.
    pub key: SenseKey,
    /// ADDITIONAL SENSE CODE.
    pub asc: u8,
    /// ADDITIONAL SENSE CODE QUALIFIER.
    pub ascq: u8,
    /// INFORMATION field (e.g. the offset of the first miscompared byte).
    pub information: Option<u64>,
    /// Sense-key specific field pointer (INVALID FIELD IN CDB/PARAMETER LIST).
    pub field_pointer: Option<FieldPointer>,
}

/// Length of fixed-format sense data as produced by [`Sense::to_fixed`].
pub const FIXED_SENSE_LEN: usize = 18;

impl Sense {
    /// Sense with `key` and `asc`, no information or field pointer.
    pub const fn new(key: SenseKey, asc: Asc) -> Sense {
        Sense {
            key,
            asc: asc.asc,
            ascq: asc.ascq,
            information: None,
            field_pointer: None,
        }
    }

    /// The ASC/ASCQ pair.
    pub fn asc_pair(&self) -> Asc {
        Asc {
            asc: self.asc,
            ascq: self.ascq,
        }
    }

    /// Fixed-format sense data (response code 70h, current error), 18 bytes.
    /// The INFORMATION field holds the low 32 bits of `information`; VALID is
    /// set only when the value fits.
    pub fn to_fixed(&self) -> [u8; FIXED_SENSE_LEN] {
        let mut b = [0u8; FIXED_SENSE_LEN];
        b[0] = 0x70;
        b[2] = self.key as u8;
        if let Some(info) = self.information {
            if let Ok(v) = u32::try_from(info) {
                b[0] |= 0x80;
                b[3..7].copy_from_slice(&v.to_be_bytes());
            }
        }
        b[7] = u8_len(FIXED_SENSE_LEN - 8); // ADDITIONAL SENSE LENGTH
        b[12] = self.asc;
        b[13] = self.ascq;
        if let Some(fp) = self.field_pointer {
            b[15..18].copy_from_slice(&fp.bytes());
        }
        b
    }

    /// Descriptor-format sense data (response code 72h) with an
    /// information descriptor and a sense-key specific descriptor as needed.
    pub fn to_descriptor(&self) -> Vec<u8> {
        let mut b = vec![0x72, self.key as u8, self.asc, self.ascq, 0, 0, 0, 0];
        if let Some(info) = self.information {
            b.extend_from_slice(&[0x00, 0x0A, 0x80, 0x00]);
            b.extend_from_slice(&info.to_be_bytes());
        }
        if let Some(fp) = self.field_pointer {
            b.extend_from_slice(&[0x02, 0x06, 0x00, 0x00]);
            b.extend_from_slice(&fp.bytes());
            b.push(0);
        }
        let add_len = b.len().saturating_sub(8);
        if let Some(slot) = b.get_mut(7) {
            *slot = u8::try_from(add_len).unwrap_or(u8::MAX);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_with_information_and_field_pointer() {
        let s = Sense {
            information: Some(0x0102_0304),
            field_pointer: Some(FieldPointer {
                in_cdb: true,
                bit: Some(4),
                byte: 0x0102,
            }),
            ..Sense::new(SenseKey::Miscompare, Asc::MISCOMPARE_DURING_VERIFY)
        };
        assert_eq!(
            s.to_fixed(),
            [0xF0, 0, 0x0E, 1, 2, 3, 4, 10, 0, 0, 0, 0, 0x1D, 0, 0, 0xCC, 0x01, 0x02]
        );
        // An INFORMATION value that does not fit 4 bytes leaves VALID clear.
        let big = Sense {
            information: Some(1 << 40),
            ..s
        };
        assert_eq!(big.to_fixed()[..7], [0x70, 0, 0x0E, 0, 0, 0, 0]);
    }

    #[test]
    fn descriptor_format() {
        let s = Sense {
            information: Some(7),
            ..Sense::new(SenseKey::IllegalRequest, Asc::LBA_OUT_OF_RANGE)
        };
        assert_eq!(
            s.to_descriptor(),
            [0x72, 0x05, 0x21, 0x00, 0, 0, 0, 12, 0x00, 0x0A, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 7]
        );
        let plain = Sense::new(SenseKey::NoSense, Asc::NO_ADDITIONAL);
        assert_eq!(plain.to_descriptor(), [0x72, 0, 0, 0, 0, 0, 0, 0]);
    }
}

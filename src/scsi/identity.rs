//! The logical unit's identity: a 128-bit id stored with the volume (or
//! image file), turned into the VPD 80h unit serial number and the VPD 83h
//! NAA IEEE Registered Extended designator (NAA 6, SPC-4 7.8.6.6.6).
//!
//! Like LIO (`spc_gen_naa_6h_vendor_specific`), the designator is the NAA
//! nibble 6, a 24-bit company id, and then 100 bits taken from the unit
//! serial's leading hex digits; here they are the id's first 100 bits, so
//! the designator and the serial name the same volume.

/// IEEE company id (OUI) of the NAA designator: 00-14-05, the one LIO and
/// tcmu-runner use ("LIO-ORG"), so multipath tools treat tcmud LUNs as the
/// Linux target's.
pub const LIO_COMPANY_ID: u32 = 0x00_14_05;

/// A volume's 128-bit identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LunIdentity(pub [u8; 16]);

impl LunIdentity {
    /// The unit serial number: 32 lower-case hex digits.
    pub fn serial(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The 16-byte NAA 6 designator: NAA (4 bits) = 6, IEEE COMPANY_ID
    /// (24 bits) = `company_id`, then VENDOR SPECIFIC IDENTIFIER and its
    /// EXTENSION (100 bits) = the id's first 100 bits.
    pub fn naa6(&self, company_id: u32) -> [u8; 16] {
        let company = company_id & 0x00FF_FFFF;
        // 128 bits: 4 + 24 + 100; the id's low 28 bits do not fit.
        let id = u128::from_be_bytes(self.0);
        let v = (6u128 << 124) | (u128::from(company) << 100) | (id >> 28);
        v.to_be_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naa6_layout_is_naa_company_id_then_the_serials_hex_digits() {
        let id = LunIdentity([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54,
            0x32, 0x10,
        ]);
        assert_eq!(id.serial(), "0123456789abcdeffedcba9876543210");
        let d = id.naa6(LIO_COMPANY_ID);
        // 6 | 001405 | first 25 hex digits of the serial, as LIO builds it.
        assert_eq!(
            d,
            [
                0x60, 0x01, 0x40, 0x50, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xFF, 0xED, 0xCB,
                0xA9, 0x87
            ]
        );
    }
}

//! The uio name of a TCMU device: `tcm-user/<hba>/<dev>/<dev_config>`.

use super::NlError;

/// Prefix the kernel puts in front of every TCMU uio name.
pub const UIO_PREFIX: &str = "tcm-user/";

/// A uio name split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UioName {
    /// HBA index (`user_<hba>` in configfs).
    pub hba: u32,
    /// Device name (the configfs directory under `user_<hba>/`).
    pub dev: String,
    /// The device's dev_config (may be empty, may contain `/`).
    pub dev_config: String,
}

impl UioName {
    /// Splits `tcm-user/<hba>/<dev>/<dev_config>`; a trailing newline (sysfs) is ignored.
    pub fn parse(name: &str) -> Result<UioName, NlError> {
        let bad = |why| NlError::BadUioName {
            name: name.to_owned(),
            why,
        };
        let trimmed = name.strip_suffix('\n').unwrap_or(name);
        let rest = trimmed
            .strip_prefix(UIO_PREFIX)
            .ok_or_else(|| bad("no tcm-user/ prefix"))?;
        let mut parts = rest.splitn(3, '/');
        let hba = parts.next().unwrap_or_default();
        let dev = parts.next().ok_or_else(|| bad("no device name"))?;
        let dev_config = parts.next().ok_or_else(|| bad("no dev_config part"))?;
        let hba = hba.parse::<u32>().map_err(|_| bad("hba is not a number"))?;
        if dev.is_empty() {
            return Err(bad("empty device name"));
        }
        Ok(UioName {
            hba,
            dev: dev.to_owned(),
            dev_config: dev_config.to_owned(),
        })
    }

    /// The configfs directory name of the HBA: `user_<hba>`.
    pub fn hba_dir(&self) -> String {
        format!("user_{}", self.hba)
    }

    /// The dev_config subtype (text before the first `/`), e.g. `thin` or `file`.
    pub fn subtype(&self) -> &str {
        self.dev_config.split('/').next().unwrap_or_default()
    }
}

//! TODO: device

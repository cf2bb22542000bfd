//! TODO: offline

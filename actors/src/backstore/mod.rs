//! TODO: backstore

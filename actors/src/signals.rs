//! TODO: signals

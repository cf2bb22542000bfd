//! TODO: sim

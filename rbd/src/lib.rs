//! librados and librbd for tcmud's RBD backstore.
//!
//! No maintained crate covers librbd's asynchronous API (crates.io has
//! `librbd-sys` 0.1.0 from 2016 and no safe layer with `rbd_aio_*`), so this
//! crate declares the few C functions it uses by hand ([`ffi`], checked
//! against Debian 12's `librbd-dev` 16.2) and wraps them:
//!
//! - [`Cluster`]: a connected `rados_t` (conf file, client id, options);
//! - [`IoCtx`]: a pool (create, remove, clone images);
//! - [`Image`]: an open image, at its head or read-only at a snapshot: size,
//!   id, resize, snapshots, allocation ([`Image::diff_iterate`]) and the
//!   asynchronous I/O (`aio_*`) whose completion runs a Rust closure on a
//!   librbd thread; [`Image::aio_readv`] / [`Image::aio_writev`] work in
//!   place on [`IoBuffers`] (the ring's data area: no bounce buffer).
//!
//! All of the project's `unsafe` for Ceph lives in this crate, each block
//! with a `// SAFETY:` comment. Built only with the `librbd` feature; without
//! it the crate is empty.
#![cfg(feature = "librbd")]

mod aio;
mod cluster;
mod error;
pub mod ffi;
mod image;
mod iobuf;

pub use aio::{AioDone, DoneFn};
pub use cluster::{live_clusters, wait_all_shut_down, Cluster, ConnectOptions, IoCtx};
pub use error::RbdError;
pub use image::{Extent, Image, ImageInfo};
pub use iobuf::IoBuffers;

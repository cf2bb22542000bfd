//! The C declarations used, from Debian 12's `rados/librados.h` and
//! `rbd/librbd.h` (Ceph 16.2). Hand-written rather than bindgen'd: a few
//! dozen lines, and no libclang needed to build.
#![allow(non_camel_case_types, missing_docs)]

use libc::{c_char, c_int, c_void, size_t, ssize_t};

pub type rados_t = *mut c_void;
pub type rados_ioctx_t = *mut c_void;
pub type rbd_image_t = *mut c_void;
pub type rbd_completion_t = *mut c_void;
pub type rbd_callback_t = extern "C" fn(cb: rbd_completion_t, arg: *mut c_void);
pub type diff_cb_t = extern "C" fn(off: u64, len: size_t, exists: c_int, arg: *mut c_void) -> c_int;

/// `rbd_image_info_t`.
#[repr(C)]
pub struct rbd_image_info_t {
    pub size: u64,
    pub obj_size: u64,
    pub num_objs: u64,
    pub order: c_int,
    pub block_name_prefix: [c_char; 24],
    pub parent_pool: i64,
    pub parent_name: [c_char; 96],
}

/// `LIBRADOS_OP_FLAG_FADVISE_FUA`: a write durable on completion.
pub const LIBRADOS_OP_FLAG_FADVISE_FUA: c_int = 0x80;

#[link(name = "rados")]
extern "C" {
    pub fn rados_create(cluster: *mut rados_t, id: *const c_char) -> c_int;
    pub fn rados_conf_read_file(cluster: rados_t, path: *const c_char) -> c_int;
    pub fn rados_conf_set(cluster: rados_t, option: *const c_char, value: *const c_char) -> c_int;
    pub fn rados_connect(cluster: rados_t) -> c_int;
    pub fn rados_cluster_fsid(cluster: rados_t, buf: *mut c_char, len: size_t) -> c_int;
    pub fn rados_shutdown(cluster: rados_t);
    pub fn rados_ioctx_create(
        cluster: rados_t,
        pool: *const c_char,
        io: *mut rados_ioctx_t,
    ) -> c_int;
    pub fn rados_ioctx_destroy(io: rados_ioctx_t);
}

#[link(name = "rbd")]
extern "C" {
    pub fn rbd_create(
        io: rados_ioctx_t,
        name: *const c_char,
        size: u64,
        order: *mut c_int,
    ) -> c_int;
    pub fn rbd_remove(io: rados_ioctx_t, name: *const c_char) -> c_int;
    pub fn rbd_clone(
        p_io: rados_ioctx_t,
        p_name: *const c_char,
        p_snap: *const c_char,
        c_io: rados_ioctx_t,
        c_name: *const c_char,
        features: u64,
        c_order: *mut c_int,
    ) -> c_int;
    pub fn rbd_open(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut rbd_image_t,
        snap: *const c_char,
    ) -> c_int;
    pub fn rbd_open_read_only(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut rbd_image_t,
        snap: *const c_char,
    ) -> c_int;
    pub fn rbd_close(image: rbd_image_t) -> c_int;
    pub fn rbd_get_size(image: rbd_image_t, size: *mut u64) -> c_int;
    pub fn rbd_get_features(image: rbd_image_t, features: *mut u64) -> c_int;
    pub fn rbd_stat(image: rbd_image_t, info: *mut rbd_image_info_t, infosize: size_t) -> c_int;
    pub fn rbd_get_id(image: rbd_image_t, id: *mut c_char, id_len: size_t) -> c_int;
    pub fn rbd_resize(image: rbd_image_t, size: u64) -> c_int;
    pub fn rbd_is_exclusive_lock_owner(image: rbd_image_t, is_owner: *mut c_int) -> c_int;
    pub fn rbd_lock_get_owners(
        image: rbd_image_t,
        lock_mode: *mut c_int,
        lock_owners: *mut *mut c_char,
        max_lock_owners: *mut size_t,
    ) -> c_int;
    pub fn rbd_lock_get_owners_cleanup(lock_owners: *mut *mut c_char, lock_owner_count: size_t);
    pub fn rbd_metadata_get(
        image: rbd_image_t,
        key: *const c_char,
        value: *mut c_char,
        val_len: *mut size_t,
    ) -> c_int;
    pub fn rbd_metadata_set(image: rbd_image_t, key: *const c_char, value: *const c_char) -> c_int;
    pub fn rbd_snap_create(image: rbd_image_t, name: *const c_char) -> c_int;
    pub fn rbd_snap_protect(image: rbd_image_t, name: *const c_char) -> c_int;
    pub fn rbd_diff_iterate2(
        image: rbd_image_t,
        from_snap: *const c_char,
        ofs: u64,
        len: u64,
        include_parent: u8,
        whole_object: u8,
        cb: diff_cb_t,
        arg: *mut c_void,
    ) -> c_int;
    pub fn rbd_aio_create_completion(
        arg: *mut c_void,
        cb: rbd_callback_t,
        c: *mut rbd_completion_t,
    ) -> c_int;
    pub fn rbd_aio_get_return_value(c: rbd_completion_t) -> ssize_t;
    pub fn rbd_aio_release(c: rbd_completion_t);
    pub fn rbd_aio_read2(
        image: rbd_image_t,
        off: u64,
        len: size_t,
        buf: *mut c_char,
        c: rbd_completion_t,
        op_flags: c_int,
    ) -> c_int;
    pub fn rbd_aio_write2(
        image: rbd_image_t,
        off: u64,
        len: size_t,
        buf: *const c_char,
        c: rbd_completion_t,
        op_flags: c_int,
    ) -> c_int;
    pub fn rbd_aio_readv(
        image: rbd_image_t,
        iov: *const libc::iovec,
        iovcnt: c_int,
        off: u64,
        c: rbd_completion_t,
    ) -> c_int;
    pub fn rbd_aio_writev(
        image: rbd_image_t,
        iov: *const libc::iovec,
        iovcnt: c_int,
        off: u64,
        c: rbd_completion_t,
    ) -> c_int;
    pub fn rbd_aio_flush(image: rbd_image_t, c: rbd_completion_t) -> c_int;
    pub fn rbd_aio_discard(image: rbd_image_t, off: u64, len: u64, c: rbd_completion_t) -> c_int;
    pub fn rbd_aio_writesame(
        image: rbd_image_t,
        off: u64,
        len: size_t,
        buf: *const c_char,
        data_len: size_t,
        c: rbd_completion_t,
        op_flags: c_int,
    ) -> c_int;
    pub fn rbd_aio_write_zeroes(
        image: rbd_image_t,
        off: u64,
        len: size_t,
        c: rbd_completion_t,
        zero_flags: c_int,
        op_flags: c_int,
    ) -> c_int;
    pub fn rbd_aio_compare_and_write(
        image: rbd_image_t,
        off: u64,
        len: size_t,
        cmp_buf: *const c_char,
        buf: *const c_char,
        c: rbd_completion_t,
        mismatch_off: *mut u64,
        op_flags: c_int,
    ) -> ssize_t;
}

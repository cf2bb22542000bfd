//! radoscmd -- the VM guest's stand-in for the `ceph` CLI (which is Python): sends monitor
//! commands through librados's `rados_mon_command` and prints their output. Built with rustc
//! by tests/vm/build-initramfs.sh for the `--ceph` segment, linked against Debian's librados2.
//!
//! Usage: radoscmd [--conf FILE] [--timeout SECS] JSON_COMMAND...
//!   e.g. radoscmd '{"prefix": "osd pool create", "pool": "rbd", "pg_num": 8}'
//!
//! Each command's output buffer goes to stdout, its status string to stderr. Exit status 0 if
//! every command succeeded; 1 with the error (negative errno and status string) on the first
//! one that failed; 2 on a usage error; 3 if the cluster could not be reached within the
//! timeout (connect and each command; default 20 s).

use std::ffi::{c_char, c_int, c_void, CString};
use std::process::ExitCode;

type Rados = *mut c_void;

#[link(name = "rados")]
extern "C" {
    fn rados_create(cluster: *mut Rados, id: *const c_char) -> c_int;
    fn rados_conf_read_file(cluster: Rados, path: *const c_char) -> c_int;
    fn rados_conf_set(cluster: Rados, option: *const c_char, value: *const c_char) -> c_int;
    fn rados_connect(cluster: Rados) -> c_int;
    fn rados_mon_command(
        cluster: Rados,
        cmd: *mut *const c_char,
        cmdlen: usize,
        inbuf: *const c_char,
        inbuflen: usize,
        outbuf: *mut *mut c_char,
        outbuflen: *mut usize,
        outs: *mut *mut c_char,
        outslen: *mut usize,
    ) -> c_int;
    fn rados_buffer_free(buf: *mut c_char);
    fn rados_shutdown(cluster: Rados);
}

/// A connected cluster handle; shut down on drop.
struct Cluster(Rados);

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: self.0 came from a successful rados_create and is shut down once, here.
        unsafe { rados_shutdown(self.0) }
    }
}

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("argument contains a NUL byte: {s:?}"))
}

fn connect(conf: Option<&str>, timeout: &str) -> Result<Cluster, (u8, String)> {
    let mut h: Rados = std::ptr::null_mut();
    // SAFETY: h is a valid out pointer; a null id means client.admin.
    let r = unsafe { rados_create(&mut h, std::ptr::null()) };
    if r < 0 {
        return Err((3, format!("rados_create: {r}")));
    }
    let cluster = Cluster(h);
    let path = match conf {
        Some(p) => Some(cstring(p).map_err(|e| (2, e))?),
        None => None,
    };
    let pp = path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr());
    // SAFETY: the handle is live; pp is null (default search path) or a NUL-terminated string.
    let r = unsafe { rados_conf_read_file(cluster.0, pp) };
    if r < 0 {
        return Err((3, format!("reading the ceph configuration: {r}")));
    }
    let t = cstring(timeout).map_err(|e| (2, e))?;
    for opt in ["client_mount_timeout", "rados_mon_op_timeout"] {
        let o = cstring(opt).map_err(|e| (2, e))?;
        // SAFETY: live handle, both strings NUL-terminated and alive for the call.
        let r = unsafe { rados_conf_set(cluster.0, o.as_ptr(), t.as_ptr()) };
        if r < 0 {
            return Err((2, format!("setting {opt}={timeout}: {r}")));
        }
    }
    // SAFETY: live, configured handle.
    let r = unsafe { rados_connect(cluster.0) };
    if r < 0 {
        return Err((3, format!("connecting to the cluster: {r}")));
    }
    Ok(cluster)
}

/// Takes ownership of a librados-allocated buffer and returns its bytes.
fn take(buf: *mut c_char, len: usize) -> Vec<u8> {
    if buf.is_null() {
        return Vec::new();
    }
    // SAFETY: librados returned buf with len valid bytes; it is freed once, right after.
    let v = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }.to_vec();
    // SAFETY: buf came from rados_mon_command and is not used again.
    unsafe { rados_buffer_free(buf) };
    v
}

fn mon_command(cluster: &Cluster, json: &str) -> Result<(Vec<u8>, String), String> {
    let cmd = cstring(json)?;
    let mut cmds = [cmd.as_ptr()];
    let (mut out, mut outlen) = (std::ptr::null_mut(), 0usize);
    let (mut outs, mut outslen) = (std::ptr::null_mut(), 0usize);
    // SAFETY: one NUL-terminated command, no input buffer, valid out pointers; the returned
    // buffers are freed by take().
    let r = unsafe {
        rados_mon_command(
            cluster.0,
            cmds.as_mut_ptr(),
            1,
            std::ptr::null(),
            0,
            &mut out,
            &mut outlen,
            &mut outs,
            &mut outslen,
        )
    };
    let out = take(out, outlen);
    let status = String::from_utf8_lossy(&take(outs, outslen)).into_owned();
    if r < 0 {
        return Err(format!("{json}: error {r}: {status}"));
    }
    Ok((out, status))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut conf, mut timeout, mut cmds) = (None, "20".to_string(), Vec::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--conf" | "--timeout" => {
                let Some(v) = args.next() else {
                    eprintln!("radoscmd: {a} needs a value");
                    return ExitCode::from(2);
                };
                if a == "--conf" {
                    conf = Some(v);
                } else {
                    timeout = v;
                }
            }
            "-h" | "--help" => {
                println!("usage: radoscmd [--conf FILE] [--timeout SECS] JSON_COMMAND...");
                return ExitCode::SUCCESS;
            }
            _ => cmds.push(a),
        }
    }
    if cmds.is_empty() {
        eprintln!("usage: radoscmd [--conf FILE] [--timeout SECS] JSON_COMMAND...");
        return ExitCode::from(2);
    }
    let cluster = match connect(conf.as_deref(), &timeout) {
        Ok(c) => c,
        Err((code, e)) => {
            eprintln!("radoscmd: {e}");
            return ExitCode::from(code);
        }
    };
    for c in &cmds {
        match mon_command(&cluster, c) {
            Ok((out, status)) => {
                use std::io::Write;
                let mut so = std::io::stdout();
                if so.write_all(&out).and_then(|()| so.flush()).is_err() {
                    return ExitCode::from(1);
                }
                if !out.is_empty() && out.last() != Some(&b'\n') {
                    println!();
                }
                if !status.is_empty() {
                    eprintln!("{status}");
                }
            }
            Err(e) => {
                eprintln!("radoscmd: {e}");
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    #[test]
    fn nul_in_an_argument_is_an_error() {
        assert!(super::cstring("a\0b").is_err());
        assert_eq!(
            super::cstring("ok").map(|c| c.into_bytes()),
            Ok(b"ok".to_vec())
        );
    }
    #[test]
    fn null_buffer_is_empty() {
        assert!(super::take(std::ptr::null_mut(), 5).is_empty());
    }
}

//! Names for the syscalls a blocked thread is usually found in.

/// The name of syscall `nr` on this architecture, for the common blocking ones.
pub(crate) fn name(nr: u32) -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    let n = match nr {
        0 => "read",
        1 => "write",
        7 => "poll",
        17 => "pread64",
        18 => "pwrite64",
        19 => "readv",
        20 => "writev",
        23 => "select",
        35 => "nanosleep",
        42 => "connect",
        43 => "accept",
        44 => "sendto",
        45 => "recvfrom",
        46 => "sendmsg",
        47 => "recvmsg",
        61 => "wait4",
        72 => "fcntl",
        73 => "flock",
        74 => "fsync",
        75 => "fdatasync",
        202 => "futex",
        230 => "clock_nanosleep",
        232 => "epoll_wait",
        247 => "waitid",
        257 => "openat",
        270 => "pselect6",
        271 => "ppoll",
        281 => "epoll_pwait",
        288 => "accept4",
        426 => "io_uring_enter",
        _ => return None,
    };
    #[cfg(target_arch = "aarch64")]
    let n = match nr {
        22 => "epoll_pwait",
        25 => "fcntl",
        32 => "flock",
        56 => "openat",
        63 => "read",
        64 => "write",
        65 => "readv",
        66 => "writev",
        67 => "pread64",
        68 => "pwrite64",
        72 => "pselect6",
        73 => "ppoll",
        82 => "fsync",
        83 => "fdatasync",
        95 => "waitid",
        98 => "futex",
        101 => "nanosleep",
        115 => "clock_nanosleep",
        202 => "accept",
        203 => "connect",
        206 => "sendto",
        207 => "recvfrom",
        211 => "sendmsg",
        212 => "recvmsg",
        242 => "accept4",
        260 => "wait4",
        426 => "io_uring_enter",
        _ => return None,
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let n = {
        let _ = nr;
        return None;
    };
    Some(n)
}

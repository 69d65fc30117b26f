import Glibc

/// Writes all of `bytes` to `fd`, retrying short writes and EINTR. Returns 0, or the errno
/// of the failed write, which each caller wraps in its own module's error.
func writeFully(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32 {
    var offset = 0
    while offset < bytes.count {
        let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
        if n < 0 {
            if errno == EINTR { continue }
            return errno
        }
        offset += n
    }
    return 0
}

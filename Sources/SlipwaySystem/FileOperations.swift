import Foundation
import Glibc

/// Writes all of `bytes` to `fd`, retrying short writes and EINTR. Returns 0, or the errno
/// of the failed write, which each caller wraps in its own module's error.
package func writeFully(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32 {
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

/// Reads `fd` to its end, retrying EINTR. Returns the bytes, or the errno of the failed
/// read, which each caller wraps in its own module's error.
package func readFully(_ fd: Int32) -> Result<Data, Errno> {
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return .failure(Errno(code: errno))
        }
        if n == 0 { return .success(data) }
        data.append(contentsOf: buffer[0..<n])
    }
}

/// An errno value as an Error, for `readFully`'s result.
package struct Errno: Error {
    package var code: Int32
}

/// `mkdir -p` with mode 0755 for the directories it creates. Returns nil, or the prefix
/// that could not be created and the errno, which each caller wraps in its own error.
package func makeDirectoryPath(_ path: String) -> (prefix: String, errno: Int32)? {
    var prefix = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
        prefix += "/" + component
        if mkdir(prefix, 0o755) == 0 || errno == EEXIST { continue }
        return (prefix, errno)
    }
    return nil
}

import CLibFuzzer
import Foundation
import Glibc

/// As root, a target fuzzes in a user namespace whose uids and gids 0…65535 are the same
/// ids outside: the readers run as root (owners restored, every file reachable) but cannot
/// create device nodes, which needs root of the machine's own namespace. A fuzzed archive
/// names any major and minor; a bug that then opened such a node (a disk, a watchdog) would
/// act on the machine. `mknod` fails with EPERM instead, the error a node without the
/// capability would give. SLIPWAY_FUZZ_HOST_ROOT=1 keeps the machine's root.
///
/// The process forks: the child enters the namespace, the parent writes its id maps (only a
/// process outside may map more than one id), then waits for it and exits as it did,
/// passing on SIGINT and SIGTERM.
enum UserNamespace {
    static func enter() {
        guard geteuid() == 0, ProcessInfo.processInfo.environment["SLIPWAY_FUZZ_HOST_ROOT"] != "1" else { return }
        var ready: [Int32] = [0, 0]
        var mapped: [Int32] = [0, 0]
        guard pipe(&ready) == 0, pipe(&mapped) == 0 else { fail("pipe") }
        let pid = fork()
        guard pid >= 0 else { fail("fork") }
        var byte: UInt8 = 1
        if pid == 0 {
            close(ready[0])
            close(mapped[1])
            guard slipway_fuzz_unshare_user() == 0 else { fail("unshare(CLONE_NEWUSER)") }
            guard write(ready[1], &byte, 1) == 1, read(mapped[0], &byte, 1) == 1, byte == 0 else {
                fail("mapping the user namespace's ids")
            }
            close(ready[1])
            close(mapped[0])
            return
        }
        close(ready[1])
        close(mapped[0])
        childPID = pid
        signal(SIGINT) { kill(childPID, $0) }
        signal(SIGTERM) { kill(childPID, $0) }
        if read(ready[0], &byte, 1) == 1 {
            let ok = ["uid_map", "gid_map"].allSatisfy { name in
                let fd = open("/proc/\(pid)/\(name)", O_WRONLY | O_CLOEXEC)
                guard fd >= 0 else { return false }
                defer { close(fd) }
                let map = Array("0 0 65536\n".utf8)
                return write(fd, map, map.count) == map.count
            }
            byte = ok ? 0 : 1
            _ = write(mapped[1], &byte, 1)
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import.
        let signal = status & 0x7F
        exit(signal == 0 ? (status >> 8) & 0xFF : 128 + signal)
    }

    private static func fail(_ what: String) -> Never {
        FileHandle.standardError.write(Data("\(CommandLine.arguments[0]): \(what) failed (\(String(cString: strerror(errno)))); set SLIPWAY_FUZZ_HOST_ROOT=1 to fuzz as the machine's root\n".utf8))
        exit(2)
    }
}

nonisolated(unsafe) private var childPID: pid_t = 0

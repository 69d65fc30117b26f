import Foundation
import Glibc

/// Starts a program that outlives this process: posix_spawn in a new session
/// (POSIX_SPAWN_SETSID), signals at their defaults, stdin on /dev/null, stdout and stderr on
/// /dev/null or appended to a log file, and no other descriptor inherited, so neither this
/// command's caller nor an SSH session waits for it or takes it down. Not waited for: once
/// this process exits, init reaps it. The confirmation watcher and the services of
/// docs/service.md start this way.
package enum DetachedSpawn {
    /// Spawns `program` (a full path) with `arguments` as its argv (argv[0] included) and
    /// exactly `environment` (nil: this process's), output appended to `log` (nil:
    /// /dev/null); returns the child's pid.
    package static func spawn(program: String, arguments: [String], environment: [String: String]? = nil, log: String? = nil) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if let log {
            posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o640)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        SpawnedProcess.resetSignals(&attributes, flags: spawnSetSID)
        // Nothing inherited (a test runner's, an SSH session's pipes) may reach the child.
        SpawnedProcess.markDescriptorsCloseOnExec()
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { envp?.forEach { free($0) } }
        var child = pid_t()
        // Under the spawn lock: a command's pipes, between pipe(2) and their close-on-exec
        // mark, would otherwise reach this long-lived child (and the command would wait for
        // their end for as long as the child lives).
        let status = CommandRunner.spawnLock.withLock { _ in
            envp.map { envp in envp.withUnsafeBufferPointer { posix_spawn(&child, program, &actions, &attributes, argv, UnsafeMutablePointer(mutating: $0.baseAddress)) } }
                ?? posix_spawn(&child, program, &actions, &attributes, argv, environ)
        }
        guard status == 0 else { throw SystemError.call(operation: "start", path: program, errno: status) }
        return child
    }

    /// glibc's POSIX_SPAWN_SETSID (<spawn.h>, behind _GNU_SOURCE, which Swift's Glibc module
    /// does not define).
    private static let spawnSetSID: Int16 = 0x80
}

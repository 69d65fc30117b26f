import Glibc

/// A system call of the System layer failed. The layers above catch it where they know more
/// (which step, which release) and rethrow their own error; its text is the usual
/// "<operation> <path>: <strerror>".
public enum SystemError: Error, Equatable, CustomStringConvertible, Sendable {
    case call(operation: String, path: String, errno: Int32)

    public var description: String {
        switch self {
        case let .call(operation, path, code): "\(operation) \(path): \(String(cString: strerror(code)))"
        }
    }
}

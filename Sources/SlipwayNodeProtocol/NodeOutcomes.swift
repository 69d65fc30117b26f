/// The words of the node protocol's replies, as types (docs/architecture.md "The node
/// protocol"). Each raw value is what the JSON carries.

/// A word of the protocol: encoded, decoded and shown (in text output and messages) as it is
/// spelled on the wire, never as the Swift case name.
public protocol WireWord: RawRepresentable, CustomStringConvertible, Codable, Sendable where RawValue == String {}

extension WireWord {
    public var description: String { rawValue }
}

/// What `node apply` did.
public enum ApplyOutcome: String, WireWord {
    case landed
    /// The node had the version already; nothing changed.
    case alreadyLanded = "already-landed"
}

/// How a release reached the node.
public enum OriginKind: String, WireWord {
    case full, delta
    /// Found landed by recovery after a crash between the commit and the journal write.
    case recovered
}

/// The signature check of a release (docs/security.md).
public enum SignatureStatus: String, WireWord {
    /// Signed, and the signature verifies with a trusted key.
    case verified
    /// Signed, but the node lists no trusted key.
    case unchecked
    /// Unsigned, and the node lists no trusted key.
    case absent
    /// Unsigned, accepted because of `allow_unsigned`.
    case unsignedAllowed = "unsigned-allowed"
}

/// Which verb switched `current`.
public enum SwitchKind: String, WireWord {
    case activate, rollback
}

/// What `node activate` or `node rollback` did.
public enum SwitchOutcome: String, WireWord {
    case activated
    case alreadyCurrent = "already-current"
}

/// How a journaled switch ended.
public enum SwitchResult: String, WireWord {
    case activated
    /// The reload or health check failed; the node switched back to `from`.
    case rolledBack = "rolled-back"
    /// A hook failed before the switch; nothing changed.
    case failed
}

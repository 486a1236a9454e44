import GRDB

/// Every failure of the evidence store, with a stable ``code`` for programs and a ``message`` for
/// the person reading the log.
///
/// The gateway refuses a captured request whenever its entry could not be committed, so the message
/// says what is wrong with the store and, where there is one, what to do about it.
public struct AuditError: Error, CustomStringConvertible, Sendable {
    /// Stable identifier of the kind of failure; safe to match on and to print in JSON.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Sendable {
            case storage
            case entryTooLarge = "entry_too_large"
            case invalidEntry = "invalid_entry"
            case invalidJSON = "invalid_json"
            case closed
            case corrupt
            case unsupportedSchema = "unsupported_schema"
            case keyMismatch = "key_mismatch"
            case rotationFailed = "rotation_failed"
        }

        fileprivate let base: Base

        /// SQLite could not read or commit (disk full, I/O error, permissions, locked by another writer).
        public static let storage = Code(base: .storage)
        /// The canonical entry would exceed ``AuditLog/maximumEntrySize`` bytes. Nothing was written.
        public static let entryTooLarge = Code(base: .entryTooLarge)
        /// The entry's kind or fields are not acceptable (reserved key, bad kind, subject mismatch).
        public static let invalidEntry = Code(base: .invalidEntry)
        /// Bytes handed to ``CanonicalJSON/decode(_:requireCanonical:)`` are not (canonical) JSON.
        public static let invalidJSON = Code(base: .invalidJSON)
        /// The log was closed; no more appends or queries are served.
        public static let closed = Code(base: .closed)
        /// The database file or an entry in it is damaged.
        public static let corrupt = Code(base: .corrupt)
        /// The database was written by a newer (or foreign) schema this build does not understand.
        public static let unsupportedSchema = Code(base: .unsupportedSchema)
        /// The log's checkpoints are signed by another key than the one given.
        public static let keyMismatch = Code(base: .keyMismatch)
        /// A key rotation could not start or its entry could not be committed; the old key stays.
        public static let rotationFailed = Code(base: .rotationFailed)

        /// `storage`, `entry_too_large`, ...
        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "audit \(code): \(message)" }
}

extension AuditError {
    /// Maps an SQLite failure to a storage (or corruption) error that says what the operator can do.
    static func from(_ error: any Error, while doing: String, path: String) -> AuditError {
        if let error = error as? AuditError { return error }
        guard let dbError = error as? DatabaseError else {
            return AuditError(.storage, "\(doing) failed for \(path): \(error)")
        }
        let detail = dbError.message ?? "\(dbError.resultCode)"
        switch dbError.resultCode.primaryResultCode {
        case .SQLITE_FULL:
            return AuditError(
                .storage,
                "\(doing) failed: the audit database \(path) is full (\(detail)); free space on its filesystem"
            )
        case .SQLITE_IOERR:
            return AuditError(
                .storage,
                "\(doing) failed: I/O error on the audit database \(path) (\(detail)); "
                    + "check the disk and the kernel log"
            )
        case .SQLITE_READONLY, .SQLITE_PERM, .SQLITE_CANTOPEN, .SQLITE_AUTH:
            return AuditError(
                .storage,
                "\(doing) failed: cannot write the audit database \(path) (\(detail)); "
                    + "check that it and its directory belong to the daemon's user"
            )
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            return AuditError(
                .storage,
                "\(doing) failed: the audit database \(path) is locked by another process (\(detail)); "
                    + "only one interlockd may write it"
            )
        case .SQLITE_CORRUPT, .SQLITE_NOTADB:
            return AuditError(
                .corrupt,
                "\(doing) failed: the audit database \(path) is damaged (\(detail)); "
                    + "keep the file for investigation and restore from an export"
            )
        default:
            return AuditError(.storage, "\(doing) failed on the audit database \(path): \(detail)")
        }
    }
}

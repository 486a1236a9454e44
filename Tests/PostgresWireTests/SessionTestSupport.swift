import Masking
import NIOCore
import Policy
import Testing

@testable import PostgresWire

typealias SessionAction = PostgresSessionStateMachine.Action

/// A message as the gateway's client-side decoder hands it over (frame included).
func clientFrame(_ message: PostgresFrontendMessage) -> PostgresFramedMessage<PostgresFrontendMessage> {
    var decoder: PostgresFrontendMessageDecoder
    switch message {
    case .startup, .sslRequest, .gssEncRequest, .cancelRequest:
        decoder = PostgresFrontendMessageDecoder(phase: .startup)
    default:
        decoder = PostgresFrontendMessageDecoder(phase: .typed)
    }
    var buffer = encoded(message)
    return try! decoder.decode(buffer: &buffer)!
}

/// A message as the gateway's server-side decoder hands it over (frame included).
func serverFrame(_ message: PostgresBackendMessage) -> PostgresFramedMessage<PostgresBackendMessage> {
    var decoder = PostgresBackendMessageDecoder()
    var buffer = encoded(message)
    return try! decoder.decode(buffer: &buffer)!
}

/// The frontend messages in a byte stream sent to the server.
func decodeFrontend(_ buffer: ByteBuffer, startup: Bool = false) -> [PostgresFrontendMessage] {
    var decoder = PostgresFrontendMessageDecoder(phase: startup ? .startup : .typed)
    return try! decodeAll(&decoder, buffer).map(\.message)
}

/// The backend messages in a byte stream sent to the client.
func decodeBackend(_ buffer: ByteBuffer) -> [PostgresBackendMessage] {
    var decoder = PostgresBackendMessageDecoder()
    return try! decodeAll(&decoder, buffer).map(\.message)
}

extension Array where Element == SessionAction {
    /// Everything written to the client, decoded (one-byte SSL answers excluded).
    var toClient: [PostgresBackendMessage] {
        self.flatMap { action -> [PostgresBackendMessage] in
            if case .sendToClient(let buffer) = action, buffer.readableBytes > 1 { return decodeBackend(buffer) }
            return []
        }
    }

    /// The raw buffers written to the client.
    var clientBytes: [ByteBuffer] {
        self.compactMap { action in
            if case .sendToClient(let buffer) = action { return buffer }
            return nil
        }
    }

    /// Everything written to the server, decoded.
    var toServer: [PostgresFrontendMessage] {
        self.flatMap { action -> [PostgresFrontendMessage] in
            if case .sendToServer(let buffer) = action { return decodeFrontend(buffer) }
            return []
        }
    }

    var serverBytes: [ByteBuffer] {
        self.compactMap { action in
            if case .sendToServer(let buffer) = action { return buffer }
            return nil
        }
    }

    var records: [StatementEvidence] {
        self.compactMap { action in
            if case .recordStatement(let evidence) = action { return evidence }
            return nil
        }
    }

    var blockedRecords: [StatementEvidence] {
        self.compactMap { action in
            if case .recordBlockedStatement(let evidence) = action { return evidence }
            return nil
        }
    }

    var outcomes: [StatementOutcome] {
        self.compactMap { action in
            if case .statementCompleted(let outcome) = action { return outcome }
            return nil
        }
    }

    var closeError: PostgresErrorFields? {
        for action in self {
            if case .closeWithError(let fields) = action { return fields }
        }
        return nil
    }

    var closes: Bool {
        self.contains { action in
            if case .close = action { return true }
            return false
        }
    }
}

/// A machine plus shortcuts to drive it like the gateway would.
struct SessionHarness {
    var machine: PostgresSessionStateMachine

    init(configuration: PostgresSessionConfiguration) {
        self.machine = PostgresSessionStateMachine(configuration: configuration)
    }

    init(rules: ApplicableRules = ApplicableRules(), resolver: InMemoryColumnResolver = InMemoryColumnResolver()) {
        self.init(configuration: .testing(rules: rules, resolver: resolver))
    }

    mutating func client(_ message: PostgresFrontendMessage) -> [SessionAction] {
        self.machine.clientMessage(clientFrame(message))
    }

    mutating func server(_ messages: PostgresBackendMessage...) -> [SessionAction] {
        var actions: [SessionAction] = []
        for message in messages {
            self.machine.serverMessage(serverFrame(message), into: &actions)
        }
        return actions
    }

    /// Records every pending evidence entry in `actions` as durable, returning what that released.
    mutating func completeRecords(_ actions: [SessionAction]) -> [SessionAction] {
        var released: [SessionAction] = []
        for evidence in actions.records {
            self.machine.recordCompleted(evidence.id, into: &released)
        }
        return released
    }

    /// Startup with pass-through authentication (trust) up to the first ReadyForQuery.
    mutating func establish() {
        _ = self.client(
            .startup(.init(parameters: [.init(name: "user", value: "svc"), .init(name: "database", value: "orders")])))
        _ = self.server(
            .authentication(.ok),
            .parameterStatus(name: "standard_conforming_strings", value: "on"),
            .backendKeyData(PostgresBackendKey(processID: 42, secretKey: 7)),
            .readyForQuery(.idle)
        )
    }

    static func established(
        rules: ApplicableRules = ApplicableRules(), resolver: InMemoryColumnResolver = InMemoryColumnResolver()
    ) -> SessionHarness {
        var harness = SessionHarness(rules: rules, resolver: resolver)
        harness.establish()
        return harness
    }
}

extension PostgresSessionConfiguration {
    static func testing(
        rules: ApplicableRules = ApplicableRules(),
        resolver: InMemoryColumnResolver = InMemoryColumnResolver(),
        credentials: PostgresInjectedCredentials? = nil,
        clientTLS: ClientTLSMode = .disable,
        statementText: PostgresStatementTextMode = .full
    ) -> Self {
        PostgresSessionConfiguration(
            rules: rules,
            masker: Masker(hashKey: [UInt8](repeating: 7, count: 32)),
            credentials: credentials,
            clientTLS: clientTLS,
            statementText: statementText,
            columnResolver: resolver
        )
    }
}

enum TestRules {
    /// `no-ddl`: blocks DROP, TRUNCATE, ALTER and pg_read_file.
    static func blockDDL() -> Applied<BlockSpec> {
        Applied(
            rule: "no-ddl",
            spec: BlockSpec(
                match: StatementMatcher(
                    statements: ["DROP", "TRUNCATE", "ALTER"].map { StatementName(parsing: $0)! },
                    functions: [FunctionPattern(parsing: "pg_read_file")!],
                    unboundedWrites: true
                ),
                message: "schema changes go through the migration pipeline"
            )
        )
    }

    static func mask(
        columns: [String] = [], detectors: [DetectorName] = [], method: MaskMethodName = .partial,
        name: String = "customer-pii"
    ) -> Applied<MaskSpec> {
        Applied(
            rule: name,
            spec: MaskSpec(
                columns: columns.map { ColumnPattern(parsing: $0)! }, detectors: detectors, method: method)
        )
    }

    static func rules(blocks: [Applied<BlockSpec>] = [], masks: [Applied<MaskSpec>] = []) -> ApplicableRules {
        let list =
            blocks.map { Rule(name: $0.rule, block: $0.spec) } + masks.map { Rule(name: $0.rule, mask: $0.spec) }
        return CompiledRules(list).rules(for: Identity(uid: 1001, user: "svc-ci"), resource: "orders-db")
    }
}

func field(
    _ name: String, table: UInt32 = 0, attribute: Int16 = 0, type: UInt32 = 25, format: PostgresFormat = .text
) -> PostgresBackendMessage.Field {
    .init(
        name: name, tableOID: table, columnAttributeNumber: attribute, dataTypeOID: type, dataTypeSize: -1,
        typeModifier: -1, format: format)
}

func row(_ values: String?...) -> PostgresBackendMessage {
    .dataRow(DataRow(columns: values.map { $0.map { ByteBuffer(string: $0) } }))
}

extension PostgresBackendMessage {
    /// The row's values as strings (nil for NULL), for assertions.
    var rowValues: [String?]? {
        guard case .dataRow(let row) = self else { return nil }
        return row.map { $0.map { String(buffer: $0) } }
    }
}

import Logging
import NIOCore
import PostgresWire
import Synchronization

/// The source columns of PostgreSQL results, for column masks: `RowDescription` names a column by
/// its table's OID and attribute number, and a rule names `schema.table.column`.
///
/// The daemon reads `pg_attribute`, `pg_class` and `pg_namespace` on one side connection per
/// (resource, server address, database), logged in with the resource's credentials, and caches the
/// answers for `lifetime`. A table's OID and a column's number never change while it exists; only a
/// rename changes the names, so the cache is dropped when an `ALTER` through the gateway completes,
/// and expires for renames made elsewhere. A lookup that fails is answered `unresolvable` and not
/// cached: the session masks such columns (fail closed) and the next result asks again.
final class PostgresCatalog: Sendable {
    struct Key: Hashable, Sendable {
        var resource: String
        var upstream: SocketAddress
        var database: String
    }

    /// How long an answer is trusted (renames made outside the gateway show after at most this).
    static let lifetime = TimeAmount.minutes(5)
    /// Columns per catalog query (the `IN` list); a result wider than this takes several round trips.
    static let batchSize = 512
    /// Cached columns per key before the cache of that key is dropped and rebuilt on demand.
    static let maximumEntries = 200_000

    private struct Entry: Sendable {
        var source: PostgresColumnSource
        var expires: NIODeadline
    }

    private struct State: Sendable {
        var entries: [Key: [PostgresColumnID: Entry]] = [:]
        var connections: [Key: PostgresCatalogConnection] = [:]
    }

    private let state = Mutex(State())
    let logger: Logger
    let connect: @Sendable (SocketAddress, UpstreamTLS, any EventLoop) -> EventLoopFuture<any Channel>

    init(
        logger: Logger,
        connect: @escaping @Sendable (SocketAddress, UpstreamTLS, any EventLoop) -> EventLoopFuture<any Channel>
    ) {
        self.logger = logger
        self.connect = connect
    }

    /// The view one session hands its state machine.
    func view(
        resource: String, upstream: SocketAddress, tls: UpstreamTLS, credentials: PostgresInjectedCredentials
    ) -> PostgresCatalogView {
        PostgresCatalogView(catalog: self, resource: resource, upstream: upstream, tls: tls, credentials: credentials)
    }

    func cached(_ column: PostgresColumnID, key: Key) -> PostgresColumnResolution? {
        let now = NIODeadline.now()
        return state.withLock { state in
            guard let entry = state.entries[key]?[column], entry.expires > now else { return nil }
            return .source(entry.source)
        }
    }

    func invalidate(resource: String) {
        state.withLock { state in
            for key in state.entries.keys where key.resource == resource {
                state.entries[key] = nil
            }
        }
    }

    /// Looks `columns` up (cache first), answering on `eventLoop`.
    func resolve(
        _ columns: [PostgresColumnID], key: Key, tls: UpstreamTLS, credentials: PostgresInjectedCredentials,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<[PostgresColumnID: PostgresColumnResolution]> {
        var answers: [PostgresColumnID: PostgresColumnResolution] = [:]
        var missing: [PostgresColumnID] = []
        for column in columns {
            if let known = cached(column, key: key) {
                answers[column] = known
            } else if column.tableOID != 0 && column.attributeNumber > 0 {
                missing.append(column)
            } else {
                answers[column] = .unresolvable
            }
        }
        guard !missing.isEmpty else { return eventLoop.makeSucceededFuture(answers) }
        let connection = connection(for: key, tls: tls, credentials: credentials, eventLoop: eventLoop)
        let known = answers
        let asked = missing
        return connection.lookup(asked).hop(to: eventLoop).map { found in
            var answers = known
            let expires = NIODeadline.now() + Self.lifetime
            self.state.withLock { state in
                if (state.entries[key]?.count ?? 0) + found.count > Self.maximumEntries {
                    state.entries[key] = [:]
                }
                for (column, source) in found {
                    state.entries[key, default: [:]][column] = Entry(source: source, expires: expires)
                }
            }
            for column in asked {
                answers[column] = found[column].map { .source($0) } ?? .unresolvable
            }
            return answers
        }.flatMapErrorThrowing { error in
            var answers = known
            self.logger.warning(
                "catalog lookup failed; masking the columns it could not name",
                metadata: ["resource": "\(key.resource)", "error": "\(error)"])
            for column in asked {
                answers[column] = .unresolvable
            }
            return answers
        }
    }

    /// Describes `query` (the columns of a `COPY ... TO STDOUT`) on the side connection, answering on
    /// `eventLoop`; nil when it cannot be described (the session then masks every field).
    func describe(
        _ query: String, key: Key, tls: UpstreamTLS, credentials: PostgresInjectedCredentials,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<[PostgresBackendMessage.Field]?> {
        connection(for: key, tls: tls, credentials: credentials, eventLoop: eventLoop).describe(query)
            .hop(to: eventLoop)
            .map { Optional($0) }
            .flatMapErrorThrowing { error in
                self.logger.info(
                    "could not describe a COPY's columns; masking all its fields",
                    metadata: ["resource": "\(key.resource)", "error": "\(error)"])
                return nil
            }
    }

    private func connection(
        for key: Key, tls: UpstreamTLS, credentials: PostgresInjectedCredentials, eventLoop: any EventLoop
    ) -> PostgresCatalogConnection {
        state.withLock { state in
            if let existing = state.connections[key], !existing.isFailed { return existing }
            let made = PostgresCatalogConnection(
                key: key, tls: tls, credentials: credentials, eventLoop: eventLoop, catalog: self)
            state.connections[key] = made
            return made
        }
    }

    /// Forgets a connection that failed, so the next lookup opens a new one.
    func connectionFailed(_ connection: PostgresCatalogConnection) {
        state.withLock { state in
            if state.connections[connection.key] === connection { state.connections[connection.key] = nil }
        }
    }
}

/// One session's window on the catalog: the state machine asks it synchronously, and the gateway
/// asks it to look up what it does not know.
final class PostgresCatalogView: PostgresColumnResolver {
    let catalog: PostgresCatalog
    let resource: String
    let upstream: SocketAddress
    let tls: UpstreamTLS
    let credentials: PostgresInjectedCredentials
    /// The session's database, known once the server accepted the login.
    private let database = Mutex<String?>(nil)

    init(
        catalog: PostgresCatalog, resource: String, upstream: SocketAddress, tls: UpstreamTLS,
        credentials: PostgresInjectedCredentials
    ) {
        self.catalog = catalog
        self.resource = resource
        self.upstream = upstream
        self.tls = tls
        self.credentials = credentials
    }

    func use(database name: String) {
        database.withLock { $0 = name }
    }

    private var key: PostgresCatalog.Key? {
        database.withLock { $0 }.map { PostgresCatalog.Key(resource: resource, upstream: upstream, database: $0) }
    }

    func resolution(of column: PostgresColumnID) -> PostgresColumnResolution? {
        guard let key else { return nil }
        return catalog.cached(column, key: key)
    }

    func resolve(
        _ columns: [PostgresColumnID], on eventLoop: any EventLoop
    )
        -> EventLoopFuture<[PostgresColumnID: PostgresColumnResolution]>
    {
        guard let key else { return eventLoop.makeSucceededFuture([:]) }
        return catalog.resolve(columns, key: key, tls: tls, credentials: credentials, on: eventLoop)
    }

    func describe(_ query: String, on eventLoop: any EventLoop) -> EventLoopFuture<[PostgresBackendMessage.Field]?> {
        guard let key else { return eventLoop.makeSucceededFuture(nil) }
        return catalog.describe(query, key: key, tls: tls, credentials: credentials, on: eventLoop)
    }

    func invalidate() {
        catalog.invalidate(resource: resource)
    }
}

/// The side connection of one (resource, server, database): it logs in with the resource's
/// credentials and answers lookups one query at a time, in order.
///
/// All its state is confined to `eventLoop`; the methods other threads call hop there first, which
/// is why it can be shared in `PostgresCatalog`'s table.
final class PostgresCatalogConnection: @unchecked Sendable {
    typealias Answer = [PostgresColumnID: PostgresColumnSource]
    typealias Fields = [PostgresBackendMessage.Field]

    private enum Request {
        case lookup([PostgresColumnID], EventLoopPromise<Answer>)
        case describe(String, EventLoopPromise<Fields>)

        func fail(_ error: any Error) {
            switch self {
            case .lookup(_, let promise): promise.fail(error)
            case .describe(_, let promise): promise.fail(error)
            }
        }
    }

    let key: PostgresCatalog.Key
    let eventLoop: any EventLoop
    private let credentials: PostgresInjectedCredentials
    private let tls: UpstreamTLS
    private unowned let catalog: PostgresCatalog

    private enum Phase {
        case idle
        case connecting
        case authenticating(UpstreamAuthenticator)
        case ready
        /// A query is out; `error` once the server refused it (its `ReadyForQuery` still follows).
        case querying(Answer, error: String?)
        /// A `Parse`/`Describe`/`Sync` is out.
        case describing(Fields, error: String?)
        case failed
    }

    private var phase: Phase = .idle
    private var channel: (any Channel)?
    private var queue: [Request] = []
    private let failedFlag = Atomic<Bool>(false)

    var isFailed: Bool { failedFlag.load(ordering: .relaxed) }

    init(
        key: PostgresCatalog.Key, tls: UpstreamTLS, credentials: PostgresInjectedCredentials, eventLoop: any EventLoop,
        catalog: PostgresCatalog
    ) {
        self.key = key
        self.tls = tls
        self.credentials = credentials
        self.eventLoop = eventLoop
        self.catalog = catalog
    }

    func lookup(_ columns: [PostgresColumnID]) -> EventLoopFuture<Answer> {
        let promise = eventLoop.makePromise(of: Answer.self)
        eventLoop.execute {
            var rest = columns[...]
            var parts: [EventLoopFuture<Answer>] = []
            while !rest.isEmpty {
                let chunk = Array(rest.prefix(PostgresCatalog.batchSize))
                rest = rest.dropFirst(chunk.count)
                let p = self.eventLoop.makePromise(of: Answer.self)
                self.queue.append(.lookup(chunk, p))
                parts.append(p.futureResult)
            }
            self.advance()
            EventLoopFuture.whenAllSucceed(parts, on: self.eventLoop).map { answers in
                answers.reduce(into: Answer()) { $0.merge($1) { a, _ in a } }
            }.cascade(to: promise)
        }
        return promise.futureResult
    }

    func describe(_ query: String) -> EventLoopFuture<Fields> {
        let promise = eventLoop.makePromise(of: Fields.self)
        eventLoop.execute {
            self.queue.append(.describe(query, promise))
            self.advance()
        }
        return promise.futureResult
    }

    private func advance() {
        switch phase {
        case .idle:
            phase = .connecting
            openConnection()
        case .ready:
            guard let next = queue.first, let channel else { return }
            var buffer = channel.allocator.buffer(capacity: 256)
            switch next {
            case .lookup(let columns, _):
                PostgresFrontendMessage.query(Self.query(columns)).encode(into: &buffer)
                phase = .querying([:], error: nil)
            case .describe(let query, _):
                PostgresFrontendMessage.parse(.init(name: "", query: query)).encode(into: &buffer)
                PostgresFrontendMessage.describe(.statement("")).encode(into: &buffer)
                PostgresFrontendMessage.sync.encode(into: &buffer)
                phase = .describing([], error: nil)
            }
            channel.writeAndFlush(buffer, promise: nil)
        case .failed:
            failAll(PostgresCatalogError(message: "the catalog connection failed"))
        case .connecting, .authenticating, .querying, .describing:
            return
        }
    }

    /// The catalog query for `columns`: only integers from `RowDescription` are interpolated.
    static func query(_ columns: [PostgresColumnID]) -> String {
        let pairs = columns.map { "(\($0.tableOID)::oid,\($0.attributeNumber)::int2)" }.joined(separator: ",")
        return "SELECT a.attrelid, a.attnum, n.nspname, c.relname, a.attname "
            + "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
            + "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            + "WHERE (a.attrelid, a.attnum) IN (\(pairs)) AND NOT a.attisdropped"
    }

    private func openConnection() {
        catalog.connect(key.upstream, tls, eventLoop).whenComplete { result in
            switch result {
            case .failure(let error):
                self.fail(error)
            case .success(let channel):
                self.channel = channel
                do {
                    try channel.pipeline.syncOperations.addHandler(CatalogHandler(connection: self))
                } catch {
                    self.fail(error)
                    return
                }
                var startup = PostgresFrontendMessage.Startup(parameters: [
                    .init(name: "user", value: self.credentials.user),
                    .init(name: "database", value: self.key.database),
                    .init(name: "application_name", value: "interlock-catalog"),
                ])
                startup["client_encoding"] = "UTF8"
                var buffer = channel.allocator.buffer(capacity: 128)
                PostgresFrontendMessage.startup(startup).encode(into: &buffer)
                self.phase = .authenticating(
                    UpstreamAuthenticator(
                        user: self.credentials.user, password: self.credentials.password,
                        allowedMethods: self.credentials.allowedMethods, scramKeys: self.credentials.scramKeys))
                channel.writeAndFlush(buffer, promise: nil)
            }
        }
    }

    fileprivate func received(_ message: PostgresBackendMessage) {
        switch phase {
        case .authenticating(var authenticator):
            if case .readyForQuery = message {
                phase = .ready
                advance()
                return
            }
            if case .parameterStatus = message { return }
            if case .backendKeyData = message { return }
            switch authenticator.messageReceived(message) {
            case .send(let reply):
                phase = .authenticating(authenticator)
                guard let channel else { return }
                var buffer = channel.allocator.buffer(capacity: 128)
                reply.encode(into: &buffer)
                channel.writeAndFlush(buffer, promise: nil)
            case .wait, .authenticated:
                phase = .authenticating(authenticator)
            case .failed(let failure):
                fail(PostgresCatalogError(message: "login failed: \(failure)"))
            }
        case .querying(var answer, let error):
            switch message {
            case .dataRow(let row):
                let values = row.map { $0.map { String(buffer: $0) } }
                if values.count == 5, let oid = values[0].flatMap({ UInt32($0) }),
                    let attnum = values[1].flatMap({ Int16($0) }), let schema = values[2], let table = values[3],
                    let column = values[4]
                {
                    answer[PostgresColumnID(tableOID: oid, attributeNumber: attnum)] = PostgresColumnSource(
                        schema: schema, table: table, column: column)
                }
                phase = .querying(answer, error: error)
            case .errorResponse(let fields):
                phase = .querying([:], error: fields[.message] ?? "error")
            case .readyForQuery:
                phase = .ready
                if !queue.isEmpty, case .lookup(_, let promise) = queue.removeFirst() {
                    if let error {
                        promise.fail(PostgresCatalogError(message: "catalog query failed: \(error)"))
                    } else {
                        promise.succeed(answer)
                    }
                }
                advance()
            default:
                return
            }
        case .describing(let fields, let error):
            switch message {
            case .rowDescription(let described):
                phase = .describing(described, error: error)
            case .errorResponse(let fields):
                phase = .describing([], error: fields[.message] ?? "error")
            case .readyForQuery:
                phase = .ready
                if !queue.isEmpty, case .describe(_, let promise) = queue.removeFirst() {
                    if let error {
                        promise.fail(PostgresCatalogError(message: "describing the COPY failed: \(error)"))
                    } else {
                        promise.succeed(fields)
                    }
                }
                advance()
            default:
                return
            }
        case .idle, .connecting, .ready, .failed:
            return
        }
    }

    fileprivate func fail(_ error: any Error) {
        if case .failed = phase { return }
        phase = .failed
        failedFlag.store(true, ordering: .relaxed)
        catalog.connectionFailed(self)
        catalog.logger.info(
            "catalog connection ended", metadata: ["resource": "\(key.resource)", "error": "\(error)"])
        failAll(error)
        channel?.close(promise: nil)
        channel = nil
    }

    private func failAll(_ error: any Error) {
        let waiting = queue
        queue = []
        for request in waiting { request.fail(error) }
    }
}

struct PostgresCatalogError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Decodes the catalog connection's server messages and hands them to it.
private final class CatalogHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let connection: PostgresCatalogConnection
    private var decoder = NIOSingleStepByteToMessageProcessor(PostgresBackendMessageDecoder())

    init(connection: PostgresCatalogConnection) {
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try decoder.process(buffer: unwrapInboundIn(data)) { framed in
                connection.received(framed.message)
            }
        } catch {
            connection.fail(error)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.fail(PostgresCatalogError(message: "the server closed the catalog connection"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connection.fail(error)
    }
}

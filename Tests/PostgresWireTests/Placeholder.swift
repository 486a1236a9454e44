import Testing

@testable import PostgresWire

// PostgreSQL protocol 3.0 for the gateway: messages, codecs and upstream authentication. No I/O.
//
// Layers, bottom up:
//
// - Messages/: `PostgresFrontendMessage` (client → server) and `PostgresBackendMessage` (server → client) as
//   enums, with `DataRow` (lazy columns) and `PostgresErrorFields` (ErrorResponse/NoticeResponse by field code).
// - Coding/: `PostgresFrontendMessageDecoder` and `PostgresBackendMessageDecoder`, single-step decoders usable in
//   `ByteToMessageHandler` or called directly. Each output is a `PostgresFramedMessage`: the message and `frame`,
//   the original bytes (a slice of the receive buffer), to forward unchanged messages without re-encoding.
//   Declared lengths are checked against `PostgresMessageLimits` from the header, before the body is buffered.
//   `encode(into:)` on each message writes it with correct lengths into a caller-supplied buffer.
// - Authentication/: `UpstreamAuthenticator` (credential injection: SCRAM-SHA-256 with server verification, MD5,
//   cleartext) over `SCRAMSHA256Client` and `PostgresMD5Password`.
//
// Every failure is a `PostgresWireError` (stable `code`, `message`, `sqlState`); `errorResponse()` renders it as
// the FATAL `ErrorResponse` to send before closing the session.
//
// Text on the wire: strings are decoded as UTF-8 with invalid sequences replaced (U+FFFD), so a client whose
// `client_encoding` is not UTF8 may see non-ASCII text altered in decoded messages; ASCII structure (quotes,
// semicolons, keywords) is preserved. The frame is always the exact bytes: forward it, and re-encode only what
// was deliberately rewritten. Encoders drop anything from an embedded NUL on, so a value cannot end its field early.
// Counts that the protocol carries as Int16 (columns, parameters, formats) above 32767 are a programming error
// in a message built by hand; decoded messages never exceed them.

import NIOCore
import Testing

@testable import PostgresWire

/// Random and mutated input never crashes a decoder: it decodes, waits, or throws a `PostgresWireError`.
@Suite("Robustness against random input")
struct FuzzTests {
    /// Feeds `input` until the decoder waits or throws; any error must be a `PostgresWireError`.
    private func feed<Decoder: NIOSingleStepByteToMessageDecoder>(_ decoder: Decoder, _ input: ByteBuffer) -> Bool {
        var decoder = decoder
        var buffer = input
        do {
            var rounds = 0
            while buffer.readableBytes > 0, try decoder.decode(buffer: &buffer) != nil {
                rounds += 1
                if rounds > 10_000 { return false }
            }
            _ = try decoder.decodeLast(buffer: &buffer, seenEOF: true)
            return true
        } catch is PostgresWireError {
            return true
        } catch {
            return false
        }
    }

    @Test func randomBytesNeverCrashTheDecoders() {
        var random = SplitMix64(state: 0x1234_5678)
        for _ in 0..<3_000 {
            let length = Int.random(in: 0..<200, using: &random)
            let input = ByteBuffer(bytes: (0..<length).map { _ in UInt8.random(in: .min ... .max, using: &random) })
            #expect(self.feed(PostgresFrontendMessageDecoder(), input))
            #expect(self.feed(PostgresFrontendMessageDecoder(phase: .typed), input))
            #expect(self.feed(PostgresBackendMessageDecoder(), input))
            #expect(self.feed(PostgresBackendMessageDecoder(phase: .sslResponse), input))
        }
    }

    @Test func mutatedValidMessagesNeverCrashTheDecoders() {
        var random = SplitMix64(state: 42)
        let frontend = everyTypedFrontendMessage.map(encoded)
        let backend = everyTypedBackendMessage.map(encoded)
        for _ in 0..<3_000 {
            let useFrontend = Bool.random(using: &random)
            var bytes = Array((useFrontend ? frontend : backend).randomElement(using: &random)!.readableBytesView)
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                let index = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: bytes[index] = UInt8.random(in: .min ... .max, using: &random)
                case 1: bytes[index] ^= 0x80
                default: bytes[index] = [0x00, 0xFF, 0x7F][Int.random(in: 0..<3, using: &random)]
                }
            }
            let input = ByteBuffer(bytes: bytes)
            if useFrontend {
                #expect(self.feed(PostgresFrontendMessageDecoder(phase: .typed), input))
            } else {
                #expect(self.feed(PostgresBackendMessageDecoder(), input))
            }
        }
    }

    @Test func decodedRandomMessagesReencodeToTheirFrames() throws {
        // Whatever the decoder accepts, the encoder reproduces byte for byte (no silent repair of structure).
        var random = SplitMix64(state: 7)
        for _ in 0..<3_000 {
            var bytes = Array(everyTypedBackendMessage.randomElement(using: &random).map(encoded)!.readableBytesView)
            let index = Int.random(in: 5..<max(6, bytes.count), using: &random)
            if index < bytes.count {
                bytes[index] = UInt8.random(in: 0x20...0x7E, using: &random)
            }
            var decoder = PostgresBackendMessageDecoder()
            var buffer = ByteBuffer(bytes: bytes)
            guard let output = try? decoder.decode(buffer: &buffer) else {
                continue
            }
            #expect(encoded(output.message) == output.frame, "\(output.message.name)")
        }
    }
}

import Policy
import Testing

@testable import Capture

@Suite struct ConntrackWireTests {
    /// Builds a ctnetlink answer (IPCTNL_MSG_CT_NEW) carrying `original` as CTA_TUPLE_ORIG.
    static func answer(sequence: UInt32, original: ConntrackTuple) -> [UInt8] {
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 256, alignment: 8)
        defer { out.deallocate() }
        let v6 = original.source.address.isIPv6
        var w = ConntrackWire.Writer(out: out, offset: NetlinkWire.headerSize)
        w.bytes([v6 ? 10 : 2, 0, 0, 0])
        w.nest(ConntrackWire.tupleOrig) { t in
            t.nest(ConntrackWire.tupleIP) { ip in
                ip.attribute(v6 ? ConntrackWire.ipV6Src : ConntrackWire.ipV4Src, original.source.address.bytes)
                ip.attribute(v6 ? ConntrackWire.ipV6Dst : ConntrackWire.ipV4Dst, original.destination.address.bytes)
            }
            t.nest(ConntrackWire.tupleProto) { p in
                p.attribute(ConntrackWire.protoNum, [6])
                p.attribute(ConntrackWire.protoSrcPort, ConntrackWire.port(original.source.port))
                p.attribute(ConntrackWire.protoDstPort, ConntrackWire.port(original.destination.port))
            }
        }
        out.storeBytes(of: UInt32(w.offset), toByteOffset: 0, as: UInt32.self)
        out.storeBytes(of: UInt16(0x0100), toByteOffset: 4, as: UInt16.self)
        out.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        out.storeBytes(of: sequence, toByteOffset: 8, as: UInt32.self)
        out.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
        return Array(out[0..<w.offset])
    }

    static func decode(_ bytes: [UInt8], sequence: UInt32) -> Result<ConntrackTuple, CaptureError>? {
        bytes.withUnsafeBytes {
            switch ConntrackWire.decodeReplies($0, sequence: sequence) {
            case .keepReading: nil
            case .done(let r): r
            }
        }
    }

    @Test(arguments: [
        ConntrackTuple(source: Endpoint("198.18.0.1:6250")!, destination: Endpoint("198.18.0.11:8080")!),
        ConntrackTuple(source: Endpoint("[2001:db8:18::1]:40000")!, destination: Endpoint("[2001:db8:18::10]:5432")!),
    ])
    func originalTupleIsDecoded(original: ConntrackTuple) throws {
        let got = try #require(Self.decode(Self.answer(sequence: 9, original: original), sequence: 9))
        #expect(try got.get() == original)
    }

    @Test func answersToOtherRequestsAreSkipped() {
        let original = ConntrackTuple(source: Endpoint("198.18.0.1:1")!, destination: Endpoint("198.18.0.10:2")!)
        #expect(Self.decode(Self.answer(sequence: 8, original: original), sequence: 9) == nil)
    }

    @Test func kernelErrorsBecomeCaptureErrors() throws {
        // NLMSG_ERROR with -ENOENT: no such connection.
        var bytes: [UInt8] = [36, 0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]
        withUnsafeBytes(of: Int32(-2)) { bytes += $0 }
        bytes += [UInt8](repeating: 0, count: 16)
        let got = try #require(Self.decode(bytes, sequence: 9))
        guard case .failure(let e) = got else {
            Issue.record("ENOENT decoded as success")
            return
        }
        #expect(e.code == .notFound)
    }

    @Test func getRequestCarriesTheReplyTuple() {
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 256, alignment: 8)
        defer { out.deallocate() }
        let n = ConntrackWire.encodeGet(
            into: out, sequence: 5, replySource: Endpoint("127.0.0.1:15001")!,
            replyDestination: Endpoint("198.18.0.1:6250")!)
        let bytes = Array(out[0..<n])
        #expect(bytes[4] == 0x01 && bytes[5] == 0x01)  // CTNETLINK << 8 | IPCTNL_MSG_CT_GET
        #expect(bytes[16] == 2)  // AF_INET
        // The nested reply tuple holds both addresses and both ports, in network order.
        let tail = Array(bytes[20...])
        #expect(tail.contains(sequence: [127, 0, 0, 1]))
        #expect(tail.contains(sequence: [198, 18, 0, 1]))
        #expect(tail.contains(sequence: [0x3A, 0x99]))  // 15001
        #expect(tail.contains(sequence: [0x18, 0x6A]))  // 6250
    }
}

extension Array where Element == UInt8 {
    func contains(sequence: [UInt8]) -> Bool {
        guard sequence.count <= count else { return false }
        return (0...(count - sequence.count)).contains { Array(self[$0..<($0 + sequence.count)]) == sequence }
    }
}

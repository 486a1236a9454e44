// swift-tools-version: 6.0
//
// Interlock: a host appliance that captures service accounts' outbound TCP with nftables,
// ties each connection to the account that opened it, and records the evidence.
// The module map and the direction of imports are in ../shared/DESIGN.md.
import PackageDescription

let package = Package(
    name: "interlock",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "interlockd", targets: ["interlockd"]),
        .executable(name: "interlock", targets: ["interlock"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
    ],
    targets: [
        // libmnl + libnftnl + the kernel's netlink headers, with static-inline shims for macros.
        .systemLibrary(
            name: "CNetfilter",
            pkgConfig: "libmnl libnftnl",
            providers: [.apt(["libmnl-dev", "libnftnl-dev"])]
        ),
        // Config model, YAML loader with file:line errors, resource lookup, decisions, Identity.
        .target(
            name: "Policy",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // SQL lexer and statement classifier (PostgreSQL dialect first). Pure, no dependencies.
        .target(name: "SQL"),
        // Content detectors and mask functions over bytes.
        .target(
            name: "Masking",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // PostgreSQL protocol 3.0: messages, codecs, authentication, session state machines. No I/O.
        .target(
            name: "PostgresWire",
            dependencies: [
                "Policy", "Masking", "SQL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        // The kernel side: nftables ruleset as a value, original destination, socket owner, identity.
        .target(
            name: "Capture",
            dependencies: [
                "CNetfilter",
                "Policy",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Append-only evidence log in SQLite.
        .target(
            name: "Audit",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Held statements waiting for approvers: requests, decisions, grant windows, expiry. Pure, no I/O.
        .target(
            name: "Approvals",
            dependencies: ["Policy", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // The control socket's messages and a blocking client; shared by daemon and CLI.
        .target(name: "Control"),
        // NIO listener, forwarding, upstream connector, control socket server.
        .target(
            name: "Gateway",
            dependencies: [
                "Capture", "Policy", "Audit", "Control", "PostgresWire", "Masking", "SQL", "Approvals",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        .executableTarget(
            name: "interlockd",
            dependencies: [
                "Gateway", "Capture", "Policy", "Audit",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "interlock",
            dependencies: [
                "Control", "Policy", "Capture", "Gateway", "Audit", "PostgresWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Content-detector throughput per core, for bench/run.sh (issue 3). Not a product.
        .executableTarget(
            name: "interlock-bench",
            dependencies: ["Masking", "Audit", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "PolicyTests", dependencies: ["Policy"]),
        .testTarget(name: "SQLTests", dependencies: ["SQL"]),
        .testTarget(name: "MaskingTests", dependencies: ["Masking"]),
        .testTarget(
            name: "PostgresWireTests",
            dependencies: [
                "PostgresWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "CaptureTests", dependencies: ["Capture", "Policy"]),
        .testTarget(
            name: "AuditTests",
            dependencies: ["Audit", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .testTarget(name: "ApprovalsTests", dependencies: ["Approvals", "Policy"]),
        .testTarget(name: "ControlTests", dependencies: ["Control"]),
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "Gateway", "Capture", "Policy", "Audit", "PostgresWire", "Masking", "Approvals", "Control",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)

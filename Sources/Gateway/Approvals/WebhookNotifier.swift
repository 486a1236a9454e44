// TEMPORARY STUB (replaced by the webhook branch)
import Logging
import NIOCore
struct WebhookDelivery: Sendable {
    var url: String
    var attempts: Int
    var status: Int?
    var delivered: Bool
    var error: String?
}
final class WebhookNotifier: Sendable {
    struct Settings: Sendable { var attempts = 5; var firstBackoff: TimeAmount = .seconds(1); var maximumBackoff: TimeAmount = .seconds(30); var timeout: TimeAmount = .seconds(10); var upstreamMark: UInt32? = nil }
    init(group: any EventLoopGroup, settings: Settings = .init(), logger: Logger) {}
    func post(url: String, event: String, deliveryID: String, body: [UInt8], secret: [UInt8], completion: @escaping @Sendable (WebhookDelivery) -> Void) {}
}

// UTF-8 rules of [MQTT-1.5.4] and topic name / topic filter validation [MQTT-4.7].

public enum TopicValidation {
    /// True when `bytes` is well-formed UTF-8 without U+0000 (and without surrogates, which
    /// well-formed UTF-8 excludes). Control characters U+0001..U+001F and U+007F..U+009F are allowed
    /// (the spec says SHOULD NOT, a receiver MAY close; brokers accept them).
    public static func isValidMQTTString(_ bytes: UnsafeRawBufferPointer) -> Bool { fatalError("unimplemented") }

    /// A PUBLISH topic name: 1...65535 bytes, valid MQTT string, no `+` or `#`.
    public static func isValidTopicName(_ bytes: UnsafeRawBufferPointer) -> Bool { fatalError("unimplemented") }

    /// A topic filter: non-empty, `#` only as the whole last level, `+` only as a whole level.
    /// A `$share/{group}/{filter}` filter needs a non-empty group without `+ # /` and a valid filter.
    public static func isValidTopicFilter(_ filter: String) -> Bool { fatalError("unimplemented") }
}

/// A parsed `$share/{group}/{filter}` subscription.
public struct SharedSubscriptionFilter: Hashable, Sendable {
    public var group: String
    public var filter: String
    /// Parses a shared filter; nil when `filter` does not start with `$share/` or is invalid.
    public init?(_ filter: String) { fatalError("unimplemented") }
}

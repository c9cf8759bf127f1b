// The HTTP listener's routes read requests and write answers of HTTP1's types.

@_exported import HTTP1

extension HTTPResponse {
    /// A JSON answer.
    public init(status: Int, json: JSONValue) {
        self.init(status: status, body: Array(json.serialized().utf8))
    }
}

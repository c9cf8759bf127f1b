// A small HTTP/1.1 request parser: the broker's HTTP listener (metrics, health, publish API) and
// the WebSocket upgrade of MQTT listeners. Pure: bytes in, a request out. One request per
// connection (the HTTP listener answers and closes; a WebSocket connection speaks frames after it).

/// A parsed request.
public struct HTTPRequest: Sendable, Equatable {
    public var method: String
    /// The path without the query string.
    public var path: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The request line's version ("HTTP/1.1").
    public var version: String

    public init(method: String, path: String, headers: [(name: String, value: String)], body: [UInt8], version: String = "HTTP/1.1") {
        self.method = method; self.path = path; self.headers = headers; self.body = body; self.version = version
    }

    public static func == (a: HTTPRequest, b: HTTPRequest) -> Bool {
        a.method == b.method && a.path == b.path && a.body == b.body
            && a.headers.map { "\($0.name):\($0.value)" } == b.headers.map { "\($0.name):\($0.value)" }
    }

    /// The first header named `name` (case-insensitive).
    /// Whether the client asks to keep the connection (RFC 9112 §9.3: HTTP/1.1 unless it says
    /// `close`; HTTP/1.0 only when it says `keep-alive`).
    public var wantsKeepAlive: Bool {
        let tokens = headerTokens("Connection").map { $0.lowercased() }
        if version == "HTTP/1.1" { return !tokens.contains("close") }
        return tokens.contains("keep-alive")
    }

    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name.lowercased() == lower }?.value
    }

    /// The comma-separated tokens of every header named `name` (a header may be repeated, and a
    /// list may be split over several lines: RFC 9110 §5.3), trimmed, empty ones dropped.
    public func headerTokens(_ name: String) -> [String] {
        let lower = name.lowercased()
        return headers.filter { $0.name.lowercased() == lower }.flatMap { header in
            header.value.split(separator: ",").map { token in
                String(token.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
            }.filter { !$0.isEmpty }
        }
    }
}

/// What the bytes received so far amount to.
public enum HTTPParseResult: Sendable, Equatable {
    case incomplete
    case complete(HTTPRequest)
    /// Answer with this status and close.
    case invalid(status: Int, reason: String)
}

public enum HTTPRequestParser {
    public static let maxHeaderBytes = 16 << 10
    public static let maxBodyBytes = 1 << 20

    public static func parse(_ bytes: [UInt8]) -> HTTPParseResult {
        parse(bytes, maxHeaderBytes: maxHeaderBytes).result
    }

    /// The request, and how many bytes of `bytes` it took when complete (what follows is not
    /// the request's: a WebSocket client's first frames). A WebSocket upgrade passes
    /// `maxBodyBytes: 0`: a GET that announces a body is refused rather than buffered.
    public static func parse(_ bytes: [UInt8], maxHeaderBytes: Int,
                             maxBodyBytes: Int = maxBodyBytes) -> (result: HTTPParseResult, consumed: Int) {
        guard let headerEnd = find(bytes, [13, 10, 13, 10]) else {
            return (bytes.count > maxHeaderBytes ? .invalid(status: 431, reason: "headers too large") : .incomplete, 0)
        }
        guard headerEnd + 4 <= maxHeaderBytes else { return (.invalid(status: 431, reason: "headers too large"), 0) }
        let result = parseRequest(bytes, headerEnd: headerEnd, maxBodyBytes: maxBodyBytes)
        guard case .complete(let request) = result else { return (result, 0) }
        return (result, headerEnd + 4 + request.body.count)
    }

    static func parseRequest(_ bytes: [UInt8], headerEnd: Int, maxBodyBytes: Int) -> HTTPParseResult {
        let head = String(decoding: bytes[..<headerEnd], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        guard !lines.isEmpty else { return .invalid(status: 400, reason: "empty request") }
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count == 3, requestLine[2].hasPrefix("HTTP/1.") else {
            return .invalid(status: 400, reason: "bad request line")
        }
        var headers: [(String, String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { return .invalid(status: 400, reason: "bad header line") }
            let name = String(line[..<colon])
            // Optional whitespace on both sides of the value is not part of it (RFC 9110 §5.5).
            let isSpace = { (c: Character) in c == " " || c == "\t" }
            var value = line[line.index(after: colon)...].drop(while: isSpace)
            while let last = value.last, isSpace(last) { value = value.dropLast() }
            headers.append((name, String(value)))
        }
        var request = HTTPRequest(method: String(requestLine[0]), path: String(requestLine[1].split(separator: "?", maxSplits: 1)[0]),
                                  headers: headers, body: [], version: String(requestLine[2]))
        if let te = request.header("Transfer-Encoding"), te.lowercased() != "identity" {
            return .invalid(status: 411, reason: "chunked bodies are not supported; send Content-Length")
        }
        var length = 0
        if let value = request.header("Content-Length") {
            guard let n = Int(value), n >= 0 else { return .invalid(status: 400, reason: "bad Content-Length") }
            length = n
        }
        guard length <= maxBodyBytes else { return .invalid(status: 413, reason: "body too large") }
        let bodyStart = headerEnd + 4
        guard bytes.count >= bodyStart + length else { return .incomplete }
        request.body = Array(bytes[bodyStart..<(bodyStart + length)])
        return .complete(request)
    }

    static func find(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
        }
        return nil
    }
}

/// An HTTP/1.1 response (`Connection: close` unless `keepAlive`).
public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]
    /// The connection stays open for the next request (`Connection: keep-alive`).
    public var keepAlive = false
    /// More header lines (name, value), e.g. WWW-Authenticate.
    public var headers: [(name: String, value: String)] = []

    public init(status: Int, contentType: String = "application/json", body: [UInt8]) {
        self.status = status; self.contentType = contentType; self.body = body
    }

    /// The status line's words for `status`.
    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 101: "Switching Protocols"
        case 200: "OK"
        case 202: "Accepted"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 411: "Length Required"
        case 413: "Payload Too Large"
        case 426: "Upgrade Required"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }

    public var bytes: [UInt8] {
        var head = "HTTP/1.1 \(status) \(HTTPResponse.reasonPhrase(status))\r\nContent-Type: \(contentType)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "Content-Length: \(body.count)\r\nConnection: \(keepAlive ? "keep-alive" : "close")\r\n\r\n"
        return Array(head.utf8) + body
    }
}

// An HTTP/1.1 response parser for the etcd client, sans-IO (RFC 9112): the status line, headers,
// then a body framed by Content-Length or chunked transfer coding. Bytes go in as they arrive;
// events come out: the head, body bytes (a chunked stream's pieces as they complete, which is
// how etcd's watch streams its events), the end. Bounded: a head over 16 KiB or a chunk-size line
// over 32 bytes is an error.

public struct HTTPResponseParser {
    public enum Event: Equatable {
        case head(status: Int)
        case body([UInt8])
        case end
    }

    public struct Failure: Error, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { "HTTP response: \(message)" }
    }

    private enum State {
        case head
        case fixed(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case untilClose
        case done
    }

    private var state = State.head
    private var buffer: [UInt8] = []
    public static let maximumHead = 16 << 10

    public init() {}

    /// Starts over for the next response on a kept-alive connection.
    public mutating func reset() { state = .head; buffer.removeAll(keepingCapacity: true) }

    /// Whether a whole response was parsed.
    public var isDone: Bool { if case .done = state { return true } else { return false } }

    /// Feeds received bytes; returns the events they complete.
    public mutating func feed(_ bytes: some Collection<UInt8>) throws(Failure) -> [Event] {
        buffer.append(contentsOf: bytes)
        var events: [Event] = []
        var i = 0
        loop: while true {
            switch state {
            case .head:
                guard let end = Self.find(crlfcrlf: buffer, from: i) else {
                    if buffer.count - i > Self.maximumHead { throw Failure(message: "head too large") }
                    break loop
                }
                let head = String(decoding: buffer[i..<end], as: UTF8.self)
                i = end + 4
                let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
                let statusParts = lines[0].split(separator: " ", maxSplits: 2)
                guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
                    throw Failure(message: "bad status line")
                }
                var length: Int? = nil
                var chunked = false
                for line in lines.dropFirst() {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    let name = line[..<colon].lowercased()
                    let value = line[line.index(after: colon)...].trimmingSpaces()
                    if name == "content-length" {
                        guard let n = Int(value), n >= 0 else { throw Failure(message: "bad Content-Length") }
                        length = n
                    } else if name == "transfer-encoding" {
                        chunked = value.lowercased().hasSuffix("chunked")
                    }
                }
                events.append(.head(status: status))
                if chunked {
                    state = .chunkSize
                } else if let length {
                    state = .fixed(remaining: length)
                    if length == 0 { state = .done; events.append(.end) }
                } else if status == 204 || status == 304 || status / 100 == 1 {
                    state = .done; events.append(.end)
                } else {
                    state = .untilClose
                }
            case .fixed(let remaining):
                let take = min(remaining, buffer.count - i)
                if take == 0 { break loop }
                events.append(.body(Array(buffer[i..<(i + take)])))
                i += take
                if take == remaining { state = .done; events.append(.end) } else { state = .fixed(remaining: remaining - take) }
            case .chunkSize:
                guard let end = Self.find(crlf: buffer, from: i) else {
                    if buffer.count - i > 32 { throw Failure(message: "chunk size line too long") }
                    break loop
                }
                let line = String(decoding: buffer[i..<end], as: UTF8.self)
                let sizeText = line.split(separator: ";", maxSplits: 1).first.map(String.init) ?? ""
                guard let size = Int(sizeText.trimmingSpaces(), radix: 16), size >= 0 else { throw Failure(message: "bad chunk size") }
                i = end + 2
                state = size == 0 ? .trailers : .chunkData(remaining: size)
            case .chunkData(let remaining):
                let take = min(remaining, buffer.count - i)
                if take == 0 { break loop }
                events.append(.body(Array(buffer[i..<(i + take)])))
                i += take
                state = take == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - take)
            case .chunkDataEnd:
                guard buffer.count - i >= 2 else { break loop }
                guard buffer[i] == 13 && buffer[i + 1] == 10 else { throw Failure(message: "chunk not followed by CRLF") }
                i += 2
                state = .chunkSize
            case .trailers:
                guard let end = Self.find(crlf: buffer, from: i) else {
                    if buffer.count - i > Self.maximumHead { throw Failure(message: "trailers too large") }
                    break loop
                }
                // An empty line ends the trailers; a trailer field is skipped.
                let empty = end == i
                i = end + 2
                if empty { state = .done; events.append(.end) }
            case .untilClose:
                if i < buffer.count { events.append(.body(Array(buffer[i...]))); i = buffer.count }
                break loop
            case .done:
                break loop
            }
        }
        buffer.removeFirst(i)
        return events
    }

    /// A response read until the connection closed (no length given) ends here.
    public mutating func connectionClosed() -> [Event] {
        if case .untilClose = state { state = .done; return [.end] }
        return []
    }

    static func find(crlf b: [UInt8], from start: Int) -> Int? {
        var j = start
        while j + 1 < b.count {
            if b[j] == 13 && b[j + 1] == 10 { return j }
            j += 1
        }
        return nil
    }

    static func find(crlfcrlf b: [UInt8], from start: Int) -> Int? {
        var j = start
        while j + 3 < b.count {
            if b[j] == 13 && b[j + 1] == 10 && b[j + 2] == 13 && b[j + 3] == 10 { return j }
            j += 1
        }
        return nil
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces and tabs.
    public func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}

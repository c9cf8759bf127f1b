// The one error type of the line-oriented file formats Apus reads (acl_file, password_file):
// the line (1-based) and what is wrong with it. The configuration layer prefixes the file's path.

/// A line of a text file that does not parse.
public struct LineError: Error, CustomStringConvertible, Sendable, Equatable {
    public var line: Int
    public var message: String

    public init(line: Int, message: String) {
        self.line = line
        self.message = message
    }

    public var description: String { "line \(line): \(message)" }
}

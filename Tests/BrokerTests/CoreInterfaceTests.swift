// The core's contract with the runtime is CoreInterface.swift: ShardCore conforms (the compiler
// checks that every listed member exists); this checks the other direction, that the runtime
// (Sources/Shards, Sources/apus) uses no member of the core the contract does not list.

import Foundation
import XCTest
@testable import Broker

final class CoreInterfaceTests: XCTestCase {
    func testTheRuntimeUsesOnlyWhatTheContractLists() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Sources")
        let contract = try String(contentsOf: root.appendingPathComponent("Broker/CoreInterface.swift"), encoding: .utf8)
        var listed: Set<String> = []
        for match in contract.matches(of: /(?m)^\s+(?:static )?(?:func|var) ([a-zA-Z]+)/) { listed.insert(String(match.1)) }
        XCTAssertGreaterThan(listed.count, 20)

        var used: [String: String] = [:]
        for directory in ["Shards", "apus"] {
            let files = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(directory).path)
            for file in files where file.hasSuffix(".swift") {
                let text = try String(contentsOf: root.appendingPathComponent("\(directory)/\(file)"), encoding: .utf8)
                for match in text.matches(of: /\b(?:core|ShardCore)\.([a-zA-Z]+)/) { used[String(match.1), default: file] = file }
            }
        }
        XCTAssertGreaterThan(used.count, 20, "the runtime's calls into the core were found")
        for (member, file) in used.sorted(by: { $0.key < $1.key }) where !listed.contains(member) {
            XCTFail("\(file) uses ShardCore.\(member), which CoreInterface.swift does not list")
        }
    }
}

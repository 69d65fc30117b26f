import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif
@testable import SlipwayCommands
@testable import SlipwaySystem
@testable import SlipwayArchive
@testable import SlipwayRelease
@testable import SlipwayRecipe
@testable import SlipwayBuild
@testable import SlipwayExport
@testable import SlipwayNodeProtocol
@testable import SlipwayNode
@testable import SlipwayFleet

// Issue 13: builds without a version never collide.

extension BuildTests {
    @Suite("slipway build: default versions (issue 13)")
    struct DefaultVersions {
        /// Two builds of a recipe without a version, started in the same second, share one
        /// store: each gets its own version (the second `<time>.2`), both are stored.
        @Test("two builds without a version in the same second get distinct versions",
              .enabled(if: isRoot, "slipway build needs root"))
        func sameSecondBuildsGetDistinctVersions() throws {
            let temp = try TempDir("slipway-build-same-second")
            defer { temp.remove() }
            let recipe = try writeRecipe("""
                [release]
                name = "stamped"
                compression = "none"
                [base]
                type = "scratch"
                """, named: "stamped.toml", in: temp.path)
            #expect(recipe.release.version == nil)
            let store = temp.sub("store")
            // Start both just after a second begins.
            let now = Date().timeIntervalSince1970
            usleep(useconds_t((now.rounded(.up) - now + 0.02) * 1_000_000))
            let results = Mutex<[Result<BuildSummary, any Error>]>([])
            DispatchQueue.concurrentPerform(iterations: 2) { index in
                let result = Result { try build(recipe, store: store, cache: temp.sub("cache-\(index)")) }
                results.withLock { $0.append(result) }
            }
            let summaries = try results.withLock { try $0.map { try $0.get() } }
            let versions = summaries.map(\.version).sorted()
            #expect(summaries.allSatisfy { $0.outcome == .added }, "both builds stored a release: \(summaries.map(\.outcome))")
            #expect(Set(versions).count == 2, "distinct versions: \(versions)")
            if versions.count == 2, !versions[1].hasPrefix(versions[0] + ".") {
                print("the two builds started in different seconds (\(versions)); nothing collided")
            } else {
                #expect(versions.count == 2 && versions[1] == versions[0] + ".2", "\(versions)")
            }
            #expect(try ReleaseStore(root: store).versions(of: "stamped").sorted() == versions)
            let left = try FileManager.default.contentsOfDirectory(atPath: store + "/stamped").filter { $0.hasPrefix(".building-") }
            #expect(left.isEmpty, "the reservations are gone: \(left)")
        }
    }
}

import Foundation
import Synchronization

/// Runs work items on up to `width` threads at once, as the controller does with nodes
/// (`--parallel N`). Results keep the items' order.
public enum ParallelWork {
    public static func map<Item: Sendable, Value: Sendable>(_ items: [Item], width: Int,
                                                            _ body: @escaping @Sendable (Item) -> Value) -> [Value] {
        guard !items.isEmpty else { return [] }
        let results = Mutex<[Value?]>(Array(repeating: nil, count: items.count))
        let next = Atomic<Int>(0)
        let group = DispatchGroup()
        for _ in 0..<max(1, min(width, items.count)) {
            group.enter()
            // Threads, not the cooperative pool: every item blocks on ssh or the disk.
            let thread = Thread {
                while true {
                    let index = next.add(1, ordering: .relaxed).oldValue
                    guard index < items.count else { break }
                    let value = body(items[index])
                    results.withLock { $0[index] = value }
                }
                group.leave()
            }
            thread.stackSize = 4 << 20
            thread.start()
        }
        group.wait()
        return results.withLock { $0.map { $0! } }
    }

    public static func forEach<Item: Sendable>(_ items: [Item], width: Int, _ body: @escaping @Sendable (Item) -> Void) {
        _ = map(items, width: width) { body($0) }
    }
}

/// A value computed on its own thread while the caller goes on; `value` waits for it.
public final class BackgroundValue<Value: Sendable>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Value?

    public init(_ body: @escaping @Sendable () -> Value) {
        let thread = Thread { [self] in
            result = body()
            done.signal()
        }
        thread.stackSize = 4 << 20
        thread.start()
    }

    /// The value, once computed (waits until then; later calls return at once).
    public var value: Value {
        done.wait()
        done.signal()
        return result!
    }
}

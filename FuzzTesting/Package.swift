// swift-tools-version:6.0
import PackageDescription

// The fuzz targets of docs/fuzzing.md: one libFuzzer executable per reader of untrusted
// input, built only by scripts/fuzz (a sanitizer build in .build-fuzz), never by the
// package above, which this one uses through its SlipwayLibraries product.
//
// Each target is `fuzz-<name>`; scripts/fuzz --list names them. FuzzSupport holds the
// driver (libFuzzer's LLVMFuzzerRunDriver), the scratch directory and the seed trees.
let slipway: Target.Dependency = .product(name: "SlipwayLibraries", package: "slipway")

let targets = ["manifest", "manifest-patch", "delta", "tar", "recipe", "inventory-toml", "inventory-ini", "inventory-yaml"]

let package = Package(
    name: "slipway-fuzz",
    dependencies: [.package(name: "slipway", path: "..")],
    targets: [
        .target(name: "CLibFuzzer"),
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer", slipway]),
    ] + targets.map { name in
        .executableTarget(name: "fuzz-\(name)", dependencies: ["FuzzSupport", slipway], path: "Sources/fuzz-\(name)")
    }
)

// swift-tools-version:6.0
import PackageDescription

// The layers of docs/architecture.md. A target imports only the ones below it, and the
// compiler holds that line: A → B means A imports B.
//
//   slipway (one-file main) → SlipwayCommands → Build, Export, Node, Fleet
//   SlipwayBuild → SlipwayRecipe → SlipwayRelease
//   SlipwayExport → SlipwayRelease
//   SlipwayNode → SlipwayNodeProtocol → SlipwayRelease; SlipwayNode → SlipwayRegistry (a fetch's credentials)
//   SlipwayFleet → SlipwayNodeProtocol, SlipwayRegistry (never SlipwayNode: the controller needs only the wire types)
//   SlipwayRegistry → SlipwayRelease (releases as OCI artifacts, over curl)
//   SlipwayRelease → SlipwayArchive → SlipwaySystem
let crypto: Target.Dependency = .product(name: "Crypto", package: "swift-crypto")

let package = Package(
    name: "slipway",
    products: [
        .executable(name: "slipway", targets: ["slipway"]),
        // For FuzzTesting/ (a package of its own, docs/fuzzing.md): the layers whose readers take
        // untrusted input. No program of this package uses it; building it adds nothing.
        .library(
            name: "SlipwayLibraries",
            targets: ["SlipwaySystem", "SlipwayArchive", "SlipwayRelease", "SlipwayRecipe", "SlipwayNodeProtocol", "SlipwayNode", "SlipwayRegistry", "SlipwayFleet"]
        ),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(name: "CLzma", pkgConfig: "liblzma", providers: [.apt(["liblzma-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // Empty unless the static node binary links libarchive statically (scripts/lib/static-build.sh).
        .target(name: "CArchiveStatic"),
        .target(name: "SlipwaySystem", dependencies: [.product(name: "TOMLKit", package: "TOMLKit")]),
        .target(name: "SlipwayArchive", dependencies: ["SlipwaySystem", "CArchive", "CArchiveStatic", "CLzma", "CZstd", crypto]),
        .target(name: "SlipwayRelease", dependencies: ["SlipwayArchive", crypto]),
        .target(name: "SlipwayRecipe", dependencies: ["SlipwayRelease"]),
        .target(name: "SlipwayBuild", dependencies: ["SlipwayRecipe"]),
        .target(name: "SlipwayExport", dependencies: ["SlipwayRelease"]),
        .target(name: "SlipwayNodeProtocol", dependencies: ["SlipwayRelease"]),
        .target(name: "SlipwayNode", dependencies: ["SlipwayNodeProtocol", "SlipwayRegistry"]),
        .target(name: "SlipwayRegistry", dependencies: ["SlipwayRelease", crypto]),
        .target(name: "SlipwayFleet", dependencies: ["SlipwayNodeProtocol", "SlipwayRegistry", .product(name: "Yams", package: "Yams")]),
        .target(
            name: "SlipwayCommands",
            dependencies: [
                "SlipwayBuild", "SlipwayExport", "SlipwayNode", "SlipwayRegistry", "SlipwayFleet",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "slipway", dependencies: ["SlipwayCommands"]),
        // Each library has its own unit tests; IntegrationTests drive the real tools.
        .target(name: "SlipwayTestSupport", dependencies: ["SlipwayRelease"], path: "Tests/SlipwayTestSupport"),
        .testTarget(name: "SlipwaySystemTests", dependencies: ["SlipwaySystem"]),
        .testTarget(name: "SlipwayArchiveTests", dependencies: ["SlipwayArchive"]),
        .testTarget(name: "SlipwayReleaseTests", dependencies: ["SlipwayRelease", "SlipwayTestSupport"]),
        .testTarget(name: "SlipwayRecipeTests", dependencies: ["SlipwayBuild", "SlipwayNode", "SlipwayTestSupport"], exclude: ["FuzzInputs"]),
        .testTarget(name: "SlipwayBuildTests", dependencies: ["SlipwayBuild", "SlipwayTestSupport"]),
        .testTarget(name: "SlipwayExportTests", dependencies: ["SlipwayExport"]),
        .testTarget(name: "SlipwayNodeProtocolTests", dependencies: ["SlipwayNodeProtocol"]),
        .testTarget(name: "SlipwayNodeTests", dependencies: ["SlipwayNode", "SlipwayTestSupport"]),
        .testTarget(name: "SlipwayFleetTests", dependencies: ["SlipwayFleet", "SlipwayTestSupport"], exclude: ["FuzzInputs"]),
        .testTarget(name: "SlipwayCommandsTests", dependencies: ["SlipwayCommands", "SlipwayTestSupport"]),
        .testTarget(name: "IntegrationTests", dependencies: ["SlipwayCommands", "SlipwayRegistry", "SlipwayTestSupport"]),
    ]
)

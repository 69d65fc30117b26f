// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "slipway",
    products: [
        .executable(name: "slipway", targets: ["slipway"]),
        .library(name: "SlipwayCore", targets: ["SlipwayCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(name: "CLzma", pkgConfig: "liblzma", providers: [.apt(["liblzma-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .target(
            name: "SlipwayCore",
            dependencies: [
                "CArchive", "CLzma", "CZstd",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        .executableTarget(
            name: "slipway",
            dependencies: [
                "SlipwayCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "SlipwayCoreTests", dependencies: ["SlipwayCore"]),
        .testTarget(name: "IntegrationTests", dependencies: ["SlipwayCore"]),
    ]
)

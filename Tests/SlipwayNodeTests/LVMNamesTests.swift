import Foundation
import Testing
@testable import SlipwayNode
@testable import SlipwayNodeProtocol
@testable import SlipwaySystem
@testable import SlipwayTestSupport

/// The lvm backend's pure parts: names, sizes, settings, mount units (no LVM needed).
@Suite("LVM backend: names and settings")
struct LVMNamesTests {
    @Test("versions map to LV names reversibly, without _ (LVM's reserved suffixes)")
    func names() throws {
        #expect(LVMNames.lvName(app: "web", version: "1.4.2") == "web-1.4.2")
        #expect(LVMNames.lvName(app: "web", version: "1.4.2~rc1") == "web-1.4.2+trc1")
        #expect(LVMNames.lvName(app: "my_app", version: "1+b_tmeta") == "my+uapp-1++b+utmeta")
        for text in ["1.0", "a+b", "x_y", "~~", "+u", "_tdata", "1.0-rc+1~x_y"] {
            #expect(LVMNames.unescape(LVMNames.escape(text)) == text)
            #expect(!LVMNames.escape(text).contains("_"))
        }
        #expect(LVMNames.unescape("bad+x") == nil)
        #expect(LVMNames.unescape("trailing+") == nil)
        #expect(throws: LVMBackendError.self) { try LVMNames.validate(app: "web", version: "1.0-partial") }
        #expect(throws: LVMBackendError.self) { try LVMNames.validate(app: "-web", version: "1.0") }
        #expect(throws: LVMBackendError.self) { try LVMNames.validate(app: "web", version: String(repeating: "9", count: 120)) }
        try LVMNames.validate(app: "web", version: "1.4.2~rc1")
        // Two roots on one VG are told apart by their tag.
        #expect(LVMNames.rootKey("/var/lib/slipway") != LVMNames.rootKey("/var/lib/slipway-classic"))
        #expect(LVMNames.rootKey("/var/lib/slipway") == LVMNames.rootKey("/var/lib/slipway"))
    }

    @Test("size policy: fixed, factor, minimum")
    func sizes() throws {
        #expect(LVMNames.parseSize("2G") == 2 << 30)
        #expect(LVMNames.parseSize("512M") == 512 << 20)
        #expect(LVMNames.parseSize("1.5G") == 3 << 29)
        #expect(LVMNames.parseSize("800MiB") == 800 << 20)
        #expect(LVMNames.parseSize("4096") == 4096)
        #expect(LVMNames.parseSize("lots") == nil)
        let factor = try LVMBackend(settings: ["vg": "vg0"])
        #expect(factor.volumeSize(releaseBytes: 100 << 20) == 200 << 20)
        #expect(factor.volumeSize(releaseBytes: 1 << 20) == 64 << 20)
        let fixed = try LVMBackend(settings: ["vg": "vg0", "size": "1G", "filesystem": "xfs"])
        #expect(fixed.volumeSize(releaseBytes: 100 << 20) == 1 << 30)
        let xfs = try LVMBackend(settings: ["vg": "vg0", "filesystem": "xfs", "factor": "3"])
        #expect(xfs.volumeSize(releaseBytes: 10 << 20) == 300 << 20)
        #expect(xfs.volumeSize(releaseBytes: 200 << 20) == 600 << 20)
    }

    @Test("settings are validated with clear errors")
    func settings() throws {
        func message(_ settings: [String: String]) -> String {
            do {
                _ = try LVMBackend(settings: settings)
                return ""
            } catch {
                return "\(error)"
            }
        }
        #expect(message([:]).contains("vg = "))
        #expect(message(["vg": "vg0", "colour": "red"]).contains("colour"))
        #expect(message(["vg": "vg0", "filesystem": "btrfs"]).contains("ext4 or xfs"))
        #expect(message(["vg": "vg0", "size": "1G", "factor": "2"]).contains("not both"))
        #expect(message(["vg": "vg0", "size": "10M"]).contains("at least 64M"))
        #expect(message(["vg": "vg0", "factor": "0.5"]).contains("factor"))
        #expect(message(["vg": "vg0", "device_timeout": "-1"]).contains("device_timeout"))
        #expect(message(["vg": "vg0", "device_timeout": "10min"]).contains("seconds"))
        #expect(try LVMBackend(settings: ["vg": "vg0", "device_timeout": "0"]).deviceTimeout == 0)
        #expect(try LVMBackend(settings: ["vg": "vg0"]).deviceTimeout == 600)
        #expect(message(["vg": "vg0", "thin_pool": "pool", "filesystem": "xfs"]) == "")
        var node = NodeSettings()
        node.backend = .lvm
        node.backendTables = ["lvm": ["vg": "vg0", "thin_pool": "pool"]]
        #expect(try makeBackend(node).name == "lvm")
    }

    @Test("mount units: systemd's escaped names, slipway's marker")
    func units() throws {
        #expect(LVMMountUnit.unitName(for: "/var/lib/slipway/web/releases/1.4.2") == "var-lib-slipway-web-releases-1.4.2.mount")
        #expect(LVMMountUnit.unitName(for: "/srv/my-app/releases/1.0~rc1") == "srv-my\\x2dapp-releases-1.0\\x7erc1.mount")
        #expect(LVMMountUnit.unitName(for: "/.x/y") == "\\x2ex-y.mount")
        #expect(LVMMountUnit.unitName(for: "/srv/.hidden/a+b") == "srv-.hidden-a\\x2bb.mount")
        #expect(LVMMountUnit.unitName(for: "/dev/vg0/web-1.0", suffix: ".device") == "dev-vg0-web\\x2d1.0.device")
        try withTemporaryDirectory { directory in
        let units = LVMMountUnits(directory: directory)
        var unit = LVMMountUnit(what: "/dev/vg0/web-1.0", where: "/var/lib/slipway/web/releases/1.0", type: "ext4", options: "ro", description: "x")
        #expect(!units.isCurrent(unit))
        try units.write(unit)
        #expect(units.isCurrent(unit))
        let dropIn = "\(directory)/dev-vg0-web\\x2d1.0.device.d/50-slipway-device-timeout.conf"
        #expect(try String(contentsOfFile: dropIn, encoding: .utf8).contains("\nJobRunningTimeoutSec=600\n"))
        #expect(units.list(under: "/var/lib/slipway/web/releases/").map(\.what) == ["/dev/vg0/web-1.0"])
        #expect(units.list(under: "/var/lib/slipway/api/releases/").isEmpty)
        // A unit written with another timeout (or by a slipway without the drop-in) is not current.
        unit.deviceTimeout = 0
        #expect(!units.isCurrent(unit))
        try units.write(unit)
        #expect(units.isCurrent(unit))
        #expect(try String(contentsOfFile: dropIn, encoding: .utf8).contains("\nJobRunningTimeoutSec=infinity\n"))
        try units.remove(where: unit.where)
        #expect(!units.isCurrent(unit))
        #expect(units.list(under: "/").isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == ["local-fs.target.wants"])
        }
    }
}

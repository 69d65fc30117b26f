import Foundation
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
import SlipwayTestSupport

/// The lvm backend on a real kernel: a VM booted by scripts/lvm-vm from the image slipway
/// built (recipes/node-base.toml), driven as an ordinary node through an inventory.
/// One boot for everything (software emulation is slow); qemu is stopped by its pid in all
/// cases. Crash trials: `SLIPWAY_LVM_CRASH_TRIALS` (default 10), `SLIPWAY_CRASH_SEED`.
@Suite("LVM backend in a VM", .serialized)
struct LVMBackendVMTests {
    @Test("deploy, delta as thin snapshot, rollback, prune, schroot, reboot, crashes, full pool", .needs(.lvmVM))
    func lvmInVM() throws {
        let controller = try #require(lvmControllerBinary)
        let temp = try TempDir("slipway-lvm-test")
        defer { temp.remove() }
        let releases = LVMAppReleases(temp: temp)
        let app = "lvmapp"
        // v1 and v2 share 12 MiB; v2 adds 3 MiB (a thin-snapshot delta).
        let v1 = try releases.release(app, "1.0.0", shared: 12, own: 0)
        let v2 = try releases.release(app, "2.0.0", shared: 12, own: 3)
        let v3 = try releases.release(app, "3.0.0", shared: 12, own: 2)

        let started = ContinuousClock.now
        let vm = try LVMVM()
        defer { vm.down() }
        print("lvm-vm: ssh answered \(vm.bootSeconds) s after qemu started")

        func deploy(_ version: String) throws -> NodeOutcome? {
            let result = try run(controller, ["deploy", "\(app)@\(version)", "--on", "lvm-vm", "--inventory", vm.inventory,
                                              "--store", releases.store.root, "--json", "--confirm-timeout", "0"])
            #expect(result.ok, "deploy \(version): \(result.err)")
            return try JSONDecoder().decode([NodeOutcome].self, from: result.stdout).first
        }
        func view() throws -> LVMNodeView { LVMNodeView(parsing: try vm.sshChecked(LVMNodeView.script(app: app))) }

        // v1: a full release into a new thin LV.
        let first = try deploy("1.0.0")
        #expect(first?.result == .activated && first?.method == "full", "\(String(describing: first))")
        var seen = try view()
        #expect(seen.current == "1.0.0")
        #expect(seen.currentMountSource == "/dev/mapper/slipway-lvmapp--1.0.0", "\(seen)")
        #expect(seen.landedVolumes == ["lvmapp-1.0.0"])
        #expect(try vm.sshChecked("lvs --noheadings -o segtype,pool_lv slipway/lvmapp-1.0.0").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init) == ["thin", "pool"])
        #expect(try vm.sshChecked("findmnt -n -o OPTIONS --mountpoint /var/lib/slipway/lvmapp/releases/1.0.0").hasPrefix("ro"))
        #expect(try lvmTreeDifferences(vm: vm, app: app, version: "1.0.0", manifest: v1.manifest) == [])

        // v2: a delta, landed as a thin snapshot of v1's LV.
        let second = try deploy("2.0.0")
        #expect(second?.result == .activated && second?.method == "delta from 1.0.0", "\(String(describing: second))")
        #expect(try vm.sshChecked("lvs --noheadings -o origin slipway/lvmapp-2.0.0").trimmingCharacters(in: .whitespacesAndNewlines) == "lvmapp-1.0.0")
        #expect(try lvmTreeDifferences(vm: vm, app: app, version: "2.0.0", manifest: v2.manifest) == [])
        seen = try view()
        #expect(seen.current == "2.0.0" && seen.currentVersionFile == "2.0.0", "\(seen)")
        #expect(seen.units == ["1.0.0", "2.0.0"], "\(seen)")

        // Rollback and roll forward: the same rename of current.
        let back = try run(controller, ["rollback", app, "--on", "lvm-vm", "--inventory", vm.inventory, "--json"])
        #expect(back.ok, "rollback: \(back.err)")
        #expect(try view().current == "1.0.0")
        let forward = try run(controller, ["rollback", app, "--on", "lvm-vm", "--inventory", vm.inventory, "--to", "2.0.0", "--json"])
        #expect(forward.ok, "roll forward: \(forward.err)")
        #expect(try view().current == "2.0.0")

        // schroot enters the current version: an lvm-snapshot chroot of its LV.
        let chroot = try vm.sshChecked("cat /etc/schroot/chroot.d/slipway-lvmapp")
        #expect(chroot.contains("type=lvm-snapshot") && chroot.contains("device=/dev/slipway/lvmapp-2.0.0"), "\(chroot)")
        let entered = try vm.ssh("schroot -c slipway-lvmapp -d / -- /bin/cat /etc/app/version")
        #expect(entered.ok && entered.out.trimmingCharacters(in: .whitespacesAndNewlines) == "2.0.0", "schroot: \(entered.err)")
        #expect(try view().partialVolumes == [], "a schroot session snapshot was left behind")

        // v3 (delta from v2), then prune keeps current and previous only.
        _ = try deploy("3.0.0")
        let pruned = try vm.sshChecked("slipway node prune lvmapp --keep 1 --json")
        #expect(pruned.contains("\"1.0.0\""), "prune: \(pruned)")
        seen = try view()
        #expect(seen.landedVolumes.sorted() == ["lvmapp-2.0.0", "lvmapp-3.0.0"], "\(seen)")
        #expect(seen.units == ["2.0.0", "3.0.0"] && seen.mountedReleases == ["2.0.0", "3.0.0"], "\(seen)")
        #expect(try lvmTreeDifferences(vm: vm, app: app, version: "3.0.0", manifest: v3.manifest) == [],
                "v3 (a snapshot of v2, itself a snapshot of the pruned v1)")

        // Every crash trial ends in a boot: it has brought every landed version back, mounted,
        // and current unchanged.
        let current = try crashTrials(vm: vm, releases: releases, app: app)
        seen = try view()
        #expect(seen.current == current && seen.currentVersionFile == current, "after reboot: \(seen)")
        #expect(Set(seen.mountedReleases.map { LVMNames.lvName(app: app, version: $0) }) == Set(seen.landedVolumes), "after reboot: \(seen)")
        let status = try vm.status(app)
        #expect(status.current == current && status.leftovers.isEmpty, "\(status)")
        #expect(Set(status.releases.filter(\.landed).map(\.version)) == Set(seen.mountedReleases), "\(status)")
        // The free space deploy --plan compares with a release: the thin pool's free data.
        #expect(status.space?.location == "thin pool slipway/pool" && (status.space?.availableBytes ?? 0) > 0, "\(String(describing: status.space))")
        try fullPool(vm: vm, releases: releases, app: app, controller: controller)
        try stagingDiscarded(vm: vm, releases: releases, app: app)
        print("lvm-vm: whole test \((ContinuousClock.now - started).components.seconds) s")
    }

    /// What the boot did with slipway's LVs and mounts, for a failure message.
    private func bootLog(_ vm: LVMVM) throws -> String {
        try vm.ssh("""
            systemctl --no-pager --failed
            journalctl -b --no-pager -o short-monotonic | grep -E 'lvm-activate|slipway|timed out|Dependency failed' | tail -n 40
            """).out
    }

    /// Power cuts during `slipway node apply` (odd trials) and `activate` (even ones): the guest
    /// kernel reboots at once at a seeded moment of the command (sysrq b: no sync, no unmount).
    /// After each boot, before any slipway command, current is the old or the new version,
    /// mounted and complete; after `recover`, the invariant of docs/node.md holds: no leftovers, every
    /// landed version mounted with its unit, the journal listing exactly those.
    func crashTrials(vm: LVMVM, releases: LVMAppReleases, app: String) throws -> String? {
        let environment = ProcessInfo.processInfo.environment
        let trials = Int(environment["SLIPWAY_LVM_CRASH_TRIALS"] ?? "") ?? 10
        let seed = UInt64(environment["SLIPWAY_CRASH_SEED"] ?? "") ?? 6
        var generator = SeededGenerator(seed: seed)
        print("lvm-vm crash trials: \(trials), seed \(seed) (SLIPWAY_CRASH_SEED)")
        try vm.sshChecked("mkdir -p /root/rel")
        var manifests: [String: ReleaseManifest] = ["3.0.0": try releases.store.release(name: app, version: "3.0.0").manifest,
                                                    "2.0.0": try releases.store.release(name: app, version: "2.0.0").manifest]
        // Every release of the trials goes over in one tar stream.
        let probe = try releases.release(app, "4.0.0", shared: 2, own: 1)
        manifests["4.0.0"] = probe.manifest
        var trialReleases: [String: StoredRelease] = [:]
        let bundle = releases.temp.sub("trials")
        try FileManager.default.createDirectory(atPath: bundle, withIntermediateDirectories: true)
        for (version, release) in [("4.0.0", probe)] + (try (1...trials).map { ("5.0.\($0)", try releases.release(app, "5.0.\($0)", shared: 2, own: 1)) }) {
            trialReleases[version] = release
            manifests[version] = release.manifest
            try FileManager.default.copyItem(atPath: release.archivePath, toPath: "\(bundle)/\(version).tar.zst")
            try FileManager.default.copyItem(atPath: release.manifestPath, toPath: "\(bundle)/\(version).json")
        }
        let sent = try run("sh", ["-c", "tar -C \"$2\" -cf - . | ssh -F \"$1\" lvm-vm 'tar -C /root/rel -xf -'", "sh", vm.directory + "/ssh_config", bundle])
        guard sent.ok else { throw TestSupportError.commandFailed("sending the trial releases", sent.status, sent.err) }
        // How long an uncrashed apply and activate take, to place the kills.
        let timing = try vm.sshChecked("""
            a=$(date +%s%N); slipway node apply --archive /root/rel/4.0.0.tar.zst --manifest /root/rel/4.0.0.json --json >/dev/null
            b=$(date +%s%N); slipway node activate lvmapp@4.0.0 --json >/dev/null; c=$(date +%s%N)
            echo $(( (b - a) / 1000000 )) $(( (c - b) / 1000000 ))
            """).split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        // A second node root on the same VG neither sees nor takes the first one's LVs.
        let other = try vm.ssh("""
            slipway node status lvmapp --root /var/lib/slipway-two --json | grep -c '"version"' || true
            slipway node apply --root /var/lib/slipway-two --archive /root/rel/4.0.0.tar.zst --manifest /root/rel/4.0.0.json
            """)
        #expect(!other.ok && other.err.contains("slipway/lvmapp-4.0.0 exists but is not this node root's"), "second root: \(other.err)")
        #expect(other.out.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "second root sees no versions: \(other.out)")
        #expect(try vm.sshChecked("findmnt -n -o TARGET | grep -c slipway-two || true").trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        let applyMs = max(timing.first ?? 3000, 500)
        let activateMs = max(timing.last ?? 1000, 200)
        print("lvm-vm: uncrashed apply \(applyMs) ms, activate \(activateMs) ms")

        var lastCurrent: String?
        var interruptedApplies = 0
        var interruptedActivates = 0
        for trial in 1...trials {
            let version = "5.0.\(trial)"
            guard let release = trialReleases[version] else { continue }
            // Odd trials cut the power during apply, even ones during activate (after a whole apply).
            let duringApply = trial % 2 == 1
            let before = try LVMNodeView(parsing: vm.sshChecked(LVMNodeView.script(app: app))).current
            let cutAt = duringApply ? Int.random(in: 0...(applyMs * 11 / 10), using: &generator)
                                    : Int.random(in: 0...(activateMs * 12 / 10), using: &generator)
            let apply = "slipway node apply --archive /root/rel/\(version).tar.zst --manifest /root/rel/\(version).json --json >/dev/null"
            let seconds = try vm.crash(script: duringApply
                ? "\(apply) 2>/root/rel/apply.err &\nsleep \(Double(cutAt) / 1000)"
                : "\(apply)\nslipway node activate lvmapp@\(version) --json >/dev/null 2>/root/rel/activate.err &\nsleep \(Double(cutAt) / 1000)")
            let what = "trial \(trial) (power cut \(cutAt) ms into \(duringApply ? "apply" : "activate") of \(version), from \(before ?? "none"))"
            print("lvm-vm: \(what): ssh answered again after \(seconds) s")

            // Before any slipway command: the boot's own mounts make current a mounted, complete version.
            let booted = try LVMNodeView(parsing: vm.sshChecked(LVMNodeView.script(app: app)))
            guard let bootedCurrent = booted.current else {
                Issue.record("\(what): after the boot, current is gone: \(booted)")
                continue
            }
            #expect(bootedCurrent == before || bootedCurrent == version, "\(what): current is neither the old nor the new version: \(booted)")
            // The VM gives slipway's LVs 5 s to appear (scripts/lvm-vm); only slipway's own
            // device drop-in lets the boot wait for LVM's activation.
            let device = LVMMountUnit.unitName(for: "/dev/slipway/\(LVMNames.lvName(app: app, version: bootedCurrent))", suffix: ".device")
            let waited = try vm.sshChecked("systemctl show -p JobRunningTimeoutUSec --value '\(device)'")
            #expect(waited.trimmingCharacters(in: .whitespacesAndNewlines) == "10min", "\(what): the device drop-in: \(waited)")
            let mounted = booted.currentVersionFile == bootedCurrent && booted.currentMountSource != nil
            let log = mounted ? "" : try bootLog(vm)
            #expect(mounted, "\(what): after the boot, before recovery: \(booted)\n\(log)")
            if let manifest = manifests[bootedCurrent] {
                #expect(try lvmTreeDifferences(vm: vm, app: app, version: bootedCurrent, manifest: manifest) == [], "\(what): current tree after the boot")
            }

            let recovered = try vm.ssh("slipway node recover lvmapp --json")
            #expect(recovered.ok, "\(what): recover: \(recovered.err)")
            let seen = try LVMNodeView(parsing: vm.sshChecked(LVMNodeView.script(app: app)))
            guard let current = seen.current else {
                Issue.record("\(what): current is gone after recovery")
                continue
            }
            #expect(current == bootedCurrent, "\(what): recovery switched current: \(seen)")
            #expect(seen.currentVersionFile == current, "\(what): \(seen)")
            #expect(seen.currentMountSource == "/dev/mapper/slipway-\(LVMNames.lvName(app: app, version: current).replacingOccurrences(of: "-", with: "--"))", "\(what): \(seen)")
            #expect(seen.partialVolumes.isEmpty && seen.partialDirectories.isEmpty, "\(what): leftovers \(seen)")
            let landed = Set(seen.landedVolumes)
            #expect(Set(seen.mountedReleases.map { LVMNames.lvName(app: app, version: $0) }) == landed, "\(what): every landed LV mounted: \(seen)")
            #expect(Set(seen.units.map { LVMNames.lvName(app: app, version: $0) }) == landed, "\(what): a mount unit per landed LV: \(seen)")
            let status = try vm.status(app)
            #expect(Set(status.releases.filter(\.landed).map { LVMNames.lvName(app: app, version: $0.version) }) == landed,
                    "\(what): the journal lists exactly the landed versions: \(status)")
            let newLanded = landed.contains(LVMNames.lvName(app: app, version: version))
            if newLanded {
                #expect(try lvmTreeDifferences(vm: vm, app: app, version: version, manifest: release.manifest) == [], "\(what): landed tree")
            }
            if duringApply && !newLanded { interruptedApplies += 1 }
            if !duringApply && current != version { interruptedActivates += 1 }
            lastCurrent = current
            if trial < trials {
                let prune = try vm.ssh("slipway node prune lvmapp --keep 2 --json; rm -f /root/rel/\(version).*")
                #expect(prune.ok, "\(what): prune: \(prune.err)")
            }
        }
        let applyTrials = (trials + 1) / 2
        print("lvm-vm: power cuts: \(interruptedApplies) of \(applyTrials) applies left the new version unlanded, " +
              "\(interruptedActivates) of \(trials - applyTrials) activates left the old version current")
        #expect(interruptedApplies >= applyTrials / 3, "too few power cuts landed inside apply")
        return lastCurrent
    }

    /// The staging LV is made while the archive is hashed: an archive that fails its hash
    /// leaves no LV, mount or directory behind. A staging LV named the way slipway staged
    /// before 2026-12-07 (`-partial`) is still removed by recover.
    func stagingDiscarded(vm: LVMVM, releases: LVMAppReleases, app: String) throws {
        let before = try LVMNodeView(parsing: vm.sshChecked(LVMNodeView.script(app: app)))
        let release = try releases.release(app, "7.0.0", shared: 2, own: 4)
        try vm.upload(release.archivePath, to: "/root/rel/7.0.0.tar.zst")
        try vm.upload(release.manifestPath, to: "/root/rel/7.0.0.json")
        // One byte changed in the middle of the archive.
        try vm.sshChecked("printf 'x' | dd of=/root/rel/7.0.0.tar.zst bs=1 seek=$(( $(stat -c %s /root/rel/7.0.0.tar.zst) / 2 )) conv=notrunc status=none")
        let refused = try vm.ssh("slipway node apply --archive /root/rel/7.0.0.tar.zst --manifest /root/rel/7.0.0.json")
        #expect(!refused.ok && refused.err.contains("sha256"), "a damaged archive: \(refused.err)")
        let after = try LVMNodeView(parsing: vm.sshChecked(LVMNodeView.script(app: app)))
        #expect(after.partialVolumes.isEmpty && after.partialDirectories.isEmpty, "staging left after a failed hash: \(after)")
        #expect(after.landedVolumes.sorted() == before.landedVolumes.sorted() && after.current == before.current, "\(after)")
        #expect(try vm.sshChecked("lvs --noheadings -o lv_name slipway").contains("lvmapp-7.0.0") == false)

        let key = LVMNames.rootKey("/var/lib/slipway")
        try vm.sshChecked("lvcreate -q -y -V 64m --thinpool pool -n lvmapp-8.0.0-partial --addtag slipway.app=lvmapp --addtag slipway.root=\(key) slipway >/dev/null")
        #expect(try LVMNodeView(parsing: vm.sshChecked(LVMNodeView.script(app: app))).partialVolumes == ["lvmapp-8.0.0-partial"])
        let recovered = try vm.ssh("slipway node recover lvmapp --json")
        #expect(recovered.ok, "recover: \(recovered.err)")
        let last = try LVMNodeView(parsing: vm.sshChecked(LVMNodeView.script(app: app)))
        #expect(last.partialVolumes.isEmpty && last.landedVolumes.sorted() == before.landedVolumes.sorted(), "\(last)")
    }

    /// A thin pool that fills up during an apply: a clear error naming the pool, the current
    /// version untouched, nothing left behind. Before: a pool too full to start one.
    func fullPool(vm: LVMVM, releases: LVMAppReleases, app: String, controller: String) throws {
        let before = try LVMNodeView(parsing: vm.sshChecked(LVMNodeView.script(app: app)))
        // Writes to a full pool fail at once instead of queueing for 60 s.
        try vm.sshChecked("lvchange -q --errorwhenfull y slipway/pool")
        // Fill the pool to leave ~20 MiB: enough to start a delta (16 MiB), too little for the
        // 24 MiB this version brings, and too little to start a full apply of it.
        let release = try releases.release(app, "6.0.0", shared: 2, own: 24)
        let fill = try vm.sshChecked("""
            set -e
            pool=$(lvs --noheadings --nosuffix --units m -o lv_size slipway/pool | tr -d ' ')
            used=$(lvs --noheadings --nosuffix -o data_percent slipway/pool | tr -d ' ')
            free=$(awk -v s=$pool -v u=$used 'BEGIN { printf "%d", s * (100 - u) / 100 - 20 }')
            lvcreate -q -y -V ${free}m --thinpool pool -n filler slipway >/dev/null
            dd if=/dev/zero of=/dev/slipway/filler bs=1M count=$free oflag=direct status=none
            lvs --noheadings -o data_percent slipway/pool
            """)
        print("lvm-vm: pool filled to \(fill.trimmingCharacters(in: .whitespacesAndNewlines)) %")
        let current = try vm.status(app).current
        let result = try run(controller, ["deploy", "\(app)@6.0.0", "--on", "lvm-vm", "--inventory", vm.inventory,
                                          "--store", releases.store.root, "--json", "--confirm-timeout", "0"])
        #expect(!result.ok, "deploy into a full pool must fail")
        let outcome = try? JSONDecoder().decode([NodeOutcome].self, from: result.stdout).first
        let detail = ((outcome ?? nil)?.detail ?? "") + "\n" + result.err
        #expect(detail.contains("thin pool slipway/pool is full"), "the error names the pool: \(detail) \(result.err)")
        print("lvm-vm full pool error: \(detail.split(separator: "\n").first ?? "")")
        let after = try LVMNodeView(parsing: vm.sshChecked(LVMNodeView.script(app: app)))
        #expect(after.current == current && after.currentVersionFile == current, "\(after)")
        #expect(after.partialVolumes.isEmpty && after.partialDirectories.isEmpty, "\(after)")
        #expect(after.landedVolumes.sorted() == before.landedVolumes.sorted(), "\(after)")

        // Before anything is made: the pool (20 MiB free again) cannot hold a full release.
        try vm.upload(release.archivePath, to: "/root/rel/6.0.0.tar.zst")
        try vm.upload(release.manifestPath, to: "/root/rel/6.0.0.json")
        let refused = try vm.ssh("slipway node apply --archive /root/rel/6.0.0.tar.zst --manifest /root/rel/6.0.0.json")
        #expect(!refused.ok && refused.err.contains("thin pool slipway/pool is full"), "full apply into a full pool: \(refused.err)")
        let last = try LVMNodeView(parsing: vm.sshChecked(LVMNodeView.script(app: app)))
        #expect(last.current == current && last.partialVolumes.isEmpty, "\(last)")
        try vm.sshChecked("lvremove -q -y slipway/filler")
    }
}

// The Ansible YAML inventory reader (docs/fuzzing.md): `Inventory.load` of a `hosts.yml`, as
// every fleet command reads `--inventory hosts.yml` (Yams, then slipway's groups and
// variables), then a selection of each group.
import Foundation
import FuzzSupport
import SlipwayFleet

FuzzTarget.run(
    setUp: { try Scratch() },
    seeds: { _ in
        [
            "farm.yml": Data("""
                all:
                  vars:
                    ansible_user: deploy
                    slipway_root: /var/lib/slipway
                  hosts:
                    badwolf.example.com:5309:
                  children:
                    web:
                      hosts:
                        www[01:50:2].example.com:
                        web1:
                          ansible_host: 10.0.0.11
                          ansible_port: 2222
                      vars:
                        slipway_backend: btrfs
                        app_env: production
                    db:
                      hosts:
                        db-[a:f]:
                          ansible_user: root
                    prod:
                      children:
                        web:
                        db:
                """.utf8),
            "anchors.yml": Data("""
                x: &group
                  hosts:
                    h1:
                    h2: {ansible_port: 22}
                y: *group
                z: {children: {x: null, y: ~}}
                """.utf8),
        ]
    },
    body: { scratch, bytes in
        let path = scratch.write(bytes, to: "hosts.yml")
        guard let inventory = try? Inventory.load(path: path, limits: .fuzzing) else { return }
        for group in inventory.groups.keys.sorted() { _ = try? inventory.select("@" + group) }
        _ = try? inventory.select("*")
    })

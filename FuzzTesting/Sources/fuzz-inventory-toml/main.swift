// The TOML inventory reader (docs/fuzzing.md): `Inventory.load` of an `inventory.toml`, as
// every fleet command reads `--inventory`, then a selection of each group.
import Foundation
import FuzzSupport
import SlipwayFleet

FuzzTarget.run(
    setUp: { try Scratch() },
    seeds: { _ in
        [
            "docs-example.toml": Data("""
                [defaults]
                user = "deploy"
                port = 22
                ssh_config = "ssh_config"
                ssh_options = ["-o", "ConnectTimeout=5"]
                transport = "ssh"
                root = "/var/lib/slipway"
                backend = "dir"
                node_config = "/etc/slipway/node.toml"
                slipway = "/usr/local/bin/slipway"

                [groups.web]
                nodes = ["web1", "web2"]
                children = ["canary"]

                [groups.canary]
                nodes = ["web3"]

                [nodes.web1]
                host = "10.0.0.11"
                groups = ["db"]

                [nodes.web2]
                host = "web2.example.net"

                [nodes.web3]

                [nodes.local1]
                transport = "local"
                root = "/srv/farm/local1"
                """.utf8),
            "farm.toml": Data("""
                [defaults]
                ssh_config = "ssh_config"
                root = "/var/lib/slipway"
                backend = "btrfs"
                slipway = "/opt/slipway/bin/slipway"

                [groups.farm]
                nodes = ["node1", "node2", "node3"]

                [groups.web]
                nodes = ["node1", "node2"]

                [groups.api]
                nodes = ["node3"]

                [nodes.node1]
                host = "node1"
                [nodes.node2]
                host = "node2"
                [nodes.node3]
                host = "node3"
                """.utf8),
        ]
    },
    body: { scratch, bytes in
        let path = scratch.write(bytes, to: "inventory.toml")
        guard let inventory = try? Inventory.load(path: path) else { return }
        for group in inventory.groups.keys.sorted() { _ = try? inventory.select("@" + group) }
        _ = try? inventory.select("*")
        _ = try? inventory.select("web*,node1")
    })

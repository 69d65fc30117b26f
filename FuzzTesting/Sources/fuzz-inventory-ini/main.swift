// The Ansible INI inventory reader (docs/fuzzing.md): `Inventory.load` of a `hosts.ini`, as
// every fleet command reads `--inventory hosts.ini`, then a selection of each group.
import Foundation
import FuzzSupport
import SlipwayFleet

FuzzTarget.run(
    setUp: { try Scratch() },
    seeds: { _ in
        [
            // Host patterns as Ansible's guide writes them: ranges, strides, letters, host:port.
            "patterns.ini": Data("""
                badwolf.example.com:5309
                [webservers]
                www[01:50].example.com
                www[01:50:2].example.com:2222 ansible_port=2200
                [databases]
                db-[a:f].example.com
                [grid]
                rack[1:3]-node[:4]
                [all:children]
                webservers
                """.utf8),
            "farm.ini": Data("""
                # the farm
                [all:vars]
                ansible_user=deploy
                slipway_root=/var/lib/slipway
                slipway_backend=btrfs
                slipway_path=/opt/slipway/bin/slipway

                [web]
                web1 ansible_host=10.0.0.11 ansible_port=2222
                web2 ansible_host=10.0.0.12 slipway_root=/srv/slipway

                [db]
                db1 ansible_host=10.0.0.21 ansible_user=root ansible_ssh_common_args='-F farm/ssh_config -o ConnectTimeout=3'
                local1 ansible_connection=local slipway_node_config=/etc/slipway/node.toml

                [prod:children]
                web
                db

                [web:vars]
                ansible_python_interpreter=/usr/bin/python3
                app_env="production"
                """.utf8),
        ]
    },
    body: { scratch, bytes in
        let path = scratch.write(bytes, to: "hosts.ini")
        guard let inventory = try? Inventory.load(path: path, limits: .fuzzing) else { return }
        for group in inventory.groups.keys.sorted() { _ = try? inventory.select("@" + group) }
        _ = try? inventory.select("*")
        _ = try? inventory.select("web*,db1")
    })

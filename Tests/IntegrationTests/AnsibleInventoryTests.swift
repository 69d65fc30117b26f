import Foundation
import Testing
import SlipwayTestSupport
@testable import SlipwayFleet

/// Issue 19: slipway reads an Ansible INI or YAML inventory as Ansible does. Each file below is shaped
/// like the examples of Ansible's inventory guide (ranges, strides, letters, host:port,
/// playbook variables, nested children, empty groups); `ansible-inventory --list`
/// of the same file gives every group's hosts (its own and its children's, recursively) and
/// every host's port, and slipway must read the same.
@Suite("Ansible inventories: the same hosts as ansible-inventory")
struct AnsibleInventoryTests {
    static let files: [String: String] = [
        "guide.ini": """
            mail.example.com

            [webservers]
            foo.example.com
            bar.example.com

            [dbservers]
            one.example.com
            two.example.com
            three.example.com
            """,
        "ranges.ini": """
            [webservers]
            www[01:50].example.com

            [databases]
            db-[a:f].example.com

            [evens]
            www[01:50:2].example.com

            [grid]
            rack[1:3]-node[01:04] ansible_user=grid
            """,
        "ports-and-vars.ini": """
            badwolf.example.com:5309
            jumper ansible_port=5555 ansible_host=192.0.2.50

            [atlanta]
            host1 http_port=80 maxRequestsPerChild=808
            host2 http_port=303 maxRequestsPerChild=909
            web[1:3].example.com:2222

            [atlanta:vars]
            ntp_server=ntp.atlanta.example.com
            proxy=proxy.atlanta.example.com
            """,
        "children.ini": """
            [atlanta]
            host1
            host2

            [raleigh]
            host2
            host3

            [southeast:children]
            atlanta
            raleigh

            [southeast:vars]
            some_server=foo.southeast.example.com
            halon_system_timeout=30
            self_destruct_countdown=60
            escape_pods=2

            [northeast]
            [southwest]
            [northwest]
            nw[1:2]

            [usa:children]
            southeast
            northeast
            southwest
            northwest
            """,
        // The same shapes in Ansible's YAML format (the guide gives each example in both).
        "guide.yml": """
            ungrouped:
              hosts:
                mail.example.com:
            webservers:
              hosts:
                foo.example.com:
                bar.example.com:
            dbservers:
              hosts:
                one.example.com:
                two.example.com:
                three.example.com:
            """,
        "ranges.yaml": """
            webservers:
              hosts:
                www[01:50].example.com:
            databases:
              hosts:
                db-[a:f].example.com:
            evens:
              hosts:
                www[01:50:2].example.com:
            grid:
              hosts:
                rack[1:3]-node[01:04]:
                  ansible_user: grid
            """,
        "ports-and-vars.yml": """
            all:
              hosts:
                badwolf.example.com:5309:
                jumper:
                  ansible_port: 5555
                  ansible_host: 192.0.2.50
              children:
                atlanta:
                  hosts:
                    host1:
                      http_port: 80
                      maxRequestsPerChild: 808
                    host2:
                      http_port: 303
                    web[1:3].example.com:2222:
                  vars:
                    ntp_server: ntp.atlanta.example.com
                    proxy: proxy.atlanta.example.com
            """,
        "children.yml": """
            all:
              children:
                usa:
                  children:
                    southeast:
                      children:
                        atlanta:
                          hosts:
                            host1:
                            host2:
                        raleigh:
                          hosts:
                            host2:
                            host3:
                      vars:
                        some_server: foo.southeast.example.com
                        halon_system_timeout: 30
                        escape_pods: 2
                    northeast:
                    northwest:
                      hosts:
                        nw[1:2]:
                    southwest:
              vars:
                ansible_user: deploy
            """,
    ]

    @Test("host lists and ports of the guide's inventories", .needs("ansible-inventory"), arguments: files.keys.sorted())
    func sameHosts(file: String) throws {
        try withTemporaryDirectory { directory in
            let path = "\(directory)/\(file)"
            try Self.files[file]!.write(toFile: path, atomically: true, encoding: .utf8)
            let listed = try run("ansible-inventory", ["-i", path, "--list"], environment: ["HOME": directory, "ANSIBLE_LOCAL_TEMP": directory])
            try #require(listed.ok, "ansible-inventory: \(listed.err)")
            let document = try #require(try JSONSerialization.jsonObject(with: Data(listed.out.utf8)) as? [String: Any])
            func hosts(_ group: String) -> Set<String> {
                let entry = document[group] as? [String: Any] ?? [:]
                var all = Set(entry["hosts"] as? [String] ?? [])
                for child in entry["children"] as? [String] ?? [] { all.formUnion(hosts(child)) }
                return all
            }
            let inventory = try Inventory.load(path: path)
            let ansibleGroups = Set(document.keys.filter { $0 != "_meta" })
            for group in ansibleGroups.union(inventory.groups.keys).sorted() {
                #expect(Set(inventory.groups[group] ?? []) == hosts(group), "\(file): group \(group)")
            }
            #expect(Set(inventory.nodes.map(\.name)) == hosts("all"), "\(file): all hosts")
            #expect(inventory.nodes.count == hosts("all").count)
            let hostvars = (document["_meta"] as? [String: Any])?["hostvars"] as? [String: [String: Any]] ?? [:]
            for node in inventory.nodes {
                let port = hostvars[node.name]?["ansible_port"].map { "\($0)" }
                #expect(node.port.map(String.init) == port, "\(file): port of \(node.name)")
                let host = hostvars[node.name]?["ansible_host"] as? String
                #expect(host == nil || node.host == host, "\(file): address of \(node.name)")
                #expect(node.user == hostvars[node.name]?["ansible_user"] as? String, "\(file): user of \(node.name)")
            }
        }
    }
}

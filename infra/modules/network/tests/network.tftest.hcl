# Security groups open only the ports we serve, to the addresses given. Mocked provider: nothing reaches a cloud.
# Addresses are from the documentation ranges (RFC 5737).

mock_provider "openstack" {}

variables {
  name_prefix  = "tqa-test"
  private_cidr = "198.51.100.0/24"
  admin_cidrs  = ["192.0.2.10/32"]
  public_cidrs = ["192.0.2.0/24"]
  peer_cidrs   = ["203.0.113.40/32"]
}

run "public_ports_are_only_the_api_and_grafana" {
  command = plan

  assert {
    condition     = toset([for r in openstack_networking_secgroup_rule_v2.public : r.port_range_min]) == toset([3000, 3001])
    error_message = "Publicly only the BentoML API (3000) and Grafana (3001) may be open."
  }
  assert {
    condition     = alltrue([for r in openstack_networking_secgroup_rule_v2.public : r.remote_ip_prefix == "192.0.2.0/24" && r.port_range_min == r.port_range_max && r.protocol == "tcp"])
    error_message = "Each public rule opens one TCP port to public_cidrs only."
  }
  assert {
    condition     = !anytrue([for r in openstack_networking_secgroup_rule_v2.public : contains([8080, 50051, 5000, 9090, 9093, 7946, 8300], r.port_range_min)])
    error_message = "Weaviate, MLflow, Prometheus and Alertmanager must never be public."
  }
}

run "ssh_only_from_admin_addresses" {
  command = plan

  assert {
    condition     = [for r in openstack_networking_secgroup_rule_v2.ssh : r.remote_ip_prefix] == ["192.0.2.10/32"]
    error_message = "SSH must be open to the admin addresses only."
  }
  assert {
    condition     = alltrue([for r in openstack_networking_secgroup_rule_v2.ssh : r.port_range_min == 22 && r.port_range_max == 22])
    error_message = "The SSH group opens port 22 and nothing else."
  }
}

run "internal_ports_between_members_and_peers" {
  command = apply

  assert {
    condition     = contains([for r in openstack_networking_secgroup_rule_v2.internal_members : r.port_range_min], 8080) && contains([for r in openstack_networking_secgroup_rule_v2.internal_members : r.port_range_min], 7946)
    error_message = "Weaviate HTTP and gossip are open between members."
  }
  assert {
    condition     = alltrue([for r in openstack_networking_secgroup_rule_v2.internal_members : r.remote_group_id == openstack_networking_secgroup_v2.internal.id])
    error_message = "Internal member rules name the group, not an address range."
  }
  assert {
    condition     = length(openstack_networking_secgroup_rule_v2.internal_peers) == length(var.internal_ports) && alltrue([for r in openstack_networking_secgroup_rule_v2.internal_peers : r.remote_ip_prefix == "203.0.113.40/32"])
    error_message = "The peer at the other site gets exactly the internal ports, from its own address."
  }
}

run "creates_a_private_network_with_a_router" {
  command = plan

  assert {
    condition     = length(openstack_networking_network_v2.private) == 1 && openstack_networking_subnet_v2.private[0].cidr == "198.51.100.0/24" && length(openstack_networking_router_interface_v2.private) == 1
    error_message = "KVM sites get a private network, a subnet with the given CIDR, and a router."
  }
}

run "reuses_an_existing_network_on_bare_metal_sites" {
  command = plan

  variables {
    create_network = false
    private_cidr   = null
  }

  assert {
    condition     = length(openstack_networking_network_v2.private) == 0 && length(openstack_networking_router_v2.private) == 0
    error_message = "No network or router is created where an existing network is reused."
  }
  assert {
    condition     = output.network_name == "sharednet1"
    error_message = "Bare-metal nodes attach to sharednet1 by default."
  }
}

run "ssh_is_never_open_to_everyone_by_omission" {
  command = plan

  variables {
    admin_cidrs = []
  }

  expect_failures = [var.admin_cidrs]
}

# Security groups open only the ports we serve, to the addresses given. Mocked provider: nothing reaches a cloud.
# Addresses are from the documentation ranges (RFC 5737).

mock_provider "openstack" {}

variables {
  name_prefix  = "tqa-test"
  private_cidr = "198.51.100.0/24"
  groups       = { bastion = "jump host", db = "database" }
  rules = {
    ssh_admin  = { group = "bastion", protocol = "tcp", port = 22, from_cidrs = ["192.0.2.10/32", "192.0.2.11/32"] }
    ssh_jump   = { group = "db", protocol = "tcp", port = 22, from_group = "bastion" }
    db_cluster = { group = "db", protocol = "tcp", port = 7946, port_max = 7947, from_group = "db" }
  }
}

run "one_group_per_role_and_one_rule_per_source" {
  command = apply

  assert {
    condition     = output.security_group_names["bastion"] == "tqa-test-bastion" && output.security_group_names["db"] == "tqa-test-db" && length(output.security_group_names) == 2
    error_message = "Each role gets a group named <prefix>-<role>."
  }
  assert {
    condition     = toset(keys(openstack_networking_secgroup_rule_v2.rule)) == toset(["ssh_admin/192.0.2.10/32", "ssh_admin/192.0.2.11/32", "ssh_jump", "db_cluster"])
    error_message = "A CIDR rule becomes one rule per block; a group rule becomes one rule."
  }
  assert {
    condition     = openstack_networking_secgroup_rule_v2.rule["db_cluster"].port_range_min == 7946 && openstack_networking_secgroup_rule_v2.rule["db_cluster"].port_range_max == 7947 && openstack_networking_secgroup_rule_v2.rule["ssh_jump"].port_range_max == 22
    error_message = "port_max opens a range; without it one port."
  }
}

run "ssh_is_never_open_to_everyone" {
  command = plan

  variables {
    rules = { ssh = { group = "bastion", protocol = "tcp", port = 22, from_cidrs = ["0.0.0.0/0"] } }
  }

  expect_failures = [var.rules]
}

run "a_rule_names_exactly_one_source" {
  command = plan

  variables {
    rules = { both = { group = "db", protocol = "tcp", port = 5432, from_group = "bastion", from_cidrs = ["192.0.2.10/32"] } }
  }

  expect_failures = [var.rules]
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

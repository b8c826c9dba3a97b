data "openstack_networking_network_v2" "external" {
  name = var.external_network_name
}

data "openstack_networking_network_v2" "existing" {
  count = var.create_network ? 0 : 1
  name  = var.existing_network_name
}

resource "openstack_networking_network_v2" "private" {
  count          = var.create_network ? 1 : 0
  name           = "${var.name_prefix}-net"
  admin_state_up = true
}

resource "openstack_networking_subnet_v2" "private" {
  count           = var.create_network ? 1 : 0
  name            = "${var.name_prefix}-subnet"
  network_id      = openstack_networking_network_v2.private[0].id
  cidr            = var.private_cidr
  ip_version      = 4
  dns_nameservers = var.dns_nameservers

  lifecycle {
    precondition {
      condition     = var.private_cidr != null
      error_message = "private_cidr is required when create_network is true."
    }
  }
}

resource "openstack_networking_router_v2" "private" {
  count               = var.create_network ? 1 : 0
  name                = "${var.name_prefix}-router"
  admin_state_up      = true
  external_network_id = data.openstack_networking_network_v2.external.id
}

resource "openstack_networking_router_interface_v2" "private" {
  count     = var.create_network ? 1 : 0
  router_id = openstack_networking_router_v2.private[0].id
  subnet_id = openstack_networking_subnet_v2.private[0].id
}

resource "openstack_networking_secgroup_v2" "ssh" {
  name                 = "${var.name_prefix}-ssh"
  description          = "SSH from the administrators' addresses only."
  delete_default_rules = false
}

resource "openstack_networking_secgroup_rule_v2" "ssh" {
  for_each          = toset(var.admin_cidrs)
  security_group_id = openstack_networking_secgroup_v2.ssh.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 22
  port_range_max    = 22
  remote_ip_prefix  = each.value
}

resource "openstack_networking_secgroup_v2" "public" {
  name        = "${var.name_prefix}-public"
  description = "The ports users reach: ${join(", ", keys(var.public_ports))}."
}

resource "openstack_networking_secgroup_rule_v2" "public" {
  for_each = {
    for pair in setproduct(keys(var.public_ports), var.public_cidrs) : "${pair[0]}/${pair[1]}" => {
      port = var.public_ports[pair[0]]
      cidr = pair[1]
    }
  }
  security_group_id = openstack_networking_secgroup_v2.public.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = each.value.port
  port_range_max    = each.value.port
  remote_ip_prefix  = each.value.cidr
}

resource "openstack_networking_secgroup_v2" "internal" {
  name        = "${var.name_prefix}-internal"
  description = "Service ports between the project's own nodes only."
}

resource "openstack_networking_secgroup_rule_v2" "internal_members" {
  for_each          = var.internal_ports
  security_group_id = openstack_networking_secgroup_v2.internal.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = each.value
  port_range_max    = each.value
  remote_group_id   = openstack_networking_secgroup_v2.internal.id
}

resource "openstack_networking_secgroup_rule_v2" "internal_peers" {
  for_each = {
    # Keyed by position, not address: peer addresses are floating IPs only known after apply.
    for pair in setproduct(keys(var.internal_ports), range(length(var.peer_cidrs))) : "${pair[0]}/${pair[1]}" => {
      port = var.internal_ports[pair[0]]
      cidr = var.peer_cidrs[pair[1]]
    }
  }
  security_group_id = openstack_networking_secgroup_v2.internal.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = each.value.port
  port_range_max    = each.value.port
  remote_ip_prefix  = each.value.cidr
}

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

# One security group per role at this site; each rule opens one port (or range) of one role's group to either
# another role's group (remote group: only members of that group) or a list of address blocks.
resource "openstack_networking_secgroup_v2" "role" {
  for_each    = var.groups
  name        = "${var.name_prefix}-${each.key}"
  description = each.value
}

locals {
  rule_instances = merge(
    {
      for key, rule in var.rules : key => {
        group      = rule.group, protocol = rule.protocol, port_min = rule.port, port_max = coalesce(rule.port_max, rule.port)
        from_group = rule.from_group, cidr = null
      } if rule.from_group != null
    },
    merge([
      for key, rule in var.rules : {
        for cidr in rule.from_cidrs : "${key}/${cidr}" => {
          group      = rule.group, protocol = rule.protocol, port_min = rule.port, port_max = coalesce(rule.port_max, rule.port)
          from_group = null, cidr = cidr
        }
      }
    ]...),
  )
}

resource "openstack_networking_secgroup_rule_v2" "rule" {
  for_each          = local.rule_instances
  security_group_id = openstack_networking_secgroup_v2.role[each.value.group].id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = each.value.protocol
  port_range_min    = each.value.port_min
  port_range_max    = each.value.port_max
  remote_group_id   = each.value.from_group == null ? null : openstack_networking_secgroup_v2.role[each.value.from_group].id
  remote_ip_prefix  = each.value.cidr
  description       = each.key
}

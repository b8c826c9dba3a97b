locals {
  instances = merge([
    for role, count in var.nodes : {
      for index in range(count) : "${role}-${index}" => { role = role, index = index }
    }
  ]...)
  floating = { for key, node in local.instances : key => node if contains(var.floating_ip_roles, node.role) }
}

resource "openstack_compute_instance_v2" "node" {
  for_each        = local.instances
  name            = "${var.name_prefix}-${each.key}"
  image_name      = var.image_name
  flavor_name     = var.flavor_name
  key_pair        = var.key_pair
  security_groups = [var.security_group_names[each.value.role]]
  metadata        = merge(var.metadata, { role = each.value.role, tqa_node = each.key })

  network {
    uuid = var.network_id
  }

  lifecycle {
    precondition {
      condition     = var.flavor_name != "baremetal" || var.reservation_id != null
      error_message = "Bare-metal nodes need a Blazar reservation id: run `tqa infra lease` first."
    }
  }

  # Bare metal on CHI sites is placed on the hosts of a Blazar reservation.
  dynamic "scheduler_hints" {
    for_each = var.reservation_id == null ? [] : [var.reservation_id]
    content {
      additional_properties = {
        reservation = scheduler_hints.value
      }
    }
  }
}

data "openstack_networking_port_v2" "node" {
  for_each   = local.floating
  device_id  = openstack_compute_instance_v2.node[each.key].id
  network_id = var.network_id
}

resource "openstack_networking_floatingip_v2" "node" {
  for_each    = local.floating
  pool        = var.floating_ip_pool
  description = "${var.name_prefix}-${each.key}"
}

resource "openstack_networking_floatingip_associate_v2" "node" {
  for_each    = local.floating
  floating_ip = openstack_networking_floatingip_v2.node[each.key].address
  port_id     = data.openstack_networking_port_v2.node[each.key].id
}

output "nodes" {
  description = "Every node: name, role, id, private address, whether it has a floating IP, and that address (null when it has none)."
  value = {
    for key, node in local.instances : key => {
      name        = openstack_compute_instance_v2.node[key].name
      role        = node.role
      index       = node.index
      id          = openstack_compute_instance_v2.node[key].id
      private_ip  = openstack_compute_instance_v2.node[key].access_ip_v4
      public      = contains(keys(local.floating), key)
      reservation = try(one(openstack_compute_instance_v2.node[key].scheduler_hints).additional_properties["reservation"], null)
      flavor      = openstack_compute_instance_v2.node[key].flavor_name
      floating_ip = contains(keys(local.floating), key) ? openstack_networking_floatingip_v2.node[key].address : null
    }
  }
}

output "instance_ids" {
  description = "Instance id per node key (<role>-<index>), for volume attachments."
  value       = { for key, instance in openstack_compute_instance_v2.node : key => instance.id }
}

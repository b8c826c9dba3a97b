output "network_id" {
  description = "The network nodes attach to."
  value       = var.create_network ? openstack_networking_network_v2.private[0].id : data.openstack_networking_network_v2.existing[0].id
}

output "network_name" {
  description = "Name of the network nodes attach to."
  value       = var.create_network ? openstack_networking_network_v2.private[0].name : var.existing_network_name
}

output "subnet_id" {
  description = "The private subnet (null when an existing network is reused)."
  value       = var.create_network ? openstack_networking_subnet_v2.private[0].id : null
}

output "external_network_name" {
  description = "Pool for floating IPs."
  value       = var.external_network_name
}

output "security_group_names" {
  description = "Security group name per role."
  value       = { for role, group in openstack_networking_secgroup_v2.role : role => group.name }
}

output "rules" {
  description = "The ingress rules as given (the flow policy of this site)."
  value       = var.rules
}

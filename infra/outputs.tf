locals {
  all_nodes = merge(module.vms.nodes, module.gpu.nodes)
  # The first VM with a floating IP is the SSH jump host for nodes that have only a private address.
  jump_host = try([for key in sort(keys(module.vms.nodes)) : module.vms.nodes[key].floating_ip if module.vms.nodes[key].public][0], null)
  volumes_by_node = {
    for node in distinct([for spec in values(local.volume_specs) : spec.node]) : node => [
      for name, spec in local.volume_specs : {
        device      = module.storage.volumes[name].device
        mount_point = spec.mount_point
      } if spec.node == node
    ]
  }
  # Overlay addresses: the GPU nodes (hubs) first, then the VMs in name order.
  wg_order = concat(sort(keys(module.gpu.nodes)), sort(keys(module.vms.nodes)))
  host_vars = {
    for key, node in local.all_nodes : node.name => merge(
      {
        ansible_host   = node.public ? node.floating_ip : node.private_ip
        private_ip     = node.private_ip
        wg_address     = cidrhost(var.wg_cidr, index(local.wg_order, key) + 1)
        wg_hub         = contains(keys(module.gpu.nodes), key)
        tqa_node_index = node.index
        tqa_volumes    = lookup(local.volumes_by_node, key, [])
      },
      contains(keys(module.gpu.nodes), key) ? { wg_endpoint = "${node.floating_ip}:${var.wg_port}" } : {},
      !node.public && local.jump_host != null ? {
        ansible_ssh_common_args = "-o ProxyJump=${var.ssh_user}@${local.jump_host}"
      } : {},
    )
  }
  groups = {
    weaviate    = [for key, node in module.vms.nodes : node.name if node.role == "weaviate"]
    mlflow      = [for key, node in module.vms.nodes : node.name if node.role == "mlflow"]
    monitoring  = [for key, node in module.vms.nodes : node.name if node.role == "monitoring"]
    tqa_serving = [for key, node in module.gpu.nodes : node.name]
    nvidia      = [for key, node in module.gpu.nodes : node.name]
    wireguard   = [for key, node in local.all_nodes : node.name]
  }
}

output "nodes" {
  description = "Every node with its role and addresses."
  value       = local.all_nodes
}

output "volumes" {
  description = "Every persistent volume with its device and mount point."
  value       = module.storage.volumes
}

output "security_rules" {
  description = "Ingress rules per site (everything else is closed); cross-site traffic rides the WireGuard overlay."
  value       = { kvm = module.network_kvm.rules, chi = module.network_chi.rules }
}

output "ansible_inventory" {
  description = "The Ansible inventory for this environment (written to ansible/inventory/<env>/hosts.yml by `tqa infra inventory`)."
  value = yamlencode({
    all = {
      vars = {
        ansible_user    = var.ssh_user
        tqa_environment = var.environment
        wg_cidr         = var.wg_cidr
        wg_port         = var.wg_port
      }
      children = {
        for group, hosts in local.groups : group => {
          hosts = { for name in hosts : name => local.host_vars[name] }
        }
      }
    }
  })
}

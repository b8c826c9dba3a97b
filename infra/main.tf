locals {
  name_prefix = "tqa-${var.environment}"
  metadata    = { environment = var.environment, project = "transformers-qa" }
}

module "network_kvm" {
  source    = "./modules/network"
  providers = { openstack = openstack.kvm }

  name_prefix  = local.name_prefix
  private_cidr = var.private_cidr
  admin_cidrs  = var.admin_cidrs
  public_cidrs = var.public_cidrs
  # The GPU node lives at another site and reaches Weaviate and MLflow through its floating IP.
  peer_cidrs = [for node in values(module.gpu.nodes) : "${node.floating_ip}/32"]
}

module "network_chi" {
  source    = "./modules/network"
  providers = { openstack = openstack.chi }

  name_prefix           = local.name_prefix
  create_network        = false
  existing_network_name = var.gpu_network_name
  admin_cidrs           = var.admin_cidrs
  public_cidrs          = var.public_cidrs
  # Prometheus scrapes the GPU node from the monitoring VM's floating IP.
  peer_cidrs = [for node in values(module.vms.nodes) : "${node.floating_ip}/32" if node.public]
}

module "vms" {
  source    = "./modules/compute"
  providers = { openstack = openstack.kvm }

  name_prefix          = local.name_prefix
  nodes                = var.vm_nodes
  flavor_name          = var.vm_flavor
  image_name           = var.vm_image
  key_pair             = var.key_pair
  network_id           = module.network_kvm.network_id
  security_group_names = module.network_kvm.security_group_names
  floating_ip_roles    = var.vm_floating_ip_roles
  floating_ip_pool     = module.network_kvm.external_network_name
  metadata             = local.metadata
}

module "gpu" {
  source    = "./modules/compute"
  providers = { openstack = openstack.chi }

  name_prefix          = local.name_prefix
  nodes                = { gpu = var.gpu_nodes }
  flavor_name          = "baremetal"
  image_name           = var.gpu_image
  key_pair             = var.key_pair
  network_id           = module.network_chi.network_id
  security_group_names = module.network_chi.security_group_names
  reservation_id       = var.gpu_reservation_id
  floating_ip_roles    = ["gpu"]
  floating_ip_pool     = module.network_chi.external_network_name
  metadata             = local.metadata
}

locals {
  # Persistent volumes by name: which VM they belong to, their size and where Ansible mounts them.
  volume_specs = merge(
    { for key, id in module.vms.instance_ids : "${key}-data" => { node = key, size_gb = var.weaviate_volume_gb, mount_point = "/var/lib/weaviate" } if startswith(key, "weaviate-") },
    { for key, id in module.vms.instance_ids : "${key}-artifacts" => { node = key, size_gb = var.mlflow_artifacts_gb, mount_point = "/srv/mlflow" } if key == "mlflow-0" },
    { for key, id in module.vms.instance_ids : "${key}-datasets" => { node = key, size_gb = var.datasets_gb, mount_point = "/srv/datasets" } if key == "mlflow-0" },
  )
}

module "storage" {
  source    = "./modules/storage"
  providers = { openstack = openstack.kvm }

  name_prefix = local.name_prefix
  volumes = {
    for name, spec in local.volume_specs : name => {
      size_gb     = spec.size_gb
      instance_id = module.vms.instance_ids[spec.node]
      mount_point = spec.mount_point
    }
  }
}

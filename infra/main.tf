locals {
  name_prefix = "tqa-${var.environment}"
  metadata    = { environment = var.environment, project = "transformers-qa" }
}

# Two sites, one encrypted overlay. KVM@TACC holds the CPU VMs on a private network of their own; CHI@TACC holds
# the leased A100 node on the shared bare-metal network. Between the sites every service call goes through
# WireGuard (wg_cidr): each KVM VM dials the GPU node's floating IP on UDP wg_port (outbound through the router),
# so no KVM VM needs an inbound port from the other site. Within KVM@TACC, each role's security group admits only
# the roles that call it (see infra/README.md, "Networking").
locals {
  kvm_groups = {
    monitoring = "Bastion (SSH jump host), Prometheus, Alertmanager and Grafana."
    weaviate   = "Weaviate cluster nodes."
    mlflow     = "MLflow tracking server, PostgreSQL and artifacts."
  }
  kvm_rules = {
    # Operators and CI: SSH to the bastion only; Ansible reaches the other VMs with ProxyJump from its private address.
    ssh_admin_to_bastion = { group = "monitoring", protocol = "tcp", port = 22, from_cidrs = var.admin_cidrs }
    ssh_bastion_weaviate = { group = "weaviate", protocol = "tcp", port = 22, from_group = "monitoring" }
    ssh_bastion_mlflow   = { group = "mlflow", protocol = "tcp", port = 22, from_group = "monitoring" }
    grafana_public       = { group = "monitoring", protocol = "tcp", port = 3001, from_cidrs = var.public_cidrs }
    # Weaviate cluster traffic: memberlist gossip (TCP and UDP), the data port (gossip + 1), Raft and its RPC port.
    weaviate_gossip_tcp = { group = "weaviate", protocol = "tcp", port = 7946, port_max = 7947, from_group = "weaviate" }
    weaviate_gossip_udp = { group = "weaviate", protocol = "udp", port = 7946, from_group = "weaviate" }
    weaviate_raft       = { group = "weaviate", protocol = "tcp", port = 8300, port_max = 8301, from_group = "weaviate" }
    # Prometheus scrapes Weaviate's metrics and every node's exporter.
    weaviate_metrics   = { group = "weaviate", protocol = "tcp", port = 2112, from_group = "monitoring" }
    node_exporter_weav = { group = "weaviate", protocol = "tcp", port = 9100, from_group = "monitoring" }
    node_exporter_mlf  = { group = "mlflow", protocol = "tcp", port = 9100, from_group = "monitoring" }
  }
  chi_groups = {
    gpu = "Leased A100 node: Qwen runner, RAG service, WireGuard hub."
  }
  chi_rules = {
    ssh_admin_to_gpu = { group = "gpu", protocol = "tcp", port = 22, from_cidrs = var.admin_cidrs }
    api_public       = { group = "gpu", protocol = "tcp", port = 3000, from_cidrs = var.public_cidrs }
    # WireGuard answers nothing to a packet that is not from a configured peer key, so its port may face everyone;
    # the KVM VMs leave through their router's address, which is only known after apply.
    wireguard = { group = "gpu", protocol = "udp", port = var.wg_port, from_cidrs = ["0.0.0.0/0"] }
  }
}

module "network_kvm" {
  source    = "./modules/network"
  providers = { openstack = openstack.kvm }

  name_prefix  = local.name_prefix
  private_cidr = var.private_cidr
  groups       = local.kvm_groups
  rules        = local.kvm_rules
}

module "network_chi" {
  source    = "./modules/network"
  providers = { openstack = openstack.chi }

  name_prefix           = local.name_prefix
  create_network        = false
  existing_network_name = var.gpu_network_name
  groups                = local.chi_groups
  rules                 = local.chi_rules
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

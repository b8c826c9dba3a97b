# Plan- and apply-level tests against mocked OpenStack providers: nothing reaches a cloud. Addresses come from
# the documentation ranges (RFC 5737) so they can never be mistaken for real hosts.

mock_provider "openstack" {
  alias = "kvm"

  mock_resource "openstack_compute_instance_v2" {
    defaults = {
      access_ip_v4 = "198.51.100.20"
    }
  }
  mock_resource "openstack_networking_floatingip_v2" {
    defaults = {
      address = "203.0.113.10"
    }
  }
  mock_resource "openstack_compute_volume_attach_v2" {
    defaults = {
      device = "/dev/vdb"
    }
  }
}

mock_provider "openstack" {
  alias = "chi"

  mock_resource "openstack_compute_instance_v2" {
    defaults = {
      access_ip_v4 = "198.51.100.30"
    }
  }
  mock_resource "openstack_networking_floatingip_v2" {
    defaults = {
      address = "203.0.113.40"
    }
  }
}

variables {
  environment        = "staging"
  key_pair           = "tqa-test"
  admin_cidrs        = ["192.0.2.10/32"]
  public_cidrs       = ["192.0.2.0/24"]
  private_cidr       = "198.51.100.0/24"
  wg_cidr            = "203.0.113.128/25"
  gpu_reservation_id = "3f1c9a2e-7d1b-4c55-9b0e-2a6f1d8e4b7c"
}

run "staging_defaults_create_the_documented_nodes" {
  command = plan

  assert {
    condition     = length([for k, n in output.nodes : k if n.role == "weaviate"]) == 3 && length([for k, n in output.nodes : k if n.role == "mlflow"]) == 1 && length([for k, n in output.nodes : k if n.role == "monitoring"]) == 1
    error_message = "Staging defaults create 3 Weaviate VMs, 1 MLflow VM and 1 monitoring VM."
  }
  assert {
    condition     = [for k, n in output.nodes : n.reservation if n.role == "gpu"] == [var.gpu_reservation_id]
    error_message = "One GPU node, placed with the Blazar reservation id."
  }
  assert {
    condition     = alltrue([for k, n in output.nodes : n.flavor == "baremetal" if n.role == "gpu"]) && alltrue([for k, n in output.nodes : n.reservation == null if n.role != "gpu"])
    error_message = "GPU nodes are bare metal; VMs are on demand without a reservation."
  }
  assert {
    condition     = toset([for k, n in output.nodes : k if n.public]) == toset(["monitoring-0", "gpu-0"])
    error_message = "Only the monitoring VM (jump host) and the GPU node get floating IPs."
  }
  assert {
    condition     = toset(flatten([for site in values(output.security_rules) : [for r in values(site) : r.port if contains(r.from_cidrs, "192.0.2.0/24")]])) == toset([3000, 3001])
    error_message = "Publicly only the BentoML API and Grafana are open."
  }
}

run "volumes_are_attached_where_the_data_lives" {
  command = plan

  assert {
    condition     = toset(keys(output.volumes)) == toset(["weaviate-0-data", "weaviate-1-data", "weaviate-2-data", "mlflow-0-artifacts", "mlflow-0-datasets"])
    error_message = "One data volume per Weaviate node, plus MLflow artifacts and datasets."
  }
  assert {
    condition     = output.volumes["weaviate-0-data"].size_gb == 100 && output.volumes["mlflow-0-artifacts"].size_gb == 200 && output.volumes["mlflow-0-datasets"].mount_point == "/srv/datasets"
    error_message = "Volume sizes and mount points come from the variables."
  }
}

run "counts_follow_the_variables" {
  command = plan

  variables {
    vm_nodes           = { weaviate = 1, mlflow = 1, monitoring = 1 }
    gpu_nodes          = 2
    weaviate_volume_gb = 20
  }

  assert {
    condition     = length(output.nodes) == 5 && length([for k, n in output.nodes : k if n.role == "gpu"]) == 2
    error_message = "Node counts follow vm_nodes and gpu_nodes."
  }
  assert {
    condition     = output.volumes["weaviate-0-data"].size_gb == 20 && !contains(keys(output.volumes), "weaviate-1-data")
    error_message = "Weaviate volumes follow the node count and size."
  }
}

run "gpu_nodes_without_a_lease_are_refused" {
  command = plan

  variables {
    gpu_reservation_id = null
  }

  expect_failures = [var.gpu_reservation_id]
}

run "ssh_is_never_open_to_everyone_by_omission" {
  command = plan

  variables {
    admin_cidrs = []
  }

  expect_failures = [var.admin_cidrs]
}

run "inventory_renders_groups_and_jump_host" {
  command = apply

  assert {
    condition     = toset(keys(yamldecode(output.ansible_inventory).all.children.weaviate.hosts)) == toset(["tqa-staging-weaviate-0", "tqa-staging-weaviate-1", "tqa-staging-weaviate-2"])
    error_message = "The weaviate group lists the three Weaviate nodes."
  }
  assert {
    condition     = yamldecode(output.ansible_inventory).all.children.weaviate.hosts["tqa-staging-weaviate-1"].ansible_ssh_common_args == "-o ProxyJump=cc@203.0.113.10"
    error_message = "Nodes without a floating IP are reached through the monitoring node."
  }
  assert {
    condition     = yamldecode(output.ansible_inventory).all.children.tqa_serving.hosts["tqa-staging-gpu-0"].ansible_host == "203.0.113.40"
    error_message = "The GPU node is reached on its floating IP."
  }
  assert {
    condition     = yamldecode(output.ansible_inventory).all.children.weaviate.hosts["tqa-staging-weaviate-0"].tqa_volumes == [{ device = "/dev/vdb", mount_point = "/var/lib/weaviate" }] && length(yamldecode(output.ansible_inventory).all.children.mlflow.hosts["tqa-staging-mlflow-0"].tqa_volumes) == 2
    error_message = "Weaviate hosts learn where their data volume is mounted."
  }
  assert {
    condition     = yamldecode(output.ansible_inventory).all.vars.tqa_environment == "staging" && contains(keys(yamldecode(output.ansible_inventory).all.children), "nvidia")
    error_message = "The inventory carries the environment and the nvidia group for GPU nodes."
  }
  assert {
    condition     = yamldecode(output.ansible_inventory).all.children.tqa_serving.hosts["tqa-staging-gpu-0"].wg_endpoint == "203.0.113.40:51820" && yamldecode(output.ansible_inventory).all.children.tqa_serving.hosts["tqa-staging-gpu-0"].wg_address == "203.0.113.129" && length(distinct([for h in values(yamldecode(output.ansible_inventory).all.children.wireguard.hosts) : h.wg_address])) == 6
    error_message = "The GPU node is the WireGuard hub on its floating IP; every node has its own overlay address."
  }
}

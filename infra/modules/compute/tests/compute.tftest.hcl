# Nodes per role, placement on a Blazar reservation, floating IPs. Mocked provider: nothing reaches a cloud.

mock_provider "openstack" {}

variables {
  name_prefix          = "tqa-test"
  nodes                = { weaviate = 3, mlflow = 1 }
  flavor_name          = "m1.xlarge"
  image_name           = "CC-Ubuntu24.04"
  key_pair             = "tqa-test"
  network_id           = "net-id"
  security_group_names = { weaviate = "tqa-test-weaviate", mlflow = "tqa-test-mlflow" }
  floating_ip_roles    = ["mlflow"]
}

run "one_instance_per_role_and_index" {
  command = plan

  assert {
    condition     = toset(keys(openstack_compute_instance_v2.node)) == toset(["weaviate-0", "weaviate-1", "weaviate-2", "mlflow-0"])
    error_message = "Nodes are keyed <role>-<index>, as many as asked per role."
  }
  assert {
    condition     = openstack_compute_instance_v2.node["weaviate-2"].name == "tqa-test-weaviate-2" && openstack_compute_instance_v2.node["weaviate-2"].metadata["role"] == "weaviate"
    error_message = "Names carry the prefix and metadata carries the role."
  }
  assert {
    condition     = length(openstack_compute_instance_v2.node["weaviate-0"].scheduler_hints) == 0
    error_message = "On-demand VMs carry no reservation hint."
  }
  assert {
    condition     = toset(keys(openstack_networking_floatingip_v2.node)) == toset(["mlflow-0"]) && toset(keys(openstack_networking_floatingip_associate_v2.node)) == toset(["mlflow-0"])
    error_message = "Only the roles in floating_ip_roles get (and associate) a floating IP."
  }
  assert {
    condition     = openstack_compute_instance_v2.node["weaviate-1"].security_groups == toset(["tqa-test-weaviate"]) && openstack_compute_instance_v2.node["mlflow-0"].security_groups == toset(["tqa-test-mlflow"])
    error_message = "Each node gets its own role's security group and no other."
  }
}

run "bare_metal_is_placed_on_the_reservation" {
  command = plan

  variables {
    nodes                = { gpu = 2 }
    security_group_names = { gpu = "tqa-test-gpu" }
    flavor_name          = "baremetal"
    reservation_id       = "3f1c9a2e-7d1b-4c55-9b0e-2a6f1d8e4b7c"
    floating_ip_roles    = ["gpu"]
  }

  assert {
    condition     = alltrue([for n in openstack_compute_instance_v2.node : one(n.scheduler_hints).additional_properties["reservation"] == "3f1c9a2e-7d1b-4c55-9b0e-2a6f1d8e4b7c"])
    error_message = "Every bare-metal node carries the Blazar reservation hint."
  }
  assert {
    condition     = length(openstack_compute_instance_v2.node) == 2 && length(openstack_networking_floatingip_v2.node) == 2
    error_message = "Two GPU nodes, each with a floating IP."
  }
}

run "bare_metal_without_a_reservation_is_refused" {
  command = plan

  variables {
    nodes                = { gpu = 1 }
    security_group_names = { gpu = "tqa-test-gpu" }
    flavor_name          = "baremetal"
  }

  expect_failures = [openstack_compute_instance_v2.node]
}

run "zero_nodes_create_nothing" {
  command = plan

  variables {
    nodes                = { gpu = 0 }
    security_group_names = { gpu = "tqa-test-gpu" }
  }

  assert {
    condition     = length(openstack_compute_instance_v2.node) == 0 && length(openstack_networking_floatingip_v2.node) == 0
    error_message = "A count of zero creates no instance and no floating IP."
  }
}

run "a_role_without_a_security_group_is_refused" {
  command = plan

  variables {
    nodes = { weaviate = 1, monitoring = 1 }
  }

  expect_failures = [var.security_group_names]
}

# Persistent volumes are created with their sizes and attached to their instances. Mocked provider.

mock_provider "openstack" {}

variables {
  name_prefix = "tqa-test"
  volumes = {
    weaviate-0-data    = { size_gb = 100, instance_id = "instance-w0", mount_point = "/var/lib/weaviate" }
    mlflow-0-artifacts = { size_gb = 200, instance_id = "instance-m0", mount_point = "/srv/mlflow" }
  }
}

run "volumes_are_created_and_attached" {
  command = plan

  assert {
    condition     = openstack_blockstorage_volume_v3.volume["weaviate-0-data"].size == 100 && openstack_blockstorage_volume_v3.volume["mlflow-0-artifacts"].size == 200
    error_message = "Volume sizes follow the variables."
  }
  assert {
    condition     = openstack_compute_volume_attach_v2.volume["weaviate-0-data"].instance_id == "instance-w0" && openstack_compute_volume_attach_v2.volume["mlflow-0-artifacts"].instance_id == "instance-m0"
    error_message = "Each volume is attached to its own instance."
  }
  assert {
    condition     = openstack_blockstorage_volume_v3.volume["weaviate-0-data"].name == "tqa-test-weaviate-0-data"
    error_message = "Volume names carry the prefix."
  }
}

run "empty_volumes_are_refused" {
  command = plan

  variables {
    volumes = { bad = { size_gb = 0, instance_id = "i", mount_point = "/srv/bad" } }
  }

  expect_failures = [var.volumes]
}

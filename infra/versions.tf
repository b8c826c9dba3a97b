terraform {
  required_version = ">= 1.6.0"
  required_providers {
    openstack = {
      source  = "terraform-provider-openstack/openstack"
      version = "= 3.4.0"
    }
  }

  # State stays local unless a backend is configured at init time; see README.md ("Remote state")
  # for the S3-compatible object store backend and its `-backend-config` file.
}

# Credentials come from clouds.yaml (OS_CLIENT_CONFIG_FILE or ~/.config/openstack), never from variables.
provider "openstack" {
  alias = "kvm"
  cloud = var.kvm_cloud
}

provider "openstack" {
  alias = "chi"
  cloud = var.chi_cloud
}

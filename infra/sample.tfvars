# Copy to staging.tfvars (ignored by git) and replace every REPLACE_ME; `tqa infra lease` writes the GPU
# reservation id to lease.auto.tfvars.json, which is read automatically.
environment  = "staging"
kvm_cloud    = "kvm-tacc"
chi_cloud    = "chi-tacc"
key_pair     = "REPLACE_ME-keypair-name"
admin_cidrs  = ["REPLACE_ME-your-public-address/32"]
public_cidrs = ["REPLACE_ME-who-may-call-the-api/32"]
private_cidr = "REPLACE_ME-a-free-private-block/24"
wg_cidr      = "REPLACE_ME-another-free-private-block-for-the-overlay/24"

vm_nodes = {
  weaviate   = 3
  mlflow     = 1
  monitoring = 1
}
vm_flavor = "m1.xlarge"
gpu_nodes = 1

weaviate_volume_gb  = 100
mlflow_artifacts_gb = 200
datasets_gb         = 100

"""`tqa infra`: Chameleon leases (python-chi), Terraform/OpenTofu runs and Ansible configuration."""

"""Chameleon leases (python-chi), Terraform/OpenTofu runs and Ansible configuration behind `tqa infra`."""

variable "environment" {
  description = "Which environment this state provisions."
  type        = string

  validation {
    condition     = contains(["staging", "canary", "production"], var.environment)
    error_message = "environment must be staging, canary or production."
  }
}

variable "kvm_cloud" {
  description = "clouds.yaml entry for KVM@TACC (the CPU VMs, volumes and their floating IPs)."
  type        = string
  default     = "kvm-tacc"
}

variable "chi_cloud" {
  description = "clouds.yaml entry for the bare-metal site holding the GPU lease (CHI@TACC or CHI@UC)."
  type        = string
  default     = "chi-tacc"
}

variable "key_pair" {
  description = "OpenStack key pair name, present at both sites, that Ansible logs in with."
  type        = string
}

variable "ssh_user" {
  description = "Login user of the images (cc on Chameleon images)."
  type        = string
  default     = "cc"
}

variable "admin_cidrs" {
  description = "Addresses allowed to SSH in (your workstation, the CI runner), as /32 CIDRs."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0 && alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0))])
    error_message = "admin_cidrs must list at least one CIDR block; SSH is never opened to everyone."
  }
}

variable "public_cidrs" {
  description = "Who may reach the public ports (BentoML API, Grafana)."
  type        = list(string)
}

variable "private_cidr" {
  description = "CIDR of the private network at the KVM site."
  type        = string
}

variable "vm_nodes" {
  description = "CPU VMs per role at the KVM site."
  type        = map(number)
  default = {
    weaviate   = 3
    mlflow     = 1
    monitoring = 1
  }
}

variable "vm_flavor" {
  description = "Flavor of the CPU VMs."
  type        = string
  default     = "m1.xlarge"
}

variable "vm_image" {
  description = "Image of the CPU VMs."
  type        = string
  default     = "CC-Ubuntu24.04"
}

variable "vm_floating_ip_roles" {
  description = "VM roles that get a floating IP; the first such node is the SSH jump host for the others."
  type        = list(string)
  default     = ["monitoring"]
}

variable "gpu_nodes" {
  description = "A100 bare-metal nodes (the Qwen runner and the BentoML RAG service)."
  type        = number
  default     = 1
}

variable "gpu_reservation_id" {
  description = "Blazar reservation id written by `tqa infra lease` (infra/lease.auto.tfvars.json); required when gpu_nodes > 0."
  type        = string
  default     = null

  validation {
    condition     = var.gpu_nodes == 0 || var.gpu_reservation_id != null
    error_message = "gpu_nodes > 0 needs gpu_reservation_id: run `tqa infra lease` first."
  }
}

variable "gpu_image" {
  description = "Image of the GPU nodes."
  type        = string
  default     = "CC-Ubuntu24.04-CUDA"
}

variable "gpu_network_name" {
  description = "Existing network at the bare-metal site."
  type        = string
  default     = "sharednet1"
}

variable "weaviate_volume_gb" {
  description = "Size of each Weaviate node's data volume."
  type        = number
  default     = 100
}

variable "mlflow_artifacts_gb" {
  description = "Size of the MLflow artifact volume."
  type        = number
  default     = 200
}

variable "datasets_gb" {
  description = "Size of the datasets volume (QA sets, training data), attached to the MLflow node."
  type        = number
  default     = 100
}

variable "wg_cidr" {
  description = "WireGuard overlay between the sites: a free private block, other than private_cidr, one per environment."
  type        = string

  validation {
    condition     = can(cidrhost(var.wg_cidr, 0))
    error_message = "wg_cidr must be a CIDR block such as the one in sample.tfvars."
  }
}

variable "wg_port" {
  description = "UDP port of the WireGuard hub on the GPU node."
  type        = number
  default     = 51820
}

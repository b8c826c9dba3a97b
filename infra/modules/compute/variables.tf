variable "name_prefix" {
  description = "Prefix of every node name, e.g. tqa-staging."
  type        = string
}

variable "nodes" {
  description = "Role name to node count, e.g. { weaviate = 3, mlflow = 1 }. Each node is named <prefix>-<role>-<index>."
  type        = map(number)

  validation {
    condition     = alltrue([for n in values(var.nodes) : n >= 0 && floor(n) == n])
    error_message = "Node counts must be whole numbers, zero or more."
  }
}

variable "flavor_name" {
  description = "Flavor of every node in this group (m1.large on KVM@TACC, baremetal on CHI sites)."
  type        = string
}

variable "image_name" {
  description = "Image of every node in this group (a Chameleon Ubuntu or Debian image; CUDA images for GPU nodes)."
  type        = string
}

variable "key_pair" {
  description = "Name of the OpenStack key pair that Ansible logs in with."
  type        = string
}

variable "network_id" {
  description = "Network the nodes attach to (network module output)."
  type        = string
}

variable "security_group_names" {
  description = "Security group name per role (network module output); each node gets its role's group."
  type        = map(string)

  validation {
    condition     = alltrue([for role in keys(var.nodes) : contains(keys(var.security_group_names), role)])
    error_message = "Every role in nodes needs a security group."
  }
}

variable "reservation_id" {
  description = "Blazar reservation id (from `tqa infra lease`) that places bare-metal nodes on leased hosts; null for on-demand VMs."
  type        = string
  default     = null
}

variable "floating_ip_roles" {
  description = "Roles whose nodes get a floating IP (the rest are reached through them)."
  type        = list(string)
  default     = []
}

variable "floating_ip_pool" {
  description = "External network floating IPs come from."
  type        = string
  default     = "public"
}

variable "metadata" {
  description = "Extra metadata on every node (environment, owner)."
  type        = map(string)
  default     = {}
}

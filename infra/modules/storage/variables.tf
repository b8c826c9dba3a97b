variable "name_prefix" {
  description = "Prefix of every volume name, e.g. tqa-staging."
  type        = string
}

variable "volumes" {
  description = "Persistent volumes by name: size in GiB, the instance it is attached to, and its mount point (for Ansible)."
  type = map(object({
    size_gb     = number
    instance_id = string
    mount_point = string
  }))

  validation {
    condition     = alltrue([for v in values(var.volumes) : v.size_gb >= 1])
    error_message = "Every volume needs a size of at least 1 GiB."
  }
}

variable "volume_type" {
  description = "Cinder volume type (null: the site's default)."
  type        = string
  default     = null
}

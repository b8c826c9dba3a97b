variable "name_prefix" {
  description = "Prefix of every resource name, e.g. tqa-staging."
  type        = string
}

variable "create_network" {
  description = "Create a private network, subnet and router (KVM sites); false reuses an existing network (CHI bare-metal sites use sharednet1)."
  type        = bool
  default     = true
}

variable "existing_network_name" {
  description = "Network to attach nodes to when create_network is false."
  type        = string
  default     = "sharednet1"
}

variable "private_cidr" {
  description = "CIDR of the private subnet when create_network is true (no default: pick one that is free in your project)."
  type        = string
  default     = null

  validation {
    condition     = var.private_cidr == null || can(cidrhost(var.private_cidr, 0))
    error_message = "private_cidr must be a CIDR block such as the one in sample.tfvars."
  }
}

variable "dns_nameservers" {
  description = "DNS servers handed out on the private subnet (empty: the site's default)."
  type        = list(string)
  default     = []
}

variable "external_network_name" {
  description = "The site's external network, for the router gateway and floating IPs."
  type        = string
  default     = "public"
}

variable "groups" {
  description = "Security group per role at this site: role name to description. Nodes get their role's group."
  type        = map(string)
}

variable "rules" {
  description = <<-EOT
    Ingress rules by name: the role group they open (group), protocol (tcp/udp), port (and port_max for a range),
    and from whom: from_group (members of another role's group at this site) or from_cidrs (address blocks).
    Everything not listed stays closed (egress is open, and replies to it are allowed: groups are stateful).
  EOT
  type = map(object({
    group      = string
    protocol   = string
    port       = number
    port_max   = optional(number)
    from_group = optional(string)
    from_cidrs = optional(list(string), [])
  }))

  validation {
    condition     = alltrue([for r in values(var.rules) : (r.from_group == null) != (length(r.from_cidrs) == 0)])
    error_message = "Each rule names either from_group or from_cidrs, not both and not neither."
  }
  validation {
    condition     = alltrue([for r in values(var.rules) : !(r.protocol == "tcp" && r.port <= 22 && coalesce(r.port_max, r.port) >= 22 && contains(r.from_cidrs, "0.0.0.0/0"))])
    error_message = "SSH is never opened to everyone: give admin address blocks."
  }
  validation {
    condition     = alltrue([for r in values(var.rules) : contains(["tcp", "udp"], r.protocol) && alltrue([for c in r.from_cidrs : can(cidrhost(c, 0))])])
    error_message = "Rules are tcp or udp, and from_cidrs are CIDR blocks."
  }
}

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

variable "admin_cidrs" {
  description = "Addresses allowed to reach SSH (your workstation or CI runner, /32)."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0 && alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0))])
    error_message = "admin_cidrs must list at least one CIDR block; SSH is never opened to everyone."
  }
}

variable "public_ports" {
  description = "TCP ports opened to public_cidrs: the services users reach (BentoML API, Grafana)."
  type        = map(number)
  default = {
    bentoml_api = 3000
    grafana     = 3001
  }
}

variable "public_cidrs" {
  description = "Who may reach public_ports."
  type        = list(string)
}

variable "internal_ports" {
  description = "TCP ports open only between the project's own nodes (members of the internal security group and peer_cidrs)."
  type        = map(number)
  default = {
    weaviate_http     = 8080
    weaviate_grpc     = 50051
    weaviate_gossip   = 7946
    weaviate_data     = 7947
    weaviate_raft     = 8300
    weaviate_raft_rpc = 8301
    weaviate_metrics  = 2112
    mlflow            = 5000
    qwen_runner       = 3002
    prometheus        = 9090
    alertmanager      = 9093
    node_exporter     = 9100
    bentoml_api       = 3000
  }
}

variable "peer_cidrs" {
  description = "Addresses of nodes at another site (the GPU node's floating IP as /32) allowed to the internal ports."
  type        = list(string)
  default     = []
}

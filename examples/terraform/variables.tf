variable "kubeconfig" {
  description = "Path of a kubeconfig for the new cluster (or configure the provider from your cluster resource instead)."
  type        = string
  default     = "~/.kube/config"
}

variable "kube_context" {
  description = "Context in the kubeconfig; null: the current context."
  type        = string
  default     = null
}

variable "vault_address" {
  description = "The Vault / OpenBao the bridge serves from (https://host:port); null: the SQLite store below. The token comes from VAULT_TOKEN in the environment Terraform runs in."
  type        = string
  default     = null
}

variable "cloudtaser_store" {
  description = "Without vault_address: the embedded SQLite store the bridge serves."
  type        = string
  default     = "/var/lib/cloudtaser-bridge/store.db"
}

variable "registration_expiry" {
  description = "How long the registration waits for the operator's first bootstrap (cloudtaser source register --expiry)."
  type        = string
  default     = "24h"
}

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

variable "cloudtaser_store" {
  description = "The record store the bridge serves (CLOUDTASER_STORE): the embedded SQLite file on the secret-store side."
  type        = string
  default     = "/var/lib/cloudtaser-bridge/store.db"
}

variable "registration_expiry" {
  description = "How long the registration waits for the operator's first bootstrap (cloudtaser source register --expiry)."
  type        = string
  default     = "24h"
}

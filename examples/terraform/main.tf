# Registers every new cluster with cloudtaser's secret-store side, as in the
# system walkthrough: read the cluster's fingerprint (the kube-system namespace
# UID) and run `cloudtaser source register` with it. Then install the operator
# chart with one value (examples/argocd, or helm install ... --set
# operator.beacon.address=...) and the operator bootstraps itself.
#
# Runs where `cloudtaser` is installed and can reach the bridge's store: a
# Vault / OpenBao (vault_address; the token from VAULT_TOKEN in the
# environment Terraform runs in, never from a variable: it would be written
# to the state) or the bridge's SQLite file.

provider "kubernetes" {
  config_path    = var.kubeconfig
  config_context = var.kube_context
}

# In a configuration that also creates the cluster, add
#   depends_on = [google_container_cluster.main]   (or aws_eks_cluster, ...)
data "kubernetes_namespace" "kube_system" {
  metadata {
    name = "kube-system"
  }
}

locals {
  fingerprint = data.kubernetes_namespace.kube_system.metadata[0].uid
  # where the registration goes: Vault / OpenBao, or the bridge's SQLite file
  store_args = var.vault_address != null ? "--vault-address ${var.vault_address}" : "--store ${var.cloudtaser_store}"
}

# A new cluster has a new kube-system UID: the resource is replaced, which
# deregisters the old fingerprint and registers the new one. Destroying it
# deregisters the cluster (its operator's certificates become worthless).
resource "terraform_data" "cloudtaser_registration" {
  input = {
    fingerprint = local.fingerprint
    store_args  = local.store_args
  }
  triggers_replace = [local.fingerprint, local.store_args]

  # VAULT_TOKEN (and VAULT_CACERT, VAULT_NAMESPACE, ...) are inherited from
  # the environment terraform runs in.
  provisioner "local-exec" {
    command = "cloudtaser source register --fingerprint ${self.input.fingerprint} ${self.input.store_args} --expiry ${var.registration_expiry}"
  }

  provisioner "local-exec" {
    when    = destroy
    command = "cloudtaser source deregister --fingerprint ${self.input.fingerprint} ${self.input.store_args}"
  }
}

output "cloudtaser_fingerprint_prefix" {
  description = "The first 8 characters of the registered fingerprint (the tools never print more)."
  value       = substr(local.fingerprint, 0, 8)
}

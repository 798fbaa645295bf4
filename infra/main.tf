locals {
  # Where lifeboat writes: s3://<bucket>/<prefix>/<13 digits>-<ISO time>-<machine>.sqlite3
  prefix  = coalesce(var.prefix, var.fly_app)
  use_kms = var.kms_key_id != null

  # The fly.io issuer for this org, without the scheme: IAM condition keys are "<host>:aud" and "<host>:sub".
  oidc_host     = "oidc.fly.io/${var.fly_org}"
  oidc_audience = "sts.amazonaws.com"

  role_name = coalesce(var.role_name, "lifeboat-${var.fly_app}")
}

# Resolves whatever form of key reference was given (id, alias, ARN) to the key ARN the policies need.
data "aws_kms_key" "backups" {
  count  = local.use_kms ? 1 : 0
  key_id = var.kms_key_id
}

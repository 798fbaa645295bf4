output "role_arn" {
  description = "ARN of the role the fly machines assume (AWS_ROLE_ARN)."
  value       = aws_iam_role.lifeboat.arn
}

output "bucket_name" {
  description = "Name of the backup bucket."
  value       = aws_s3_bucket.backups.bucket
}

output "region" {
  description = "Region of the backup bucket (AWS_REGION)."
  value       = var.region
}

output "lifeboat_url" {
  description = "Where lifeboat writes its backups (LIFEBOAT_URL)."
  value       = "s3://${aws_s3_bucket.backups.bucket}/${local.prefix}"
}

output "oidc_provider_arn" {
  description = "ARN of the fly.io OIDC provider the role trusts (created here or looked up)."
  value       = local.oidc_provider_arn
}

output "fly_toml_env" {
  description = "The [env] section to paste into fly.toml (print it with: tofu output -raw fly_toml_env)."
  value       = <<-EOT
    [env]
      AWS_ROLE_ARN = "${aws_iam_role.lifeboat.arn}"
      AWS_REGION = "${var.region}"
      LIFEBOAT_URL = "s3://${aws_s3_bucket.backups.bucket}/${local.prefix}"
      LIFEBOAT_DB = "${var.db_path}"
  EOT
}

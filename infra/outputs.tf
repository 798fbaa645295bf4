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

# lifeboat's own variables (LIFEBOAT_S3_ENDPOINT, LIFEBOAT_S3_REGION) rather than the shared AWS_*
# ones: an app that also uses Tigris (fly storage create sets AWS_ENDPOINT_URL_S3 and
# AWS_REGION=auto as secrets) keeps its settings, and lifeboat still goes to this bucket on AWS.
# AWS_ROLE_ARN keeps its name: it is what makes fly write the OIDC token. With a KMS key the SSE
# lines name it; otherwise no header is sent and the bucket's default encryption (SSE-S3) applies.
output "fly_toml_env" {
  description = "The [env] section to paste into fly.toml (print it with: tofu output -raw fly_toml_env)."
  value       = <<-EOT
    [env]
      AWS_ROLE_ARN = "${aws_iam_role.lifeboat.arn}"
      LIFEBOAT_S3_ENDPOINT = "aws"
      LIFEBOAT_S3_REGION = "${var.region}"
      LIFEBOAT_URL = "s3://${aws_s3_bucket.backups.bucket}/${local.prefix}"
      LIFEBOAT_DB = "${var.db_path}"
    %{if local.use_kms}  LIFEBOAT_S3_SSE = "aws:kms"
      LIFEBOAT_S3_KMS_KEY_ID = "${data.aws_kms_key.backups[0].arn}"
    %{endif~}
  EOT
}

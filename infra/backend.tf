# Remote state in S3, locked with a lock object next to the state (no DynamoDB table).
# bucket, key and region are deliberately absent: they are passed at init time so that the
# repository holds no account-specific names, e.g.
#   tofu init -backend-config="bucket=my-tofu-state" -backend-config="key=lifeboat/infra.tfstate" \
#             -backend-config="region=eu-west-1"
terraform {
  backend "s3" {
    use_lockfile = true
    encrypt      = true
  }
}

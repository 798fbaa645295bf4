# Copy to terraform.tfvars (or paste into the INFRA_TFVARS repository variable) and edit.
# Nothing here is secret and nothing here is an account id.

region      = "eu-west-1"
bucket_name = "example-lifeboat-backups"
fly_org     = "example-org"
fly_app     = "example-app"

# Optional (defaults shown or described):
prefix               = "example-app" # defaults to fly_app
recent_days          = 2             # every backup, for 2 days
hourly_days          = 14            # the first of each hour, for 2 weeks
retention_days       = 30            # the first of each day, for 30 days
create_oidc_provider = true          # false if the account already trusts https://oidc.fly.io/example-org
# kms_key_id         = "alias/lifeboat" # omit for SSE-S3 (AES256)
# role_name          = "lifeboat-example-app"
db_path = "/data/db.sqlite3"
tags = {
  team = "example"
}

terraform {
  # use_lockfile (S3-native state locking, see backend.tf) needs OpenTofu >= 1.10 or Terraform >= 1.10.
  required_version = ">= 1.10.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.81 is the first release where aws_iam_openid_connect_provider no longer needs thumbprint_list.
      # One major version: without a committed lock file (.terraform.lock.hcl, see README.md) a new
      # major release must be an explicit change here, never a silent jump in CI.
      version = ">= 5.81.0, < 6.0.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ "managed-by" = "lifeboat-infra", "fly-app" = var.fly_app }, var.tags)
  }
}

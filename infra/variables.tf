variable "region" {
  description = "AWS region of the backup bucket; also printed as LIFEBOAT_S3_REGION in the fly.toml output."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must look like an AWS region, e.g. eu-west-1."
  }
}

variable "bucket_name" {
  description = "Name of the S3 bucket that holds the backups (globally unique, created by this configuration)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name: 3-63 lowercase letters, digits, dots or hyphens."
  }
}

variable "prefix" {
  description = "Key prefix (folder) for this app's backups inside the bucket, without slashes at either end. Defaults to fly_app."
  type        = string
  default     = null

  validation {
    condition     = var.prefix == null || can(regex("^[a-zA-Z0-9_.-]+(/[a-zA-Z0-9_.-]+)*$", var.prefix))
    error_message = "prefix must be one or more path segments of letters, digits, '_', '.' or '-', separated by single slashes, with no leading or trailing slash and no wildcard."
  }
}

variable "fly_org" {
  description = "Slug of the fly.io organization (see `fly orgs list`); the OIDC issuer is https://oidc.fly.io/<fly_org>."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]*$", var.fly_org))
    error_message = "fly_org must be an organization slug: lowercase letters, digits and hyphens (no wildcard)."
  }
}

variable "fly_app" {
  description = "Name of the one fly.io app whose machines may assume the role (the OIDC sub is <fly_org>:<fly_app>:<machine>)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]*$", var.fly_app))
    error_message = "fly_app must be an app name: lowercase letters, digits and hyphens (no wildcard)."
  }
}

variable "retention_days" {
  description = "Age in days, counted from a backup's creation (as AWS counts lifecycle days, not from its tagging), after which a superseded backup of the daily tier (the first backup of each UTC day), or of a layout older than lifeboat 0.3, expires. lifeboat itself never deletes."
  type        = number
  default     = 30

  validation {
    condition     = var.retention_days >= 1 && floor(var.retention_days) == var.retention_days
    error_message = "retention_days must be a whole number of days, at least 1."
  }
}

variable "recent_days" {
  description = "Age in days, counted from a backup's creation, after which a superseded backup of the recent tier (every backup that is not the first of its hour) expires."
  type        = number
  default     = 2

  validation {
    condition     = var.recent_days >= 1 && floor(var.recent_days) == var.recent_days
    error_message = "recent_days must be a whole number of days, at least 1."
  }
}

variable "hourly_days" {
  description = "Age in days, counted from a backup's creation, after which a superseded backup of the hourly tier (the first backup of each UTC hour) expires."
  type        = number
  default     = 14

  validation {
    condition     = var.hourly_days >= 1 && floor(var.hourly_days) == var.hourly_days
    error_message = "hourly_days must be a whole number of days, at least 1."
  }
}

variable "kms_key_id" {
  description = "Optional KMS key (key id, key ARN, alias/NAME or alias ARN) for SSE-KMS. Null (the default) means SSE-S3 (AES256)."
  type        = string
  default     = null
}

variable "create_oidc_provider" {
  description = "Create the IAM OIDC provider for https://oidc.fly.io/<fly_org>. Set to false when the account already has one (it is then looked up)."
  type        = bool
  default     = true
}

variable "role_name" {
  description = "Name of the IAM role the fly machines assume. Defaults to lifeboat-<fly_app>."
  type        = string
  default     = null
}

variable "db_path" {
  description = "Path of the SQLite database inside the machine; only used to print LIFEBOAT_DB in the fly_toml_env output."
  type        = string
  default     = "/data/db.sqlite3"
}

variable "tags" {
  description = "Extra tags added to every resource (through the provider's default_tags)."
  type        = map(string)
  default     = {}
}

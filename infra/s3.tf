resource "aws_s3_bucket" "backups" {
  bucket        = var.bucket_name
  force_destroy = false

  # The bucket holds the only copies of the database: never let a plan replace or delete it.
  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_ownership_controls" "backups" {
  bucket = aws_s3_bucket.backups.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "backups" {
  bucket = aws_s3_bucket.backups.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.use_kms ? "aws:kms" : "AES256"
      kms_master_key_id = local.use_kms ? data.aws_kms_key.backups[0].arn : null
    }
    bucket_key_enabled = true
  }
}

# Retention lives here, not in lifeboat: the role that the machines assume cannot delete anything.
# Only superseded backups expire: lifeboat tags the backup its data continued from once a newer
# one is stored and verified. The newest backup of each database (an idle app makes no new one),
# a backup a restore had to pass over, and the manifest (lifeboat.json) carry no tag, so no rule
# can ever delete them. Each backup is filed under a tier prefix (backups/recent/, hourly/, daily/:
# every backup, the first of each hour, the first of each day), and each tier expires at its own
# age, counted from the object's creation: about 2 days of every backup, 2 weeks of hourly ones,
# retention_days of daily ones. The last rule also expires superseded backups of older layouts.
resource "aws_s3_bucket_lifecycle_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id

  rule {
    id     = "expire-recent-backups"
    status = "Enabled"

    filter {
      and {
        prefix = "${local.prefix}/backups/recent/"
        tags = {
          "lifeboat-superseded" = "true"
        }
      }
    }

    expiration {
      days = var.recent_days
    }
  }

  rule {
    id     = "expire-hourly-backups"
    status = "Enabled"

    filter {
      and {
        prefix = "${local.prefix}/backups/hourly/"
        tags = {
          "lifeboat-superseded" = "true"
        }
      }
    }

    expiration {
      days = var.hourly_days
    }
  }

  rule {
    id     = "expire-superseded-backups"
    status = "Enabled"

    filter {
      and {
        prefix = "${local.prefix}/"
        tags = {
          "lifeboat-superseded" = "true"
        }
      }
    }

    expiration {
      days = var.retention_days
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  lifecycle {
    precondition {
      condition     = var.recent_days <= var.hourly_days && var.hourly_days <= var.retention_days
      error_message = "recent_days <= hourly_days <= retention_days: a tier is never kept shorter than the one below it."
    }
  }
}

# TLS only. And write-once backups: no object under backups/ may be written without
# If-None-Match: * (lifeboat sends it on every PutObject and CompleteMultipartUpload), so a backup,
# once stored, can never be replaced, even by credentials that may write. CreateMultipartUpload, UploadPart and UploadPartCopy
# take no conditional header: s3:ObjectCreationOperation exempts them. The manifest is rewritten
# only with If-Match (or If-None-Match when it is new), so no writer drops another's entries.
data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.backups.arn,
      "${aws_s3_bucket.backups.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyOverwritingBackups"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.backups.arn}/${local.prefix}/backups/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Null"
      variable = "s3:if-none-match"
      values   = ["true"]
    }

    condition {
      test     = "Bool"
      variable = "s3:ObjectCreationOperation"
      values   = ["true"]
    }
  }

  statement {
    sid       = "DenyUnconditionalManifestWrites"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.backups.arn}/${local.prefix}/lifeboat.json"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Null"
      variable = "s3:if-none-match"
      values   = ["true"]
    }

    condition {
      test     = "Null"
      variable = "s3:if-match"
      values   = ["true"]
    }
  }
}

resource "aws_s3_bucket_policy" "backups" {
  bucket = aws_s3_bucket.backups.id
  policy = data.aws_iam_policy_document.bucket.json

  # S3 rejects a bucket policy while the public access block is still being applied.
  depends_on = [aws_s3_bucket_public_access_block.backups]
}

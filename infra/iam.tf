# The fly.io OIDC issuer of the org. One provider per org and account: reuse it when it exists.
resource "aws_iam_openid_connect_provider" "fly" {
  count = var.create_oidc_provider ? 1 : 0

  url            = "https://${local.oidc_host}"
  client_id_list = [local.oidc_audience]
  # No thumbprint_list: IAM validates the issuer's certificate against its own trusted CAs.
}

data "aws_iam_openid_connect_provider" "fly" {
  count = var.create_oidc_provider ? 0 : 1

  url = "https://${local.oidc_host}"
}

locals {
  oidc_provider_arn = var.create_oidc_provider ? aws_iam_openid_connect_provider.fly[0].arn : data.aws_iam_openid_connect_provider.fly[0].arn
}

# Only machines of one app of one org may assume the role, and only with a token minted for STS.
data "aws_iam_policy_document" "trust" {
  statement {
    sid     = "FlyMachinesOfOneApp"
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = [local.oidc_audience]
    }

    # sub is <org>:<app>:<machine>; the wildcard covers the machine name only.
    condition {
      test     = "StringLike"
      variable = "${local.oidc_host}:sub"
      values   = ["${var.fly_org}:${var.fly_app}:*"]
    }
  }
}

resource "aws_iam_role" "lifeboat" {
  name                 = local.role_name
  description          = "lifeboat backups of fly app ${var.fly_app} (assumed through fly.io OIDC)"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = 3600
}

# Exactly what lifeboat does: write and read objects under its prefix, list that prefix, abort its own
# multipart uploads (CreateMultipartUpload, UploadPart and CompleteMultipartUpload are s3:PutObject),
# and tag a backup as superseded once a newer one is stored (the lifecycle rule expires only those).
# No delete: expiry is the lifecycle rule's job.
data "aws_iam_policy_document" "lifeboat" {
  statement {
    sid    = "ReadWriteBackups"
    effect = "Allow"
    actions = [
      "s3:PutObject",
      "s3:GetObject",
      "s3:AbortMultipartUpload",
      "s3:PutObjectTagging",
    ]
    resources = ["${aws_s3_bucket.backups.arn}/${local.prefix}/*"]
  }

  statement {
    sid       = "ListBackups"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.backups.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.prefix}/*"]
    }
  }

  dynamic "statement" {
    for_each = local.use_kms ? [1] : []

    content {
      sid    = "UseBackupKeyThroughS3"
      effect = "Allow"
      actions = [
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:GenerateDataKey",
      ]
      resources = [data.aws_kms_key.backups[0].arn]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["s3.${var.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "lifeboat" {
  name   = "lifeboat-backups"
  role   = aws_iam_role.lifeboat.id
  policy = data.aws_iam_policy_document.lifeboat.json
}

"""S3 and CloudFront: private, TLS-only, encrypted, expiring job records, images-only CDN."""

from __future__ import annotations

from aws_cdk.assertions import Match

BLOCK_ALL = {
    "BlockPublicAcls": True,
    "BlockPublicPolicy": True,
    "IgnorePublicAcls": True,
    "RestrictPublicBuckets": True,
}


def _image_bucket(synth) -> tuple[str, dict]:
    logical_id = synth.logical_id(synth.stack.node.find_child("Storage").bucket)
    return logical_id, synth.resources("AWS::S3::Bucket")[logical_id]["Properties"]


def _bucket_policy(synth, bucket_id: str) -> list[dict]:
    for policy in synth.resources("AWS::S3::BucketPolicy").values():
        if policy["Properties"]["Bucket"] == {"Ref": bucket_id}:
            return policy["Properties"]["PolicyDocument"]["Statement"]
    raise AssertionError(f"no policy for {bucket_id}")


def test_every_bucket_blocks_public_access_and_is_encrypted(synthesized):
    for bucket in synthesized.resources("AWS::S3::Bucket").values():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == BLOCK_ALL
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_every_bucket_denies_requests_without_tls_1_2(synthesized):
    for bucket_id in synthesized.resources("AWS::S3::Bucket"):
        denies = [s for s in _bucket_policy(synthesized, bucket_id) if s["Effect"] == "Deny"]
        conditions = [s.get("Condition", {}) for s in denies]
        assert {"Bool": {"aws:SecureTransport": "false"}} in conditions
        assert {"NumericLessThan": {"s3:TlsVersion": 1.2}} in conditions
        for statement in denies:
            if "Condition" in statement:
                assert statement["Principal"] == {"AWS": "*"} and statement["Action"] == "s3:*"


def test_job_records_expire_and_images_are_kept(dev, prod):
    for synth in (dev, prod):
        _, props = _image_bucket(synth)
        rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
        assert rules["expire-job-records"] == {
            "Id": "expire-job-records",
            "Prefix": "jobs/",
            "ExpirationInDays": synth.settings.storage.job_record_expiration_days,
            "Status": "Enabled",
        }
        assert "expire-images" not in rules  # image_expiration_days is unset in cdk.json
        assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {
            "DaysAfterInitiation": 1
        }


def test_image_bucket_logs_access_and_disables_acls(synthesized):
    _, props = _image_bucket(synthesized)
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert props["LoggingConfiguration"]["LogFilePrefix"] == "s3/image-bucket/"


def test_browser_gets_are_allowed_from_the_stage_origins_only(dev, prod):
    _, props = _image_bucket(dev)
    assert props["CorsConfiguration"]["CorsRules"] == [
        {
            "AllowedHeaders": ["*"],
            "AllowedMethods": ["GET", "HEAD"],
            "AllowedOrigins": ["http://localhost:3000"],
            "MaxAge": 3600,
        }
    ]
    assert "CorsConfiguration" not in _image_bucket(prod)[1]


def test_data_is_retained_in_prod_and_removable_in_dev(dev, prod):
    for synth, policy in ((dev, "Delete"), (prod, "Retain")):
        for bucket in synth.resources("AWS::S3::Bucket").values():
            assert bucket["DeletionPolicy"] == policy
        for secret in synth.resources("AWS::SecretsManager::Secret").values():
            assert secret["DeletionPolicy"] == policy


def test_presigned_stages_have_no_cdn(dev):
    dev.template.resource_count_is("AWS::CloudFront::Distribution", 0)


def test_cloudfront_reads_the_bucket_through_origin_access_control(prod):
    prod.template.resource_count_is("AWS::CloudFront::OriginAccessControl", 1)
    prod.template.has_resource_properties(
        "AWS::CloudFront::OriginAccessControl",
        {"OriginAccessControlConfig": Match.object_like({"SigningBehavior": "always"})},
    )
    prod.template.has_resource_properties(
        "AWS::CloudFront::Distribution",
        {
            "DistributionConfig": Match.object_like(
                {
                    "DefaultCacheBehavior": Match.object_like(
                        {"ViewerProtocolPolicy": "https-only"}
                    ),
                    "Origins": [
                        Match.object_like(
                            {
                                "OriginAccessControlId": Match.any_value(),
                                "S3OriginConfig": {"OriginAccessIdentity": ""},
                            }
                        )
                    ],
                    "Logging": Match.object_like({"Prefix": "cloudfront/"}),
                }
            )
        },
    )


def test_cloudfront_may_serve_images_but_never_job_records(prod):
    bucket_id, _ = _image_bucket(prod)
    statements = _bucket_policy(prod, bucket_id)
    cdn = [s for s in statements if s.get("Principal") == {"Service": "cloudfront.amazonaws.com"}]
    allow = [s for s in cdn if s["Effect"] == "Allow"]
    deny = [s for s in cdn if s["Effect"] == "Deny"]
    assert [s["Action"] for s in allow] == ["s3:GetObject"]
    assert allow[0]["Condition"]["StringEquals"]["AWS:SourceArn"]  # this distribution only
    assert deny == [
        {
            "Sid": "CdnServesImagesOnly",
            "Effect": "Deny",
            "Principal": {"Service": "cloudfront.amazonaws.com"},
            "Action": "s3:GetObject",
            "NotResource": {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/customers/*"]]},
        }
    ]

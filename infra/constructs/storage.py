"""S3: the private image bucket (images and job records) and, per stage, CloudFront in front.

Keys: images at ``customers/{customer_id}/assets/image/{uuid}.{ext}``, job records at
``jobs/{customer_id}/{job_id}.json``. The bucket blocks public access, accepts TLS 1.2+ only
and is encrypted; job records expire. With ``image_url.mode = cloudfront`` a distribution with
origin access control serves ``customers/*`` (never ``jobs/*``) at stable URLs.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.nag import acknowledge, attribute_ref
from infra.settings import StageSettings

IMAGES_PREFIX = "customers/"
JOBS_PREFIX = "jobs/"
ABORT_INCOMPLETE_UPLOADS_AFTER = Duration.days(1)
MIN_TLS_VERSION = 1.2
ACCESS_LOGS_S3_PREFIX = "s3/image-bucket/"
ACCESS_LOGS_CLOUDFRONT_PREFIX = "cloudfront/"
BROWSER_CORS_MAX_AGE_SECONDS = 3600
# With a custom domain (and its certificate) viewers need TLS 1.2+ with modern ciphers only.
CUSTOM_DOMAIN_TLS_POLICY = cloudfront.SecurityPolicyProtocol.TLS_V1_2_2025


class ImageStorage(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StageSettings,
        web_acl_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        storage = settings.storage
        self._web_acl_arn = web_acl_arn
        removal = RemovalPolicy.RETAIN if storage.retain_data else RemovalPolicy.DESTROY

        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,  # the only encryption log delivery supports
            enforce_ssl=True,
            minimum_tls_version=MIN_TLS_VERSION,
            # CloudFront standard logs are delivered with an ACL, so ACLs stay enabled here.
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(storage.access_log_expiration_days),
                    abort_incomplete_multipart_upload_after=ABORT_INCOMPLETE_UPLOADS_AFTER,
                )
            ],
            removal_policy=removal,
        )
        acknowledge(
            self.access_logs,
            "S1",
            "This is the access-log bucket itself; logging its own access would loop.",
        )

        lifecycle = [
            s3.LifecycleRule(
                id="expire-job-records",
                prefix=JOBS_PREFIX,
                expiration=Duration.days(storage.job_record_expiration_days),
            ),
            s3.LifecycleRule(
                id="abort-incomplete-uploads",
                abort_incomplete_multipart_upload_after=ABORT_INCOMPLETE_UPLOADS_AFTER,
            ),
        ]
        if storage.image_expiration_days:
            lifecycle.append(
                s3.LifecycleRule(
                    id="expire-images",
                    prefix=IMAGES_PREFIX,
                    expiration=Duration.days(storage.image_expiration_days),
                )
            )

        self.bucket = s3.Bucket(
            self,
            "Images",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=MIN_TLS_VERSION,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=ACCESS_LOGS_S3_PREFIX,
            lifecycle_rules=lifecycle,
            cors=_browser_get_cors(settings.api.cors_allowed_origins),
            removal_policy=removal,
        )

        self.distribution: cloudfront.Distribution | None = None
        self._custom_domain = settings.image_url.cdn_domain_name
        if settings.image_url.mode == "cloudfront":
            self.distribution = self._add_cdn(settings)

    @property
    def cdn_domain(self) -> str | None:
        """The host name of stable image URLs (cloudfront mode), else None."""
        if self.distribution is None:
            return None
        return self._custom_domain or self.distribution.distribution_domain_name

    def grant_object_access(
        self,
        grantee: iam.IGrantable,
        *,
        read: Sequence[str] = (),
        write: Sequence[str] = (),
        delete: Sequence[str] = (),
        presign: Sequence[str] = (),
        not_found: Sequence[str] = (),
    ) -> None:
        """Get/Put/Delete on objects under the given key prefixes only (e.g. ``jobs/``).
        ``presign``: GetObject, for presigned URLs the function hands out (it never reads
        them). ``not_found``: read prefixes where a missing key must be told from a forbidden
        one — S3 answers 404 rather than 403 only to a role that may list the bucket there."""
        unread = sorted(set(not_found) - set(read))
        if unread:
            raise ValueError(f"not_found prefixes must be read prefixes: {', '.join(unread)}")
        signed = [p for p in presign if p not in read]
        for actions, prefixes in (
            ("s3:GetObject", [*read, *signed]),
            ("s3:PutObject", write),
            ("s3:DeleteObject", delete),
        ):
            if prefixes:
                grantee.grant_principal.add_to_principal_policy(
                    iam.PolicyStatement(
                        actions=[actions],
                        resources=[self.bucket.arn_for_objects(f"{p}*") for p in prefixes],
                    )
                )
        if not_found:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[self.bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{p}*" for p in not_found]}},
                )
            )

    def acknowledge_prefix_wildcards(self, scope: Construct, prefixes: Sequence[str]) -> None:
        """The ``prefix/*`` object ARNs a grant above produces are the least privilege S3 has."""
        for prefix in prefixes:
            acknowledge(
                scope,
                "IAM5",
                f"Object access is limited to the {prefix}* key prefix the function owns; "
                "object keys are per request (uuid, job id), so a prefix is the narrowest scope.",
                finding=f"Resource::{attribute_ref(self.bucket)}/{prefix}*",
            )

    def _add_cdn(self, settings: StageSettings) -> cloudfront.Distribution:
        url = settings.image_url
        custom_domain: dict = {}
        if url.cdn_domain_name and url.cdn_certificate_arn:
            custom_domain = {
                "domain_names": [url.cdn_domain_name],
                "certificate": acm.Certificate.from_certificate_arn(
                    self, "CdnCertificate", url.cdn_certificate_arn
                ),
                "minimum_protocol_version": CUSTOM_DOMAIN_TLS_POLICY,
            }
        distribution = cloudfront.Distribution(
            self,
            "Cdn",
            comment=f"{settings.resource_prefix} images",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD_OPTIONS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                # Forward Origin so the bucket's CORS rules answer browser GETs.
                origin_request_policy=cloudfront.OriginRequestPolicy.CORS_S3_ORIGIN,
                response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
            ),
            price_class=cloudfront.PriceClass[url.cloudfront_price_class],
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            enable_logging=True,
            log_bucket=self.access_logs,
            log_file_prefix=ACCESS_LOGS_CLOUDFRONT_PREFIX,
            web_acl_id=self._web_acl_arn,
            **custom_domain,
        )
        # OAC's grant covers every object; job records are customer data, not images.
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CdnServesImagesOnly",
                effect=iam.Effect.DENY,
                principals=[iam.ServicePrincipal("cloudfront.amazonaws.com")],
                actions=["s3:GetObject"],
                not_resources=[self.bucket.arn_for_objects(f"{IMAGES_PREFIX}*")],
            )
        )
        acknowledge(
            distribution,
            "CFR1",
            "Images are served to the service's customers worldwide; no country is excluded.",
        )
        if not self._web_acl_arn:
            acknowledge(
                distribution,
                "CFR2",
                "This stage has no edge settings: the distribution serves only unguessable "
                "image keys (uuid4) read-only from a private bucket; prod sets "
                "edge.rate_limit_per_5_minutes for a WAF web ACL.",
            )
        if not custom_domain:
            acknowledge(
                distribution,
                "CFR4",
                "The default *.cloudfront.net certificate's security policy cannot be raised; "
                "a stage that sets cdn_domain_name and cdn_certificate_arn gets TLSv1.2_2025.",
            )
        return distribution


def _browser_get_cors(origins_allowed: Sequence[str]) -> list[s3.CorsRule] | None:
    if not origins_allowed:
        return None
    return [
        s3.CorsRule(
            allowed_methods=[s3.HttpMethods.GET, s3.HttpMethods.HEAD],
            allowed_origins=list(origins_allowed),
            allowed_headers=["*"],
            max_age=BROWSER_CORS_MAX_AGE_SECONDS,
        )
    ]

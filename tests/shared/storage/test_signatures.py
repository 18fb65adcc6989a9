"""S3 signatures, checked for real: moto refuses a request signed with the wrong secret, and
Darkroom's presigned URLs verify with an independent SigV4 implementation (minio's signer,
``tests.s3_auth``): valid while fresh, refused once expired, tampered with, or sent to another
host than they were made for."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from shared.config import Settings
from shared.storage import S3Storage
from tests.s3_auth import S3Endpoint, presign_problem


def _host(url: str) -> dict[str, str]:
    return {"Host": urlsplit(url).netloc}


def _signed_at(url: str) -> datetime:
    stamp = parse_qs(urlsplit(url).query)["X-Amz-Date"][0]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


@pytest.mark.parametrize("wrong", ["secret", "key"])
def test_moto_refuses_requests_not_signed_with_the_key(
    s3_endpoint: S3Endpoint, settings: Settings, s3: object, wrong: str
) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint.url,
        region_name="us-east-1",
        aws_access_key_id="AKIAUNKNOWN000000000" if wrong == "key" else s3_endpoint.key,
        aws_secret_access_key=s3_endpoint.secret + ("x" if wrong == "secret" else ""),
    )
    with pytest.raises(ClientError) as info:
        client.list_objects_v2(Bucket=settings.input_bucket)
    expected = {"secret": "SignatureDoesNotMatch", "key": "InvalidClientTokenId"}[wrong]
    assert info.value.response["Error"]["Code"] in (expected, "InvalidAccessKeyId")


def test_darkrooms_presigned_get_verifies_independently(
    s3_endpoint: S3Endpoint, settings: Settings
) -> None:
    secrets = {s3_endpoint.key: s3_endpoint.secret}
    url = S3Storage(settings).presign_get(settings.output_bucket, "sig/a.jpg", 60)
    assert presign_problem("GET", url, _host(url), secrets) is None
    assert presign_problem("GET", url.replace("sig/a.jpg", "sig/b.jpg"), _host(url), secrets) == (
        "signature does not match"
    )
    assert presign_problem("PUT", url, _host(url), secrets) == "signature does not match"
    other_secret = {s3_endpoint.key: s3_endpoint.secret + "x"}
    assert presign_problem("GET", url, _host(url), other_secret) == "signature does not match"
    later = _signed_at(url) + timedelta(seconds=61)
    assert presign_problem("GET", url, _host(url), secrets, now=later) == "expired"


def test_a_presigned_put_covers_its_content_type(
    s3_endpoint: S3Endpoint, settings: Settings, s3: object
) -> None:
    storage = S3Storage(settings)
    url = storage.presign_put(settings.input_bucket, "sig/up.png", 60, "image/png")
    assert "content-type" in parse_qs(urlsplit(url).query)["X-Amz-SignedHeaders"][0]
    secrets = {s3_endpoint.key: s3_endpoint.secret}
    sent = {**_host(url), "Content-Type": "image/png"}
    assert presign_problem("PUT", url, sent, secrets) is None
    other = {**_host(url), "Content-Type": "text/html"}
    assert presign_problem("PUT", url, other, secrets) == "signature does not match"
    # Through the checking proxy, as a client would send it: the wrong type is refused.
    assert httpx.put(url, content=b"png", headers={"Content-Type": "text/html"}).status_code == 403
    assert httpx.put(url, content=b"png", headers={"Content-Type": "image/png"}).status_code == 200
    assert storage.get(settings.input_bucket, "sig/up.png") == b"png"


def test_urls_signed_for_the_public_endpoint_verify_only_there(
    s3_endpoint: S3Endpoint, settings: Settings
) -> None:
    public = settings.model_copy(update={"s3_public_endpoint_url": "https://photos.example.com"})
    url = S3Storage(public).presign_get(settings.output_bucket, "k.jpg", 60)
    secrets = {s3_endpoint.key: s3_endpoint.secret}
    assert presign_problem("GET", url, {"Host": "photos.example.com"}, secrets) is None
    proxied = {"Host": urlsplit(s3_endpoint.public_url).netloc}  # the signature covers the host
    assert presign_problem("GET", url, proxied, secrets) == "signature does not match"


def test_the_proxy_refuses_forged_and_expired_urls(
    s3_endpoint: S3Endpoint, settings: Settings, s3: object
) -> None:
    storage = S3Storage(settings)
    storage.put(settings.output_bucket, "sig/kept.jpg", b"photo", "image/jpeg")
    good = storage.presign_get(settings.output_bucket, "sig/kept.jpg", 60)
    answer = httpx.get(good)
    assert answer.status_code == 200 and answer.content == b"photo"
    forged = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
    assert httpx.get(forged).status_code == 403
    expired = storage.presign_get(settings.output_bucket, "sig/kept.jpg", 1)
    time.sleep(2.1)  # X-Amz-Date has whole seconds: two later, the one-second URL is over
    assert httpx.get(expired).status_code == 403

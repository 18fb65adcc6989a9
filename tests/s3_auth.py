"""S3 signatures checked for real in the test suite.

``moto_server`` runs with its authentication on: after the few unauthenticated calls that make
an IAM user with an S3 policy and its access key (:func:`grant_access`), every request must be
signed with that key. moto cannot check presigned (query-string) requests, so presigned URLs
point at :class:`PresignProxy`: it checks each one with an independent SigV4 implementation
(the ``minio`` client's signer, :func:`presign_problem`), refuses the bad and the expired, and
passes the good ones on to moto as ordinary signed requests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from minio import signer

UNAUTHENTICATED_CALLS = 3
"""moto's ``INITIAL_NO_AUTH_ACTION_COUNT``: create the user, give it its policy, make its key."""

S3_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


@dataclass
class S3Endpoint:
    """moto with authentication on, the key allowed to use it, and the checking proxy that
    presigned URLs are made for (``DARKROOM_S3_PUBLIC_ENDPOINT_URL``)."""

    url: str
    key: str
    secret: str
    proxy: PresignProxy | None = field(default=None, repr=False)

    @property
    def public_url(self) -> str:
        assert self.proxy is not None
        return self.proxy.url

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()


def grant_access(url: str) -> tuple[str, str]:
    """An IAM user allowed every S3 action, and its access key: (key id, secret)."""
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    iam.create_user(UserName="darkroom-tests")
    iam.put_user_policy(
        UserName="darkroom-tests", PolicyName="s3", PolicyDocument=json.dumps(S3_POLICY)
    )
    key = iam.create_access_key(UserName="darkroom-tests")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def presign_problem(
    method: str,
    url: str,
    headers: Mapping[str, str],
    secrets: Mapping[str, str],
    now: datetime | None = None,
) -> str | None:
    """Why the presigned request ``method url`` (sent with ``headers``) must be refused, or
    None when its SigV4 query signature is valid and unexpired. The signature is recomputed
    with minio's signer from the request as it arrived."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    needed = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires")
    if any(name not in query for name in (*needed, "X-Amz-SignedHeaders", "X-Amz-Signature")):
        return "not a presigned request"
    if query["X-Amz-Algorithm"] != signer.SIGN_V4_ALGORITHM:
        return "not SigV4"
    key, day, region, service, _ = query["X-Amz-Credential"].split("/")
    if key not in secrets:
        return "unknown access key"
    date = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if date.strftime("%Y%m%d") != day or service != "s3":
        return "credential scope does not match"
    if (now or datetime.now(UTC)) > date + timedelta(seconds=int(query["X-Amz-Expires"])):
        return "expired"
    signed = query["X-Amz-SignedHeaders"].split(";")
    lowered = {name.lower(): value for name, value in headers.items()}
    if "host" not in signed or any(name not in lowered for name in signed):
        return "a signed header is missing"
    canonical_headers = "\n".join(f"{name}:{lowered[name].strip()}" for name in signed)
    unsigned = "&".join(
        part for part in parts.query.split("&") if not part.startswith("X-Amz-Signature=")
    )
    canonical_request = "\n".join(
        [
            method,
            parts.path or "/",
            signer._get_canonical_query_string(unsigned),
            canonical_headers + "\n",
            ";".join(signed),
            "UNSIGNED-PAYLOAD",
        ]
    )
    scope = signer._get_scope(date, region, "s3")
    string_to_sign = signer._get_string_to_sign(date, scope, signer.sha256_hash(canonical_request))
    signing_key = signer._get_signing_key(secrets[key], date, region, "s3")
    if signer._get_signature(signing_key, string_to_sign) != query["X-Amz-Signature"]:
        return "signature does not match"
    return None


class PresignProxy:
    """An HTTP endpoint for presigned URLs: checks each with :func:`presign_problem`, then
    performs it on moto with the real key. GET, HEAD and PUT of one object, path-style."""

    def __init__(self, s3_url: str, key: str, secret: str) -> None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=s3_url,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )
        secrets = {key: secret}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _checked(self, method: str) -> tuple[str, str] | None:
                url = f"http://{self.headers['Host']}{self.path}"
                problem = presign_problem(method, url, dict(self.headers.items()), secrets)
                proxy.checked.append((method, problem))
                if problem is not None:
                    self._answer(
                        403,
                        f"<Error><Code>AccessDenied</Code><Message>{problem}"
                        f"</Message></Error>".encode(),
                        "application/xml",
                    )
                    return None
                bucket, _, object_key = unquote(urlsplit(self.path).path).lstrip("/").partition("/")
                return bucket, object_key

            def _answer(self, status: int, body: bytes, content_type: str | None) -> None:
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _get(self) -> None:
                where = self._checked(self.command)
                if where is None:
                    return
                try:
                    found = client.get_object(Bucket=where[0], Key=where[1])
                except client.exceptions.NoSuchKey:
                    self._answer(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
                    return
                self._answer(200, found["Body"].read(), found.get("ContentType"))

            do_GET = _get
            do_HEAD = _get

            def do_PUT(self) -> None:
                where = self._checked("PUT")
                if where is None:
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                extra = (
                    {"ContentType": self.headers["Content-Type"]}
                    if "Content-Type" in self.headers
                    else {}
                )
                client.put_object(Bucket=where[0], Key=where[1], Body=body, **extra)
                self._answer(200, b"", None)

        self.checked: list[tuple[str, str | None]] = []
        """(method, problem or None) of every presigned request seen."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

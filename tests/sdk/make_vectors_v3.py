#!/usr/bin/env python3
"""Computes ACS3-HMAC-SHA256 (signature V3) vectors with Alibaba's own Python code.

Writes tests/vectors/acs3-signature-v3.json. Every value comes from alibabacloud_tea_openapi's
utils: get_canonical_query_string and get_canonicalized_headers (the canonical parts),
Utils.hash / Utils.hex_encode (the hashed payload and the hashed canonical request) and
Utils.get_authorization (the Authorization header, which the SDK sends), so the file pins our
V3 signer to Alibaba's code rather than to itself. Requests are StopCaster calls as
alibabacloud-live20161101 builds them: the parameters in the query, an empty body, and the
x-acs-* headers (with x-acs-accesskey-id and x-acs-security-token for STS credentials).

Run: .venv/bin/python tests/sdk/make_vectors_v3.py [OUTPUT]
"""

import json
import os
import sys
from importlib import metadata
from types import SimpleNamespace

from alibabacloud_tea_openapi import utils as tea_utils
from alibabacloud_tea_openapi.utils import Utils

ALGORITHM = "ACS3-HMAC-SHA256"
DATE = "2024-01-02T03:04:05Z"
NONCE = "3f8e2b1c9d7a4e6f8a0b1c2d3e4f5a6b"

CASES = [
    # name, method, host, access key id, secret, token, query
    ("plain", "POST", "live.aliyuncs.com", "testid", "testsecret", None,
     {"CasterId": "a2b8e671-2fe5-4642-a2ec-bf93880e1697", "RegionId": "cn-shanghai"}),
    ("singapore", "POST", "live.ap-southeast-1.aliyuncs.com", "LTAI5tExample", "s3cr3t/+=", None,
     {"CasterId": "LIVEPRODUCER_POST-cn-0pp1czt", "RegionId": "ap-southeast-1"}),
    ("stand-in-port", "POST", "127.0.0.1:8080", "LTAI5tTestKeyId0001", "S3cr3t-Never-Log-Me-9f8e7d6c5b4a", None,
     {"CasterId": "studio-1", "RegionId": "cn-beijing"}),
    ("sts-token", "POST", "live.aliyuncs.com", "STS.NTmpKey", "tmp-secret", "CAIS+token/with=chars",
     {"CasterId": "c-42", "RegionId": "eu-central-1"}),
    ("get-no-region", "GET", "live.aliyuncs.com", "testid", "testsecret", None,
     {"CasterId": "x_y-z"}),
]


def vector(name, method, host, ak, secret, token, query):
    payload = Utils.hex_encode(Utils.hash(b"", ALGORITHM))
    headers = {
        "host": host,
        "x-acs-action": "StopCaster",
        "x-acs-version": "2016-11-01",
        "x-acs-date": DATE,
        "x-acs-signature-nonce": NONCE,
        "x-acs-content-sha256": payload,
    }
    if token:
        headers["x-acs-accesskey-id"] = ak
        headers["x-acs-security-token"] = token
    request = SimpleNamespace(method=method, pathname="/", query=dict(query), headers=dict(headers))
    canonical_query = tea_utils.get_canonical_query_string(request.query)
    canonical_headers, signed_headers = tea_utils.get_canonicalized_headers(request.headers)
    canonical_request = (
        f"{method}\n/\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload}"
    )
    string_to_sign = (
        f"{ALGORITHM}\n{Utils.hex_encode(Utils.hash(canonical_request.encode('utf-8'), ALGORITHM))}"
    )
    authorization = Utils.get_authorization(request, ALGORITHM, payload, ak, secret)
    signature = authorization.rsplit("Signature=", 1)[1]
    return {
        "name": name,
        "method": method,
        "access_key_id": ak,
        "secret": secret,
        "security_token": token,
        "query": query,
        "headers": headers,
        "hashed_payload": payload,
        "canonical_query": canonical_query,
        "canonical_headers": canonical_headers,
        "signed_headers": signed_headers,
        "canonical_request": canonical_request,
        "string_to_sign": string_to_sign,
        "signature": signature,
        "authorization": authorization,
    }


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "vectors", "acs3-signature-v3.json")
    doc = {
        "generated_by": "tests/sdk/make_vectors_v3.py with alibabacloud_tea_openapi "
        + metadata.version("alibabacloud_tea_openapi"),
        "vectors": [vector(*case) for case in CASES],
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(doc['vectors'])} vectors to {out}")


if __name__ == "__main__":
    main()

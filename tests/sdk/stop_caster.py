#!/usr/bin/env python3
"""Calls StopCaster through an official Alibaba Cloud Python SDK, for tests/python_sdk.rs.

Usage:
  stop_caster.py --sdk core|tea|tea-default --endpoint http://127.0.0.1:PORT --key ID --secret SECRET
                 [--region cn-shanghai] [--method POST|GET] --caster ID [--caster ID ...]

--method only applies to aliyunsdkcore (StopCasterRequest defaults to POST). `tea` signs with
the RPC signature (tea's `v2`); `tea-default` leaves the SDK's settings as they ship, which sign
with V3 (ACS3-HMAC-SHA256).

Makes one call per --caster, in order, with the SDK's own retries off, and prints a JSON array
with one object per call on stdout:
  {"caster": ID, "ok": true, "request_id": "..."}
  {"caster": ID, "ok": false, "code": "...", "message": "...", "http_status": N,
   "request_id": "..."}
The code and message are what the SDK itself made of the answer (its own error parsing), not a
re-parse of the body. Anything else (an import failure, a transport error) exits non-zero.
"""

import argparse
import json
import sys
from urllib.parse import urlsplit


def core_calls(args, host, scheme):
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkcore.acs_exception.exceptions import ServerException
    from aliyunsdklive.request.v20161101.StopCasterRequest import StopCasterRequest

    client = AcsClient(args.key, args.secret, args.region, auto_retry=False,
                       connect_timeout=5, timeout=10)
    for caster in args.caster:
        request = StopCasterRequest()
        request.set_CasterId(caster)
        request.set_method(args.method)
        # An explicit endpoint skips the SDK's endpoint resolution (no location service call).
        request.set_endpoint(host)
        request.set_protocol_type(scheme)
        try:
            body = json.loads(client.do_action_with_exception(request))
            yield {"caster": caster, "ok": True, "request_id": body["RequestId"]}
        except ServerException as e:
            yield {"caster": caster, "ok": False, "code": e.get_error_code(),
                   "message": e.get_error_msg(), "http_status": e.get_http_status(),
                   "request_id": e.get_request_id()}


def tea_calls(args, host, scheme):
    from alibabacloud_live20161101 import models as live_models
    from alibabacloud_live20161101.client import Client
    from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
    from alibabacloud_tea_openapi.utils_models import Config
    from darabonba.runtime import RuntimeOptions

    # signature_algorithm 'v2' is tea's name for the RPC HMAC-SHA1 signature (v1 of the docs);
    # without it, the SDK's default, V3.
    rpc = {"signature_algorithm": "v2"} if args.sdk == "tea" else {}
    client = Client(Config(access_key_id=args.key, access_key_secret=args.secret,
                           endpoint=host, protocol=scheme, region_id=args.region, **rpc))
    for caster in args.caster:
        request = live_models.StopCasterRequest(caster_id=caster, region_id=args.region)
        try:
            response = client.stop_caster_with_options(
                request, RuntimeOptions(autoretry=False, read_timeout=10000,
                                        connect_timeout=5000))
            yield {"caster": caster, "ok": True, "request_id": response.body.request_id,
                   "http_status": response.status_code}
        except AlibabaCloudException as e:
            yield {"caster": caster, "ok": False, "code": e.code,
                   "message": (getattr(e, "data", None) or {}).get("Message", e.message),
                   "sdk_message": e.message, "http_status": e.status_code,
                   "request_id": e.request_id}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdk", choices=("core", "tea", "tea-default"), required=True)
    parser.add_argument("--endpoint", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--key", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--region", default="cn-shanghai")
    parser.add_argument("--method", choices=("POST", "GET"), default="POST")
    parser.add_argument("--caster", action="append", required=True)
    args = parser.parse_args()

    url = urlsplit(args.endpoint)
    if url.scheme not in ("http", "https") or not url.netloc:
        parser.error(f"--endpoint must be http(s)://HOST[:PORT], not {args.endpoint!r}")
    calls = core_calls if args.sdk == "core" else tea_calls
    results = list(calls(args, url.netloc, url.scheme))
    json.dump(results, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

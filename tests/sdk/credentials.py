#!/usr/bin/env python3
"""Gets temporary credentials from the stand-in through Alibaba Cloud's official credentials
library, then uses them through Alibaba's SDKs, for tests/python_sdk.rs.

Usage:
  credentials.py --endpoint http://127.0.0.1:PORT --provider oidc|ram_role_arn|uri|ecs|access_key
                 [--sts-endpoint HOST:PORT] [--role-arn ARN] [--oidc-provider-arn ARN]
                 [--oidc-token-file PATH] [--key ID --secret SECRET] [--session NAME]
                 [--caster ID] [--credentials-only]

1. alibabacloud_credentials gets credentials with the chosen provider:
   - oidc: Config(type='oidc_role_arn') -> STS AssumeRoleWithOIDC (RRSA);
   - ram_role_arn: Config(type='ram_role_arn') with --key/--secret -> STS AssumeRole;
   - uri: Config(type='credentials_uri') -> GET ENDPOINT/_fake/credentials;
   - ecs: EcsRamRoleCredentialsProvider (IMDSv2 only) -> the metadata service;
   - access_key: the plain --key/--secret (for GetCallerIdentity with a permanent key).
2. alibabacloud_sts20150401 calls GetCallerIdentity with that credentials client.
3. aliyunsdkcore calls StopCaster with the temporary key and its token, if --caster is given.

Prints one JSON object: {"provider", "access_key_id", "expiration", "identity": {...},
"stop": {"ok": ..., "request_id" | "code"...}}. The secret and the token are never printed.
Anything unexpected exits non-zero.

How the libraries are pointed at the stand-in, least invasively:
- STS: the providers hard-code `protocol = 'https'` and send to `host = sts_endpoint`; Tea's
  `compose_url` drops its own scheme when the host already carries one, so an `sts_endpoint` of
  `http://127.0.0.1:PORT` makes them speak plain HTTP to loopback with no patching at all.
  (With the stand-in serving TLS, `--sts-endpoint 127.0.0.1:PORT` and SSL_CERT_FILE naming the
  test CA keep the library's own https.)
- ECS: the metadata address 100.100.100.200 is a constant of EcsRamRoleCredentialsProvider
  with no option or variable; the one private attribute holding it is overwritten after
  construction, which changes nothing else of the provider's flow.
- alibabacloud_sts20150401 and aliyunsdkcore take an endpoint and protocol as options.
"""

import argparse
import json
import sys
from urllib.parse import urlsplit


def credentials_client(args, url):
    from alibabacloud_credentials.client import Client
    from alibabacloud_credentials.models import Config

    sts_endpoint = args.sts_endpoint or f"{url.scheme}://{url.netloc}"
    if args.provider == "oidc":
        return Client(Config(type="oidc_role_arn", role_arn=args.role_arn,
                             oidc_provider_arn=args.oidc_provider_arn,
                             oidc_token_file_path=args.oidc_token_file,
                             role_session_name=args.session, sts_endpoint=sts_endpoint))
    if args.provider == "ram_role_arn":
        return Client(Config(type="ram_role_arn", access_key_id=args.key,
                             access_key_secret=args.secret, role_arn=args.role_arn,
                             role_session_name=args.session, sts_endpoint=sts_endpoint))
    if args.provider == "access_key":
        return Client(Config(type="access_key", access_key_id=args.key,
                             access_key_secret=args.secret))
    if args.provider == "uri":
        return Client(Config(type="credentials_uri",
                             credentials_uri=f"{args.endpoint}/_fake/credentials"))
    from alibabacloud_credentials.provider import EcsRamRoleCredentialsProvider

    # disable_imds_v1: a provider that fell back to tokenless requests would not prove the
    # IMDSv2 flow; async_update_enabled=False: no background scheduler in a one-shot script.
    provider = EcsRamRoleCredentialsProvider(disable_imds_v1=True, async_update_enabled=False)
    provider._EcsRamRoleCredentialsProvider__metadata_service_host = url.netloc
    return Client(provider=provider)


def caller_identity(cred, url):
    from alibabacloud_sts20150401.client import Client
    from alibabacloud_tea_openapi.utils_models import Config

    # 'v2' is tea's name for the RPC HMAC-SHA1 signature the stand-in verifies.
    client = Client(Config(credential=cred, endpoint=url.netloc, protocol=url.scheme,
                           region_id="cn-shanghai", signature_algorithm="v2"))
    body = client.get_caller_identity().body
    return {"AccountId": body.account_id, "Arn": body.arn, "IdentityType": body.identity_type,
            "PrincipalId": body.principal_id, "RoleId": body.role_id,
            "RequestId": body.request_id}


def stop_caster(model, url, caster):
    from aliyunsdkcore.acs_exception.exceptions import ServerException
    from aliyunsdkcore.auth.credentials import StsTokenCredential
    from aliyunsdkcore.client import AcsClient
    from aliyunsdklive.request.v20161101.StopCasterRequest import StopCasterRequest

    client = AcsClient(region_id="cn-shanghai", auto_retry=False, connect_timeout=5, timeout=10,
                       credential=StsTokenCredential(model.access_key_id,
                                                     model.access_key_secret,
                                                     model.security_token))
    request = StopCasterRequest()
    request.set_CasterId(caster)
    request.set_endpoint(url.netloc)
    request.set_protocol_type(url.scheme)
    try:
        body = json.loads(client.do_action_with_exception(request))
        return {"ok": True, "request_id": body["RequestId"]}
    except ServerException as e:
        return {"ok": False, "code": e.get_error_code(), "http_status": e.get_http_status(),
                "request_id": e.get_request_id()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="http(s)://127.0.0.1:PORT")
    parser.add_argument("--provider",
                        choices=("oidc", "ram_role_arn", "uri", "ecs", "access_key"),
                        required=True)
    parser.add_argument("--sts-endpoint", help="default: the endpoint, scheme included")
    parser.add_argument("--role-arn")
    parser.add_argument("--oidc-provider-arn")
    parser.add_argument("--oidc-token-file")
    parser.add_argument("--key")
    parser.add_argument("--secret")
    parser.add_argument("--session", default="sdk-test")
    parser.add_argument("--caster")
    parser.add_argument("--credentials-only", action="store_true",
                        help="stop after getting the credentials (no SDK calls with them)")
    args = parser.parse_args()

    url = urlsplit(args.endpoint)
    if url.scheme not in ("http", "https") or not url.netloc:
        parser.error(f"--endpoint must be http(s)://HOST:PORT, not {args.endpoint!r}")
    cred = credentials_client(args, url)
    model = cred.get_credential()
    result = {
        "provider": model.provider_name or model.type,
        "access_key_id": model.access_key_id,
        "has_token": bool(model.security_token),
        "type": model.type,
    }
    if args.credentials_only:
        print(json.dumps(result))
        return
    result["identity"] = caller_identity(cred, url)
    if args.caster:
        result["stop"] = stop_caster(model, url, args.caster)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

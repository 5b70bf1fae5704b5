"""An RFC 8693 token-exchange credential provider, in Python.

The pod's service-account token is POSTed as `subject_token` to the token
endpoint the operator configures (`tokenEndpoint`); the `access_token` it
issues is the registry password, valid for `expires_in` seconds. Built with
componentize-py against `wit/since_v0.1.0` (world `plugin`); see README.md.
"""

import json
import time
from urllib.parse import urlencode, urlsplit

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config, log, outgoing_handler, streams
from wit_world.imports import wasi_http_types as http
from wit_world.imports.wcp_credential_provider_types import (
    AuthEntry,
    CacheKeyType,
    Credentials,
    ProviderError_Config,
    ProviderError_Unauthorized,
    ProviderError_Upstream,
    Request,
)

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
DEFAULT_USERNAME = "oauth2accesstoken"
MAX_BODY_BYTES = 1 << 20
# The most of an upstream text an error message quotes.
MAX_QUOTE = 300


class Provider(exports.Provider):
    def get_credentials(self, request: Request) -> Credentials:
        token = request.service_account_token
        if not token:
            fail_config(
                "no service-account token: the kubelet must run this provider in "
                "service-account mode (tokenAttributes) and the operator must grant "
                "grants.serviceAccountToken"
            )
        endpoint = config.get("tokenEndpoint")
        if not endpoint:
            fail_config("config tokenEndpoint (the RFC 8693 token endpoint URL) is not set")
        registry = request.image.split("/", 1)[0]
        fields = {
            "grant_type": GRANT_TYPE,
            "subject_token": token,
            "subject_token_type": JWT_TOKEN_TYPE,
        }
        for key in ("audience", "scope"):
            value = config.get(key)
            if value:
                fields[key] = value
        log.log(log.Level.DEBUG, f"exchanging the service-account token for {registry}")
        status, body = post_form(endpoint, fields)
        answer = parse_json(body)
        if status >= 500:
            fail(ProviderError_Upstream, f"token endpoint answered {status}: {quote(body)}")
        if not 200 <= status < 300:
            if isinstance(answer.get("error"), str):
                why = answer["error"]
                if isinstance(answer.get("error_description"), str):
                    why += ": " + answer["error_description"]
                fail(ProviderError_Unauthorized, f"token endpoint refused the exchange ({status}): {quote(why)}")
            kind = ProviderError_Unauthorized if status in (401, 403) else ProviderError_Upstream
            fail(kind, f"token endpoint answered {status}: {quote(body)}")
        access_token = answer.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            fail(ProviderError_Upstream, "token endpoint answered without an access_token")
        expires_in = answer.get("expires_in")
        expires_at = None
        if isinstance(expires_in, int) and not isinstance(expires_in, bool) and expires_in >= 0:
            expires_at = int(time.time()) + expires_in
        username = config.get("username") or DEFAULT_USERNAME
        return Credentials(
            auth=[AuthEntry(match_key=registry, username=username, password=access_token)],
            cache_key_type=CacheKeyType.REGISTRY,
            expires_at=expires_at,
        )


def fail(kind, message: str):
    raise Err(kind(message))


def fail_config(message: str):
    fail(ProviderError_Config, message)


def quote(text) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    return text if len(text) <= MAX_QUOTE else text[:MAX_QUOTE] + "..."


def parse_json(body: bytes) -> dict:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def post_form(url: str, fields: dict) -> tuple[int, bytes]:
    """POSTs `fields` form-encoded to `url` over wasi:http; returns the
    status and the whole body. Child resources (streams) are dropped before
    their parents (bodies), as the host requires."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc or "@" in parts.netloc:
        fail_config("config tokenEndpoint must be an absolute http(s) URL without user info")
    where = f"POST {parts.scheme}://{parts.netloc}{parts.path}"
    payload = urlencode(fields).encode()
    headers = http.Fields.from_list(
        [
            ("content-type", b"application/x-www-form-urlencoded"),
            ("content-length", str(len(payload)).encode()),
            ("accept", b"application/json"),
        ]
    )
    request = http.OutgoingRequest(headers)
    request.set_method(http.Method_Post())
    request.set_scheme(http.Scheme_Https() if parts.scheme == "https" else http.Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    outgoing_body = request.body()
    try:
        future = outgoing_handler.handle(request, None)
    except Err as e:
        transport_error(where, "sending", e.value)
    write_error = None
    try:
        with outgoing_body.write() as stream:
            for offset in range(0, len(payload), 4096):
                stream.blocking_write_and_flush(payload[offset : offset + 4096])
        http.OutgoingBody.finish(outgoing_body, None)
    except Err as e:
        # A refused request closes the body stream; the future says why.
        write_error = e.value
    with future:
        while (result := future.get()) is None:
            with future.subscribe() as pollable:
                pollable.block()
    if isinstance(result, Err) or isinstance(result.value, Err):
        code = result.value.value if not isinstance(result, Err) else None
        transport_error(where, "waiting for the response", code)
    if write_error is not None:
        transport_error(where, "writing the request body", write_error)
    with result.value.value as response:
        status = response.status()
        body = read_body(where, response.consume())
    return status, body


def read_body(where: str, incoming: http.IncomingBody) -> bytes:
    chunks, size = [], 0
    with incoming.stream() as stream:
        while True:
            try:
                chunk = stream.blocking_read(64 * 1024)
            except Err as e:
                if isinstance(e.value, streams.StreamError_Closed):
                    break
                fail(ProviderError_Upstream, f"{where}: reading the response failed")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                fail(ProviderError_Upstream, f"{where}: the response is larger than {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
    with http.IncomingBody.finish(incoming):
        pass
    return b"".join(chunks)


def transport_error(where: str, doing: str, code):
    if isinstance(code, http.ErrorCode_HttpRequestDenied):
        fail_config(
            f"{where}: the host refused the destination; grant the tokenEndpoint's "
            "origin in grants.outbound"
        )
    name = type(code).__name__.removeprefix("ErrorCode_") if code is not None else "error"
    fail(ProviderError_Upstream, f"{where}: {doing} failed: {name}")

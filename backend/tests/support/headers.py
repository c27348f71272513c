"""What every response carries: the security headers (OWASP Secure Headers Project), a request id."""

from __future__ import annotations

from collections.abc import Mapping

import httpx2 as httpx

API_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
BASE_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": API_CSP,
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
    "x-permitted-cross-domain-policies": "none",
    "cache-control": "no-store, max-age=0",
}
HSTS = "max-age=63072000; includeSubDomains"
# The features the OWASP Secure Headers Project's recommended Permissions-Policy names (ci/headers_add.json).
OWASP_PERMISSIONS_FEATURES = {
    *("accelerometer", "autoplay", "camera", "cross-origin-isolated", "display-capture", "encrypted-media"),
    *("fullscreen", "geolocation", "gyroscope", "keyboard-map", "magnetometer", "microphone", "midi", "payment"),
    *("picture-in-picture", "publickey-credentials-get", "screen-wake-lock", "sync-xhr", "usb", "web-share"),
    *("xr-spatial-tracking", "clipboard-read", "clipboard-write", "gamepad", "hid", "idle-detection"),
    *("interest-cohort", "serial", "unload"),
}


def assert_security_headers(headers: httpx.Headers | Mapping[str, str], *, hsts: bool) -> None:
    """Every response's headers: each security header exactly once, a request id, no Server."""
    headers = httpx.Headers(headers)
    for name, value in BASE_HEADERS.items():
        assert headers.get_list(name) == [value], name
    assert_permissions_policy_denies_everything(headers["permissions-policy"])
    assert headers.get_list("strict-transport-security") == ([HSTS] if hsts else [])
    assert "server" not in headers
    assert len(headers.get_list("x-request-id")) == 1


def assert_permissions_policy_denies_everything(policy: str) -> None:
    directives = dict(part.strip().split("=", 1) for part in policy.split(","))
    assert set(directives) == OWASP_PERMISSIONS_FEATURES
    assert set(directives.values()) == {"()"}

"""openssl argv builders for the edge's TLS certificate."""
from __future__ import annotations


def cert_valid_for(cert: str, seconds: int = 86400) -> list[str]:
    """Exit 0 when the certificate exists and does not expire within `seconds`."""
    return ["openssl", "x509", "-noout", "-checkend", str(seconds), "-in", cert]


def self_signed(name: str, days: int, key: str, cert: str) -> list[str]:
    """A self-signed P-256 certificate for `name` (also valid for localhost and 127.0.0.1), key unencrypted."""
    return ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", str(days), "-subj", f"/CN={name}",
            "-addext", f"subjectAltName=DNS:{name},DNS:localhost,IP:127.0.0.1",
            "-keyout", key, "-out", cert]

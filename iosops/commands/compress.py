"""Compression and encryption stages for streaming pipelines."""
from __future__ import annotations


def zstd_compress(level: int = 3, threads: int = 0) -> list[str]:
    return ["zstd", "-q", f"-{level}", f"-T{threads}", "-c"]


def zstd_decompress() -> list[str]:
    return ["zstd", "-q", "-d", "-c"]


def zstd_test() -> list[str]:
    return ["zstd", "-q", "-t"]


def age_encrypt(recipient: str) -> list[str]:
    return ["age", "-r", recipient]


def age_decrypt(identity_file: str) -> list[str]:
    return ["age", "-d", "-i", identity_file]


def tar_extract(dest: str) -> list[str]:
    return ["tar", "-x", "-C", dest, "-f", "-"]

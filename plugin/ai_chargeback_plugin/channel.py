"""The gRPC channel to an aggregator: one definition of TLS and keepalive for every stream the plugin holds."""

from __future__ import annotations

import grpc

from .config import SenderConfig

KEEPALIVE_OPTIONS = [("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000)]


def open_channel(config: SenderConfig, address: str) -> grpc.Channel:
    if not config.aggregator_tls:
        return grpc.insecure_channel(address, options=KEEPALIVE_OPTIONS)
    root, key, chain = (_read(path) for path in (config.aggregator_ca_cert_path, config.aggregator_client_key_path,
                                                 config.aggregator_client_cert_path))  # fmt: skip
    credentials = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)
    return grpc.secure_channel(address, credentials, options=KEEPALIVE_OPTIONS)


def bearer_metadata(config: SenderConfig) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {config.aggregator_token}")] if config.aggregator_token else []


def _read(path: str) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as handle:
        return handle.read()

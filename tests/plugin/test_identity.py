"""Identity precedence: consumer > route tags > service tags > trusted headers > default."""

from __future__ import annotations

from typing import Any

from ai_chargeback_plugin.config import PluginConfig
from ai_chargeback_plugin.identity import fingerprint, resolve
from ai_chargeback_proto import pb

CONSUMER = {"id": "c-1", "username": "checkout-service", "custom_id": "spiffe://acme/checkout",
            "tags": ["tenant:acme", "team:payments", "app:checkout"]}  # fmt: skip


def snapshot(*, consumer: dict[str, Any] | None = CONSUMER, headers: dict[str, Any] | None = None,
             route_tags: list[str] | None = None, service_tags: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    snap: dict[str, Any] = {
        "request": {"headers": headers or {}},
        "route": {"id": "r-1", "name": "openai-chat", "tags": route_tags},
        "service": {"id": "s-1", "name": "openai", "tags": service_tags},
        "authenticated_entity": {"id": "cred-1", "consumer_id": "c-1"},
    }
    if consumer is not None:
        snap["consumer"] = consumer
    return snap


def test_consumer_tags_win_and_spoofed_headers_are_recorded_as_conflicts() -> None:
    config = PluginConfig.from_kong({"identity_sources": ["consumer", "route_tags", "headers"]})
    identity = resolve(snapshot(headers={"x-team": ["finance"], "x-tenant": "acme"}), config)
    assert identity.values == {"tenant": "acme", "team": "payments", "app": "checkout", "workload": "spiffe://acme/checkout"}
    assert identity.sources["team"] == pb.IDENTITY_SOURCE_CONSUMER
    assert identity.conflicts == ("team: header=finance resolved=payments",)  # same tenant: no conflict


def test_headers_are_ignored_unless_trusted() -> None:
    config = PluginConfig.from_kong({})
    identity = resolve(snapshot(consumer=None, headers={"x-team": "finance"}), config)
    assert identity.values["team"] == "unattributed"
    assert identity.sources["team"] == pb.IDENTITY_SOURCE_NONE
    assert identity.unattributed_reason == "no-authenticated-consumer"
    assert identity.conflicts == ("team: header=finance resolved=unattributed",)
    assert (identity.values["tenant"], identity.sources["tenant"]) == ("default", pb.IDENTITY_SOURCE_DEFAULT)


def test_trusted_headers_fill_what_higher_sources_lack() -> None:
    config = PluginConfig.from_kong({"identity_sources": ["service_tags", "headers"]})
    identity = resolve(snapshot(consumer=None, service_tags=["tenant:acme", "team:ml-platform"],
                                headers={"x-team": "nope", "x-app": "notebook"}), config)  # fmt: skip
    assert identity.values["team"] == "ml-platform" and identity.sources["team"] == pb.IDENTITY_SOURCE_SERVICE_TAG
    assert identity.values["app"] == "notebook" and identity.sources["app"] == pb.IDENTITY_SOURCE_HEADER


def test_route_tags_beat_service_tags_and_untagged_consumer_is_unattributed_with_reason() -> None:
    config = PluginConfig.from_kong({})
    legacy = {"id": "c-2", "username": "legacy-batch"}
    identity = resolve(snapshot(consumer=legacy, route_tags=["app:gateway"], service_tags=["app:svc", "tenant:t"]), config)
    assert identity.values["team"] == "unattributed" and identity.unattributed_reason == "no-team-tag"
    assert identity.values["app"] == "legacy-batch"  # the consumer itself names the app
    assert identity.values["tenant"] == "t" and identity.sources["tenant"] == pb.IDENTITY_SOURCE_SERVICE_TAG


def test_fingerprint_is_keyed_and_never_the_credential() -> None:
    config = PluginConfig.from_kong({"credential_hmac_secret": "k1"})
    identity = resolve(snapshot(), config)
    assert identity.credential_fingerprint == fingerprint(b"k1", "cred-1")
    assert len(identity.credential_fingerprint) == 32 and "cred-1" not in identity.credential_fingerprint
    assert fingerprint(b"k2", "cred-1") != identity.credential_fingerprint
    assert resolve(snapshot(), PluginConfig.from_kong({})).credential_fingerprint == ""


def test_config_reads_kongs_json_string_and_takes_schema_defaults() -> None:
    config = PluginConfig.from_kong('{"provider": "openai", "route_id": {"id": "r-9"}, "__key__": "x", "static_tags": null}')
    assert config.provider == "openai" and config.route_id == "r-9"
    assert config.usage_capture == "auto" and config.sender.aggregator_addresses == ("127.0.0.1:50051",)
    assert config.static_tags == {}

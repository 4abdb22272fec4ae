from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IdentitySource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IDENTITY_SOURCE_UNSPECIFIED: _ClassVar[IdentitySource]
    IDENTITY_SOURCE_CONSUMER: _ClassVar[IdentitySource]
    IDENTITY_SOURCE_ROUTE_TAG: _ClassVar[IdentitySource]
    IDENTITY_SOURCE_SERVICE_TAG: _ClassVar[IdentitySource]
    IDENTITY_SOURCE_HEADER: _ClassVar[IdentitySource]
    IDENTITY_SOURCE_DEFAULT: _ClassVar[IdentitySource]
    IDENTITY_SOURCE_NONE: _ClassVar[IdentitySource]

class UsageSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_SOURCE_UNSPECIFIED: _ClassVar[UsageSource]
    USAGE_SOURCE_PROVIDER: _ClassVar[UsageSource]
    USAGE_SOURCE_KONG_AI_PROXY: _ClassVar[UsageSource]
    USAGE_SOURCE_ESTIMATED: _ClassVar[UsageSource]
    USAGE_SOURCE_NONE: _ClassVar[UsageSource]

class PolicyOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_OUTCOME_UNSPECIFIED: _ClassVar[PolicyOutcome]
    POLICY_OUTCOME_ALLOWED: _ClassVar[PolicyOutcome]
    POLICY_OUTCOME_UPSTREAM_ERROR: _ClassVar[PolicyOutcome]
    POLICY_OUTCOME_REJECTED_AUTH: _ClassVar[PolicyOutcome]
    POLICY_OUTCOME_RATE_LIMITED: _ClassVar[PolicyOutcome]
    POLICY_OUTCOME_REJECTED_OTHER: _ClassVar[PolicyOutcome]
    POLICY_OUTCOME_BUDGET_EXCEEDED: _ClassVar[PolicyOutcome]
    POLICY_OUTCOME_BUDGET_UNVERIFIED: _ClassVar[PolicyOutcome]
IDENTITY_SOURCE_UNSPECIFIED: IdentitySource
IDENTITY_SOURCE_CONSUMER: IdentitySource
IDENTITY_SOURCE_ROUTE_TAG: IdentitySource
IDENTITY_SOURCE_SERVICE_TAG: IdentitySource
IDENTITY_SOURCE_HEADER: IdentitySource
IDENTITY_SOURCE_DEFAULT: IdentitySource
IDENTITY_SOURCE_NONE: IdentitySource
USAGE_SOURCE_UNSPECIFIED: UsageSource
USAGE_SOURCE_PROVIDER: UsageSource
USAGE_SOURCE_KONG_AI_PROXY: UsageSource
USAGE_SOURCE_ESTIMATED: UsageSource
USAGE_SOURCE_NONE: UsageSource
POLICY_OUTCOME_UNSPECIFIED: PolicyOutcome
POLICY_OUTCOME_ALLOWED: PolicyOutcome
POLICY_OUTCOME_UPSTREAM_ERROR: PolicyOutcome
POLICY_OUTCOME_REJECTED_AUTH: PolicyOutcome
POLICY_OUTCOME_RATE_LIMITED: PolicyOutcome
POLICY_OUTCOME_REJECTED_OTHER: PolicyOutcome
POLICY_OUTCOME_BUDGET_EXCEEDED: PolicyOutcome
POLICY_OUTCOME_BUDGET_UNVERIFIED: PolicyOutcome

class UsageEvent(_message.Message):
    __slots__ = ("event_id", "kong_request_id", "started_at_unix_ms", "observed_at_unix_ms", "gateway_node", "tenant", "tenant_source", "team", "team_source", "app", "app_source", "workload", "workload_source", "unattributed_reason", "identity_conflicts", "consumer_id", "consumer_username", "consumer_custom_id", "credential_fingerprint", "client_ip", "trace_id", "route_id", "route_name", "service_id", "service_name", "provider", "api_family", "requested_model", "served_model", "input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens", "reasoning_tokens", "billable_extras", "usage_source", "usage_note", "streaming", "service_tier", "latency_total_ms", "latency_upstream_ms", "latency_gateway_ms", "http_status", "upstream_tries", "client_retry_count", "policy_outcome", "tags")
    class BillableExtrasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    KONG_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_NODE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TENANT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    TEAM_SOURCE_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    APP_SOURCE_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    UNATTRIBUTED_REASON_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_USERNAME_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_CUSTOM_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTE_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTE_NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    API_FAMILY_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_MODEL_FIELD_NUMBER: _ClassVar[int]
    SERVED_MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    BILLABLE_EXTRAS_FIELD_NUMBER: _ClassVar[int]
    USAGE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    USAGE_NOTE_FIELD_NUMBER: _ClassVar[int]
    STREAMING_FIELD_NUMBER: _ClassVar[int]
    SERVICE_TIER_FIELD_NUMBER: _ClassVar[int]
    LATENCY_TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_UPSTREAM_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_GATEWAY_MS_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_TRIES_FIELD_NUMBER: _ClassVar[int]
    CLIENT_RETRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    POLICY_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    kong_request_id: str
    started_at_unix_ms: int
    observed_at_unix_ms: int
    gateway_node: str
    tenant: str
    tenant_source: IdentitySource
    team: str
    team_source: IdentitySource
    app: str
    app_source: IdentitySource
    workload: str
    workload_source: IdentitySource
    unattributed_reason: str
    identity_conflicts: _containers.RepeatedScalarFieldContainer[str]
    consumer_id: str
    consumer_username: str
    consumer_custom_id: str
    credential_fingerprint: str
    client_ip: str
    trace_id: str
    route_id: str
    route_name: str
    service_id: str
    service_name: str
    provider: str
    api_family: str
    requested_model: str
    served_model: str
    input_tokens: int
    cached_input_tokens: int
    cache_write_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    billable_extras: _containers.ScalarMap[str, int]
    usage_source: UsageSource
    usage_note: str
    streaming: bool
    service_tier: str
    latency_total_ms: int
    latency_upstream_ms: int
    latency_gateway_ms: int
    http_status: int
    upstream_tries: int
    client_retry_count: int
    policy_outcome: PolicyOutcome
    tags: _containers.ScalarMap[str, str]
    def __init__(self, event_id: _Optional[str] = ..., kong_request_id: _Optional[str] = ..., started_at_unix_ms: _Optional[int] = ..., observed_at_unix_ms: _Optional[int] = ..., gateway_node: _Optional[str] = ..., tenant: _Optional[str] = ..., tenant_source: _Optional[_Union[IdentitySource, str]] = ..., team: _Optional[str] = ..., team_source: _Optional[_Union[IdentitySource, str]] = ..., app: _Optional[str] = ..., app_source: _Optional[_Union[IdentitySource, str]] = ..., workload: _Optional[str] = ..., workload_source: _Optional[_Union[IdentitySource, str]] = ..., unattributed_reason: _Optional[str] = ..., identity_conflicts: _Optional[_Iterable[str]] = ..., consumer_id: _Optional[str] = ..., consumer_username: _Optional[str] = ..., consumer_custom_id: _Optional[str] = ..., credential_fingerprint: _Optional[str] = ..., client_ip: _Optional[str] = ..., trace_id: _Optional[str] = ..., route_id: _Optional[str] = ..., route_name: _Optional[str] = ..., service_id: _Optional[str] = ..., service_name: _Optional[str] = ..., provider: _Optional[str] = ..., api_family: _Optional[str] = ..., requested_model: _Optional[str] = ..., served_model: _Optional[str] = ..., input_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., cache_write_input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., billable_extras: _Optional[_Mapping[str, int]] = ..., usage_source: _Optional[_Union[UsageSource, str]] = ..., usage_note: _Optional[str] = ..., streaming: _Optional[bool] = ..., service_tier: _Optional[str] = ..., latency_total_ms: _Optional[int] = ..., latency_upstream_ms: _Optional[int] = ..., latency_gateway_ms: _Optional[int] = ..., http_status: _Optional[int] = ..., upstream_tries: _Optional[int] = ..., client_retry_count: _Optional[int] = ..., policy_outcome: _Optional[_Union[PolicyOutcome, str]] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SenderStats(_message.Message):
    __slots__ = ("events_queued", "events_sent", "events_spooled", "events_dropped", "usage_parse_failures", "events_quarantined", "events_conflicting")
    EVENTS_QUEUED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_SENT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_SPOOLED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    USAGE_PARSE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_QUARANTINED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_CONFLICTING_FIELD_NUMBER: _ClassVar[int]
    events_queued: int
    events_sent: int
    events_spooled: int
    events_dropped: int
    usage_parse_failures: int
    events_quarantined: int
    events_conflicting: int
    def __init__(self, events_queued: _Optional[int] = ..., events_sent: _Optional[int] = ..., events_spooled: _Optional[int] = ..., events_dropped: _Optional[int] = ..., usage_parse_failures: _Optional[int] = ..., events_quarantined: _Optional[int] = ..., events_conflicting: _Optional[int] = ...) -> None: ...

class LossRecord(_message.Message):
    __slots__ = ("loss_id", "first_lost_at_unix_ms", "last_lost_at_unix_ms", "events_lost", "reason")
    LOSS_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_LOST_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_LOST_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_LOST_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    loss_id: str
    first_lost_at_unix_ms: int
    last_lost_at_unix_ms: int
    events_lost: int
    reason: str
    def __init__(self, loss_id: _Optional[str] = ..., first_lost_at_unix_ms: _Optional[int] = ..., last_lost_at_unix_ms: _Optional[int] = ..., events_lost: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class UsageBatch(_message.Message):
    __slots__ = ("batch_id", "sender_id", "sequence", "events", "sender_stats", "losses")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    SENDER_STATS_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    sender_id: str
    sequence: int
    events: _containers.RepeatedCompositeFieldContainer[UsageEvent]
    sender_stats: SenderStats
    losses: _containers.RepeatedCompositeFieldContainer[LossRecord]
    def __init__(self, batch_id: _Optional[str] = ..., sender_id: _Optional[str] = ..., sequence: _Optional[int] = ..., events: _Optional[_Iterable[_Union[UsageEvent, _Mapping]]] = ..., sender_stats: _Optional[_Union[SenderStats, _Mapping]] = ..., losses: _Optional[_Iterable[_Union[LossRecord, _Mapping]]] = ...) -> None: ...

class EventRejection(_message.Message):
    __slots__ = ("event_id", "reason", "field")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    reason: str
    field: str
    def __init__(self, event_id: _Optional[str] = ..., reason: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class BatchAck(_message.Message):
    __slots__ = ("batch_id", "sequence", "status", "events_stored", "events_duplicate", "rejected", "detail", "events_quarantined", "events_conflicting")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[BatchAck.Status]
        STATUS_STORED: _ClassVar[BatchAck.Status]
        STATUS_RETRY: _ClassVar[BatchAck.Status]
    STATUS_UNSPECIFIED: BatchAck.Status
    STATUS_STORED: BatchAck.Status
    STATUS_RETRY: BatchAck.Status
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_STORED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    EVENTS_QUARANTINED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_CONFLICTING_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    sequence: int
    status: BatchAck.Status
    events_stored: int
    events_duplicate: int
    rejected: _containers.RepeatedCompositeFieldContainer[EventRejection]
    detail: str
    events_quarantined: int
    events_conflicting: int
    def __init__(self, batch_id: _Optional[str] = ..., sequence: _Optional[int] = ..., status: _Optional[_Union[BatchAck.Status, str]] = ..., events_stored: _Optional[int] = ..., events_duplicate: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[EventRejection, _Mapping]]] = ..., detail: _Optional[str] = ..., events_quarantined: _Optional[int] = ..., events_conflicting: _Optional[int] = ...) -> None: ...

class BudgetScope(_message.Message):
    __slots__ = ("tenant", "team", "app", "workload", "consumer_id", "provider", "model")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    team: str
    app: str
    workload: str
    consumer_id: str
    provider: str
    model: str
    def __init__(self, tenant: _Optional[str] = ..., team: _Optional[str] = ..., app: _Optional[str] = ..., workload: _Optional[str] = ..., consumer_id: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class EnforcedBudget(_message.Message):
    __slots__ = ("budget_id", "scope", "period", "period_label", "timezone", "unit", "limit", "spend", "exhausted", "period_start_unix_ms", "resets_at_unix_ms")
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    PERIOD_LABEL_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SPEND_FIELD_NUMBER: _ClassVar[int]
    EXHAUSTED_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    RESETS_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    budget_id: str
    scope: BudgetScope
    period: str
    period_label: str
    timezone: str
    unit: str
    limit: str
    spend: str
    exhausted: bool
    period_start_unix_ms: int
    resets_at_unix_ms: int
    def __init__(self, budget_id: _Optional[str] = ..., scope: _Optional[_Union[BudgetScope, _Mapping]] = ..., period: _Optional[str] = ..., period_label: _Optional[str] = ..., timezone: _Optional[str] = ..., unit: _Optional[str] = ..., limit: _Optional[str] = ..., spend: _Optional[str] = ..., exhausted: _Optional[bool] = ..., period_start_unix_ms: _Optional[int] = ..., resets_at_unix_ms: _Optional[int] = ...) -> None: ...

class BudgetState(_message.Message):
    __slots__ = ("version", "evaluated_age_ms", "budgets", "model_snapshot_pattern", "aggregator_id", "evaluated", "heartbeat", "sent_at_unix_ms")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    MODEL_SNAPSHOT_PATTERN_FIELD_NUMBER: _ClassVar[int]
    AGGREGATOR_ID_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    version: str
    evaluated_age_ms: int
    budgets: _containers.RepeatedCompositeFieldContainer[EnforcedBudget]
    model_snapshot_pattern: str
    aggregator_id: str
    evaluated: bool
    heartbeat: bool
    sent_at_unix_ms: int
    def __init__(self, version: _Optional[str] = ..., evaluated_age_ms: _Optional[int] = ..., budgets: _Optional[_Iterable[_Union[EnforcedBudget, _Mapping]]] = ..., model_snapshot_pattern: _Optional[str] = ..., aggregator_id: _Optional[str] = ..., evaluated: _Optional[bool] = ..., heartbeat: _Optional[bool] = ..., sent_at_unix_ms: _Optional[int] = ...) -> None: ...

class WatchBudgetsRequest(_message.Message):
    __slots__ = ("sender_id",)
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    sender_id: str
    def __init__(self, sender_id: _Optional[str] = ...) -> None: ...

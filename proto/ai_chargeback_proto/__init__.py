"""The wire contract: generated from chargeback/v1/usage.proto, never hand-edited."""

from .chargeback.v1 import usage_pb2 as pb
from .chargeback.v1 import usage_pb2_grpc as pb_grpc

__all__ = ["pb", "pb_grpc"]

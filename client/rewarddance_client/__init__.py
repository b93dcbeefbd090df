"""rewarddance_client: the Python SDK of the rewarddance reward-scoring gateway (HTTP JSON or gRPC).

    from rewarddance_client import RewardClient

    with RewardClient("http://localhost:8000", api_key="...") as client:
        result = client.score("a watercolor fox", ["fox1.png", "fox2.png"])
        print([r.reward for r in result.results])

It depends only on the wire contract (docs/api.md, proto/rewarddance_v1.proto), never on the server code.
"""

from ._client import AsyncRewardClient, RewardClient
from ._exceptions import (
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RewardError,
    UnavailableError,
)
from ._images import ImageInput
from ._version import __version__
from .types import (
    CompareResponse,
    Components,
    HealthStatus,
    ModelInfo,
    ModelList,
    ModelRef,
    RankResponse,
    Result,
    ScoreResponse,
    VersionInfo,
    Weights,
)

__all__ = [
    "APIError",
    "APITimeoutError",
    "AsyncRewardClient",
    "AuthenticationError",
    "BadRequestError",
    "CompareResponse",
    "Components",
    "HealthStatus",
    "ImageInput",
    "InternalServerError",
    "ModelInfo",
    "ModelList",
    "ModelRef",
    "NotFoundError",
    "PermissionDeniedError",
    "RankResponse",
    "RateLimitError",
    "Result",
    "RewardClient",
    "RewardError",
    "ScoreResponse",
    "UnavailableError",
    "VersionInfo",
    "Weights",
    "__version__",
]

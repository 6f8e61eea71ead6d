"""A client for a Ferry coordinator's admin API.

>>> import ferry
>>> client = ferry.Client("http://127.0.0.1:7401", token_file="ferry-data/admin.token")
>>> client.publish("detector", "1.4.0", "model.onnx", key="publisher.key")

Every answer is a dataclass (:mod:`ferry.models`); every failure a :class:`FerryError`
(:mod:`ferry.errors`), an :class:`ApiError` carrying the coordinator's own message when it
refused.
"""

from .client import Client
from .errors import (
    ApiError,
    BadRequest,
    Conflict,
    FerryError,
    Forbidden,
    NotFound,
    PublishError,
    Timeout,
    Unauthorized,
    Unavailable,
    Unreachable,
)
from .models import (
    AliasChanged,
    AliasView,
    ExperimentView,
    FleetStatus,
    FragmentationReport,
    Gate,
    Imported,
    Published,
    ReadoutRow,
    Release,
    ReleaseView,
    RolloutCheck,
    RolloutView,
    StageView,
    TransitionView,
    Wave,
)
from .publish import Progress

__version__ = "0.1.0"

__all__ = [
    "AliasChanged",
    "AliasView",
    "ApiError",
    "BadRequest",
    "Client",
    "Conflict",
    "ExperimentView",
    "FerryError",
    "FleetStatus",
    "Forbidden",
    "FragmentationReport",
    "Gate",
    "Imported",
    "NotFound",
    "Progress",
    "Published",
    "PublishError",
    "ReadoutRow",
    "Release",
    "ReleaseView",
    "RolloutCheck",
    "RolloutView",
    "StageView",
    "Timeout",
    "TransitionView",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
    "Wave",
]

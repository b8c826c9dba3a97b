"""What a registered version pins, and how a serving process resolves an alias or version to it at start."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml.errors import UserError
from ml.settings import Settings
from ml.tracking.model import PIPELINE_FIELDS
from ml.tracking.registry import BENTO_TAG

# Fields of the logged pipeline settings a release applies; where the index lives (data dir, Weaviate address)
# belongs to the host that serves it, not to the version.
HOST_FIELDS = frozenset(
    {"data_dir", "weaviate_url", "weaviate_grpc_url", "weaviate_port", "weaviate_grpc_port", "llm_url"}
)
PINNED_FIELDS = tuple(f for f in PIPELINE_FIELDS if f not in HOST_FIELDS)


@dataclass
class Release:
    """A registered version of the pipeline: its number, the alias it was reached by, and what it pins."""

    version: str
    alias: str | None
    run_id: str
    pinned: dict[str, Any] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """`TQA_*` variables that make a serving process run exactly this version."""
        values = {f"TQA_{k.upper()}": str(v) for k, v in self.pinned.items()}
        values["TQA_MODEL_VERSION"] = self.version
        values["TQA_MODEL_ALIAS"] = self.alias or ""
        return values


def resolve(settings: Settings, alias: str | None = None, version: str | None = None) -> Release:
    """The version `version` (or the one `alias` points at) with the pipeline settings it was registered with.

    With both, `version` is served and `alias` is the name it was deployed under (reported, not looked up).
    """
    from ml.tracking.log import connect

    connect(settings)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    name = settings.registered_model
    try:
        if version:
            found = client.get_model_version(name, version)
        elif alias:
            found = client.get_model_version_by_alias(name, alias)
        else:
            raise UserError("Give a model alias or version to resolve.")
    except MlflowException as exc:
        what = f"version {version}" if version else f"alias '{alias}'"
        raise UserError(f"Model '{name}' has no {what} in the registry at {settings.mlflow_tracking_uri}.") from exc
    pinned = _pinned_settings(name, str(found.version))
    # The bento a version was registered with (`TQA_BENTO=<tag> tqa register`, the CD build) wins over the one in
    # the eval run's pipeline settings, which is logged before any bento is built.
    if found.tags.get(BENTO_TAG):
        pinned["bento"] = found.tags[BENTO_TAG]
    return Release(str(found.version), alias, str(found.run_id), pinned)


def _pinned_settings(name: str, version: str) -> dict[str, Any]:
    # A progress bar per download would fill the serving log of every release.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=tmp))
        found = sorted(model_dir.rglob("pipeline_settings.json"))
        if not found:
            raise UserError(f"Version {version} of '{name}' carries no pipeline settings; register an eval run.")
        values = json.loads(found[0].read_text())
    return {k: values[k] for k in PINNED_FIELDS if k in values and values[k] is not None}

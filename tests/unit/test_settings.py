"""Settings: every variable is documented in .env.example, and placeholder secrets are refused outside local."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ml.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_setting() -> None:
    documented = {
        line.split("=", 1)[0].strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    expected = {f"TQA_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "add these to .env.example"


def test_placeholder_api_key_is_refused_outside_local() -> None:
    with pytest.raises(ValidationError, match="TQA_WEAVIATE_API_KEY"):
        Settings(environment="production", weaviate_url="https://weaviate.internal:8080", weaviate_api_key="changeme")
    Settings(environment="local", weaviate_url="http://127.0.0.1:8080")


def test_binary_name_follows_the_embedded_client_convention() -> None:
    settings = Settings(weaviate_version="1.39.0", weaviate_binary_dir=Path("/cache"))
    assert settings.weaviate_binary == Path(
        "/cache/weaviate-v1.39.0-f5768c3a2fc3a38d93873cb4d5531e2d0438633c412a0a4d3503fd6205bb676e"
    )

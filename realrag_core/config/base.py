"""What every config section stands on: the project root, the error every invalid config raises, the strict
base model (unknown keys refused, frozen) and the kind discriminator."""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
)


PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "demo.yaml"
CONFIG_ENV_VAR = "REALRAG_CONFIG"


class ConfigError(ValueError):
    """An invalid configuration: the message names the file, the field and the reason."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def kind_or(default: str):
    def kind(v) -> str:
        return v.get("kind", default) if isinstance(v, dict) else getattr(v, "kind", default)

    return kind

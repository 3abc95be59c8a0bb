"""What every config section stands on: the project root, the error every invalid config raises, the strict
base model (unknown keys refused, frozen) and the kind discriminator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Tag


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


def kind_members(union) -> dict[str, type]:
    """``kind`` tag -> section class of a discriminated union of config sections (a ``Tag`` on the member, or the
    member's ``kind`` literal): the one list of kinds that error messages and the model cache read."""
    members = {}
    for member in get_args(get_args(union)[0]):
        if get_origin(member) is Annotated:
            cls, *meta = get_args(member)
            tag = next(m.tag for m in meta if isinstance(m, Tag))
        else:
            cls, tag = member, get_args(member.model_fields["kind"].annotation)[0]
        members[tag] = cls
    return members

"""``python -m realrag_core.config [profile.yaml]``: whether a profile loads, before anything runs on it.

Prints the profile's name and artifacts root, or its one ``ConfigError`` (the field and the reason, e.g. a class
folder that does not exist) on one line and exits 2; README command 1 calls it before Dagster starts, so a broken
profile is one line instead of the job's tracebacks."""

from __future__ import annotations

import sys

from realrag_core.config.base import ConfigError
from realrag_core.config.loading import load_config


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        cfg = load_config(args[0] if args else None)
    except ConfigError as err:
        print(f"realrag: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(f"profile {cfg.name}: artifacts in {cfg.artifacts_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

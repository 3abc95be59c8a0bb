"""What set-up asks of the demo world before any job runs: ``python -m realrag_core.data.demo_setup needed`` (exit
0 when the profile draws from the emoji world, 3 when not) and ``... fetch --cache .cache/emoji-npm`` (npm pack the
pinned packages and verify them)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from realrag_core.data.emoji_packages import fetch_packages


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m realrag_core.data.demo_setup")
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="npm pack the pinned packages into a cache folder and verify them")
    f.add_argument("--cache", type=Path, required=True)
    n = sub.add_parser(
        "needed", help="exit 0 when the profile draws from the emoji world (set-up fetches it), 3 when not"
    )
    n.add_argument("--config", default=None, help="profile YAML (default: $REALRAG_CONFIG, then configs/demo.yaml)")
    args = parser.parse_args(argv)
    if args.cmd == "fetch":
        for key, path in fetch_packages(args.cache).items():
            print(f"{key:10s} {path}  ({path.stat().st_size / 1e6:.1f} MB, integrity ok)")
    if args.cmd == "needed":
        sys.exit(0 if profile_needs_world(args.config) else NOT_NEEDED)


NOT_NEEDED = 3  # the exit status of `needed` for a profile without the emoji world (1 is a crash's)


def profile_needs_world(config=None) -> bool:
    """Whether a profile draws from the emoji world, so set-up should fetch its npm packages. A profile that
    does not load says yes: fetching is harmless, and the job then reports the profile's own error."""
    from realrag_core.config.loading import load_config

    try:
        return load_config(config).source.kind == "emoji_demo"
    except Exception:  # noqa: BLE001 - any invalid profile: fetch, and let the job say what is wrong
        return True


if __name__ == "__main__":
    main()

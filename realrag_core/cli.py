"""``realrag generate``: one prompt to one image, for users who want images rather than a pipeline.

    realrag generate "a photo of a Tesla Cybertruck" --config configs/demo.yaml --rag --out out.png

Uses what the pipeline left in the profile's artifact store: the generator the ``generator`` asset recorded,
and with ``--rag`` the latest checkpoint of a retriever (first training seed) and the LanceDB table its image
tower embedded. Prints what was retrieved. No Dagster involved.

    realrag compare configs/cars_sdxl.yaml configs/cars_flux.yaml --out artifacts/compare/cars

One results table over several finished runs, keyed by (dataset, generator, encoder).

    realrag rejects --config my_profile.yaml

What the last embedding run could not use: rejects counted by reason, a few paths each, and label conflicts.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

RETRIEVERS = {"reflective": "retriever", "contrastive": "contrastive_retriever", "clip": None}


def generate(args: argparse.Namespace) -> int:
    from PIL import Image

    from realrag_core.storage.sync import artifact_sync
    from realrag_core.config.loading import load_config
    from realrag_core.generators.registry import open_stored_generator
    from realrag_core.data.prompts import Prompt
    from realrag_core.rag.retrieve import retrieve_top1
    from realrag_core.retriever.checkpoint import load_retrievers
    from realrag_core.storage.store import ArtifactStore
    from realrag_core.embed.table import open_table_readonly

    cfg = load_config(args.config)
    sync = artifact_sync(cfg)
    if sync is not None:  # artifacts on object storage: this machine's copy first
        print(f"artifacts {sync.uri}: {sync.pull().summary()}")
    store = ArtifactStore(cfg.artifacts_root)
    gen, info, base = open_stored_generator(cfg, store)
    reference = None
    if args.rag:
        asset = RETRIEVERS[args.retriever]
        if asset is None:
            retriever, table_name = base, None
        else:
            _, retriever, table_name = load_retrievers(store.checkpoint_dir(asset), cfg.device, cfg.precision)[0]
        table = open_table_readonly(cfg.lancedb_uri, table_name or cfg.embeddings.table_name)
        prompt = Prompt("cli", args.prompt, "", "", "", "")
        [hit] = retrieve_top1(retriever, [prompt], table, cfg.embeddings.index)
        print(
            f"retrieved ({args.retriever}, {retriever.model_id}): {hit.path}\n"
            f"  concept {hit.concept!r}, style {hit.style!r}, cosine similarity {hit.similarity:.3f}"
        )
        reference = Image.open(hit.path).convert("RGB")
    image = gen.generate([args.prompt], [reference] if reference is not None else None, [args.seed])[0]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    print(
        f"wrote {out} ({image.width}x{image.height}) with {info['generator_id']}, seed {args.seed}"
        + (", reference-conditioned" if reference is not None else ", text only")
    )
    return 0


def human_eval(args) -> int:
    from realrag_core.config.loading import load_config
    from realrag_core.human_eval.tasks import current_study
    from realrag_core.human_eval.server import Study, VoteStore, export_votes, votes_url
    from realrag_core.storage.store import ArtifactStore

    cfg = load_config(args.config)
    store = ArtifactStore(cfg.artifacts_root)
    study = Study(current_study(store.human_eval_dir, args.study), store.rag_dir)
    votes = VoteStore(votes_url(cfg, store))
    if args.action == "export":
        out = export_votes(study, votes, Path(args.out))
        print(f"wrote {out}: {len(votes.rows(study.study))} votes of study {study.study}")
        return 0
    import uvicorn

    from realrag_core.human_eval.app import create_app

    hosts = (*cfg.human_eval.allowed_hosts, *(args.allowed_host or ()))
    print(f"study {study.study}: {len(study.tasks)} tasks; open http://{args.host}:{args.port}/ (Ctrl-C stops)")
    uvicorn.run(create_app(study, votes, hosts), host=args.host, port=args.port, log_level="warning")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="realrag", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="one prompt -> one image, optionally retrieval-augmented")
    g.add_argument("prompt")
    g.add_argument("--config", default=None, help="profile YAML (default: $REALRAG_CONFIG, then configs/demo.yaml)")
    g.add_argument("--rag", action="store_true", help="retrieve one real image and condition on it")
    g.add_argument("--retriever", choices=sorted(RETRIEVERS), default="reflective")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default="out.png")
    r = sub.add_parser("rejects", help="what the last image_embeddings run could not use, counted by reason")
    r.add_argument("--config", default=None, help="profile YAML (default: $REALRAG_CONFIG, then configs/demo.yaml)")
    r.add_argument("--examples", type=int, default=3, help="paths shown per reason")
    c = sub.add_parser("compare", help="one results table over several profiles: (dataset, generator, encoder)")
    c.add_argument("configs", nargs="+", help="profile YAMLs whose runs finished the fid stage")
    c.add_argument("--out", default="artifacts/compare/results", help="writes <out>.md and <out>.parquet")
    h = sub.add_parser("human-eval", help="the human study: serve its page to raters, export their votes")
    hsub = h.add_subparsers(dest="action", required=True)
    for name, text in (("serve", "the study page (127.0.0.1 by default)"), ("export", "votes + task lineage")):
        a = hsub.add_parser(name, help=text)
        a.add_argument("--config", default=None, help="profile YAML (default: $REALRAG_CONFIG, then configs/demo.yaml)")
        a.add_argument("--study", default=None, help="study version (default: the latest human_eval_tasks drew)")
        if name == "serve":
            a.add_argument("--host", default="127.0.0.1")
            a.add_argument("--port", type=int, default=8765)
            a.add_argument("--allowed-host", action="append", default=None, help="adds to human_eval.allowed_hosts")
        else:
            a.add_argument("--out", default="votes.parquet", help=".parquet or .csv")
    args = parser.parse_args(argv)
    try:
        if args.command == "human-eval":
            return human_eval(args)
        if args.command == "rejects":
            from realrag_core.config.base import CONFIG_ENV_VAR
            from realrag_core.config.loading import load_config
            from realrag_core.embed.embedding import rejects_summary
            from realrag_core.storage.store import ArtifactStore, profile_hint

            cfg = load_config(args.config)
            store = ArtifactStore(cfg.artifacts_root)
            rejects = store.rejects_dir / "image_embeddings.parquet"
            named = bool(args.config or os.environ.get(CONFIG_ENV_VAR))
            print(profile_hint(cfg, str(rejects.relative_to(store.root)), named))
            print(rejects_summary(rejects, args.examples))
            return 0
        if args.command == "compare":
            from realrag_core.evaluate.compare import compare, write_comparison

            paths = write_comparison(compare(args.configs), Path(args.out))
            print(paths["md"].read_text() + f"\nwritten: {paths['md']}, {paths['parquet']}")
            return 0
        return generate(args)
    except (FileNotFoundError, ValueError) as err:  # missing stages or mismatched artifacts: say what to run
        print(f"realrag: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

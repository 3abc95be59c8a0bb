"""``realrag generate``: prompts to images, for users who want images rather than a pipeline.

    realrag generate "a photo of a Tesla Cybertruck" --config configs/demo.yaml --rag --out out.png
    realrag generate --prompts-file prompts.txt --rag --out images/

Uses what the pipeline left in the profile's artifact store: the generator the ``generator`` asset recorded,
and with ``--rag`` the latest checkpoint of a retriever (first training seed) and the LanceDB table its image
tower embedded; all prompts are retrieved for in one batched search. Prints what was retrieved. Several prompts
write ``0000.png``, ... and ``index.json`` (prompt, image, retrieved image) into the ``--out`` folder. No Dagster
involved.

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


def prompts_of(args: argparse.Namespace) -> list[str]:
    """The prompts on the command line, then those of ``--prompts-file`` (one a line, blank lines skipped)."""
    prompts = [p for p in args.prompt]
    if args.prompts_file:
        lines = Path(args.prompts_file).read_text(encoding="utf-8").splitlines()
        prompts += [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise ValueError("no prompt: give one or more, or --prompts-file with one a line")
    return prompts


def generate(args: argparse.Namespace) -> int:
    import json

    from realrag_core.storage.sync import artifact_sync
    from realrag_core.config.loading import load_config
    from realrag_core.generators.registry import open_stored_generator
    from realrag_core.data.prompts import Prompt
    from realrag_core.rag.retrieve import retrieve_top1
    from realrag_core.retriever.checkpoint import load_retrievers
    from realrag_core.storage.manifest import save_png
    from realrag_core.storage.store import ArtifactStore
    from realrag_core.embed.table import open_row_image, open_table_readonly

    prompts = prompts_of(args)
    several = len(prompts) > 1
    out = Path(args.out or ("out" if several else "out.png"))
    if several and out.suffix:
        raise ValueError(f"{len(prompts)} prompts: --out names a folder for their images, not the file {out}")
    cfg = load_config(args.config)
    sync = artifact_sync(cfg)
    if sync is not None:  # artifacts on object storage: this machine's copy first
        print(f"artifacts {sync.uri}: {sync.pull().summary()}")
    store = ArtifactStore(cfg.artifacts_root)
    gen, info, base = open_stored_generator(cfg, store)
    hits = [None] * len(prompts)
    if args.rag:
        asset = RETRIEVERS[args.retriever]
        if asset is None:
            retriever, table_name = base, None
        else:
            _, retriever, table_name = load_retrievers(store.checkpoint_dir(asset), cfg.device, cfg.precision)[0]
        table = open_table_readonly(cfg.lancedb_uri, table_name or cfg.embeddings.table_name)
        items = [Prompt(f"cli{i}", text, "", "", "", "") for i, text in enumerate(prompts)]
        hits = retrieve_top1(retriever, items, table, cfg.embeddings.index)  # every prompt in one batched search
        for text, hit in zip(prompts, hits):
            print(
                f"retrieved ({args.retriever}, {retriever.model_id}): {hit.path}"
                + (f"\n  for {text!r}" if several else "")
                + f"\n  concept {hit.concept!r}, style {hit.style!r}, cosine similarity {hit.similarity:.3f}"
            )
    index, batch = [], cfg.generator.sampling.batch_size
    for start in range(0, len(prompts), batch):
        texts, found = prompts[start : start + batch], hits[start : start + batch]
        refs = [open_row_image(h.path) for h in found] if args.rag else None
        for i, (text, hit, image) in enumerate(zip(texts, found, gen.generate(texts, refs, [args.seed] * len(texts)))):
            path = out / f"{start + i:04d}.png" if several else out
            save_png(image, path)
            index.append(
                {
                    "prompt": text,
                    "image": path.name,
                    "seed": args.seed,
                    "retriever": f"{args.retriever}:{retriever.model_id}" if hit else None,
                    "retrieved_path": hit.path if hit else None,
                    "retrieved_concept": hit.concept if hit else None,
                    "similarity": round(hit.similarity, 6) if hit else None,
                }
            )
    mode = ", reference-conditioned" if args.rag else ", text only"
    if not several:
        print(f"wrote {out} ({image.width}x{image.height}) with {info['generator_id']}, seed {args.seed}{mode}")
        return 0
    record = {"generator_id": info["generator_id"], "images": index}
    (out / "index.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {len(index)} images and index.json to {out}/ with {info['generator_id']}, seed {args.seed}{mode}")
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
    g = sub.add_parser("generate", help="prompts -> images, optionally retrieval-augmented")
    g.add_argument("prompt", nargs="*", help="one or more prompts")
    g.add_argument("--prompts-file", default=None, help="more prompts, one a line")
    g.add_argument("--config", default=None, help="profile YAML (default: $REALRAG_CONFIG, then configs/demo.yaml)")
    g.add_argument("--rag", action="store_true", help="retrieve one real image and condition on it")
    g.add_argument("--retriever", choices=sorted(RETRIEVERS), default="reflective")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--out", default=None, help="the image (one prompt; default out.png) or a folder (several; default out/)"
    )
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

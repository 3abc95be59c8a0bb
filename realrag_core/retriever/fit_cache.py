"""Finished retriever fits kept by learning rate and seed, reused only when every input they depend on is the same (a
killed build resumes after its last finished fit)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable, Sequence
from realrag_core.clip.bundle import CONFIG_NAME, ClipBundle, load_clip, save_clip
from realrag_core.data.prompts import Prompt
from realrag_core.retriever.fit import TableView


def fit_inputs_digest(
    cfg,
    base: ClipBundle,
    train: Sequence[Prompt],
    val: Sequence[Prompt],
    *,
    table: TableView,
    negatives_of: dict[str, list[str]],
    drop_positive: bool,
) -> str:
    """Everything a fit's result depends on besides its learning rate and seed."""
    settings = cfg.retriever.model_dump(
        mode="json", exclude={"lr", "lr_grid", "lr_grid_by_protocol", "lr_choice_seeds", "seeds", "ablations"}
    )
    h = hashlib.sha256(
        json.dumps(
            {
                "base": base.model_id,
                "device": cfg.device,
                "precision": cfg.precision,
                "settings": settings,
                "train": [(p.prompt_id, p.prompt, p.concept) for p in train],
                "val": [(p.prompt_id, p.prompt, p.concept, p.generator_split) for p in val],
                "ids": table.ids,
                "concepts": table.concepts,
                "negatives": negatives_of,
                "drop_positive": drop_positive,
            },
            sort_keys=True,
        ).encode()
    )
    h.update(table.embeddings.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


class FitCache:
    """Finished fits (weights + run record) by learning rate and seed, each written whole (temporary folder,
    then a rename) and reused only when the inputs digest matches."""

    def __init__(self, folder: Path, base_folder: Path, cfg, digest: str):
        self.folder, self.base_folder, self.cfg, self.digest, self.resumed = folder, base_folder, cfg, digest, 0

    def get(self, lr: float, seed: int, fit: Callable[[], tuple[ClipBundle, dict]]) -> tuple[ClipBundle, dict]:
        done = self.folder / f"lr{lr!r}_seed{seed}"
        record = done / "fit.json"
        if record.is_file():
            saved = json.loads(record.read_text())
            if saved["inputs"] == self.digest:
                self.resumed += 1
                return load_clip(done, self.cfg.device, self.cfg.precision), saved["run"]
        model, run = fit()
        tmp = done.with_name(done.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / CONFIG_NAME).write_text((self.base_folder / CONFIG_NAME).read_text())
        save_clip(model.model, tmp)
        (tmp / "fit.json").write_text(json.dumps({"inputs": self.digest, "run": run}))
        shutil.rmtree(done, ignore_errors=True)
        tmp.rename(done)
        return model, run

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

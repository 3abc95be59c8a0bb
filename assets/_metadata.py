"""Small helpers that turn kernel results into Dagster metadata (images shown inline in the UI)."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import dagster as dg
from PIL import Image

from realrag_core.data.prompts import row_protocol


def inline_image(image: Image.Image | Path, alt: str = "image", max_side: int = 640) -> dg.MetadataValue:
    """A PNG embedded in markdown, so the UI shows the picture, not a path."""
    img = Image.open(image) if isinstance(image, Path) else image
    img = img.copy()
    img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})")


def readable(metadata: dict) -> dict:
    """Plain floats as a person reads them in the UI, still numbers (so its metadata plots work across
    materializations): 0.3020833333333333 -> 0.3021, -0.00040632724994793534 -> -0.0004063, 741.2371 -> 741.24.
    Four significant digits below 1, two decimals above; Dagster MetadataValues and other types pass as they are."""

    def number(x: float) -> float:
        if not math.isfinite(x):
            return x
        return round(x, 2) if abs(x) >= 1 else float(f"{x:.4g}")

    return {k: number(v) if isinstance(v, float) else v for k, v in metadata.items()}


def trained_model_metadata(info: dict, loss_plot: Path) -> dict:
    """What every training asset shows: identity, whether weights were reused, cost, and the loss curve."""
    keys = ("model_id", "params", "train_seconds", "final_loss", "train_images", "model_name", "load_seconds")
    metadata = {key: info[key] for key in keys if key in info}  # pretrained models have no training figures
    metadata["reused_weights"] = info["reused"]
    if "source" in info:
        metadata["weights"] = info["source"]  # trained, reused or shipped
    for key in ("train_styles", "database_world_images_trained", "reference_world_images_trained"):
        if key in info:
            metadata[key] = ", ".join(info[key]) if isinstance(info[key], list) else info[key]
    if loss_plot.is_file():
        metadata["loss_curve"] = inline_image(loss_plot, "loss curve")
    return metadata


def flat(prefix: str, mapping: dict) -> dict:
    """{'known': {'top1': 0.3}} -> {'prefix/known/top1': 0.3}, scalars only."""
    out = {}
    for key, value in mapping.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            out.update(flat(name, value))
        elif isinstance(value, (int, float, str, bool)):
            out[name] = value
    return out


class RetrainConfig(dg.Config):
    """Launchpad switch of the training assets."""

    force_retrain: bool = False  # train even when weights for this exact config and data exist


# I/O that can fail transiently (a registry fetch, an object store): retried with backoff before the step fails
IO_RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def results_table(results: list[dict], paired: list[dict], digits: int = 4) -> dict:
    """The fid asset's rows as Dagster tables with a schema (protocol, arm, split, metric, value, interval, n),
    numbers rounded to ``digits`` so the UI shows 0.3021, not 0.3020833333333333."""

    def r(x):
        return None if x is None else round(float(x), digits)

    result_schema = dg.TableSchema(
        columns=[
            dg.TableColumn("protocol"),
            dg.TableColumn("arm"),
            dg.TableColumn("split"),
            dg.TableColumn("metric"),
            dg.TableColumn("value", "float"),
            dg.TableColumn("lo", "float", "95% interval, lower"),
            dg.TableColumn("hi", "float", "95% interval, upper"),
            dg.TableColumn("n", "int"),
        ]
    )
    paired_schema = dg.TableSchema(
        columns=[
            dg.TableColumn("protocol"),
            dg.TableColumn("a_minus_b"),
            dg.TableColumn("split"),
            dg.TableColumn("diff", "float"),
            dg.TableColumn("lo", "float"),
            dg.TableColumn("hi", "float"),
            dg.TableColumn("detectable_min", "float", "2.8 standard errors: 95% confidence, 80% power"),
            dg.TableColumn("n", "int"),
        ]
    )
    rows = [
        dg.TableRecord(
            {
                "protocol": row_protocol(x),
                "arm": x["arm"],
                "split": x["split"],
                "metric": x["metric"],
                "value": r(x["value"]),
                "lo": r(x.get("lo")),
                "hi": r(x.get("hi")),
                "n": int(x["n"]),
            }
        )
        for x in results
        if not x["metric"].startswith("retrieved_style/")
    ]
    pairs = [
        dg.TableRecord(
            {
                "protocol": row_protocol(p),
                "a_minus_b": f"{p['a']} - {p['b']}",
                "split": p["split"],
                "diff": r(p["diff"]),
                "lo": r(p["lo"]),
                "hi": r(p["hi"]),
                "detectable_min": r(p.get("mde")),
                "n": int(p["n"]),
            }
        )
        for p in paired
    ]
    return {
        "results_table": dg.MetadataValue.table(rows, result_schema),
        "paired_table": dg.MetadataValue.table(pairs, paired_schema),
    }

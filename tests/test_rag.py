"""Stage 5's oracle arm on a real LanceDB table: the prompt's own concept, chosen by seed, tied to the table version."""

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
from PIL import Image

from realrag_core.config.stages import IndexConfig
from realrag_core.storage.manifest import read_manifest
from realrag_core.data.prompts import Prompt, prompt_id
from realrag_core.rag.retrieve import OracleRetriever, generate_arms
from realrag_core.embed.table import open_embedding_table, table_schema, upsert


def _table(tmp_path, concepts_images):
    table, _ = open_embedding_table(str(tmp_path / "db"), "t", 4, "m")
    ids, paths, concepts = [], [], []
    for concept, n in concepts_images.items():
        for i in range(n):
            path = tmp_path / f"{concept}_{i}.png"
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(path)
            ids.append(f"{concept}-{i}")
            paths.append(str(path))
            concepts.append(concept)
    v = np.eye(4, dtype=np.float32)[np.arange(len(ids)) % 4]
    data = {
        "id": ids,
        "path": paths,
        "caption": concepts,
        "concept": concepts,
        "style": ["s"] * len(ids),
        "split": ["known"] * len(ids),
        "embedding": list(v),
        "model_id": ["m"] * len(ids),
        "added_at": [datetime.now(timezone.utc)] * len(ids),
    }
    upsert(table, pa.Table.from_pydict(data, schema=table_schema(4, "m")))
    return table


def _prompt(concept, template="a {concept}"):
    text = template.format(concept=concept)
    return Prompt(prompt_id(text, concept), text, concept, "novel", "eval", template)


def test_the_oracle_hands_over_the_prompts_own_concept_chosen_by_seed(tmp_path):
    table = _table(tmp_path, {"lamp": 6, "tram": 6, "kite": 1})
    prompts = [_prompt(c, t) for c in ("lamp", "tram", "kite") for t in ("a {concept}", "a photo of a {concept}")]
    hits = OracleRetriever(0).retrieve(prompts, table)
    assert [h.concept for h in hits] == [p.concept for p in prompts]
    assert hits == OracleRetriever(0).retrieve(prompts, table)  # deterministic
    picks = {s: [h.id for h in OracleRetriever(s).retrieve(prompts, table)] for s in range(6)}
    assert len({tuple(v[:4]) for v in picks.values()}) > 1  # another seed, another of the concept's images
    assert all(v[4] == v[5] == "kite-0" for v in picks.values())  # a concept with one image has one choice
    [missing] = OracleRetriever(0).retrieve([_prompt("zeppelin")], table)
    assert missing is None


def test_oracle_rows_name_the_table_version_they_chose_from(tmp_path):
    table = _table(tmp_path, {"lamp": 2})
    oracle = OracleRetriever(3)
    before = oracle.model_id_for(table)
    assert before.startswith("oracle:seed3:t@v")
    upsert(
        table,
        pa.Table.from_pydict(
            {
                "id": ["lamp-9"],
                "path": [str(tmp_path / "lamp_0.png")],
                "caption": ["lamp"],
                "concept": ["lamp"],
                "style": ["s"],
                "split": ["known"],
                "embedding": [np.ones(4, dtype=np.float32)],
                "model_id": ["m"],
                "added_at": [datetime.now(timezone.utc)],
            },
            schema=table_schema(4, "m"),
        ),
    )
    assert oracle.model_id_for(table) != before


class _Echo:
    """A generator that paints the reference's mean colour (grey without one): conditioning is visible."""

    generator_id = "echo:1"

    def generate(self, prompts, references, seeds):
        out = []
        for ref in references:
            colour = (
                tuple(int(c) for c in np.asarray(ref).reshape(-1, 3).mean(0)) if ref is not None else (128, 128, 128)
            )
            out.append(Image.new("RGB", (8, 8), colour))
        return out


def test_the_oracle_arm_generates_from_its_own_concept_beside_none(tmp_path):
    table = _table(tmp_path, {"lamp": 3, "tram": 3})
    prompts = [_prompt("lamp"), _prompt("tram")]
    report = generate_arms(
        _Echo(),
        {"none": [(None, None)], "oracle": [(None, OracleRetriever(0))]},
        prompts,
        [0, 1],
        table=table,
        index=IndexConfig(),
        folder=tmp_path / "rag",
        progress=False,
    )
    rows = read_manifest(tmp_path / "rag").to_pylist()
    oracle = [r for r in rows if r["arm"] == "oracle"]
    assert report["rows_added"] == 8 and len(oracle) == 4
    assert all(r["retrieved_concept"] == r["concept"] for r in oracle)
    assert {r["retriever_id"] for r in oracle} == {OracleRetriever(0).model_id_for(table)}
    for r in oracle:  # the image was made from the handed-over reference
        ref = np.asarray(Image.open(r["retrieved_path"]).convert("RGB")).reshape(-1, 3).mean(0)
        made = np.asarray(Image.open(tmp_path / "rag" / r["path"]).convert("RGB"))[0, 0]
        assert np.allclose(made, ref, atol=1)

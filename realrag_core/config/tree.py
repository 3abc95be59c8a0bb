"""The whole tree: one ``RealRagConfig`` with a section per stage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from realrag_core.config.base import StrictModel
from realrag_core.config.clip import ClipConfig, DemoClipConfig, DemoJudgeConfig, JudgeConfig
from realrag_core.generators.demo.config import DemoGeneratorConfig
from realrag_core.generators.kinds.registry import GeneratorConfig
from realrag_core.config.operations import HumanEvalConfig, OperationsConfig
from realrag_core.data.sources.registry import SourceConfig, check_world
from realrag_core.config.stages import (
    EmbeddingsConfig,
    GenerationConfig,
    MetricsConfig,
    MiningConfig,
    PromptsConfig,
    RagConfig,
    RetrieverConfig,
)
from realrag_core.config.world import WorldConfig


class RealRagConfig(StrictModel):
    name: str
    artifacts_root: Path = Field(description="tables, Parquet, images, checkpoints and reports live here")
    artifacts_uri: str | None = Field(
        None,
        description="object storage holding the artifacts (s3://bucket/prefix): artifacts_root becomes this "
        "machine's working copy, brought up to date before each step and sent back after it, and the LanceDB table "
        "lives at <artifacts_uri>/lancedb. Endpoint and credentials from AWS_ENDPOINT_URL, AWS_REGION, "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (AWS_ALLOW_HTTP=true for http://). null: local files only",
    )
    device: Literal["cpu", "cuda", "mps"] = "cpu"
    precision: Literal["float32", "bfloat16", "float16"] = Field(
        "float32",
        description="CLIP embedding (database, queries, judge, scorer) under torch.autocast in this dtype; "
        "bfloat16 on GPUs. Fine-tuning keeps float32 weights and optimiser",
    )
    model_cache: Path | None = Field(
        None,
        description="one folder for every downloaded weight and dataset (open_clip/, huggingface/, torch/ "
        "inside); a section's own cache_dir wins; null: each library's default cache",
    )
    torch_threads: int | None = Field(None, ge=1, description="null: torch's default")
    source: SourceConfig
    world: WorldConfig
    clip: ClipConfig = DemoClipConfig()
    judge: JudgeConfig = DemoJudgeConfig()
    generator: GeneratorConfig = DemoGeneratorConfig()
    prompts: PromptsConfig = PromptsConfig()
    generation: GenerationConfig = GenerationConfig()
    mining: MiningConfig = MiningConfig()
    retriever: RetrieverConfig = RetrieverConfig()
    rag: RagConfig = RagConfig()
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    metrics: MetricsConfig = MetricsConfig()
    human_eval: HumanEvalConfig = HumanEvalConfig()
    operations: OperationsConfig = OperationsConfig()

    @model_validator(mode="after")
    def _source_serves_world(self):
        check_world(self.source, self.world)
        return self

    @field_validator("artifacts_uri")
    @classmethod
    def _a_uri(cls, v: str | None) -> str | None:
        if v is not None and "://" not in v:
            raise ValueError(
                "artifacts_uri is a URI with a scheme (s3://bucket/prefix); a local folder is artifacts_root"
            )
        return v.rstrip("/") if v else v

    @property
    def lancedb_uri(self) -> str:
        if self.embeddings.table_uri:
            return self.embeddings.table_uri
        return f"{self.artifacts_uri}/lancedb" if self.artifacts_uri else str(self.artifacts_root / "lancedb")

    def digest(self, *sections: str) -> str:
        """A short stable hash of the named top-level sections (all when none are named)."""
        data = self.model_dump(mode="json")
        if sections:
            data = {k: data[k] for k in sections}
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

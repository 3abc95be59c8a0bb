"""Stage settings: image embeddings and the index, prompts and protocols, generation, mining, the retriever, RAG
and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    field_validator,
    model_validator,
)

from realrag_core.config.base import StrictModel
from realrag_core.config.clip import PretrainedClipConfig


class SeenConceptsConfig(StrictModel):
    """The paper's protocol: every world concept is a retriever-train concept, and the train, validation and
    evaluation prompts differ by template (three disjoint sets)."""

    train_templates: tuple[str, ...] = ("a {concept}",)
    val_templates: tuple[str, ...] = ("a picture of a {concept}",)
    eval_templates: tuple[str, ...] = ("an image of a {concept}",)
    eval_concepts: Literal["all", "unseen_eval"] = Field(
        "all",
        description="which concepts get evaluation prompts: all world concepts, or only those the unseen_concepts "
        "split evaluates on (unseen_eval: both protocols scored on the same concepts, trained on or not; a quarter "
        "of the generation cost). Training and validation use every concept either way",
    )
    shared_templates: bool = Field(
        False,
        description="allow one template in several splits, as the paper's single class-name prompt: the "
        "splits are then the same texts (distinct prompts, one per split), validation chooses the learning rate on "
        "the training prompts, and evaluation differs from training only by the images it is scored against (the "
        "held-out photos of each class, source.held_out_fraction)",
    )

    @model_validator(mode="after")
    def _disjoint(self):
        sets = {"train": self.train_templates, "val": self.val_templates, "eval": self.eval_templates}
        for name, templates in sets.items():
            if not templates or any("{concept}" not in t for t in templates):
                raise ValueError(f"prompts.seen_concepts.{name}_templates: at least one, each with {{concept}}")
        for a, b in () if self.shared_templates else (("train", "val"), ("train", "eval"), ("val", "eval")):
            shared = set(sets[a]) & set(sets[b])
            if shared:
                raise ValueError(
                    f"prompts.seen_concepts: {sorted(shared)} is both a {a} and a {b} template; the "
                    "evaluation prompts must be ones the retriever never trained or was chosen on "
                    "(shared_templates: true for a single class-name prompt, as the paper's)"
                )
        return self

    def by_split(self) -> dict[str, tuple[str, ...]]:
        return {"train": self.train_templates, "val": self.val_templates, "eval": self.eval_templates}


class PromptsConfig(StrictModel):
    """Prompts from templates over the world's concepts, and the retriever's train/val/eval concept split."""

    templates: tuple[str, ...] = ("a {concept}",)
    protocols: tuple[Literal["unseen_concepts", "seen_concepts"], ...] = Field(
        ("unseen_concepts",),
        description="evaluation protocols, each with its own retrievers and results: "
        "unseen_concepts (retriever-train/val/eval concepts by split_fractions) and seen_concepts (the paper's: every "
        "concept trains, splits differ by template)",
    )
    seen_concepts: SeenConceptsConfig = SeenConceptsConfig()
    seed: int = 0
    split_fractions: tuple[float, float, float] = Field(
        (0.5, 0.2, 0.3), description="retriever-train, validation, evaluation shares of the concepts"
    )

    @field_validator("templates")
    @classmethod
    def _templates(cls, v):
        if not v or any("{concept}" not in t for t in v):
            raise ValueError("every template must contain {concept}")
        return v

    @field_validator("protocols")
    @classmethod
    def _protocols(cls, v):
        if not v or len(set(v)) != len(v):
            raise ValueError("prompts.protocols: one or both of unseen_concepts, seen_concepts, each once")
        return v

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, v):
        if any(f < 0 for f in v) or abs(sum(v) - 1) > 1e-6:
            raise ValueError("train/val/eval fractions must be >= 0 and add up to 1")
        return v


def _distinct_seeds(v: tuple[int, ...]) -> tuple[int, ...]:
    if not v or len(set(v)) != len(v):
        raise ValueError("give at least one seed, without repeats")
    return v


Seeds = Annotated[tuple[int, ...], AfterValidator(_distinct_seeds)]


class GenerationConfig(StrictModel):
    """Stage 2: G(T) without retrieval, for the prompts the retriever learns from."""

    seeds: Seeds = Field((0,), description="one G(T) sample per prompt and seed")
    retriever_splits: tuple[Literal["train", "val", "eval"], ...] = ("train", "val")


class MiningConfig(StrictModel):
    """Stage 3: the k real images nearest to each G(T)."""

    k: int = Field(1, ge=1, description="negatives per generated image (the paper uses 1)")
    policy: Literal["exclude_concept", "exclude_positive"] = "exclude_concept"
    incremental: bool = Field(
        True,
        description="re-mine from the previous negatives and the rows added since (identical result, cost "
        "grows with the added rows); images that lost a negative are searched in full",
    )


class AblationConfig(StrictModel):
    """Validation-only runs of the reflective retriever's recipe (at its chosen learning rate) with one thing
    changed. Controls replace the reflective negatives by as many random database images, or by the images
    nearest to the prompt's text under the base CLIP (other concepts), so a gain can be credited to reflection
    rather than to more negatives."""

    seeds: Seeds = Field((0,), description="training seeds per variant")
    controls: tuple[Literal["random", "text_nearest"], ...] = ("random", "text_nearest")
    policies: tuple[Literal["exclude_concept", "exclude_positive"], ...] = Field(
        ("exclude_positive",), description="negative policies to mine and train with besides mining.policy"
    )
    k: tuple[int, ...] = Field((3,), description="negatives per generated image besides mining.k")
    trainable: tuple[Literal["text", "text_head", "both"], ...] = Field(
        ("both",), description="trainable parts besides retriever.trainable (validation re-embeds in memory)"
    )
    generators: tuple[Literal["untrained"], ...] = Field(
        ("untrained",),
        description="reflective negatives mined from G(T) of another generator: 'untrained' is the "
        "same architecture with its initial weights (does what the generator learned matter?)",
    )


class RetrieverConfig(StrictModel):
    """Stage 4: fine-tuning of the base CLIP; the contrastive baseline uses the same settings."""

    trainable: Literal["text", "text_head", "both"] = Field(
        "text",
        description="text: the text tower only (the table stays valid, image features are cached); "
        "text_head: only the text tower's final norm and projection; both: both towers (each model re-embeds the "
        "database into its own table and searches it)",
    )
    steps: int = Field(300, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(1e-4, gt=0, description="used when lr_grid is empty")
    lr_grid: tuple[float, ...] = Field(
        (),
        description="learning rates tried on validation (with the first lr_choice_seeds seeds); each retriever "
        "(reflective and contrastive alike) keeps its best, so both get the same tuning budget",
    )
    lr_grid_by_protocol: dict[Literal["unseen_concepts", "seen_concepts"], tuple[float, ...]] = Field(
        {},
        description="another grid for one protocol (its own validation prompts choose from it), e.g. higher rates "
        "under seen_concepts, where every concept trains; both retrievers of that protocol share it",
    )
    seeds: Seeds = Field((0, 1, 2), description="training seeds per retriever (each one is a model)")
    lr_choice_seeds: int = Field(
        1,
        ge=1,
        description="every learning rate of the grid is fitted with this many of the first seeds and the one with "
        "the best mean validation score is chosen (1: the first seed alone decides; len(seeds): no seed's luck "
        "picks the rate, and the grid's fits are the final models)",
    )
    mask_same_concept: bool = True
    image_to_text: bool = False
    validate_every: int | None = Field(
        None,
        ge=1,
        description="early stopping: validate every N steps and keep the best model (never step 0: a "
        "fit is always a real fine-tune); null: keep the last step",
    )
    ablations: AblationConfig = AblationConfig()

    @model_validator(mode="after")
    def _early_stopping(self):
        if self.validate_every is not None and self.trainable == "both":
            raise ValueError(
                "retriever.validate_every: early stopping re-embeds the database at every check when "
                "trainable is 'both'; use it with 'text' or 'text_head'"
            )
        return self

    @model_validator(mode="after")
    def _choice_seeds(self):
        if self.lr_choice_seeds > len(self.seeds):
            raise ValueError(
                f"retriever.lr_choice_seeds is {self.lr_choice_seeds}, but retriever.seeds has only {len(self.seeds)}"
            )
        return self

    @field_validator("lr_grid")
    @classmethod
    def _grid(cls, v):
        if any(x <= 0 for x in v):
            raise ValueError("learning rates must be > 0")
        return v

    @field_validator("lr_grid_by_protocol")
    @classmethod
    def _grids(cls, v):
        if any(not grid or any(x <= 0 for x in grid) for grid in v.values()):
            raise ValueError("each protocol's grid: at least one learning rate, each > 0")
        return v

    @property
    def learning_rates(self) -> tuple[float, ...]:
        return self.lr_grid or (self.lr,)

    def learning_rates_for(self, protocol: str) -> tuple[float, ...]:
        """The grid one protocol's retrievers are tuned on."""
        return tuple(self.lr_grid_by_protocol.get(protocol, self.learning_rates))


class RagConfig(StrictModel):
    """Stage 5: every arm generates for the evaluation prompts with the same seeds."""

    seeds: Seeds = Field((0, 1, 2, 3), description="samples per prompt and arm")
    seeds_by_protocol: dict[Literal["unseen_concepts", "seen_concepts"], Seeds] = Field(
        {},
        description="samples per prompt and arm for one protocol instead of `seeds`: e.g. one sample under "
        "seen_concepts, whose evaluation prompts cover every concept (power comes from concepts more than samples)",
    )
    retriever_splits: tuple[Literal["train", "val", "eval"], ...] = ("eval",)
    oracle: bool = Field(
        True,
        description="also run the `oracle` arm: a database image of the prompt's own concept, the best any "
        "retriever could hand the generator (how much of the none-to-oracle gap each retriever closes)",
    )
    oracle_seed: int = Field(0, description="which of the concept's database images the oracle hands over")

    def seeds_for(self, protocol: str) -> tuple[int, ...]:
        """The sample seeds of one protocol's evaluation prompts."""
        return tuple(self.seeds_by_protocol.get(protocol, self.seeds))


class InceptionConfig(StrictModel):
    """Standard FID/KID: torchmetrics' Inception v3 (torch-fidelity's port of the TF FID network)."""

    cache_folder: ClassVar[str] = "torch/hub"  # under model_cache
    weights: Path | None = Field(
        None,
        description="torch-fidelity's weights file (pt_inception-2015-12-05-6726825d.pth); null: torch-fidelity "
        "downloads it once into torch hub's cache (TORCH_HOME)",
    )
    feature: Literal[64, 192, 768, 2048] = Field(2048, description="Inception layer; 2048 is the published protocol")
    batch_size: int = Field(32, ge=1)
    cache_dir: Path | None = Field(
        None, description="torch hub folder the weights are downloaded into (null: TORCH_HOME's)"
    )


class MetricsConfig(StrictModel):
    """Stage 6's feature extractors. The judge always scores concept accuracy and fid_judge/kid_judge."""

    inception: InceptionConfig | None = Field(
        None,
        description="also report standard fid/kid (Inception at 299 px, PIL bicubic resize, float64 "
        "statistics); null: off (the demo world has no Inception weights)",
    )
    clip_score: PretrainedClipConfig | None = Field(
        None,
        description="open_clip model for CLIP-T (image-prompt) and CLIP-I (image-real images of the concept); "
        "null: the judge",
    )
    min_fid_samples: int = Field(2048, ge=1, description="the report warns when a cell has fewer generated images")
    near_duplicate_threshold: float | None = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="reference-set images whose cosine similarity (base CLIP) to a database "
        "image reaches this are reported and left out of FID/KID and CLIP-I; null: no check",
    )


# --------------------------------------------------------------------------- stage 1: image embeddings


class IndexConfig(StrictModel):
    threshold_rows: int = Field(
        50_000, ge=1, description="build a vector index once the table holds this many rows; exact search below"
    )
    type: Literal["IVF_PQ", "IVF_HNSW_SQ"] = "IVF_HNSW_SQ"
    num_partitions: int | None = Field(None, ge=1, description="null: about sqrt(rows)")
    num_sub_vectors: int | None = Field(None, ge=1, description="IVF_PQ only; null: dim / 8")
    nprobes: int = Field(20, ge=1)
    refine_factor: int = Field(10, ge=1, description="re-rank this many times k candidates exactly")

    @model_validator(mode="after")
    def _pq_needs_training_rows(self):
        if self.type == "IVF_PQ" and self.threshold_rows < 256:
            raise ValueError("IVF_PQ trains 256 centroids per sub-vector: threshold_rows must be >= 256")
        return self


class EmbeddingsConfig(StrictModel):
    table_uri: str | None = Field(None, description="LanceDB URI (local path or s3://...); null: <artifacts>/lancedb")
    table_name: str = "image_embeddings"
    batch_size: int = Field(64, ge=1)
    num_workers: int = Field(2, ge=0)
    max_image_pixels: int = Field(50_000_000, ge=1, description="larger images are rejected as absurd")
    min_image_side: int = Field(8, ge=1, description="smaller images are rejected")
    max_caption_chars: int = Field(2_000, ge=1, description="longer captions are rejected (CLIP reads 77 tokens)")
    remove_missing: bool = Field(
        True,
        description="delete rows of images no longer in the source (or changed); refused when more than "
        "half the table would go (a missing mount must not empty the database)",
    )
    on_model_mismatch: Literal["error", "recreate"] = Field(
        "error", description="a table written by another model: refuse (error) or drop and rebuild it"
    )
    label_conflicts: Literal["keep_both", "first_wins", "drop_both"] = Field(
        "keep_both",
        description="the same picture (by its bytes) listed under two or more concepts: keep every row (reported "
        "and warned about), keep the concept listed first, or drop them all; either way each is listed in "
        "rejects/image_embeddings_label_conflicts.parquet",
    )
    index: IndexConfig = IndexConfig()

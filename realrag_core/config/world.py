"""The world: how concepts split into known/novel and train/validation/test, and which style plays which role."""

from __future__ import annotations


from pydantic import (
    Field,
    model_validator,
)

from realrag_core.config.base import StrictModel


# --------------------------------------------------------------------------- world: splits and style roles


class StyleRoles(StrictModel):
    """Which artist styles play which role. Independence is enforced per artist, not per style."""

    reference: str | None = Field(
        None, description="held out of the database and of every model except the evaluation judge"
    )
    database: tuple[str, ...] = Field(description="styles whose images form the retrieval database")
    clip_pretrain: tuple[str, ...] = Field(
        description="styles the demo CLIP is pre-trained on (never a database or reference artist)"
    )
    artists: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="styles drawn by one artist (near-duplicates); a style not listed is its own artist",
    )
    outside_world: tuple[str, ...] = Field(
        (),
        description="styles whose images of concepts *outside* the world (and outside the selection concepts) "
        "the demo CLIP also pre-trains on: the database and reference artists may be named here, the way a real "
        "CLIP has seen the photo domain but not these objects' photos. Never an image of a world concept",
    )

    def world_roles(self) -> dict:
        """The roles that decide the world (database and reference, with their artists): what the world hash
        records. Pre-training styles are not among them, so adding an artist never redraws the world."""
        styles = set(self.database) | ({self.reference} - {None})
        return {
            "reference": self.reference,
            "database": list(self.database),
            "artists": {s: self.artist_of(s) for s in sorted(styles)},
        }

    def artist_of(self, style: str) -> str:
        for artist, styles in self.artists.items():
            if style in styles:
                return artist
        return style

    @model_validator(mode="after")
    def _roles_are_independent(self):
        if not self.database:
            raise ValueError("database: at least one style is needed")
        groups = {
            "database": {self.artist_of(s) for s in self.database},
            "clip_pretrain": {self.artist_of(s) for s in self.clip_pretrain},
            "reference": {self.artist_of(self.reference)} if self.reference else set(),
        }
        names = list(groups)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                shared = groups[a] & groups[b]
                if shared:
                    raise ValueError(
                        f"{a} and {b} share the artist(s) {sorted(shared)}; roles must use independent artists"
                    )
        return self


class WorldConfig(StrictModel):
    seed: int = 0
    num_concepts: int | None = Field(
        None, ge=4, description="concepts kept in the world (chosen by seed); null keeps every concept"
    )
    known_fraction: float = Field(0.8, gt=0.0, lt=1.0, description="share of concepts the generator knows")
    num_known: int | None = Field(
        None, ge=1, description="exact count of concepts the generator knows (overrides known_fraction)"
    )
    novel_concepts: tuple[str, ...] | None = Field(
        None,
        description="for a pretrained generator: the concepts it cannot know (e.g. objects released after its "
        "training cut-off); every other concept is known. Overrides known_fraction and num_known",
    )
    require_all_styles: bool = Field(True, description="keep only concepts drawn in the database and reference styles")
    selection_concepts: int = Field(
        0,
        ge=0,
        description="concepts outside the world, drawn in the database and reference styles, chosen by "
        "seed and treated exactly like world concepts by every pre-trained model (none sees their database- or "
        "reference-style images): every choice of a pre-training recipe is measured on them, never on the world",
    )
    styles: StyleRoles

    @model_validator(mode="after")
    def _one_split_rule(self):
        if self.novel_concepts is not None and self.num_known is not None:
            raise ValueError("give either novel_concepts or num_known, not both")
        return self

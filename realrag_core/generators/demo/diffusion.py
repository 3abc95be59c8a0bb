"""The demo generator: a small pixel-space text-to-image diffusion model made of diffusers parts.

- ``UNet2DConditionModel`` conditioned on the prompt's token features from the demo CLIP's (frozen) text
  tower through cross-attention (optionally also on its pooled text embedding, added to the timestep
  embedding), and on one reference image concatenated to its input channels (the spatial path of
  image-conditioned diffusion; zeros when there is no reference).
- v-prediction with a cosine (``squaredcos_cap_v2``) schedule for training (``DDPMScheduler``), DDIM for
  sampling (or DPM-Solver++ / UniPC), classifier-free guidance over the joint (text, reference) condition.
- Deterministic: sample i starts from noise drawn from its own seed and the sampler adds no noise (DDIM with
  eta = 0), so an image depends on (prompt, reference, seed) only, never on its batch.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from realrag_core.clip.bundle import ClipBundle
from realrag_core.generators.demo.config import DemoUNetConfig, GeneratorMix, PairedAugment
from realrag_core.generators.base import check_generate_args

# diffusers (which loads torch._dynamo) takes seconds to import: only where a UNet or scheduler is made
if TYPE_CHECKING:
    from diffusers import DDPMScheduler, UNet2DConditionModel

NUM_TRAIN_TIMESTEPS = 1000


def build_unet(spec: DemoUNetConfig, text_width: int, text_dim: int | None = None) -> UNet2DConditionModel:
    """``text_dim``: size of the pooled text embedding, needed when ``spec.global_text``."""
    from diffusers import UNet2DConditionModel

    if spec.global_text and not text_dim:
        raise ValueError("global_text needs the pooled text embedding's size")
    extra = (
        {"class_embed_type": "projection", "projection_class_embeddings_input_dim": text_dim}
        if spec.global_text
        else {}
    )
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in spec.cross_attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(spec.cross_attention))
    return UNet2DConditionModel(
        sample_size=spec.image_size,
        in_channels=6 if spec.spatial_reference else 3,
        out_channels=3,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(spec.block_out_channels),
        layers_per_block=spec.layers_per_block,
        cross_attention_dim=text_width,
        attention_head_dim=spec.attention_head_dim,
        norm_num_groups=spec.norm_num_groups,
        **extra,
    )


def training_scheduler() -> DDPMScheduler:
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        clip_sample=False,
    )


def sampling_scheduler(kind: str = "ddim"):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

    common = dict(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        timestep_spacing="trailing",
    )
    if kind == "ddim":
        return DDIMScheduler(**common, clip_sample=True, set_alpha_to_one=True)
    if kind == "dpmsolver++":
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)
    if kind == "unipc":
        return UniPCMultistepScheduler(**common)
    raise ValueError(f"unknown sampler {kind!r}: ddim, dpmsolver++ or unipc")


class TextTokens(torch.nn.Module):
    """Per-token features of an open_clip text tower (what cross-attention reads), frozen."""

    def __init__(self, clip: ClipBundle):
        super().__init__()
        self.model = clip.model
        self.tokenizer = clip.tokenizer
        self.width = int(clip.model.token_embedding.weight.shape[1])

        self.dim = int(clip.model.text_projection.shape[1])

    @torch.no_grad()
    def forward(self, prompts: Sequence[str]) -> torch.Tensor:
        m = self.model
        tokens = self.tokenizer(list(prompts)).to(m.token_embedding.weight.device)
        x = m.token_embedding(tokens) + m.positional_embedding
        x = m.transformer(x, attn_mask=m.attn_mask)
        return m.ln_final(x)

    @torch.no_grad()
    def pooled(self, prompts: Sequence[str]) -> torch.Tensor:
        """The prompt's CLIP text embedding (projected, L2-normalised): one vector per prompt."""
        tokens = self.tokenizer(list(prompts)).to(self.model.token_embedding.weight.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)


def to_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """PIL -> [-1, 1] CHW at the model's resolution."""
    img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    arr = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0)
    return arr.permute(2, 0, 1)


def to_pil(x: torch.Tensor) -> Image.Image:
    arr = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


class DemoDiffusionGenerator:
    """Behind the one protocol: ``generate(prompts, references | None, seeds) -> images``."""

    def __init__(
        self,
        unet: UNet2DConditionModel,
        text: TextTokens,
        spec: DemoUNetConfig,
        generator_id: str,
        steps: int = 25,
        guidance: float = 3.0,
        batch_size: int = 64,
        device: str = "cpu",
        reference_guidance: float | None = None,
        scheduler: str = "ddim",
    ):
        self.reference_guidance = reference_guidance
        self.scheduler = scheduler
        sampling_scheduler(scheduler)  # an unknown name fails here, not in the middle of a run
        self.unet = unet.to(device).eval()
        self.text = text
        self.spec = spec
        self.generator_id = generator_id
        self.steps, self.guidance, self.batch_size, self.device = steps, guidance, batch_size, device
        self._null_text = self._null_pooled = None

    def _null(self, n: int) -> torch.Tensor:
        if self._null_text is None:
            self._null_text = self.text([""])
        return self._null_text.expand(n, -1, -1)

    def _null_global(self, n: int) -> torch.Tensor:
        if self._null_pooled is None:
            self._null_pooled = self.text.pooled([""])
        return self._null_pooled.expand(n, -1)

    @torch.no_grad()
    def generate(self, prompts, references, seeds) -> list[Image.Image]:
        references = check_generate_args(prompts, references, seeds)
        out: list[Image.Image] = []
        for i in range(0, len(prompts), self.batch_size):
            sl = slice(i, i + self.batch_size)
            out.extend(self._generate_batch(list(prompts[sl]), references[sl], list(seeds[sl])))
        return out

    def _generate_batch(self, prompts, references, seeds) -> list[Image.Image]:
        from diffusers import DDIMScheduler

        n, size = len(prompts), self.spec.image_size
        noise = torch.stack(
            [torch.randn(3, size, size, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        ).to(self.device)
        ref = torch.stack([to_tensor(r, size) if r is not None else torch.zeros(3, size, size) for r in references]).to(
            self.device
        )
        cond = self.text(prompts)
        uncond = self._null(n)
        glob = torch.cat([self.text.pooled(prompts), self._null_global(n)]) if self.spec.global_text else None
        scheduler = sampling_scheduler(self.scheduler)
        scheduler.set_timesteps(self.steps)
        no_noise = {"eta": 0.0} if isinstance(scheduler, DDIMScheduler) else {}
        x = noise * scheduler.init_noise_sigma
        use_cfg = self.guidance != 1.0
        two_scale = self.reference_guidance is not None
        for t in scheduler.timesteps:
            if two_scale:  # InstructPix2Pix-style: separate scales for the reference and for the text
                model_in = torch.cat([x, x, x])
                refs = torch.cat([ref, ref, torch.zeros_like(ref)])
                hidden = torch.cat([cond, uncond, uncond])
                if self.spec.spatial_reference:
                    model_in = torch.cat([model_in, refs], dim=1)
                labels = None if glob is None else torch.cat([glob[:n], glob[n:], glob[n:]])
                pc, pr, pu = self.unet(model_in, t, encoder_hidden_states=hidden, class_labels=labels).sample.chunk(3)
                pred = pu + self.reference_guidance * (pr - pu) + self.guidance * (pc - pr)
                x = scheduler.step(pred, t, x, **no_noise).prev_sample
                continue
            if use_cfg:
                model_in = torch.cat([x, x])
                refs = torch.cat([ref, torch.zeros_like(ref)])
                hidden = torch.cat([cond, uncond])
            else:
                model_in, refs, hidden = x, ref, cond
            if self.spec.spatial_reference:
                model_in = torch.cat([model_in, refs], dim=1)
            labels = None if glob is None else (glob if use_cfg else glob[:n])
            pred = self.unet(model_in, t, encoder_hidden_states=hidden, class_labels=labels).sample
            if use_cfg:
                pc, pu = pred.chunk(2)
                pred = pu + self.guidance * (pc - pu)
            x = scheduler.step(pred, t, x, **no_noise).prev_sample
        return [to_pil(img) for img in x]


def untrained_like(gen: DemoDiffusionGenerator, seed: int = 0) -> DemoDiffusionGenerator:
    """The same architecture, text tower and sampler with freshly initialised weights (an ablation's
    'generator that learned nothing')."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(gen.unet.config)
    return DemoDiffusionGenerator(
        unet,
        gen.text,
        gen.spec,
        f"{gen.generator_id}:untrained-{seed}",
        gen.steps,
        gen.guidance,
        gen.batch_size,
        gen.device,
        gen.reference_guidance,
        gen.scheduler,
    )


# --------------------------------------------------------------------------- training


def paired_transform(image: torch.Tensor, flip: bool, dx: int, dy: int) -> torch.Tensor:
    """[3, H, W] in [-1, 1]: mirror left-right, then move by (dx, dy) pixels, filling the border with white."""
    if flip:
        image = image.flip(-1)
    if dx or dy:
        s = max(abs(dx), abs(dy))
        padded = F.pad(image, (s, s, s, s), value=1.0)
        h, w = image.shape[-2:]
        image = padded[:, s - dy : s - dy + h, s - dx : s - dx + w]
    return image


def draw_condition(mix: GeneratorMix, rng: random.Random) -> tuple[bool, bool]:
    """(use text, use reference) for one training example, by the configured shares."""
    u = rng.random()
    if u < mix.text_and_reference:
        return True, True
    if u < mix.text_and_reference + mix.reference_only:
        return False, True
    if u < mix.text_and_reference + mix.reference_only + mix.text_only:
        return True, False
    return False, False


def train_generator(
    unet: UNet2DConditionModel,
    text: TextTokens,
    spec: DemoUNetConfig,
    *,
    images: torch.Tensor,  # [N, 3, H, W] in [-1, 1]
    captions: Sequence[str],
    reference_pool: Sequence[Sequence[int]],  # for example i: indices of other images of its concept
    steps: int,
    batch_size: int,
    lr: float,
    mix: GeneratorMix,
    seed: int,
    on_step: Callable[[int, float], None] | None = None,
    ema_decay: float | None = None,
    paired: PairedAugment | None = None,
    unfamiliar_text: float | None = None,
    unfamiliar_captions: Sequence[str] = (),
    outside_share: float | None = None,
    outside: tuple[torch.Tensor, Sequence[str], Sequence[Sequence[int]]] | None = None,
    snapshot_every: int | None = None,
    on_snapshot: Callable[[int, UNet2DConditionModel], None] | None = None,
) -> list[float]:
    """v-prediction denoising loss on (image, caption, reference: another image of the same concept).

    With ``ema_decay`` the UNet ends holding the exponential moving average of its weights (diffusers'
    ``EMAModel`` with warm-up), which samples far cleaner than the last step's weights after short training.

    With ``outside_share`` that share of the reference-conditioned examples is replaced by an example of
    ``outside`` (images, captions, reference pools of concepts outside the world), so the reference pathway
    learns from many more concepts than the text pathway; text-only and unconditioned examples stay known ones.

    With ``snapshot_every`` and ``on_snapshot``, every that many steps ``on_snapshot(steps_done, unet)`` sees the
    weights a run of exactly ``steps_done`` steps would save (the EMA average when ``ema_decay`` is set: the
    learning rate is constant and the data order depends only on the step), then training goes on unchanged."""
    from diffusers.training_utils import EMAModel

    rng = random.Random(seed)
    torch.manual_seed(seed)
    scheduler = training_scheduler()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-4)
    if unfamiliar_text and not unfamiliar_captions:
        raise ValueError("unfamiliar_text needs captions of concepts outside the world, and there are none")
    if outside_share:
        if outside is None or not any(outside[2]):
            raise ValueError(
                "outside_share needs images of concepts outside the world with a reference, and there are none"
            )
        outside_images, outside_captions, outside_pools = outside
        outside_rows = [j for j, p in enumerate(outside_pools) if p]
    names = sorted(
        set(captions)
        | set(unfamiliar_captions if unfamiliar_text else ())
        | set(outside_captions if outside_share else ())
        | {""}
    )
    text_cache = dict(zip(names, text(names)))
    pooled_cache = dict(zip(names, text.pooled(names))) if spec.global_text else None
    ema = EMAModel(unet.parameters(), decay=ema_decay, use_ema_warmup=True) if ema_decay else None
    unet.train()
    losses = []
    for step in range(steps):
        idx = [rng.randrange(len(images)) for _ in range(batch_size)]
        x0 = images[idx]
        hidden, refs, pooled = [], [], []
        for i in idx:
            use_text, use_ref = draw_condition(mix, rng)
            slot = len(refs)
            if use_ref and outside_share and rng.random() < outside_share:
                j = rng.choice(outside_rows)
                x0[slot] = outside_images[j]
                caption = outside_captions[j] if use_text else ""
                ref = outside_images[rng.choice(outside_pools[j])]
            else:
                if use_ref and not reference_pool[i]:
                    use_ref = False
                caption = captions[i] if use_text else ""
                if unfamiliar_text and use_text and use_ref and rng.random() < unfamiliar_text:
                    caption = rng.choice(unfamiliar_captions)
                ref = images[rng.choice(reference_pool[i])] if use_ref else torch.zeros_like(images[0])
            hidden.append(text_cache[caption])
            if pooled_cache is not None:
                pooled.append(pooled_cache[caption])
            if use_ref and paired is not None:
                flip = paired.flip and rng.random() < 0.5
                dx, dy = (rng.randint(-paired.max_shift, paired.max_shift) for _ in range(2))
                x0[slot] = paired_transform(x0[slot], flip, dx, dy)
                ref = paired_transform(ref, flip, dx, dy)
            refs.append(ref)
        hidden, refs = torch.stack(hidden), torch.stack(refs)
        noise = torch.randn_like(x0)
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (batch_size,))
        noisy = scheduler.add_noise(x0, noise, t)
        target = scheduler.get_velocity(x0, noise, t)
        model_in = torch.cat([noisy, refs], dim=1) if spec.spatial_reference else noisy
        labels = torch.stack(pooled) if pooled_cache is not None else None
        pred = unet(model_in, t, encoder_hidden_states=hidden, class_labels=labels).sample
        loss = F.mse_loss(pred, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        if ema is not None:
            ema.step(unet.parameters())
        losses.append(loss.item())
        if on_step:
            on_step(step, losses[-1])
        if snapshot_every and on_snapshot and (step + 1) % snapshot_every == 0 and step + 1 < steps:
            rng_state = torch.get_rng_state()  # whatever the callback draws, training goes on as without it
            if ema is not None:
                ema.store(unet.parameters())
                ema.copy_to(unet.parameters())
            unet.eval()
            on_snapshot(step + 1, unet)
            unet.train()
            torch.set_rng_state(rng_state)
            if ema is not None:
                ema.restore(unet.parameters())
    if ema is not None:
        ema.copy_to(unet.parameters())
    unet.eval()
    return losses


def save_generator(unet: UNet2DConditionModel, folder: Path, info: dict) -> None:
    unet.save_pretrained(folder, safe_serialization=True)
    (folder / "generator.json").write_text(json.dumps(info, indent=2))


def load_unet(folder: Path) -> tuple[UNet2DConditionModel, dict]:
    from diffusers import UNet2DConditionModel

    info_path = folder / "generator.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"no generator.json in {folder}: materialize the generator first")
    return UNet2DConditionModel.from_pretrained(folder), json.loads(info_path.read_text())

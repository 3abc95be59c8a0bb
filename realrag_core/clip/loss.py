"""The self-reflective contrastive loss (RealRAG, Lyu et al. 2025, Eq. for L_i).

For a batch of prompts t_i with positive real images v_i and mined reflective negatives r_ik:

    L_i = -log( exp(s(t_i, v_i)/tau) / ( sum_j exp(s(t_i, v_j)/tau) + sum_k exp(s(t_i, r_ik)/tau) ) )

s is cosine similarity (features are L2-normalised), 1/tau the model's logit scale. In-batch images of the
prompt's own concept (other than v_i) are masked out as false negatives. The image->text term of CLIP's
symmetric loss is optional; with no negatives, no masking and the term on, this is open_clip's ClipLoss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reflective_contrastive_loss(
    text: torch.Tensor,  # [B, d] normalised
    images: torch.Tensor,  # [B, d] normalised, images[i] is the positive of text[i]
    logit_scale: torch.Tensor,  # exp(learned log scale) = 1/tau
    *,
    negatives: torch.Tensor | None = None,  # [B, K, d] normalised reflective negatives
    negative_mask: torch.Tensor | None = None,  # [B, K] True where the negative is valid
    same_concept: torch.Tensor | None = None,  # [B, B] True where images[j] shows text[i]'s concept
    image_to_text: bool = False,
) -> torch.Tensor:
    n = text.shape[0]
    labels = torch.arange(n, device=text.device)
    logits = logit_scale * text @ images.T  # [B, B]: text i against image j
    if same_concept is not None:
        false_negative = same_concept & ~torch.eye(n, dtype=torch.bool, device=text.device)
        logits = logits.masked_fill(false_negative, float("-inf"))
    text_logits = logits
    if negatives is not None and negatives.shape[1] > 0:
        neg = logit_scale * torch.einsum("bd,bkd->bk", text, negatives)
        if negative_mask is not None:
            neg = neg.masked_fill(~negative_mask, float("-inf"))
        text_logits = torch.cat([logits, neg], dim=1)
    loss = F.cross_entropy(text_logits, labels)
    if image_to_text:
        loss = (loss + F.cross_entropy(logits.T, labels)) / 2
    return loss

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from realrag_core.clip.loss import reflective_contrastive_loss


def _feats(b=8, d=16, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = F.normalize(torch.randn(b, d, generator=g), dim=-1)
    v = F.normalize(torch.randn(b, d, generator=g), dim=-1)
    r = F.normalize(torch.randn(b, k, d, generator=g), dim=-1)
    return t, v, r


def test_without_negatives_and_masking_it_is_open_clip_clip_loss():
    t, v, _ = _feats()
    scale = torch.tensor(14.3)
    ours = reflective_contrastive_loss(t, v, scale, image_to_text=True)
    theirs = ClipLoss()(v, t, scale)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_matches_the_paper_formula_for_one_prompt():
    t, v, r = _feats(b=4, k=3)
    scale = torch.tensor(10.0)
    loss = reflective_contrastive_loss(t, v, scale, negatives=r)
    manual = []
    for i in range(4):
        pos = torch.exp(scale * t[i] @ v[i])
        denom = torch.exp(scale * t[i] @ v.T).sum() + torch.exp(scale * r[i] @ t[i]).sum()
        manual.append(-torch.log(pos / denom))
    assert torch.allclose(loss, torch.stack(manual).mean(), atol=1e-5)


def test_reflective_term_pushes_the_negative_away():
    t, v, r = _feats(b=4, k=1)
    r = r.clone().requires_grad_(True)
    scale = torch.tensor(10.0)
    before = torch.einsum("bd,bkd->bk", t, r).detach()
    reflective_contrastive_loss(t, v, scale, negatives=r).backward()
    after = torch.einsum("bd,bkd->bk", t, r.detach() - 0.1 * r.grad)
    assert (after < before).all()  # a gradient step lowers s(t_i, r_i): the negative moves away
    assert reflective_contrastive_loss(t, v, scale, negatives=r.detach()) > reflective_contrastive_loss(t, v, scale)


def test_masks_remove_false_and_invalid_negatives():
    t, v, r = _feats(b=4, k=2)
    scale = torch.tensor(10.0)
    none_valid = torch.zeros(4, 2, dtype=torch.bool)
    assert torch.allclose(
        reflective_contrastive_loss(t, v, scale, negatives=r, negative_mask=none_valid),
        reflective_contrastive_loss(t, v, scale),
    )
    same = torch.zeros(4, 4, dtype=torch.bool)
    same[0, 1] = same[1, 0] = True  # prompts 0 and 1 share a concept
    masked = reflective_contrastive_loss(t, v, scale, same_concept=same)
    plain = reflective_contrastive_loss(t, v, scale)
    assert masked < plain  # fewer competitors in the denominator

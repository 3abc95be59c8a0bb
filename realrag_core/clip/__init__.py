"""The CLIP bundle (create, train, save, load), the demo base CLIP's pre-training, pretrained open_clip models and
the reflective contrastive loss."""

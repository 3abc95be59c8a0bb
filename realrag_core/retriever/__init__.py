"""Stage 4: fitting the reflective (and contrastive) retriever, its checkpoints and the validation study."""

"""Stage inputs: image sources, the demo and synthetic worlds, world splits, prompts, shards, image decoding."""

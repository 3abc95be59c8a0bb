"""Stage 2: G(T) for each prompt, resumable by shard."""

"""Stage 5: retrieval per arm and G(T, I_ref)."""

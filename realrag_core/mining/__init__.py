"""Stage 3: reflective negatives, the real images nearest to G(T)."""

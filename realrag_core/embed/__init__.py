"""Stage 1: reading and embedding images into the LanceDB table; exact and indexed search."""

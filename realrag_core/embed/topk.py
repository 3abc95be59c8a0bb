"""Exact top-k by inner product, blocked over rows and queries: the kernel under stage 3's mining and under
batched retrieval from a table below its index threshold."""

from __future__ import annotations

import numpy as np
import torch


def blocked_topk(
    queries: np.ndarray,  # [Q, d]
    rows: np.ndarray,  # [N, d]
    k: int,
    *,
    query_codes: torch.Tensor | None = None,  # [Q] int32: with row_codes, a row whose code equals the query's is masked
    row_codes: torch.Tensor | None = None,  # [N] int32
    chunk_rows: int = 4096,
    query_block: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest inner products of each query (descending) and their row indices; -inf / -1 where fewer
    than k rows are left. Each block is one matrix product, masked in place, reduced to its own top k and merged
    into the running top k. Memory beyond the inputs is one ``query_block x chunk_rows`` block (16 MB by default:
    cache-sized blocks ran faster than 64 MB ones in bench/bench_mining.py's setting) and 4 bytes of code per
    row."""
    g = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    masked = query_codes is not None and row_codes is not None
    best_s = torch.full((len(g), k), float("-inf"))
    best_i = torch.full((len(g), k), -1, dtype=torch.long)
    buffer = torch.empty(min(query_block, len(g)) * min(chunk_rows, len(rows)))  # one block, reused (no page faults)
    for start in range(0, len(rows), chunk_rows):
        block = torch.from_numpy(np.ascontiguousarray(rows[start : start + chunk_rows], dtype=np.float32))
        n = len(block)
        tc = row_codes[start : start + n] if masked else None
        # same-code rows are masked among a few top candidates instead of over the whole block: a query has at
        # most `spare` rows of its own code here, so its top (k + spare) hold its k best other rows
        spare = int(torch.bincount(tc.long()).max()) if masked else 0
        few = masked and k + spare <= 64
        for q in range(0, len(g), query_block):
            m = min(query_block, len(g) - q)
            sims = torch.mm(g[q : q + m], block.T, out=buffer[: m * n].view(m, n))  # [queries, chunk]
            if few:
                cand = sims.topk(min(k + spare, n), dim=1)
                values = cand.values.masked_fill(tc[cand.indices] == query_codes[q : q + m, None], float("-inf"))
                top = values.topk(min(k, values.shape[1]), dim=1)
                top_s, top_i = top.values, torch.gather(cand.indices, 1, top.indices)
            else:
                if masked:
                    sims.masked_fill_(query_codes[q : q + m, None] == tc[None, :], float("-inf"))
                top = sims.topk(min(k, n), dim=1)
                top_s, top_i = top.values, top.indices
            cand_s = torch.cat([best_s[q : q + m], top_s], dim=1)
            cand_i = torch.cat([best_i[q : q + m], top_i + start], dim=1)
            merged = cand_s.topk(k, dim=1)
            best_s[q : q + m] = merged.values
            best_i[q : q + m] = torch.gather(cand_i, 1, merged.indices)
    return best_s, best_i

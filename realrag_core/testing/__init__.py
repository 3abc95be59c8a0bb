"""Test support shipped with the package but never imported by the rest of the library: tiny random-weight
instances of the real model classes (``tiny_models``: ``python -m realrag_core.testing.tiny_models DIR``) and a
random-weight Inception (``inception``). Random weights check plumbing, shapes and determinism, never quality."""

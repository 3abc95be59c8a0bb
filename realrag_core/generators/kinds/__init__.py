"""Generator kinds, one module per ``kind`` tag (``demo_diffusion``, ``diffusers_ip_adapter``, ``diffusers_omnigen``,
``external``): each declares its config section and its :class:`~realrag_core.generators.kind.GeneratorKind`, and
imports its implementation only when called. ``registry`` collects them. Adding a kind is adding a module here and
naming it in ``registry.KINDS``."""

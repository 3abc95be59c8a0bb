"""Image sources, one module per ``kind`` (``emoji_demo``, ``synthetic``, ``caption_file``, ``class_folders``,
``hf_dataset``): each declares its config section and its :class:`~realrag_core.data.sources.kind.SourceKind`
(how to prepare it, list its records, fingerprint it for the growth sensor). ``registry`` collects them: the config
tree's ``source`` union, and the one entry point per use. Adding a kind is adding a module here and naming it in
``registry.KINDS``. A source only *lists* records, lazily; reading and decoding pixels is the embedding stage's job.
"""

"""One pydantic config tree for the whole pipeline, loaded from YAML.

The config path comes from ``REALRAG_CONFIG`` (default ``configs/demo.yaml`` in the project root).
Relative paths inside a config file are resolved against the folder that holds the file, so a profile
works from any working directory (the Dagster UI, the CLI, tests).

Every invalid config fails in :func:`load_config`, before any work, with one :class:`ConfigError` whose
message names the field and the reason.

The sections live in one module each (``base``, ``sources``, ``world``, ``clip``, ``generators``, ``stages``,
``operations``, ``tree``, ``loading``): import from the module that declares a name.
"""

"""What a user writes: the typed, frozen config (YAML presets plus ``key=value`` overrides, its
sections with help text, ``${VAR}`` in strings) and the model zoo's ``models.txt``.

    sst config                      # every key with its type, default and help
    sst config -c configs/demo.yaml train.lr=3e-5   # the resolved config
"""

from sst.config.loader import Config, describe, flatten, load_config

__all__ = ["Config", "describe", "flatten", "load_config"]

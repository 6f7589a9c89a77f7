"""The typed config: dataclass schemas stored in Hydra's ConfigStore, their checks, and the --help text."""

"""Train a ladder of transformers causal LMs from a TOML spec (imports torch only inside functions that train)."""

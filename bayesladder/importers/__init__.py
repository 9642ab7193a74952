"""Importers turn other tools' logs into the ladder dataset (see bayesladder.schema)."""

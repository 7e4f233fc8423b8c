"""The composition: stream specs in, Dagster definitions out (above assets/, sensors/, resources/)."""

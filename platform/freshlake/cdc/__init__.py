"""Change data capture: the Debezium envelope and folding changes into current state."""

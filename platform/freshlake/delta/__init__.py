"""Delta Lake tables of the primary store: raw events and quarantine."""

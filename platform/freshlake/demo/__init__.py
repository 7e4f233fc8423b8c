"""The flight-assistant demo: a deterministic world of events, and a producer that sends it."""

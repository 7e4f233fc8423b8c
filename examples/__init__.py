"""Example projects built on freshlake; importable from the checkout (`examples.flight_assistant`)."""

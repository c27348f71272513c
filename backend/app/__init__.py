"""The FastAPI backend delivered by this repository's Pulumi program."""

"""Validation: an embedding against a target (and a host) gives findings, each with a fix."""

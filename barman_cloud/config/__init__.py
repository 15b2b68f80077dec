"""Typed configuration: the ObjectStore resource, its secrets, and what the engine derives from them."""

"""pad.v1's generated messages and stubs (client/python/generate.py)."""

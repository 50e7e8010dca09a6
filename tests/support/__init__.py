"""Helpers the test folders share. The root conftest puts tests/ on sys.path, so any folder imports
them as `from support.apigw import ...` (no conftest of its own needed)."""

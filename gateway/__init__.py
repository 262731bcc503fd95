"""The gateway role: the HTTP API (Litestar), admission, job ends and the sweeper.

It imports no inference runtime and no other role (import contracts in pyproject.toml).
"""

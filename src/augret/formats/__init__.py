"""On-disk contracts between stages: one owner module per produced artifact.

The ground floor beside :mod:`augret.data`: it imports only ``data``, ``errors``, NumPy and
the standard library, never a stage.
"""

from augret.formats.fingerprint import stable_hash

__all__ = ["stable_hash"]

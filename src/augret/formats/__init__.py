"""On-disk contracts between stages: one owner module per produced artifact.

* :mod:`augret.formats.embeddings`: embedding directories (``augret embed`` → index), the
  writer (:class:`~augret.formats.embeddings.EntryWriter`, ``meta.json``) and the reader
  (:class:`~augret.formats.embeddings.EmbeddingDir`).
* :mod:`augret.formats.indexes`: index directories (``meta.json``, ``ids.txt``,
  ``modalities.npy``, where each kind's payload lives).
* :mod:`augret.formats.fingerprint`: the one stable hash, stage fingerprints and skip records
  (``stage.json``, ``runs.json``).
* :mod:`augret.formats.idfile`: the one-id-per-line files of both directories.

JSON objects are read and written through :mod:`augret.data.jsonl` (``read_json``,
``write_json``), which ``data`` uses too. The ground floor beside :mod:`augret.data`: this
package imports only ``data``, ``errors``, NumPy and the standard library, never a stage.
"""

from augret.formats.fingerprint import stable_hash

__all__ = ["stable_hash"]

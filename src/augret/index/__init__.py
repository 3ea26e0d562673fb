"""Dense (FAISS) and lexical (BM25) indexes and search.

This stage is not built yet; its package exists so the layout is stable.
"""

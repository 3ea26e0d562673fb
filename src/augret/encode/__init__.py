"""Retriever encoders (CLIP_SF and others) and embedding of M-BEIR directories.

This stage is not built yet; its package exists so the layout is stable.
"""

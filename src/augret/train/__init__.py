"""Contrastive training of retrievers on raw or enhanced data.

This stage is not built yet; its package exists so the layout is stable.
"""

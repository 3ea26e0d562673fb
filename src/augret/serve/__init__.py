"""The search service: HTTP API and web page.

This stage is not built yet; its package exists so the layout is stable.
"""

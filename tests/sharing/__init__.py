"""Tests of adam.sharing: GGUF export, the shared store and Ollama models on disk."""

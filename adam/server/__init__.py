"""adam's HTTP server (job=serve): the OpenAI and Ollama APIs over the engine, micro-batched, safe by default.

HTTP (FastAPI routes, thin) -> the batcher (requests that arrive together share a batch) -> the engine
(the same rules jobs use) -> the backend. Nothing here is imported until a server starts.
"""

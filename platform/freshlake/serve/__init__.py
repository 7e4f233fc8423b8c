"""`freshlake serve`: the retrieval HTTP service (FastAPI on uvicorn); the app is `create_app`."""

from __future__ import annotations

from typing import Any


def run(app: Any, *, host: str = "127.0.0.1", port: int = 8088) -> None:
    """Serve `app` with uvicorn in this process until SIGINT/SIGTERM.

    One process: the embedder and LanceDB connections are shared by all requests (searches run
    on uvicorn's thread pool; LanceDB and the model release the GIL while they work).
    """
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)

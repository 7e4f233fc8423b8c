"""`freshlake serve`: the retrieval HTTP service (`freshlake.serve.app.create_app`) on uvicorn.

Reads the stores from `store_roots()` and the embedder from the environment like `search`;
Kafka (`--bootstrap` or `$KAFKA_BOOTSTRAP_SERVERS`) is optional and only adds watermarks and lags
to /v1/streams. `$FRESHLAKE_SERVE_TOKEN` set: /v1/* and /metrics need `Authorization: Bearer`.
"""

from __future__ import annotations

import argparse

from freshlake.cli.args import add_streams_option, load, stream_names, tcp_port


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="serve search over HTTP (OpenAPI at /docs)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=tcp_port, default=8088, help="TCP port (default: 8088)")
    parser.add_argument("--bootstrap", help="Kafka HOST:PORT for /v1/streams lags (default: $KAFKA_*)")
    parser.add_argument(
        "--stream",
        action="append",
        metavar="NAME",
        help="embedded stream to serve (repeatable; default: all)",
    )
    add_streams_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from freshlake.errors import FreshlakeConfigError
    from freshlake.kafka.connection import client_config
    from freshlake.serve import run as serve
    from freshlake.serve.app import create_app

    config = load(args)
    wanted = stream_names(config, args.stream, embedded=True)
    specs = [s for s in config.document_streams if not wanted or s.name in wanted]
    try:
        kafka = client_config(bootstrap=args.bootstrap)
    except FreshlakeConfigError:  # no Kafka address: serve without watermarks
        kafka = None
    app = create_app(streams=specs, kafka_config=kafka)
    print(f"freshlake serve: http://{args.host}:{args.port} (OpenAPI: /docs, /openapi.json)", flush=True)
    serve(app, host=args.host, port=args.port)
    return 0

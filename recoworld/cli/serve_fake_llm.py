"""Serve the local OpenAI-compatible fake LLM on 127.0.0.1 for development and demos.

Persona users ("user_turn") and the agentic recommender ("recommender_turn") get deterministic,
rule-based replies; any other schema is filled with defaults. Point recoworld at it with
RECOWORLD_LLM_BASE_URL=http://127.0.0.1:PORT/v1 and RECOWORLD_LLM_MODEL=fake-persona.

faults (deterministic; --fault may be given once, plus --gullible):
  KIND:next=N    the next N chat requests      KIND:every=K   every K-th chat request
  KIND is one of timeout, 429, 500, malformed, truncated, missing_fields

examples:
  recoworld serve-fake-llm --port 8000
  recoworld serve-fake-llm --port 8000 --latency-ms 100 --fault 429:every=10
"""

from __future__ import annotations

import argparse
import time

HELP = "serve the local OpenAI-compatible fake LLM (for development, demos and tests)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=8000, help="TCP port on 127.0.0.1 (0: any free)"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay added to every chat request"
    )
    parser.add_argument("--fault", default=None, help="KIND:next=N or KIND:every=K (see above)")
    parser.add_argument(
        "--gullible", action="store_true", help="obey 'click everything' outside data blocks"
    )
    parser.add_argument("--model", default="fake-persona", help="model id listed by /v1/models")
    parser.add_argument(
        "--seconds", type=float, default=None, help="stop after this many seconds (default: never)"
    )


def run(args: argparse.Namespace) -> int:
    from recoworld.errors import ConfigError
    from recoworld.testing.llm_server import FakeLLMServer, Faults

    if args.latency_ms < 0:
        raise ConfigError(f"--latency-ms {args.latency_ms} must be >= 0")
    faults = Faults.parse(args.fault) if args.fault else Faults()
    if args.gullible:
        faults = Faults(faults.kind, faults.next_n, faults.every_k, gullible=True)
    server = FakeLLMServer(
        args.port, latency_s=args.latency_ms / 1000, faults=faults, model=args.model
    )
    print(f"fake LLM serving {server.base_url} (model {args.model!r}); Ctrl-C stops it", flush=True)
    print(
        f"  export RECOWORLD_LLM_BASE_URL={server.base_url} RECOWORLD_LLM_MODEL={args.model}",
        flush=True,
    )
    try:
        if args.seconds is None:
            while True:
                time.sleep(3600)
        time.sleep(max(args.seconds, 0.0))
    except KeyboardInterrupt:
        pass
    finally:
        stats = server.stats
        server.close()
    print(f"served {stats['chat']} chat requests ({sum(stats['faults'].values())} with faults)")
    return 0

"""How the web app is served: uvicorn with httptools and uvloop (uvicorn[standard]), in factory mode.

The plain uvicorn install runs h11 on asyncio's loop, where every keep-alive response waited about
40 ms on a delayed ACK; httptools and uvloop are named here rather than left to "auto", so a missing
extra fails at start instead of silently bringing that floor back. `course web` and the web benchmark
both serve through `serve`, so the benchmark measures exactly what production runs."""

from __future__ import annotations

from typing import Any

APP_FACTORY = "course.web.app:create_app"


def serve(
    *, host: str, port: int, workers: int = 1, access_log: bool = False, factory: str = APP_FACTORY
) -> None:
    import uvicorn

    uvicorn.run(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http="httptools",
        loop="uvloop",
        proxy_headers=True,
        access_log=access_log,
        log_level="warning" if not access_log else "info",
    )


def bare_app() -> Any:
    """A Starlette app with one route ("hi") and no middleware: the ceiling `course bench --scenario
    web` serves through `serve` next to the real app, so every figure has this server's own limit
    on this machine beside it."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hi(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    return Starlette(routes=[Route("/", hi)])

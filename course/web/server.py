"""How the web app is served: uvicorn with httptools and uvloop (uvicorn[standard]), in factory mode.

The plain uvicorn install runs h11 on asyncio's loop, where every keep-alive response waited about
40 ms on a delayed ACK; httptools and uvloop are named here rather than left to "auto", so a missing
extra fails at start instead of silently bringing that floor back. `course web` and the web benchmark
both serve through `serve`, so the benchmark measures exactly what production runs."""

from __future__ import annotations

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

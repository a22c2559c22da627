"""Liveness and readiness probes for orchestrators and load balancers."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from {{ cookiecutter.package_name }}.upstream import UpstreamClient

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and its event loop answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(client: UpstreamClient) -> JSONResponse:
    """The shared upstream client is open, so relayed requests can be served."""
    if client.is_closed:
        return JSONResponse(
            {"status": "not ready", "detail": "upstream client closed"}, status_code=503
        )
    return JSONResponse({"status": "ready"})

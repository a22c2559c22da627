"""An endpoint of your own, as an example: a typed view of one upstream resource.

`GET /items/{item_id}` asks the upstream for `items/{item_id}`, checks its JSON against `Item`
and returns it as declared. Rename `Item` and its path after a resource of your API, copy the
module for more, or delete it (with its line in `app.py` and `tests/test_items.py`).

What callers get when the upstream does not answer with an item, whatever the endpoint:
- the upstream answers 404: 404; any other status outside 2xx: 502 naming it (`errors.py`);
- the upstream's JSON is not an `Item`: 502;
- the upstream is down, slow or broken: 502, 504 or 503 (`errors.py`).
"""

from fastapi import APIRouter
from pydantic import BaseModel, ValidationError

from {{ cookiecutter.package_name }}.errors import ERROR_RESPONSES, InvalidUpstreamResponse
from {{ cookiecutter.package_name }}.upstream import AppSettings, UpstreamClient

router = APIRouter(tags=["items"])


class Item(BaseModel):
    """An item as this service promises it. Fields the upstream adds are left out."""

    id: int
    name: str


@router.get("/items/{item_id}", responses=ERROR_RESPONSES)
async def read_item(item_id: int, client: UpstreamClient, settings: AppSettings) -> Item:
    """One item from the upstream, checked against `Item`."""
    # A path relative to UPSTREAM_BASE_URL (no leading `/`), so it stays under the base path;
    # the credential goes with this request only, never with the shared client.
    response = await client.get(f"items/{item_id}", headers=settings.upstream_credential())
    response.raise_for_status()
    try:
        return Item.model_validate_json(response.content)
    except ValidationError as exc:
        raise InvalidUpstreamResponse("the upstream's answer is not a valid item") from exc

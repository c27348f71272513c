"""A small real resource: create, list (paginated), get and delete items."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError
from sqlalchemy import func, select

from app.api.deps import SessionDep
from app.api.errors import DATABASE_RESPONSES, ErrorDetail
from app.models import MAX_ITEM_ID, Item, ItemCreate, ItemPublic, ItemsPage

router = APIRouter(prefix="/api/v1/items", tags=["items"], responses=DATABASE_RESPONSES)

MAX_PAGE_SIZE = 100
#: There can never be more rows than ids, so no larger offset can find one.
MAX_OFFSET = MAX_ITEM_ID

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


def _canonical_decimal(value: object) -> object:
    """Refuse a number written any other way than plain decimal digits, so one item has one URL.

    pydantic reads ``01``, ``+1``, `` 1`` and ``1.0`` as 1 (``1e2`` it refuses already); a cache, a
    log or an access rule would see each as another URL of the same item.
    """
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        raise PydanticCustomError("int_parsing", "Input should be an integer in plain decimal digits")
    return value


#: For an integer parameter of a URL (path or query): plain decimal digits only. It goes after the
#: ``Path``/``Query`` in the same ``Annotated``, where FastAPI still documents their bounds.
PLAIN_DECIMAL = BeforeValidator(_canonical_decimal)
ItemId = Annotated[int, Path(ge=1, le=MAX_ITEM_ID, description=f"The item's id, 1 to {MAX_ITEM_ID}"), PLAIN_DECIMAL]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such item", "model": ErrorDetail}}
# OpenAPI links from a created item to the operations on it; the fuzzer's stateful phase follows them.
ITEM_LINKS = {
    name: {"operationId": operation, "parameters": {"item_id": "$response.body#/id"}}
    for name, operation in (("GetItem", "get_item"), ("DeleteItem", "delete_item"))
}


@router.post("", status_code=status.HTTP_201_CREATED, responses={201: {"links": ITEM_LINKS}})
def create_item(body: ItemCreate, session: SessionDep) -> ItemPublic:
    item = Item(name=body.name, description=body.description)
    session.add(item)
    session.commit()
    return ItemPublic.model_validate(item)


@router.get("")
def list_items(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page"), PLAIN_DECIMAL] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip, in id order"), PLAIN_DECIMAL] = 0,
) -> ItemsPage:
    total = session.scalar(select(func.count()).select_from(Item)) or 0
    rows = session.scalars(select(Item).order_by(Item.id).limit(limit).offset(offset)).all()
    return ItemsPage(items=[ItemPublic.model_validate(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{item_id}", responses=NOT_FOUND)
def get_item(item_id: ItemId, session: SessionDep) -> ItemPublic:
    item = session.get(Item, item_id)
    if item is None:
        raise HTTPException(status_code=404, detail="Item not found")
    return ItemPublic.model_validate(item)


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_item(item_id: ItemId, session: SessionDep) -> Response:
    item = session.get(Item, item_id)
    if item is None:
        raise HTTPException(status_code=404, detail="Item not found")
    session.delete(item)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)

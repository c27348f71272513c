"""A small real resource: create, list (paginated), get and delete items."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from sqlalchemy import func, select

from app.api.deps import SessionDep
from app.api.errors import DATABASE_RESPONSES, ErrorDetail
from app.models import MAX_ITEM_ID, Item, ItemCreate, ItemPublic, ItemsPage

router = APIRouter(prefix="/api/v1/items", tags=["items"], responses=DATABASE_RESPONSES)

MAX_PAGE_SIZE = 100
#: There can never be more rows than ids, so no larger offset can find one.
MAX_OFFSET = MAX_ITEM_ID

ItemId = Annotated[int, Path(ge=1, le=MAX_ITEM_ID, description=f"The item's id, 1 to {MAX_ITEM_ID}")]
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
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page")] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip, in id order")] = 0,
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

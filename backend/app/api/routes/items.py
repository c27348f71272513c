"""A small real resource: create, list (paginated), get and delete items."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy import func, select

from app.api.deps import SessionDep
from app.models import Item, ItemCreate, ItemPublic, ItemsPage

router = APIRouter(prefix="/api/v1/items", tags=["items"])

MAX_PAGE_SIZE = 100


@router.post("", status_code=status.HTTP_201_CREATED)
def create_item(body: ItemCreate, session: SessionDep) -> ItemPublic:
    item = Item(name=body.name, description=body.description)
    session.add(item)
    session.commit()
    return ItemPublic.model_validate(item)


@router.get("")
def list_items(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ItemsPage:
    total = session.scalar(select(func.count()).select_from(Item)) or 0
    rows = session.scalars(select(Item).order_by(Item.id).limit(limit).offset(offset)).all()
    return ItemsPage(items=[ItemPublic.model_validate(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{item_id}", responses={404: {"description": "No such item"}})
def get_item(item_id: int, session: SessionDep) -> ItemPublic:
    item = session.get(Item, item_id)
    if item is None:
        raise HTTPException(status_code=404, detail="Item not found")
    return ItemPublic.model_validate(item)


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {"description": "No such item"}})
def delete_item(item_id: int, session: SessionDep) -> Response:
    item = session.get(Item, item_id)
    if item is None:
        raise HTTPException(status_code=404, detail="Item not found")
    session.delete(item)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""A task with its own database session (SQLAlchemy), detached from the request."""

from __future__ import annotations

import os
from collections.abc import Iterator

from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from fastapi_offload import Offload, OffloadTasks

engine = create_engine(os.environ.get("DATABASE_URL", "sqlite:///./shop.db"))
SessionLocal = sessionmaker(engine)


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(30), default="new")


Base.metadata.create_all(engine)


def get_db() -> Iterator[Session]:
    with SessionLocal() as db:  # closed when the request, or the task's attempt, ends
        yield db


offload = Offload()
app = FastAPI(lifespan=offload.lifespan)
app.include_router(offload.status_router())


def send_receipt(order_id: int, db: Session = Depends(get_db)) -> None:
    # A session of its own, opened when the task starts (each retry gets a new one).
    order = db.get(Order, order_id)
    if order is None:
        raise LookupError(f"no order {order_id}")
    order.status = "receipt sent"
    db.commit()


@app.post("/orders", status_code=202)
def create_order(tasks: OffloadTasks, db: Session = Depends(get_db)) -> dict[str, object]:
    order = Order()
    db.add(order)
    db.commit()
    # Not `tasks.add_task(send_receipt, order.id, db)`: the request's session is closed
    # when the response has gone, while the task may still run (add_task says so).
    handle = tasks.add_task(send_receipt, order.id)
    return {"order": order.id, "task": handle.id}


@app.get("/orders/{order_id}")
def read_order(order_id: int, db: Session = Depends(get_db)) -> dict[str, object]:
    order = db.get(Order, order_id)
    if order is None:
        raise HTTPException(404)
    return {"order": order.id, "status": order.status}

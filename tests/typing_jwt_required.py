"""Static checks that @jwt_required keeps the decorated view's type signature.

test_typing.py runs ``mypy --strict`` on this file and expects no errors. Nothing
here is meant to run, and pytest does not collect it. Each line of
``check_signatures`` reports an error if the decorator loses the view's parameters
or return type: an ``assert_type`` then gets another type, and a ``type: ignore``
on a call that breaks the signature becomes unused, which strict mode reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_type

from flask import Flask

from flask_refresh import jwt_required

app = Flask(__name__)


# Flask's route decorators accept the decorated views, sync and async.
@app.get("/items/<int:item_id>")
@jwt_required()
def show_item(item_id: int, *, verbose: bool = False) -> dict[str, int]:
    return {"id": item_id, "verbose": int(verbose)}


@app.post("/items/<int:item_id>/name")
@jwt_required(fresh=True)
async def rename_item(item_id: int, name: str) -> dict[str, str]:
    return {"id": str(item_id), "name": name}


@jwt_required(optional=True)
def greeting() -> str:
    return "hello"


async def check_signatures() -> None:
    assert_type(show_item(1), dict[str, int])
    assert_type(show_item(1, verbose=True), dict[str, int])
    assert_type(await rename_item(1, "new"), dict[str, str])
    assert_type(greeting, Callable[[], str])
    show_item("1")  # type: ignore[arg-type]
    show_item(1, True)  # type: ignore[call-arg]
    show_item(1, verbose="yes")  # type: ignore[arg-type]
    await rename_item(1)  # type: ignore[call-arg]
    await rename_item(1, name=2)  # type: ignore[arg-type]

"""The process the kill test kills: catch the order summary up, then exit.

    python -m tests.projection.kill_child STORE_URL TARGET

TARGET is a SQLite path or a postgresql:// URL. Prints "following" once it is reading.
"""

from __future__ import annotations

import asyncio
import sys

from eventcore import open_store
from eventcore.projection import ProjectionRunner, Source, SqliteTarget
from eventcore.projection.target import Target
from tests.projection.orders import OrderSummary, registry


async def open_target(spec: str) -> Target:
    if spec.startswith("postgresql://"):
        from eventcore.projection.postgres import PostgresTarget

        return await PostgresTarget.open(spec)
    return await SqliteTarget.open(spec)


async def main(store_url: str, target_spec: str) -> None:
    store = await open_store(store_url, create=False)
    target = await open_target(target_spec)
    try:
        runner = ProjectionRunner(
            OrderSummary(), target, Source("orders", store, registry), batch_size=500
        )
        print("following", flush=True)
        await runner.catch_up()
    finally:
        await target.aclose()
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

"""One instance of a service as its own process, for the registry's process tests:
``python -m tests.registry.instance_process REGISTRY_URL SERVICE INSTANCE_ID TTL``.

It serves HTTP on a loopback port (``tests.resilience.servers.Instance``: every path
answers JSON naming the instance), registers that address, prints ``ready <address>``
once listed, and on SIGTERM deregisters, stops serving and prints ``stopped``. A
``kill -9`` leaves the registration to its TTL.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from eventcore.registry import Instance, open_registry
from tests.resilience.servers import Instance as HttpInstance


async def main(url: str, service: str, instance_id: str, ttl: float) -> None:
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    server = await HttpInstance(instance_id).start()
    registry = await open_registry(url)
    instance = Instance.of(service, server.url, instance_id=instance_id, version="1.0")
    async with registry.register(instance, ttl=ttl):
        print("ready", server.url, flush=True)
        await stopping.wait()
    await server.stop()
    await registry.aclose()
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))

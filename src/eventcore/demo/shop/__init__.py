"""The shop: the system eventcore is built for, as an example to read and to run.

Five services, each with its own store, cooperating only through events, commands over
the bus, a saga and a federation hub:

- ``orders`` (``orders.py``) takes orders and owns the order saga (``saga.py``):
  accept → reserve stock → charge the card → book shipment → complete, compensated in
  reverse when a step fails;
- ``inventory`` (``inventory.py``) holds the stock, reserved for an order all at once;
- ``payments`` (``payments.py``) charges and refunds through the card gateway
  (``gateway.py``, a small HTTP service), via the service client and its circuit breaker;
- ``shipping`` (``shipping.py``) books a carrier, or refuses where none delivers;
- ``analytics`` (``analytics.py``) counts sales from the orders' events, which reach it
  through the federation hub (``hub.toml``, ``boundary.py``) with the customer's e-mail
  hashed and the card number redacted.

``services.py`` wires each service from its store and bus; ``runner.py`` runs them all
in one process; ``invariants.py`` checks, from the stores alone, that nothing was lost,
doubled or leaked. The guide ``docs/guides/shop.md`` walks through the code.
"""

"""Snowplow's e-commerce plugin (``snowplow_ecommerce_action``) to Miso interaction fields.

| action | Miso type | fields |
| --- | --- | --- |
| product_view | product_detail_page_view | the first product entity's id |
| list_view | impression | every product, in ``position`` order |
| list_click | click | the first (clicked) product |
| add_to_cart | add_to_cart | products and their ``quantity`` (default 1) |
| remove_from_cart | remove_from_cart | products (Miso's remove_from_cart has no quantities) |
| transaction | checkout | products, quantities, ``revenue`` of the transaction entity |
| refund | refund | products (Miso's refund has no amount) |
| promo_view / promo_click | impression / click | the promotion entities' ``product_ids`` |
| checkout_step, trns_error | skipped | |
"""

from __future__ import annotations

import typing as t

from target_miso.mappings.base import MappingError
from target_miso.normalize import to_number

if t.TYPE_CHECKING:
    from target_miso.mappings.snowplow.event import SnowplowEvent

ECOMMERCE = "com_snowplowanalytics_snowplow_ecommerce"
ECOMMERCE_ACTION = f"{ECOMMERCE}_snowplow_ecommerce_action"
PRODUCT = f"{ECOMMERCE}_product"
PROMOTION = f"{ECOMMERCE}_promotion"
TRANSACTION = f"{ECOMMERCE}_transaction"

#: The e-commerce plugin's action types and the Miso type each becomes (looked up with the
#: action as read from the event, whatever its type).
ECOMMERCE_TYPES: dict[object, str] = {
    "product_view": "product_detail_page_view",
    "list_view": "impression",
    "list_click": "click",
    "add_to_cart": "add_to_cart",
    "remove_from_cart": "remove_from_cart",
    "transaction": "checkout",
    "refund": "refund",
    "promo_view": "impression",
    "promo_click": "click",
}
_ONE_PRODUCT = frozenset({"product_view", "list_click"})
_WITH_QUANTITIES = frozenset({"add_to_cart", "transaction"})


def ecommerce_fields(event: SnowplowEvent, action: object) -> tuple[str, dict[str, t.Any]] | str:
    """Return the Miso type and item fields of one e-commerce action.

    Args:
        event: The event (its product, promotion and transaction entities are read).
        action: The action's ``type``.

    Returns:
        (Miso type, fields), or the reason the action gives no interaction.

    Raises:
        MappingError: If a quantity or the revenue is not a number.

    """
    interaction_type = ECOMMERCE_TYPES.get(action)
    if interaction_type is None:
        return f"ecommerce {action or '(no type)'}: no Miso type"
    if action in ("promo_view", "promo_click"):
        product_ids = list(dict.fromkeys(
            str(product_id)
            for promotion in event.entities(PROMOTION)
            for product_id in promotion.get("product_ids") or ()
            if product_id not in (None, "")
        ))  # fmt: skip
        if not product_ids:
            return f"ecommerce {action}: no promotion product_ids"
        return interaction_type, {"product_ids": product_ids}
    products = [p for p in event.entities(PRODUCT) if p.get("id") not in (None, "")]
    if action == "list_view":
        products.sort(key=lambda product: _position(product.get("position")))
    if action in _ONE_PRODUCT:
        products = products[:1]
    if not products:
        return f"ecommerce {action}: no products"
    fields: dict[str, t.Any] = {"product_ids": [str(product["id"]) for product in products]}
    if action in _WITH_QUANTITIES:
        fields["quantities"] = [
            _number("product.quantity", p.get("quantity") or 1) for p in products
        ]
    if action == "transaction":
        revenue = event.entity(TRANSACTION).get("revenue")
        if revenue not in (None, ""):
            fields["revenue"] = _number("transaction.revenue", revenue)
    return interaction_type, fields


def _number(field: str, value: object) -> int | float:
    try:
        return to_number(value)
    except ValueError as error:
        raise MappingError(field, str(error)) from None


def _position(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("inf")

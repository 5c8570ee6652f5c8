"""A tenant's own webhooks: its endpoints and their deliveries (webhooks:read and
webhooks:write)."""

from flask import request

from ..context import service_state
from ..errors import InvalidRequest
from ..schemas import (
    WebhookDeliverySchema,
    WebhookEndpointRequestSchema,
    WebhookEndpointSchema,
    WebhookEndpointUpdateSchema,
)
from ..webhooks import STATUSES as DELIVERY_STATUSES
from .inputs import load_fields, require_tenant


def create_webhook_endpoint():
    """Subscribe a URL of the tenant's to the events of its rooms; the secret is shown here
    only."""
    tenant = require_tenant()
    fields = load_fields(webhook_endpoint_request)
    endpoint, secret = tenant_webhooks().subscribe(
        tenant, fields["url"], fields.get("events"), fields["description"]
    )
    return {**webhook_endpoint.dump(endpoint), "secret": secret}, 201


def list_webhook_endpoints():
    """The tenant's webhook endpoints, without their secrets."""
    tenant = require_tenant()
    return {"endpoints": webhook_endpoint.dump(tenant_webhooks().endpoints(tenant), many=True)}


def update_webhook_endpoint(endpoint_id):
    """Enable one of the tenant's endpoints (what waited is sent, oldest first), or disable it."""
    tenant = require_tenant()
    fields = load_fields(webhook_endpoint_update)
    return webhook_endpoint.dump(
        tenant_webhooks().set_enabled(tenant, endpoint_id, fields["enabled"])
    )


def delete_webhook_endpoint(endpoint_id):
    """Unsubscribe one of the tenant's endpoints."""
    tenant_webhooks().unsubscribe(require_tenant(), endpoint_id)
    return {"status": "deleted", "id": endpoint_id}


def rotate_webhook_secret(endpoint_id):
    """A new secret for one of the tenant's endpoints; the old one signs too for 24 h."""
    return {"secret": tenant_webhooks().rotate_secret(require_tenant(), endpoint_id)}


def test_webhook_endpoint(endpoint_id):
    """Send a webhook.test event to one of the tenant's endpoints."""
    delivery_id = tenant_webhooks().send_test(require_tenant(), endpoint_id)
    return {"delivery_id": delivery_id}, 202


def list_webhook_deliveries():
    """The tenant's newest deliveries, by endpoint and status."""
    tenant = require_tenant()
    endpoint_id = request.args.get("endpoint_id") or None
    status = request.args.get("status") or None
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidRequest(
            "unknown delivery status",
            fields={"status": [f"Must be one of: {', '.join(DELIVERY_STATUSES)}."]},
        )
    deliveries = tenant_webhooks().deliveries(tenant, endpoint_id, status)
    return {"deliveries": webhook_delivery.dump(deliveries, many=True)}


def retry_webhook_delivery(delivery_id):
    """Deliver one of the tenant's deliveries again, now."""
    tenant_webhooks().retry(require_tenant(), delivery_id)
    return {"id": delivery_id, "status": "pending"}, 202


def tenant_webhooks():
    """The tenants' webhooks of this app (present whenever a tenant key is configured, which a
    tenant's request implies)."""
    return service_state().tenant_webhooks


webhook_endpoint_request = WebhookEndpointRequestSchema()
webhook_endpoint = WebhookEndpointSchema()
webhook_endpoint_update = WebhookEndpointUpdateSchema()
webhook_delivery = WebhookDeliverySchema()

"""MFP connector endpoints, one per enrolment mode.

* shared-account: the device's own credentials open a session for the one
  tenant user the device acts as (no IdP call, so any tenant protocol works);
* device-login: the device authenticated the user itself (badge, PIN, its own
  directory) and reports who it was; the bridge maps that to an enabled user
  (no IdP call);
* user-prompt: the panel sends the email and password typed; the IdP checks them.

A device may only call the endpoint of the mode it is enrolled in.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bridge.appkeys import LOGIN, STORE
from bridge.config import DeviceLoginIdentity
from bridge.errors import DeviceAuthError, UserDisabled, UserNotProvisioned
from bridge.logcontext import tenant_id_var
from bridge.login.guard import LoginMode
from bridge.login.service import split_email
from bridge.state.store import DeviceMode
from connectors.http import (
    enrolled_device,
    login_response,
    password_fields,
    read_json_object,
    source_address,
    string_field,
)

log = logging.getLogger(__name__)

MAX_REPORTED_USER_CHARS = 256


async def shared_account(request: web.Request) -> web.Response:
    """Device credentials alone: a session for the device's shared account."""
    login = request.app[LOGIN]
    async with login.attempt(mode=LoginMode.SHARED_ACCOUNT, source=source_address(request)) as attempt:
        device = await enrolled_device(request, attempt, DeviceMode.SHARED_ACCOUNT)
        tenant = login.config.tenant(device.tenant_id)
        tenant_id_var.set(tenant.id)
        if device.shared_user_email is None:
            raise DeviceAuthError(f"shared-account device {device.device_id} has no shared user")
        attempt.identified(tenant, device.shared_user_email)
        user = await login.provisioned_user(tenant, device.shared_user_email)
        outcome = await login.open_session(tenant, user, device)
    log.info("shared-account session opened on device %s", device.device_id)
    return login_response(outcome)


async def device_login(request: web.Request) -> web.Response:
    """The device vouches for the user it authenticated; the bridge maps the identity to a tenant user."""
    login = request.app[LOGIN]
    async with login.attempt(mode=LoginMode.DEVICE_LOGIN, source=source_address(request)) as attempt:
        device = await enrolled_device(request, attempt, DeviceMode.DEVICE_LOGIN)
        tenant = login.config.tenant(device.tenant_id)
        tenant_id_var.set(tenant.id)
        attempt.tenant = tenant
        body = await read_json_object(request)
        reported = string_field(body, "user", max_chars=MAX_REPORTED_USER_CHARS).strip()
        attempt.reported_user = reported
        store = request.app[STORE]
        if tenant.device_login_identity is DeviceLoginIdentity.EMAIL:
            email, _ = split_email(reported)
            attempt.email = email
            user = await store.get_user(tenant.id, email)
        else:
            user = await store.get_user_by_username(tenant.id, reported)
        if user is None:
            raise UserNotProvisioned(f"device {device.device_id} reported a user unknown in tenant {tenant.id} "
                                     f"(matched by {tenant.device_login_identity.value})")
        attempt.identified(tenant, user.email)
        if not user.enabled:
            raise UserDisabled(f"user {user.email} is disabled in tenant {tenant.id}")
        outcome = await login.open_session(tenant, user, device)
    log.info("device-login session opened on device %s", device.device_id)
    return login_response(outcome)


async def user_prompt(request: web.Request) -> web.Response:
    """The panel sends the email and password the user typed."""
    login = request.app[LOGIN]
    async with login.attempt(mode=LoginMode.USER_PROMPT, source=source_address(request)) as attempt:
        device = await enrolled_device(request, attempt, DeviceMode.USER_PROMPT)
        body = await read_json_object(request)
        email, password = password_fields(body, attempt)
        outcome = await login.password_login(identifier=email, password=password, device=device, attempt=attempt)
    log.info("user-prompt login succeeded on device %s", device.device_id)
    return login_response(outcome)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/mfp/shared-account", shared_account),
        web.post("/v1/mfp/device-login", device_login),
        web.post("/v1/mfp/user-prompt", user_prompt),
    ]
